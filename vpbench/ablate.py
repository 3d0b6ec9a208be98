"""Ablations: a grid of config values, shared early stages, one table with paired differences.

Every variant is a full run directory; variants that differ only in fields a model declares as
affecting a late stage (``Model.late_fields[stage]``) share the earlier stages: those are
trained once into a base run, and each variant resumes from the base's checkpoint at that
stage boundary (same weights, optimiser-free boundary, RNG state and seed). Variants that differ
only in prediction-only fields (``Model.predict_fields``, e.g. decoding options) share the
whole training: the first variant trains, the others evaluate its weights. All variants are
evaluated on the same test clips; the table gives each variant's metrics and its difference to
the first variant with a paired bootstrap 95% CI over clips.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vpbench import io, results, rundir, runs
from vpbench.budget import budget_statement
from vpbench.errors import ConfigError
from vpbench.events import Events
from vpbench.executor import not_done
from vpbench.protocols import member
from vpbench.provenance import run_provenance
from vpbench.stats import paired_differences


@dataclass
class Variant:
    label: str
    values: dict[str, str]  # model config field -> value (as given on the command line)
    run: runs.Run | None = None
    probe: Any = None  # its check (vpbench.budget.Probe), when done before training
    base: runs.Run | None = None  # the run training the stages it shares with other variants


def values(text: str) -> list[str]:
    """``"0, 1,"`` -> ``["0", "1"]``."""
    return [v.strip() for v in text.split(",") if v.strip()]


def shortcut_options(model_cls: type) -> list[str]:
    """The model's own ablate options (``Model.ablation_shortcuts``), e.g. ``["--lambda"]``."""
    return [f"--{name}" for name in member(model_cls, "ablation_shortcuts")]


def parse_axes(model_cls: type, grid: list[str] | None = None, extra: list[str] | None = None) -> dict[str, list[str]]:
    """The model fields an ablation varies, with their values as given: from ``--grid FIELD=a,b``
    items (``model.FIELD=a,b`` too) and from the model's shortcut options in ``extra`` (the
    command line's other arguments, e.g. ``["--lambda", "0,1"]``), each resolved through the
    model's ``ablation_shortcuts``. Shortcut axes come first, in the model's declared order."""
    shortcuts = member(model_cls, "ablation_shortcuts")
    given: dict[str, list[str]] = {}
    for option, text in _options(model_cls, extra or []):
        given[shortcuts[option]] = values(text)
    axes = {field: given[field] for field in shortcuts.values() if field in given}
    for item in grid or []:
        field, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--grid expects field=v1,v2, got {item!r}")
        field = field.strip()
        section, dot, rest = field.partition(".")
        if dot:  # --grid model.hidden=32,64, spelled like --set
            if section != "model":
                raise ConfigError(f"--grid {item}: an ablation varies model fields (model.FIELD=a,b), not {section}.*")
            field = rest
        if field in axes:
            raise ConfigError(f"model.{field} is given twice (--grid {item} and another option); give it once")
        axes[field] = values(text)
    if not axes:
        offer = shortcut_options(model_cls)
        raise ConfigError("nothing to ablate: give --grid FIELD=a,b" + (f" or {', '.join(offer)} (e.g. {offer[0]} a,b)"
                                                                        if offer else ""))
    return axes


def _options(model_cls: type, extra: list[str]) -> list[tuple[str, str]]:
    """``(shortcut, values)`` pairs of ``--NAME VALUES`` / ``--NAME=VALUES`` arguments."""
    shortcuts = member(model_cls, "ablation_shortcuts")
    model = getattr(model_cls, "name", model_cls.__name__)
    out, i = [], 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("-"):
            raise ConfigError(f"unexpected argument {arg!r}: vpbench ablate takes options (--grid FIELD=a,b, ...)")
        name, eq, text = arg.lstrip("-").partition("=")
        if name not in shortcuts:
            offer = (f"its shortcuts are {', '.join(shortcut_options(model_cls))}" if shortcuts
                     else "it declares no ablation shortcuts")
            raise ConfigError(f"no such option --{name} for model '{model}': {offer}; or use --grid FIELD=a,b")
        if not eq:
            if i + 1 == len(extra) or extra[i + 1].startswith("--"):
                raise ConfigError(f"--{name} needs values, e.g. --{name} a,b")
            i += 1
            text = extra[i]
        if any(option == name for option, _ in out):
            raise ConfigError(f"--{name} is given twice; give its values once, e.g. --{name} a,b")
        out.append((name, text))
        i += 1
    return out


