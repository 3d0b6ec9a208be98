"""Runs: resolve a config, build the dataset and model, train if needed, evaluate.

The run directory's layout, identity and policy (its files, config hash, default names, never
overwriting trained work) are :mod:`vpbench.rundir` (:class:`~vpbench.rundir.RunDir` names every
file); the files of a result set are :mod:`vpbench.results`; the final weights are
:mod:`vpbench.weights`; scoring a trained run again with what ``vpbench eval`` may override is
:mod:`vpbench.overrides`.

Trained work is never lost: an unfinished run is continued only with ``--resume``, a run
with a different config is never overwritten, and ``--fresh`` moves the old directory aside
instead of deleting it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from vpbench import config as cfgmod
from vpbench import distributed, io, results, rundir
from vpbench.budget import Probe, load_record, make_record, probe
from vpbench.data.root import data_root
from vpbench.errors import ConfigError, RegistryError, RunError, TrainingStopped
from vpbench.evaluate import check_spec, clips_scored, derived_metrics, open_split, predict_first, score, set_protocol, tidy, training_rows
from vpbench.events import Events
from vpbench.plugins import Harness
from vpbench.profile import measure_costs
from vpbench.protocols import is_set_metric, member
from vpbench.provenance import device_description, provenance, run_provenance
from vpbench.report.media import write_examples
from vpbench.rundir import RunDir
from vpbench.runtime import seed_everything, select_device
from vpbench.train import Job, Trainer, stop_on_signals
from vpbench.weights import load_weights, save_weights


@dataclass
class Run:
    harness: Harness
    config: cfgmod.RunConfig
    run_dir: Path
    data_dir: Path | None = None
    dist: Any = None  # a vpbench.distributed.Context under torchrun
    eval_dir: Path | None = None  # the result set the last ``evaluate`` wrote (evals/<name>/)
    tracking: Any = None  # a vpbench.tracking.Tracking while the run is tracked (vpbench.tracking.tracked)

    @property
    def layout(self) -> RunDir:
        return RunDir(self.run_dir)

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

    def provenance(self) -> dict[str, Any]:
        """How this run is made (revision, versions, device, seed): what trackers record."""
        return provenance(self.device, self.config.seed)


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
    return Run(harness, config, run_dir, Path(data_dir) if data_dir else None, distributed.from_env(config.device))


def load_run(harness: Harness, run_dir: str | Path, *, device: str | None = None,
             data_dir: str | Path | None = None) -> Run:
    """The :class:`Run` saved in ``run_dir`` (its ``config.json``)."""
    run_dir = rundir.out_path(run_dir)
    data = rundir.read_config(run_dir)
    model_cls = _installed(harness, "model", data.get("model_name", "?"), run_dir)
    dataset_cls = _installed(harness, "dataset", data.get("dataset_name", "?"), run_dir)
    if device is not None:
        data["device"] = device
    return Run(harness, cfgmod.from_dict(data, model_cls, dataset_cls), run_dir,
               Path(data_dir) if data_dir else None)


def planned(harness: Harness, config: dict[str, Any], run_dir: str | Path, data_dir: str | Path | None = None) -> Run:
    """The :class:`Run` of a config resolved elsewhere (a job of ``compare`` or ``ablate`` runs the
    planned config, never one it re-derives); under torchrun's variables, with its process group."""
    cfg = cfgmod.from_dict(config, _installed(harness, "model", str(config.get("model_name")), Path(run_dir)),
                           _installed(harness, "dataset", str(config.get("dataset_name")), Path(run_dir)))
    return Run(harness, cfg, Path(run_dir), Path(data_dir) if data_dir else None, distributed.from_env(cfg.device))


def _installed(harness: Harness, kind: str, name: str, run_dir: Path) -> type:
    """The registered plugin class of a saved run; when it is not installed, say which
    distribution made the run (recorded in its results)."""
    registry = harness.models if kind == "model" else harness.datasets
    made_by = results.made_with(run_dir, kind) if name not in registry else ""
    if made_by:
        raise RegistryError(f"{run_dir} was made with {kind} '{name}' from the distribution {made_by}, which is not "
                            "installed here: pip install it, then rerun (`vpbench plugins` lists what is loaded)")
    return registry.get(name)  # an unknown name without a record: the registry's own line, with near misses


def open_dataset(harness: Harness, name: str, config: Any = None, root: str | Path | None = None, *,
                 events: Events | None = None, prepare: bool = True) -> Any:
    """The dataset plugin ``name`` with ``config`` (default: its own defaults) on the data root
    ``root`` (default: ``$VPBENCH_DATA`` or ``datasets/``). Its ``prepare(events)`` step
    (decoding, caching, cutting windows) runs here, with progress, unless ``prepare`` is false
    (to read its spec or info only); a prepared dataset's spec is checked. Every dataset vpbench uses
    is opened here."""
    cls = harness.datasets.get(name)
    dataset = harness.call("dataset", name, "loading", cls, cls.Config() if config is None else config,
                          data_root(root))
    if prepare:
        harness.call("dataset", name, "preparing its data", member(dataset, "prepare", "dataset"), events)
        check_spec(harness.call("dataset", name, "giving its spec", lambda: dataset.spec), name)
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
        model = run.harness.call("model", cfg.model_name, "being built", run.model_cls, cfg.model, spec)
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
    budget = run.config.train.parsed_budget
    timed = budget is not None and budget.kind == "seconds"
    if events is not None and model.stages():
        events.message(f"{run.config.model_name}: checking one training step of every stage and one prediction"
                       + (" (timing steps for the wall-clock budget)" if timed else ""))
    found = probe(model, dataset, run.config, run.device, run.config.model_name, time_steps=3 if timed else 0)
    if run.dist is not None:  # one plan for every rank: rank 0's measured step times
        found = run.dist.gather(found)[0]
    return found


