"""Runs: resolve a config, build the dataset and model, train if needed, evaluate.

The run directory's identity and policy (config hash, default names, never overwriting trained
work) are :mod:`vpbench.rundir`; the files of a result set are :mod:`vpbench.results`.

A run directory holds ``config.json`` (the resolved config), ``checkpoints/`` (the resumable
``last.pt`` and the best weights per stage), ``model.pt`` (final weights), ``train_log.jsonl``,
``training.json`` (the plan and cost of training), one result set per evaluation under
``evals/`` (``results.csv`` / ``results.json``, ``per_clip.npz``, ``report.md``, ...) and
``report.md`` (an index of the sets).

Trained work is never lost: an unfinished run is continued only with ``--resume``, a run
with a different config is never overwritten, and ``--fresh`` moves the old directory aside
instead of deleting it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from vpbench import config as cfgmod
from vpbench import io, rundir
from vpbench.budget import Probe
from vpbench.data.root import data_root
from vpbench.errors import ConfigError, PluginError, RunError, VPBenchError, one_line
from vpbench.evaluate import COLUMNS, check_spec, clips_scored, cost_rows, derived_metrics, open_split, score, set_protocol, tidy
from vpbench.events import Events
from vpbench.plugins import Harness
from vpbench.protocols import is_set_metric, member
from vpbench.provenance import device_description, provenance
from vpbench.runtime import seed_everything, select_device
from vpbench.safeload import load_pt
from vpbench.train import Trainer


@dataclass
class Run:
    harness: Harness
    config: cfgmod.RunConfig
    run_dir: Path
    data_dir: Path | None = None
    dist: Any = None  # a vpbench.distributed.Context under torchrun
    # Predictions for the first ``eval.examples`` clips, kept by ``evaluate`` (rank 0) so that
    # ``vpbench compare`` draws its side-by-side strips without generating them a second time.
    examples: list | None = field(default=None, repr=False, compare=False)
    eval_dir: Path | None = None  # the result set the last ``evaluate`` wrote (evals/<name>/)
    tracking: Any = None  # a vpbench.tracking.Tracking while the run is tracked (vpbench.tracking.tracked)

    @property
    def is_main(self) -> bool:
        return self.dist is None or self.dist.rank == 0

    @property
    def model_cls(self) -> type:
        return self.harness.models.get(self.config.model_name)

    @property
    def dataset_cls(self) -> type:
        return self.harness.datasets.get(self.config.dataset_name)

    @property
    def device(self) -> torch.device:
        return self.dist.device if self.dist is not None else select_device(self.config.device)


def prepare(harness: Harness, model: str, *, dataset: str | None = None, preset: str | None = None,
            config_file: str | None = None, sets: list[str] | None = None, seed: int | None = None,
            device: str | None = None, out: str | Path | None = None,
            data_dir: str | Path | None = None, models: list[str] | None = None,
            protocol: cfgmod.Protocol | None = None) -> Run:
    """Resolve the config of ``model`` (on ``dataset``, or under a comparison's shared
    ``protocol``) and choose the run directory."""
    model_cls = harness.models.get(model)
    config = cfgmod.resolve(model, model_cls, harness.datasets.get, dataset=dataset, preset=preset,
                            config_file=config_file, sets=sets, seed=seed, device=device, models=models,
                            protocol=protocol)
    for metric in config.eval.metrics:
        harness.metrics.get(metric)  # unknown metric names fail before any work
    if "WORLD_SIZE" not in os.environ:
        select_device(config.device)
    run_dir = rundir.out_path(out) if out else rundir.default_run_dir(config, model_cls)
    from vpbench import distributed

    return Run(harness, config, run_dir, Path(data_dir) if data_dir else None, distributed.from_env(config.device))


def load_run(harness: Harness, run_dir: str | Path, *, device: str | None = None,
             data_dir: str | Path | None = None) -> Run:
    """The :class:`Run` saved in ``run_dir`` (its ``config.json``)."""
    run_dir = rundir.out_path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run directory (no config.json); create one with `vpbench run`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not rundir.is_run_config(data):
        raise RunError(f"{run_dir} is not a vpbench run (its config.json has no model_name and dataset_name: "
                       "another tool's?)")
    model_cls = _installed(harness, "model", data.get("model_name", "?"), run_dir)
    dataset_cls = _installed(harness, "dataset", data.get("dataset_name", "?"), run_dir)
    if device is not None:
        data["device"] = device
    return Run(harness, cfgmod.from_dict(data, model_cls, dataset_cls), run_dir,
               Path(data_dir) if data_dir else None)


def _installed(harness: Harness, kind: str, name: str, run_dir: Path) -> type:
    """The registered plugin class of a saved run; when it is not installed, say which
    distribution made the run (recorded in its results)."""
    from vpbench.errors import RegistryError

    registry = harness.models if kind == "model" else harness.datasets
    made_by = ""
    if name not in registry:
        try:
            from vpbench import results

            prov = json.loads((results.find_set(run_dir) / "results.json").read_text()).get("provenance", {})
            made_by = prov.get("plugins", {}).get(f"{kind}_distribution", "")
        except (VPBenchError, OSError, ValueError):
            pass
    if made_by:
        raise RegistryError(f"{run_dir} was made with {kind} '{name}' from the distribution {made_by}, which is not "
                            "installed here: pip install it, then rerun (`vpbench plugins` lists what is loaded)")
    return registry.get(name)  # an unknown name without a record: the registry's own line, with near misses


def plugin_call(harness: Harness, kind: str, name: str, what: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``; an exception of the plugin's own code becomes one line naming
    the plugin, its distribution and what it was doing."""
    try:
        return fn(*args, **kwargs)
    except VPBenchError:
        raise
    except Exception as exc:
        source = harness.source_of(kind, name)
        raise PluginError(f"{kind} '{name}' from {source} raised while {what}: {one_line(exc)}") from exc