def grid(axes: dict[str, list[str]]) -> list[dict[str, str]]:
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


def label(values: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in values.items()) or "default"


def shared_stage(model_cls: type, varied: list[str]) -> str | None:
    """The latest stage such that every varied field only affects it and later stages."""
    late = member(model_cls, "late_fields")
    predict = set(member(model_cls, "predict_fields"))  # these affect no stage at all
    names = [s for s in late if all(f in late[s] or f in predict for f in varied)]
    if not names:
        return None
    order = list(late)  # declared in stage order
    return max(names, key=order.index)


def default_dir(harness, model: str, *, dataset=None, preset=None, config_file=None, sets=None) -> Path:
    """``runs/ablate-<model>-<dataset>-<preset>-<time>``, named after the dataset the variants
    really use (a preset may choose it)."""
    from vpbench import config as cfgmod

    resolved = cfgmod.resolve(model, harness.models.get(model), harness.datasets.get, dataset=dataset, preset=preset,
                              config_file=config_file, sets=sets)
    return rundir.timestamped_dir(f"ablate-{model}-{resolved.dataset_name}-{preset or 'none'}")


def run_ablation(harness, model: str, axes: dict[str, list[str]], out: Path, *, dataset=None, preset=None,
                 config_file=None, sets=None, seed=None, device=None, data_dir=None, resume: bool = False,
                 events: Events | None = None, executor: Any = None, detach: bool = False, gather_only: bool = False,
                 command: list[str] | None = None,
                 track: Any = None) -> tuple[pd.DataFrame, pd.DataFrame, list[Variant]] | None:
    """Every variant of the grid trained (early stages shared where the varied fields allow) and
    scored on the same clips; the table and paired differences to the first variant. With a job
    executor the shared bases run as a first wave of jobs and the variants as a second; with
    ``detach`` None is returned once the first wave is submitted. Each variant is one tracker run
    of the trackers named in ``track`` (None: its config's ``track``); shared bases are not tracked."""
    from vpbench.tracking import check_tracking, tracked

    events = events or Events()
    if not axes or not all(axes.values()):
        raise ConfigError("give at least one grid, e.g. --grid FIELD=a,b")
    if executor is not None and executor.kind != "inline":
        from vpbench.executor import preflight

        preflight(executor, detach)
    rundir.check_output_dir(out, "ablation")  # before anything trains
    model_cls = harness.models.get(model)
    for field in axes:
        if field not in {f for f in model_cls.Config.__dataclass_fields__}:
            raise ConfigError(f"model '{model}' has no config field '{field}' to ablate")
    shared_fields = [f for f in axes if len(axes[f]) > 1]
    until = shared_stage(model_cls, shared_fields) if shared_fields else None
    variants = [Variant(label(v), v) for v in grid(axes)]
    common = dict(dataset=dataset, preset=preset, config_file=config_file, seed=seed, device=device, data_dir=data_dir)
    for variant in variants:  # every config is checked before anything trains
        variant_sets = list(sets or []) + [f"model.{k}={v}" for k, v in variant.values.items()]
        variant.run = runs.prepare(harness, model, sets=variant_sets, out=out / _dirname(variant.label), **common)
    check_tracking(harness, track, [v.run for v in variants])
    predict_only = bool(shared_fields) and all(f in member(model_cls, "predict_fields") for f in shared_fields)
    data = runs.build_dataset(variants[0].run, events)  # variants vary model fields only: one dataset
    base_sets = list(sets or [])
    jobs = executor is not None and executor.kind != "inline"
    if until is not None and not predict_only and variants[0].run.config.train.parsed_budget is not None:
        until, base_sets = _budget_sharing(variants, data, until, base_sets, events)
    if until is not None and not predict_only:
        for variant in variants:
            variant.base = _base_run(harness, model, variant, base_sets, shared_fields, until, out, common)
    with rundir.claimed(out, "ablation"):
        if jobs:
            from vpbench import executor as ex

            done = ex.execute(_tasks(variants, data, until, predict_only, data_dir, track), executor, out, events,
                              detach=detach, gather_only=gather_only, command=command)
            if detach:
                return None
            tables, per_clip = _gather(variants, data, ex.failed_lines(done))
        else:
            tables, per_clip = [], {}
            for variant in variants:
                with runs.lock(variant.run, events), tracked(variant.run, track, events):
                    tables.append(_train_and_evaluate(variant, variants, data, until, predict_only, events, resume))
                per_clip[variant.label] = results.read_per_clip(variant.run.eval_dir)
        table = pd.concat(tables, ignore_index=True)
        diffs = differences(per_clip, variants, harness, variants[0].run.config)
        write(out, table, diffs, variants, executor.describe() if jobs else "")
    return table, diffs, variants