def load_trained(run: Run, dataset: Any) -> torch.nn.Module:
    """The trained model of an existing run directory (``model.pt``)."""
    if not run.layout.model.is_file():
        raise RunError(f"{run.run_dir} has no trained model (model.pt); finish it with `vpbench run ... --resume`")
    model = build_model(run, dataset)
    load_weights(model, run)
    return model


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
        distributed.check_batch(cfg.train.batch_size, run.dist)
        if run.is_main:
            prepare_run_dir(run, fresh, events)
        run.dist.barrier()
    else:
        prepare_run_dir(run, fresh, events)
    marker = run.layout.until_marker(until) if until is not None else None
    if marker is not None and marker.is_file():
        events.message(f"stages before '{until}' are already trained in {run_dir}")
        return model
    if marker is None and run.layout.model.is_file():
        load_weights(model, run)
        events.message(f"{cfg.model_name} is already trained in {run_dir}; evaluating it")
        return model
    if run.layout.last.is_file() and not resume:
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
    trainer = Trainer(model, dataset, cfg.train, Job.of(cfg), run_dir, run.device, events, dist=run.dist, record=record,
                      blame=f"model '{cfg.model_name}' from {source}", tracking=run.tracking)
    with stop_on_signals(trainer):  # the trainer names the model only for errors of the model's own code
        finished = trainer.fit(resume, until=until)
    if not finished:
        raise TrainingStopped(f"training stopped by a signal; checkpoint written; continue with `--resume --out {run_dir}`",
                              int(trainer.stop_requested))
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


def _scoring(run: Run, dataset: Any) -> tuple[dict[str, Any], list, Any, Any]:
    """What scoring ``run`` on ``dataset`` under its eval settings means: the result set's key,
    the metrics, the split and the set-level metrics' protocol (None without one)."""
    cfg = run.config
    metrics = [run.harness.metrics.get(name) for name in cfg.eval.metrics]
    split = open_split(dataset, cfg.eval.split, cfg.dataset_name)
    protocol = None
    if any(is_set_metric(m) for m in metrics):  # checked before anything is predicted
        protocol = set_protocol(cfg.eval, cfg.dataset_name, dataset.spec, clips_scored(len(split), cfg.eval.max_clips),
                                metrics, member(dataset, "fvd_includes_context", "dataset"))
    return results.eval_key(cfg, run.model_cls, metrics, len(split), protocol), metrics, split, protocol


def scored(run: Run, dataset: Any) -> Path | None:
    """The result set that scoring ``run`` now would write, when it exists already (written by
    a job of a compare, or earlier)."""
    where = run.layout.eval_set(results.set_name(_scoring(run, dataset)[0]))
    return where if (where / "results.csv").is_file() and run.layout.model.is_file() else None


def evaluate(run: Run, model: torch.nn.Module, dataset: Any, *, events: Events | None = None,
             variant: str | None = None, examples: list | None = None) -> pd.DataFrame:
    """Score ``model`` on the configured split into one result set of the run directory
    (``evals/<split>-<clips>clips-<hash>/``: results.csv/json, per_clip.npz, profile.json,
    horizon.png, report.md, examples/), written as one set; other result sets stay as they are.
    ``examples``, when given, receives the predictions drawn in the example strips (rank 0 only)."""
    cfg = run.config
    key, metrics, split, protocol = _scoring(run, dataset)
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
        costs = measure_costs(model, run.model_cls, cfg, dataset.spec, run.device, staging, meta, events=events,
                              guard=partial(run.harness.call, "model", cfg.model_name, "being profiled"))
        table = pd.concat([tidy(scores, metrics, meta, cfg.eval.bootstrap), costs,
                           training_rows(load_record(run.run_dir), meta)], ignore_index=True)
        provenance = run_provenance(run, dataset, metrics if protocol is not None else ())
        results.write_set(staging, table, scores.values, provenance=provenance,
                          config=cfg.to_dict(), key=key, title=f"{cfg.model_name} on {cfg.dataset_name}",
                          examples=cfg.eval.examples, features=scores.features)
        shown = example_predictions(run, model, dataset)
        write_examples(staging / "examples", dataset.split(cfg.eval.split), shown)
    if examples is not None:
        examples.extend(shown)
    run.eval_dir = run.layout.eval_set(name)
    results.write_index(run.run_dir)
    if run.tracking:
        run.tracking.results(table, run.eval_dir)
    if run.dist is not None:
        run.dist.barrier()
    return table


def example_predictions(run: Run, model: torch.nn.Module, dataset: Any) -> list[torch.Tensor]:
    """Predictions (CPU) for the first ``eval.examples`` clips of the evaluated split."""
    return predict_first(model, dataset.split(run.config.eval.split), dataset.spec, run.config.model_name, run.device,
                            run.config.eval.examples)