def open_dataset(harness: Harness, name: str, config: Any = None, root: str | Path | None = None, *,
                 events: Events | None = None, prepare: bool = True) -> Any:
    """The dataset plugin ``name`` with ``config`` (default: its own defaults) on the data root
    ``root`` (default: ``$VPBENCH_DATA`` or ``datasets/``). Its ``prepare(events)`` step
    (decoding, caching, cutting windows) runs here, with progress, unless ``prepare`` is false
    (to read its spec or info only); a prepared dataset's spec is checked. Every dataset vpbench uses
    is opened here."""
    cls = harness.datasets.get(name)
    dataset = plugin_call(harness, "dataset", name, "loading", cls, cls.Config() if config is None else config,
                          data_root(root))
    if prepare:
        plugin_call(harness, "dataset", name, "preparing its data", member(dataset, "prepare", "dataset"), events)
        check_spec(plugin_call(harness, "dataset", name, "giving its spec", lambda: dataset.spec), name)
    return dataset


def build_dataset(run: Run, events: Events | None = None) -> Any:
    """The dataset of ``run``, prepared."""
    return open_dataset(run.harness, run.config.dataset_name, run.config.data, run.data_dir, events=events)


def build_model(run: Run, dataset: Any) -> torch.nn.Module:
    return build_model_for_spec(run, dataset.spec)


def build_model_for_spec(run: Run, spec: Any) -> torch.nn.Module:
    cfg = run.config
    seed_everything(cfg.seed)
    try:
        model = plugin_call(run.harness, "model", cfg.model_name, "being built", run.model_cls, cfg.model, spec)
    except ConfigError as exc:  # e.g. frames that do not divide by the model's patch: name the model
        text = str(exc)
        if f"'{cfg.model_name}'" not in text:
            text = (f"model '{cfg.model_name}' cannot run on {cfg.dataset_name} ({spec.channels}x{spec.height}x"
                    f"{spec.width}, {spec.n_in} -> {spec.n_out}): {text}")
        raise ConfigError(text) from None
    return model.to(run.device)