def _base_run(harness, model: str, variant: Variant, base_sets: list[str], shared_fields: list[str], until: str,
              out: Path, common: dict) -> runs.Run:
    """The run that trains the stages before ``until`` once for every variant sharing them."""
    base_values = {k: v for k, v in variant.values.items() if k not in shared_fields}
    return runs.prepare(harness, model, sets=base_sets + [f"model.{k}={v}" for k, v in base_values.items()],
                        out=out / _dirname("base-until-" + until + ("," + label(base_values) if base_values else "")),
                        **common)


def _train_and_evaluate(variant: Variant, variants: list[Variant], data: Any, until: str | None, predict_only: bool,
                        events: Events, resume: bool = False) -> pd.DataFrame:
    """One variant: its weights (shared, resumed from the shared base, or trained), then its scores.
    With ``resume`` an unfinished variant continues from its checkpoint."""
    run = variant.run
    if predict_only and variant is not variants[0]:
        _share_weights(variants[0].run, run)
        events.message(f"{variant.label}: prediction-only change; evaluating the weights of {variants[0].run.run_dir}")
        trained = runs.train(run, data, events=events)
    elif variant.base is not None and not run.layout.model.is_file():
        _from_base(variant.base, run, data, until, events)
        events.message(f"{variant.label}: stages before '{until}' shared from {variant.base.run_dir}")
        trained = runs.train(run, data, resume=True, events=events, probed=variant.probe)
    else:
        unfinished = run.layout.last.is_file() and not run.layout.model.is_file()
        trained = runs.train(run, data, resume=resume and unfinished, events=events, probed=variant.probe)
    return runs.evaluate(run, trained, data, events=events, variant=variant.label)


def _from_base(base: runs.Run, run: runs.Run, data: Any, until: str, events: Events) -> None:
    """Seed ``run`` from the base's checkpoint at stage ``until``, training the base first if it
    is not (a base that a job already trained is only read)."""
    if base.layout.until_marker(until).is_file():
        events.message(f"stages before '{until}' are already trained in {base.run_dir}")
        _seed_from_base(base, run, data, until)
        return
    with runs.lock(base, events):
        _train_base(base, data, until, events)
        _seed_from_base(base, run, data, until)


def _tasks(variants: list[Variant], data: Any, until: str | None, predict_only: bool, data_dir: Any,
           track: Any = None) -> list:
    """Jobs: the shared bases (wave 0, each once) and, for prediction-only grids, the first
    variant (wave 0), then every variant not yet scored (wave 1), tracked by ``track``."""
    from vpbench.executor import Task

    where = str(Path(data_dir).resolve()) if data_dir else None
    tasks, bases = [], {}
    for variant in variants:
        base = variant.base
        if base is not None and str(base.run_dir) not in bases and not base.layout.until_marker(until).is_file():
            bases[str(base.run_dir)] = Task(f"base {base.run_dir.name}", str(base.run_dir.resolve()),
                                            "vpbench.ablate:base_job", {"config": base.config.to_dict(),
                                            "run_dir": str(base.run_dir.resolve()), "data_dir": where, "until": until})
    tasks += list(bases.values())
    for i, variant in enumerate(variants):
        run = variant.run
        if runs.scored(run, data) is not None:
            continue  # trained and scored before: gathered as it is
        share = str(variants[0].run.run_dir.resolve()) if predict_only and i > 0 else None
        wave = 0 if (variant.base is None and share is None) else 1
        tasks.append(Task(variant.label, str(run.run_dir.resolve()), "vpbench.ablate:variant_job",
                          {"config": run.config.to_dict(), "run_dir": str(run.run_dir.resolve()), "data_dir": where,
                           "label": variant.label, "until": until, "share_from": share, "track": track,
                           "base": None if variant.base is None else {"config": variant.base.config.to_dict(),
                                                                       "run_dir": str(variant.base.run_dir.resolve())}},
                          wave=wave))
    return tasks