def check(run: Run, model: torch.nn.Module, dataset: Any, events: Events | None = None) -> Probe:
    """Fail fast and count: one training step of every stage and one ``predict`` on real
    training clips, on a copy of ``model`` (see :mod:`vpbench.budget`)."""
    from vpbench.budget import parse_budget, probe

    budget = parse_budget(run.config.train.budget)
    timed = budget is not None and budget.kind == "seconds"
    if events is not None and model.stages():
        events.message(f"{run.config.model_name}: checking one training step of every stage and one prediction"
                       + (" (timing steps for the wall-clock budget)" if timed else ""))
    found = probe(model, dataset, run.config, run.device, run.config.model_name, time_steps=3 if timed else 0)
    if run.dist is not None:  # one plan for every rank: rank 0's measured step times
        found = run.dist.gather(found)[0]
    return found



@contextlib.contextmanager
def stop_on_signals(trainer: Trainer):
    """SIGTERM / SIGINT ask the trainer to write a checkpoint and stop after the current step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum, frame):
        trainer.stop_requested = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def save_weights(model: torch.nn.Module, run: Run) -> None:
    io.torch_save({"model": model.state_dict(), "config": run.config.to_dict()}, run.run_dir / "model.pt")


def load_trained(run: Run, dataset: Any) -> torch.nn.Module:
    """The trained model of an existing run directory (``model.pt``)."""
    if not (run.run_dir / "model.pt").is_file():
        raise RunError(f"{run.run_dir} has no trained model (model.pt); finish it with `vpbench run ... --resume`")
    model = build_model(run, dataset)
    load_weights(model, run)
    return model


def load_weights(model: torch.nn.Module, run: Run) -> None:
    path = run.run_dir / "model.pt"
    try:
        state = load_pt(path, "train the run again with --fresh")
        model.load_state_dict(state["model"])
    except RunError:
        raise
    except Exception as exc:
        raise RunError(f"{path} cannot be loaded ({one_line(exc)}); rerun `vpbench run` with --fresh") from None
    trained = state.get("config")
    if isinstance(trained, dict):  # model.pt keeps the config it was trained with
        diff = rundir.first_difference(rundir.training_key_of(trained, run.model_cls),
                                       rundir.training_key(run.config, run.model_cls))
        if diff:
            raise RunError(f"{run.run_dir}/config.json does not match the config model.pt was trained with ({diff}); "
                           "config.json was edited: restore it, or train again with --fresh")


def lock(run: Run, events: Events | None = None):
    """The exclusive lock of ``run``'s directory for a block that writes into it (rank 0 holds
    it for a torchrun job); half-written temporary files of a killed process are removed."""
    if not run.is_main:
        return contextlib.nullcontext()
    return rundir.locked(run.run_dir, events)


def is_trained(run: Run, until: str | None = None) -> bool:
    return rundir.is_trained(run.run_dir, until)


def train(run: Run, dataset: Any, *, resume: bool = False, fresh: bool = False,
          events: Events | None = None, until: str | None = None, probed: Probe | None = None) -> torch.nn.Module:
    """The trained model of ``run``: loaded when already trained, else trained now.

    Before training, :func:`check` runs one step of every stage and one prediction (``probed``:
    its result, when the caller already checked), and the plan of the run (the stages' steps, or
    ``train.budget`` spent) is written to ``training.json``, which also records what training
    cost. With ``until`` only the stages before that one are trained; the run then ends with its
    checkpoint at that stage boundary and a marker file instead of ``model.pt``."""
    from vpbench.budget import load_record, make_record

    events = events or Events()
    run_dir, cfg = run.run_dir, run.config
    # Built and checked first: a config the model refuses (a patch that does not divide the
    # frames, ...) or a step that breaks the contract is a one-line error that leaves no run
    # directory behind. Building seeds everything and the check runs on a copy with its own
    # random stream, so neither changes the weights.
    model = build_model(run, dataset)
    if probed is None and (fresh or not is_trained(run, until)):
        probed = check(run, model, dataset, events)
    if run.dist is not None:
        from vpbench.distributed import check_batch

        check_batch(cfg.train.batch_size, run.dist)
        if run.is_main:
            prepare_run_dir(run, fresh, events)
        run.dist.barrier()
    else:
        prepare_run_dir(run, fresh, events)
    marker = run_dir / f"trained-until-{until}.txt" if until is not None else None
    if marker is not None and marker.is_file():
        events.message(f"stages before '{until}' are already trained in {run_dir}")
        return model
    if marker is None and (run_dir / "model.pt").is_file():
        load_weights(model, run)
        events.message(f"{cfg.model_name} is already trained in {run_dir}; evaluating it")
        return model
    if (run_dir / "checkpoints" / "last.pt").is_file() and not resume:
        raise RunError(
            f"{run_dir} holds an unfinished training; pass --resume to continue it or --fresh to "
            "move it aside and start over"
        )
    record = load_record(run_dir) if resume else None
    if record is None:
        record = make_record(model, cfg, probed, device_description(run.device))
        if run.is_main:
            record.save(run_dir)
    if record.budget_kind != "none":
        events.message(f"{cfg.model_name}: budget {cfg.train.budget} -> " + ", ".join(
            f"{s.name} {s.steps:,} steps" for s in record.stages))
    source = run.harness.source_of("model", cfg.model_name)
    trainer = Trainer(model, dataset, cfg, run_dir, run.device, events, dist=run.dist, record=record,
                      blame=f"model '{cfg.model_name}' from {source}", tracking=run.tracking)
    with stop_on_signals(trainer):  # the trainer names the model only for errors of the model's own code
        finished = trainer.fit(resume, until=until)
    if not finished:
        raise RunError(f"training stopped by a signal; checkpoint written; continue with `--resume --out {run_dir}`")
    if run.is_main:
        if marker is None:
            save_weights(model, run)
        else:
            io.write_text(marker, f"trained up to stage '{until}'\n")
    if run.dist is not None:
        run.dist.barrier()
    return model


def prepare_run_dir(run: Run, fresh: bool = False, events: Events | None = None) -> None:
    """Check an existing run directory against the config; never overwrite trained work."""
    rundir.prepare_dir(run.run_dir, run.config, run.model_cls, lambda: load_run(run.harness, run.run_dir).config,
                       fresh=fresh, events=events)


def evaluate(run: Run, model: torch.nn.Module, dataset: Any, *, events: Events | None = None,
             variant: str | None = None) -> pd.DataFrame:
    """Score ``model`` on the configured split into one result set of the run directory
    (``evals/<split>-<clips>clips-<hash>/``: results.csv/json, per_clip.npz, profile.json,
    horizon.png, report.md, examples/), written as one set; other result sets stay as they are."""
    from vpbench import results

    cfg = run.config
    metrics = [run.harness.metrics.get(name) for name in cfg.eval.metrics]
    split = open_split(dataset, cfg.eval.split, cfg.dataset_name)
    protocol = None
    if any(is_set_metric(m) for m in metrics):  # checked before anything is predicted
        protocol = set_protocol(cfg.eval, cfg.dataset_name, dataset.spec, clips_scored(len(split), cfg.eval.max_clips),
                                metrics, member(dataset, "fvd_includes_context", "dataset"))
    key = results.eval_key(cfg, run.model_cls, metrics, len(split), protocol)
    scores = score(model, split, dataset.spec, metrics, model_name=cfg.model_name, device=run.device,
                   batch_size=cfg.eval.batch_size, max_clips=cfg.eval.max_clips, events=events,
                   num_workers=cfg.train.num_workers, dist=run.dist, samples=cfg.eval.samples, seed=cfg.seed,
                   protocol=protocol)
    metrics = derived_metrics(metrics, cfg.eval.samples)
    meta = {"run": run.run_dir.name, "model": cfg.model_name, "variant": variant or cfg.preset,
            "dataset": cfg.dataset_name, "split": cfg.eval.split, "seed": cfg.seed,
            "model_version": cfg.model_version, "dataset_version": cfg.dataset_version,
            "device": device_description(run.device)}
    if not run.is_main:  # rank 0 measures costs and writes every file
        run.dist.barrier()
        return tidy(scores, metrics, meta, cfg.eval.bootstrap)
    name = results.set_name(key)
    with results.staged(run.run_dir, name) as staging:
        costs = cost_rows(measure_costs(run, model, dataset, events, staging), meta)
        table = pd.concat([tidy(scores, metrics, meta, cfg.eval.bootstrap), costs, training_rows(run, meta)],
                          ignore_index=True)
        provenance = run_provenance(run, dataset)
        if protocol is not None:
            provenance["set_metrics"] = {m.name: {k: str(v) for k, v in member(m, "details", "set_metric")().items()}
                                         for m in metrics if is_set_metric(m)}
        results.write_set(staging, table, scores.values, provenance=provenance,
                          config=cfg.to_dict(), key=key, title=f"{cfg.model_name} on {cfg.dataset_name}",
                          examples=cfg.eval.examples, features=scores.features)
        write_examples(run, model, dataset, staging)
    run.eval_dir = run.run_dir / results.EVALS / name
    results.write_index(run.run_dir)
    if run.tracking:
        run.tracking.results(table, run.eval_dir)
    if run.dist is not None:
        run.dist.barrier()
    return table


def eval_overrides(config: cfgmod.RunConfig, model_cls: type, sets: list[str] | None = None,
                   split: str | None = None) -> cfgmod.RunConfig:
    """``config`` with the overrides ``vpbench eval`` accepts: ``eval.*`` keys (``split`` is
    ``eval.split``) and the model's prediction-only fields (``Model.predict_fields``). Any other
    key would change the trained weights, so it is refused: that needs a new run."""
    overrides = cfgmod.parse_sets(sets)
    predict_fields = tuple(member(model_cls, "predict_fields"))
    model_over = overrides.pop("model", {}) or {}
    refused = [f"model.{key}" for key in model_over if key not in predict_fields]
    for section, value in overrides.items():
        if section != "eval":
            refused += [f"{section}.{key}" for key in value] if isinstance(value, dict) else [section]
    if refused:
        allowed = ", ".join(f"model.{f}" for f in predict_fields)
        raise ConfigError(f"vpbench eval cannot change {refused[0]}: it accepts only eval.* overrides"
                          + (f" and {allowed}" if allowed else "") + " (training keys would need a new run)")
    eval_over = dict(overrides.get("eval", {}))
    if split:
        eval_over["split"] = split
    new_eval = cfgmod.build(cfgmod.EvalConfig, cfgmod.merge(cfgmod.to_dict(config.eval), eval_over), "eval.")
    new_model = config.model
    if model_over:
        new_model = cfgmod.build(model_cls.Config, cfgmod.merge(cfgmod.to_dict(new_model), model_over), "model.")
    return dataclasses.replace(config, eval=new_eval, model=new_model)


def reevaluate(run: Run, sets: list[str] | None = None, split: str | None = None,
               events: Events | None = None) -> pd.DataFrame:
    """Score the trained model of a saved run again (with :func:`eval_overrides`) into a result
    set of its own; the run's other result sets are kept."""
    events = events or Events()
    run.config = eval_overrides(run.config, run.model_cls, sets, split)
    for name in run.config.eval.metrics:
        run.harness.metrics.get(name)
    with lock(run, events):
        installed = str(getattr(run.model_cls, "version", ""))
        if run.config.model_version and run.config.model_version != installed:
            events.message(f"{run.config.model_name}: trained with version {run.config.model_version}, the installed "
                           f"plugin is version {installed}; the results record both")
        data = build_dataset(run, events)
        return evaluate(run, load_trained(run, data), data, events=events)


def training_rows(run: Run, meta: dict[str, Any]) -> pd.DataFrame:
    """What training cost (``training.json``): optimiser steps, counted training FLOPs and
    measured wall time, on the device it ran on. Empty for runs trained before it was recorded."""
    from vpbench.budget import load_record

    record = load_record(run.run_dir)
    if record is None:
        return pd.DataFrame(columns=COLUMNS)
    rows = [("train_steps", record.steps_taken, "count", False), ("train_flops", record.flops, "FLOPs", False),
            ("train_time", record.seconds, "s", False)]
    return cost_rows(rows, {**meta, "device": record.device})


def measure_costs(run: Run, model: torch.nn.Module, dataset: Any, events: Events | None = None,
                  out_dir: Path | None = None) -> list:
    """Parameters always; FLOPs / MACs and speed as ``eval.profile`` / ``eval.speed`` say.
    The full profile (ops without a FLOP formula, memory, device) goes to ``out_dir``/profile.json."""
    from vpbench.evaluate import count_parameters
    from vpbench.profile import profile_model

    cfg = run.config
    total, trainable = count_parameters(model)
    rows = [("params", total, "count", False), ("params_trainable", trainable, "count", False)]
    if not cfg.eval.profile:
        return rows
    if events is not None:
        events.message("profiling: FLOPs on the meta device" + (", then latency and throughput" if cfg.eval.speed else ""))
    prof = plugin_call(run.harness, "model", cfg.model_name, "being profiled", profile_model, model, run.model_cls,
                       cfg.model, dataset.spec, run.device, speed=cfg.eval.speed, max_batch=cfg.eval.max_batch,
                       budget_s=cfg.eval.speed_budget)
    model.eval()
    io.write_json((out_dir or run.run_dir) / "profile.json", prof.to_dict())
    return prof.rows()