def base_job(config: dict, run_dir: str, data_dir: str | None, until: str) -> dict[str, str]:
    """A job's work: train the stages before ``until`` of a shared base."""
    from vpbench.executor import JobEvents
    from vpbench.plugins import get_harness

    base, events = runs.planned(get_harness(), config, run_dir, data_dir), JobEvents()
    with runs.lock(base, events):
        _train_base(base, runs.build_dataset(base, events), until, events)
    return {"run_dir": run_dir}


def variant_job(config: dict, run_dir: str, data_dir: str | None, label: str, until: str | None,
                share_from: str | None, base: dict | None, track: Any = None) -> dict[str, str]:
    """A job's work: one variant's weights (from the first variant, from its base, or trained)
    and its scores, tracked by the trackers named in ``track`` (None: the config's ``track``)."""
    from vpbench.executor import JobEvents
    from vpbench.plugins import get_harness
    from vpbench.tracking import tracked

    harness, events = get_harness(), JobEvents()
    run = runs.planned(harness, config, run_dir, data_dir)
    with runs.lock(run, events), tracked(run, track, events):
        data = runs.build_dataset(run, events)
        if share_from is not None:
            _share_weights(runs.load_run(harness, share_from), run)
            trained = runs.train(run, data, events=events)
        else:
            if base is not None and not run.layout.model.is_file():
                _from_base(runs.planned(harness, base["config"], base["run_dir"], data_dir), run, data, until, events)
            trained = runs.train(run, data, resume=True, events=events)
        runs.evaluate(run, trained, data, events=events, variant=label)
    return {"run_dir": run_dir, "eval_dir": str(run.eval_dir)}


def _gather(variants: list[Variant], data: Any, jobs: dict[str, str]) -> tuple[list[pd.DataFrame], dict[str, dict]]:
    tables, per_clip, missing = [], {}, []
    for variant in variants:
        where = runs.scored(variant.run, data)
        if where is None:
            missing.append(f"{variant.label}: " + jobs.get(str(variant.run.run_dir.resolve()), "not trained and scored yet"))
            continue
        variant.run.eval_dir = where
        tables.append(results.read_results(where)[0])
        per_clip[variant.label] = results.read_per_clip(where)
    if missing:
        raise not_done(missing, len(variants), "variant")
    return tables, per_clip


def _budget_sharing(variants: list[Variant], data: Any, until: str, sets: list[str],
                    events: Events) -> tuple[str | None, list[str]]:
    """Under a training budget each variant's steps are planned from its own step costs. The
    stages before ``until`` are shared only where every variant's plan gives them the same steps;
    the shared base then trains exactly those steps (``train.steps``, no budget of its own)."""
    from vpbench.budget import make_record

    plans = []
    for variant in variants:
        if runs.is_trained(variant.run):
            continue
        model = runs.build_model(variant.run, data)
        variant.probe = runs.check(variant.run, model, data, events)
        record = make_record(model, variant.run.config, variant.probe, "")
        plans.append({s.name: s.steps for s in record.stages})
    if not plans:
        return until, sets
    names = list(plans[0])
    early = names[: names.index(until)]
    if any(tuple(p[s] for s in early) != tuple(plans[0][s] for s in early) for p in plans):
        events.message(f"the budget gives the variants different steps before stage '{until}'; each variant trains "
                       "every stage itself")
        return None, sets
    steps = ",".join(f"{s}:{plans[0][s]}" for s in early)
    return until, sets + ["train.budget=", f"train.steps={steps}"]


def _dirname(text: str) -> str:
    return text.replace("=", "-").replace(",", "_").replace("/", "-")


def _train_base(base: runs.Run, data: Any, until: str, events: Events) -> None:
    resume = base.layout.last.is_file()  # an interrupted base continues
    runs.train(base, data, resume=resume, events=events, until=until)