def example_predictions(run: Run, model: torch.nn.Module, dataset: Any) -> list[torch.Tensor]:
    """Predictions (CPU) for the first ``eval.examples`` clips of the evaluated split."""
    from vpbench.evaluate import predict

    split = dataset.split(run.config.eval.split)
    out = []
    for i in range(min(run.config.eval.examples, len(split))):
        context, _ = split[i]
        with torch.no_grad():
            out.append(predict(model, context[None].to(run.device), dataset.spec, run.config.model_name)[0].cpu())
    return out


def write_examples(run: Run, model: torch.nn.Module, dataset: Any, out_dir: Path) -> None:
    """PNG strips (context / truth / prediction / error) and GIFs of the first test clips."""
    from vpbench.report.media import save_gif, save_strip

    split = dataset.split(run.config.eval.split)
    run.examples = example_predictions(run, model, dataset)
    for i, pred in enumerate(run.examples):
        context, future = split[i]
        save_strip(out_dir / "examples" / f"clip{i:05d}.png", context, future, pred)
        save_gif(out_dir / "examples" / f"clip{i:05d}.gif", context, future, pred)


def run_provenance(run: Run, dataset: Any | None = None) -> dict[str, Any]:
    sources = {run.harness.source_of("model", run.config.model_name).distribution,
               run.harness.source_of("dataset", run.config.dataset_name).distribution}
    prov = provenance(run.device, run.config.seed, sorted(sources))
    if dataset is not None:
        prov["dataset"] = {k: str(v) for k, v in dataset.info().items()}
    cfg = run.config
    model_src, data_src = (run.harness.source_of("model", cfg.model_name), run.harness.source_of("dataset", cfg.dataset_name))
    prov["plugins"] = {"model": f"{cfg.model_name} {cfg.model_version}", "dataset": f"{cfg.dataset_name} {cfg.dataset_version}",
                       "model_distribution": f"'{model_src.distribution}' ({model_src.version})",
                       "dataset_distribution": f"'{data_src.distribution}' ({data_src.version})",
                       "metrics": ", ".join(f"{m} {getattr(run.harness.metrics.get(m), 'version', '?')}"
                                            for m in cfg.eval.metrics if m in run.harness.metrics)}
    from vpbench.budget import load_record

    record = load_record(run.run_dir)
    if record is not None:
        prov["training"] = training_line(record)
    return prov


def training_line(record: Any) -> str:
    """One line of what a run's training was and cost."""
    from vpbench.budget import format_seconds, parse_budget

    budget = parse_budget(record.budget)
    if not record.stages:
        return "none (the model does not train)"
    head = f"budget {budget.describe()} ({record.budget})" if budget else "the stages' own steps (no shared budget)"
    stages = ", ".join(f"{s.name} {s.steps_taken:,}" + (f" of {s.steps:,}" if s.steps_taken != s.steps else "")
                       for s in record.stages)
    return (f"{head}: {record.steps_taken:,} optimiser steps ({stages}), {record.flops:.3g} training FLOPs "
            f"(counted), {format_seconds(record.seconds)} (measured) on {record.device}; replay with "
            f"`--set train.steps={record.replay()}`")