def _seed_from_base(base: runs.Run, run: runs.Run, data: Any, until: str) -> None:
    """Start ``run`` at stage ``until`` from the shared base's checkpoint: the weights (and buffers)
    the earlier stages trained come from the base, the parameters only later stages train keep the
    variant's own initialisation, so a varied field may change the later stages' modules (e.g. which
    prior S-HR-VQVAE uses). An existing checkpoint means the variant already started: it resumes."""
    from vpbench.train import load_checkpoint

    target = run.layout.last
    if target.is_file():
        return
    ckpt = load_checkpoint(base.layout.last)
    model = runs.build_model(run, data)
    stages = model.stages()
    names = [s.name for s in stages]
    early = {id(p) for s in stages[: names.index(until)] for p in s.params()}
    late = {id(p) for s in stages[names.index(until):] for p in s.params()} - early
    params = dict(model.named_parameters())
    own, theirs = model.state_dict(), ckpt["model"]
    for name in (n for n, p in params.items() if id(p) in early):
        if name not in theirs or tuple(theirs[name].shape) != tuple(own[name].shape):
            raise ConfigError(f"{run.run_dir.name}: '{name}' (trained before stage '{until}') differs from the shared "
                              f"base's, so the varied fields change an earlier stage: they must not be late_fields of "
                              f"'{until}'")
    keep = {n for n, p in params.items() if id(p) in late}
    state = {k: v if k in keep or k not in theirs or tuple(theirs[k].shape) != tuple(v.shape) else theirs[k]
             for k, v in own.items()}
    run.run_dir.mkdir(parents=True, exist_ok=True)
    io.write_json(run.layout.config, run.config.to_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    io.torch_save({**ckpt, "model": state}, target)


def _share_weights(source: runs.Run, run: runs.Run) -> None:
    _copy_into(run, source.layout.model, run.layout.model)


def _copy_into(run: runs.Run, source: Path, target: Path) -> None:
    """Start ``run``'s directory (its config.json) with a copy of ``source`` at ``target``,
    unless that file is already there."""
    if target.is_file():
        return
    run.run_dir.mkdir(parents=True, exist_ok=True)
    io.write_json(run.layout.config, run.config.to_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def differences(per_clip: dict[str, dict], variants: list[Variant], harness, config) -> pd.DataFrame:
    ref = variants[0].label
    rows = [{"variant": name, "reference": ref, "metric": metric, **d}
            for name, metric, d in paired_differences(per_clip, ref, config.eval.bootstrap, config.seed)]
    return pd.DataFrame(rows, columns=["variant", "reference", "metric", "diff", "ci_low", "ci_high"])


def write(out: Path, table: pd.DataFrame, diffs: pd.DataFrame, variants: list[Variant], executor: str = "") -> None:
    """results.csv / differences.csv / horizon.png / report.md of the ablation."""
    from vpbench.report.markdown import HORIZON_SECTION, section, write_report
    from vpbench.report.plots import horizon_plot
    from vpbench.report.tables import fmt_value, markdown_table

    out.mkdir(parents=True, exist_ok=True)
    io.write_text(out / "results.csv", table.to_csv(index=False))
    io.write_text(out / "differences.csv", diffs.to_csv(index=False))
    prov = run_provenance(variants[0].run)
    prov["budget"] = budget_statement([v.run.config.train.parsed_budget for v in variants], "variant")
    if executor:
        prov["executor"] = (f"{executor}: runs not yet scored were trained and scored as jobs (records in jobs.json); "
                            "runs found scored were gathered as they were")
    horizon_plot(table, out / "horizon.png", title="ablation")
    rows = [[r.variant, r.metric, fmt_value(r.diff), f"[{fmt_value(r.ci_low)}, {fmt_value(r.ci_high)}]"]
            for r in diffs.itertuples()]
    differences = section(f"Differences to `{variants[0].label}` (paired over the same test clips)",
                          markdown_table(["variant", "metric", "diff", "95% CI"], rows))
    write_report(out / "report.md", "vpbench ablation", prov, table=table, sections=[differences],
                 media=HORIZON_SECTION, config={v.label: v.run.config.to_dict() for v in variants})
