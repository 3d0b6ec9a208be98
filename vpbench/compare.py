"""Comparisons of models on the same clips: paired differences and the combined report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from vpbench import io, results, rundir
from vpbench.budget import budget_statement
from vpbench.config import Protocol, RunConfig
from vpbench.errors import ConfigError, RunError, VPBenchError
from vpbench.evaluate import clips_scored
from vpbench.events import Events
from vpbench.protocols import member
from vpbench.provenance import run_provenance
from vpbench.report import markdown
from vpbench.report.tables import fmt_value, markdown_table
from vpbench.stats import paired_differences, paired_set_differences


@dataclass
class Outcome:
    """What a comparison produced (every model's run, failed ones included)."""

    runs: list
    table: pd.DataFrame
    paired: pd.DataFrame
    failures: dict[str, str]
    out_dir: Path
    protocol: Protocol
    reference: str


def read_note(note: str | None) -> str:
    """The text of ``--note``: the text itself, or the contents of the file ``@FILE``."""
    if not note or not note.startswith("@"):
        return note or ""
    try:
        return Path(note[1:]).read_text()
    except OSError as exc:
        raise ConfigError(f"--note {note}: cannot read the file ({exc.strerror})") from None


def protocol_changes(own: RunConfig, shared: RunConfig) -> list[str]:
    """The data-protocol values of ``own`` (a model's config by itself) that the comparison's
    shared config replaces, as ``key own -> shared``."""
    from vpbench.config import to_dict

    out = []
    if own.dataset_name != shared.dataset_name:
        out.append(f"dataset {own.dataset_name} -> {shared.dataset_name}")
    else:
        a, b = to_dict(own.data), to_dict(shared.data)
        out += [f"data.{k} {a.get(k)} -> {b[k]}" for k in b if a.get(k) != b[k]]
    for key in ("split", "max_clips"):
        if getattr(own.eval, key) != getattr(shared.eval, key):
            out.append(f"eval.{key} {getattr(own.eval, key)} -> {getattr(shared.eval, key)}")
    return out


def describe_protocol(protocol: Protocol, dataset: Any) -> str:
    """The one data protocol of a comparison, as the report states it."""
    spec = dataset.spec
    sizes = ", ".join(f"{name} {len(dataset.split(name)):,}" for name in ("train", "val", "test"))
    n = clips_scored(len(dataset.split(protocol.split)), protocol.max_clips)
    return (f"{protocol.dataset_name}, {spec.channels}x{spec.height}x{spec.width}, {spec.n_in} -> {spec.n_out} frames; "
            f"clips: {sizes}; every model is scored on the first {n:,} clips of the {protocol.split} split")


@dataclass
class Plan:
    """A comparison resolved before anything trains: every model's run under one protocol."""

    models: list[str]
    runs: list  # vpbench.runs.Run, one per model, in order
    data: Any  # the one dataset (one protocol)
    protocol: Protocol
    line: str  # the protocol, as the report states it
    out: Path | None


def plan_comparison(harness: Any, models: list[str], *, dataset: str | None = None, preset: str | None = None,
                    config_file: str | None = None, sets: list[str] | None = None, seed: int | None = None,
                    device: str | None = None, out: str | Path | None = None, data_dir: str | Path | None = None,
                    events: Events | None = None) -> Plan:
    """Every model's run config, resolved once from the first model's preset, ``--config`` and
    ``--set`` (dataset, its config, split, clip count) and applied to all of them."""
    from vpbench import runs
    from vpbench.config import resolve

    events = events or Events()
    if len(set(models)) != len(models):
        raise ConfigError("each model may appear once in vpbench compare")
    if out:  # before anything trains: a directory that is not a comparison's is refused
        rundir.check_output_dir(Path(out), "comparison")
    common = dict(preset=preset, config_file=config_file, sets=sets, seed=seed, device=device, models=models)
    reference = runs.prepare(harness, models[0], dataset=dataset, data_dir=data_dir, **common)
    protocol = Protocol.of(reference.config)
    prepared = []
    for name in models:
        run_ = runs.prepare(harness, name, data_dir=data_dir, protocol=protocol, **common)
        if name != models[0]:
            try:
                own = resolve(name, harness.models.get(name), harness.datasets.get, dataset=dataset, **common)
                changes = protocol_changes(own, run_.config)
            except VPBenchError:
                changes = []
            if changes:
                events.message(f"{name}: the comparison's protocol replaces its own {'; '.join(changes)}")
        prepared.append(run_)
    data = runs.build_dataset(prepared[0], events)  # one protocol, so one dataset for every model
    line = describe_protocol(protocol, data)
    events.message(f"protocol: {line}")
    return Plan(list(models), prepared, data, protocol, line, Path(out) if out else None)


@dataclass
class Scores:
    """What the comparison's table is made of, per model that did not fail."""

    tables: list = field(default_factory=list)
    per_clip: dict = field(default_factory=dict)
    features: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)


def train_inline(plan: Plan, *, resume: bool = False, keep_going: bool = False, events: Events | None = None,
                 track: Any = None) -> Scores:
    """Train (if needed) and score every model here, one after another. Every model is built
    and checked (one training step of every stage, one prediction) before any of them trains.
    With ``keep_going`` a model that fails is reported and the others go on. Each model's run
    is one tracker run of the trackers named in ``track`` (None: its config's ``track``)."""
    from vpbench import runs
    from vpbench.tracking import tracked

    events = events or Events()
    out = Scores()
    probes: dict[str, Any] = {}
    for run_ in plan.runs:  # fail fast: nothing trains before every model has been checked
        name = run_.config.model_name
        if runs.is_trained(run_):
            continue
        try:
            probes[name] = runs.check(run_, runs.build_model(run_, plan.data), plan.data, events)
        except VPBenchError as exc:
            if not keep_going:
                raise
            out.failures[name] = str(exc)
            events.message(f"{name}: failed: {exc}")
    for run_ in plan.runs:
        name = run_.config.model_name
        if name in out.failures:
            continue
        try:
            with runs.lock(run_, events), tracked(run_, track, events):
                model = runs.train(run_, plan.data, resume=resume, events=events, probed=probes.get(name))
                shown: list = []
                out.tables.append(runs.evaluate(run_, model, plan.data, events=events, examples=shown))
            out.per_clip[name] = results.read_per_clip(run_.eval_dir)
            out.features[name] = results.read_features(run_.eval_dir)
            out.predictions[name] = shown if run_.is_main else runs.example_predictions(run_, model, plan.data)
        except VPBenchError as exc:
            if not keep_going:
                raise
            out.failures[name] = str(exc)
            events.message(f"{name}: failed: {exc}")
    return out


def job_tasks(plan: Plan, label: str = "", track: Any = None) -> list:
    """One job per model not yet scored under the comparison's protocol: it trains the planned
    config (resuming a checkpoint it finds) and scores it into its run directory, tracked by
    ``track`` (None: the config's ``track``)."""
    from vpbench import runs
    from vpbench.executor import Task

    tasks = []
    for run_ in plan.runs:
        if runs.scored(run_, plan.data) is not None:
            continue
        name = run_.config.model_name
        tasks.append(Task(f"{label}{name}", str(run_.run_dir.resolve()), "vpbench.compare:train_and_score",
                          {"config": run_.config.to_dict(), "run_dir": str(run_.run_dir.resolve()),
                           "data_dir": str(Path(run_.data_dir).resolve()) if run_.data_dir else None,
                           "track": track}))
    return tasks


def train_and_score(config: dict[str, Any], run_dir: str, data_dir: str | None, track: Any = None) -> dict[str, str]:
    """A job's work: train the planned run (resuming its checkpoint) and score it, tracked by
    the trackers named in ``track`` (None: the config's ``track``)."""
    from vpbench import distributed, runs
    from vpbench.executor import JobEvents
    from vpbench.plugins import get_harness
    from vpbench.tracking import tracked

    run_ = runs.planned(get_harness(), config, run_dir, data_dir)
    events = JobEvents() if run_.is_main else Events()
    try:
        with runs.lock(run_, events), tracked(run_, track, events):
            data = runs.build_dataset(run_, events)
            model = runs.train(run_, data, resume=True, events=events)
            runs.evaluate(run_, model, data, events=events)
    except BaseException:
        distributed.shutdown(run_.dist, finished=False)
        raise
    distributed.shutdown(run_.dist)
    return {"run_dir": run_dir, "eval_dir": str(run_.eval_dir)}


def gather(plan: Plan, jobs: dict[str, str] | None = None) -> Scores:
    """The result sets the jobs wrote, read back; a model without one is a failure, with its
    job's line (``jobs``: run directory -> why it failed, or its state)."""
    from vpbench import runs

    jobs = jobs or {}
    out = Scores()
    for run_ in plan.runs:
        name = run_.config.model_name
        where = runs.scored(run_, plan.data)
        if where is None:
            out.failures[name] = jobs.get(str(run_.run_dir.resolve()), f"not trained and scored yet in {run_.run_dir}")
            continue
        table, _ = results.read_results(where)
        out.tables.append(table)
        out.per_clip[name] = results.read_per_clip(where)
        out.features[name] = results.read_features(where)
        run_.eval_dir = where
        out.predictions[name] = runs.example_predictions(run_, runs.load_trained(run_, plan.data), plan.data)
    return out


def finish(plan: Plan, scores: Scores, harness: Any, note: str = "", events: Events | None = None,
           executor: str = "") -> Outcome:
    """The comparison's table, paired differences and report from ``scores``."""
    events = events or Events()
    if not scores.tables:
        raise RunError("every model of the comparison failed: " + "; ".join(f"{k}: {v}" for k, v in scores.failures.items()))
    table = pd.concat(scores.tables, ignore_index=True)
    cfg = plan.runs[0].config
    out_dir = plan.out or rundir.timestamped_dir(f"compare-{cfg.dataset_name}-{cfg.preset}")
    ref = next(m for m in plan.models if m in scores.per_clip)
    if ref != plan.models[0]:
        events.message(f"{plan.models[0]} failed: paired differences are against {ref}")
    paired = paired_table(scores.per_clip, ref, harness, cfg.eval.bootstrap, cfg.seed, scores.features)
    split = plan.data.split(cfg.eval.split)
    predictions = scores.predictions
    examples = [(*split[i], {name: preds[i] for name, preds in predictions.items()})
                for i in range(min(len(p) for p in predictions.values()))] if predictions else []
    done = [r for r in plan.runs if r.config.model_name not in scores.failures]
    with rundir.claimed(out_dir, "comparison"):
        write_comparison(out_dir, table, paired, done, harness, [plan.data] * len(done), examples, note,
                         protocol_line=plan.line, failures=scores.failures, reference=ref, executor=executor)
    return Outcome(plan.runs, table, paired, scores.failures, out_dir, plan.protocol, ref)


def run_comparison(harness: Any, models: list[str], *, dataset: str | None = None, preset: str | None = None,
                   config_file: str | None = None, sets: list[str] | None = None, seed: int | None = None,
                   device: str | None = None, out: str | Path | None = None,
                   data_dir: str | Path | None = None, resume: bool = False, keep_going: bool = False,
                   note: str = "", events: Events | None = None, executor: Any = None, detach: bool = False,
                   gather_only: bool = False, command: list[str] | None = None, track: Any = None) -> Outcome | None:
    """Train (if needed) and score every model under one data protocol (:func:`plan_comparison`)
    and, with a ``train.budget`` among ``sets``, the same training budget; write the table,
    paired differences and report. ``executor`` (a :class:`vpbench.executor.ExecutorConfig`)
    other than inline runs each model as a job and gathers their result sets; with ``detach``
    it returns None once the jobs are submitted (rerun, or ``vpbench gather OUT``, to gather);
    with ``gather_only`` it submits nothing and gathers what is done. ``command`` (the command
    line) is saved for ``vpbench gather``. Every model's run is tracked by the trackers named in
    ``track`` (``--track``), or when it is None by those of its config's ``track``."""
    from vpbench.tracking import check_tracking

    events = events or Events()
    if executor is not None and executor.kind != "inline":
        from vpbench.executor import preflight

        preflight(executor, detach)
    plan = plan_comparison(harness, models, dataset=dataset, preset=preset, config_file=config_file, sets=sets,
                           seed=seed, device=device, out=out, data_dir=data_dir, events=events)
    check_tracking(harness, track, plan.runs)
    if executor is None or executor.kind == "inline":
        return finish(plan, train_inline(plan, resume=resume, keep_going=keep_going, events=events, track=track),
                      harness, note, events)
    from vpbench import executor as ex

    plan.out = plan.out or rundir.timestamped_dir(f"compare-{plan.runs[0].config.dataset_name}-{plan.runs[0].config.preset}")
    rundir.check_output_dir(plan.out, "comparison")
    with rundir.claimed(plan.out, "comparison"):
        jobs = ex.execute(job_tasks(plan, track=track), executor, plan.out, events, detach=detach,
                          gather_only=gather_only, command=command)
    if detach:
        return None
    scores = gather(plan, ex.failed_lines(jobs))
    if scores.failures and not keep_going:
        raise ex.not_done([f"{k}: {v}" for k, v in scores.failures.items()], len(plan.models), "model",
                          " (or --keep-going to write the table without them)")
    return finish(plan, scores, harness, note, events, executor=executor.describe())


def paired_table(per_clip: dict[str, dict[str, np.ndarray]], reference: str, harness: Any,
                 resamples: int = 1000, seed: int = 0,
                 features: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] | None = None) -> pd.DataFrame:
    """For each model and metric: mean of (model - reference) over paired clips, 95% CI,
    and whether the model is significantly better or worse (CI excludes 0); for set-level
    metrics the difference of the set scores with a paired bootstrap CI over clips."""
    rows = []
    diffs = paired_differences(per_clip, reference, resamples, seed)
    diffs += paired_set_differences(features or {}, reference, harness, resamples, seed)
    for model, metric, d in diffs:
        higher = bool(harness.metrics.get(metric).higher_is_better) if metric in harness.metrics else False
        if d["ci_low"] > 0 or d["ci_high"] < 0:
            verdict = "better" if (d["diff"] > 0) == higher else "worse"
        else:
            verdict = "no significant difference"
        rows.append({"model": model, "reference": reference, "metric": metric, **d, "verdict": verdict})
    return pd.DataFrame(rows, columns=["model", "reference", "metric", "diff", "ci_low", "ci_high", "verdict"])


def _paired_rows(paired: pd.DataFrame) -> list[list[str]]:
    return [[r.model, r.metric, fmt_value(r.diff), f"[{fmt_value(r.ci_low)}, {fmt_value(r.ci_high)}]", r.verdict]
            for r in paired.itertuples()]


PAIRED_HEADERS = ["model", "metric", "diff vs reference", "95% CI", "verdict"]


def rich_paired(paired: pd.DataFrame, reference: str) -> Table:
    table = Table(title=f"paired differences vs {reference} (model - {reference}, same test clips)")
    for h in PAIRED_HEADERS:
        table.add_column(h)
    for row in _paired_rows(paired):
        table.add_row(*row)
    return table


def preset_steps(model_cls: type, config: Any, spec: Any) -> dict[str, int]:
    """Optimiser steps per stage of ``model_cls`` under ``config`` (built on the meta device)."""
    import torch

    with torch.device("meta"):
        model = model_cls(config, spec)
    return {stage.name: stage.steps for stage in model.stages()}


def protocol_rows(runs_: list, datasets: list, harness: Any) -> list[list[str]]:
    """Per model: what was trained and scored here next to the model's ``paper`` preset, so a
    reader sees at once how far a run is from the published protocol."""
    from vpbench import config as cfgmod
    from vpbench.budget import load_record

    rows = []
    for run, data in zip(runs_, datasets):
        cfg = run.config
        model_cls = harness.models.get(cfg.model_name)
        record = load_record(run.run_dir)
        if record is not None:
            here = {s.name: s.steps_taken for s in record.stages}
        else:
            here = preset_steps(model_cls, cfg.model, data.spec)
        paper = "no paper preset"
        if "paper" in {k.split("@")[0] for k in member(model_cls, "presets")}:
            ref = cfgmod.resolve(cfg.model_name, model_cls, harness.datasets.get, dataset=cfg.dataset_name,
                                 preset="paper")
            paper = ", ".join(f"{k} {v:,}" for k, v in preset_steps(model_cls, ref.model, data.spec).items()) or "-"
        n_test = len(data.split(cfg.eval.split))
        scored = clips_scored(n_test, cfg.eval.max_clips)
        rows.append([cfg.model_name, cfg.preset, ", ".join(f"{k} {v:,}" for k, v in here.items()) or "untrained",
                     paper, f"{scored:,} of {n_test:,}", f"{cfg.train.batch_size}"])
    return rows


PROTOCOL_HEADERS = ["model", "preset", "optimiser steps here", "steps in the paper preset", "test clips scored",
                    "batch"]


def write_comparison(out_dir: Path, table: pd.DataFrame, paired: pd.DataFrame, runs_: list, harness: Any,
                     datasets: list | None = None, examples: list | None = None, note: str = "", *,
                     protocol_line: str = "", failures: dict[str, str] | None = None,
                     reference: str | None = None, executor: str = "") -> None:
    """results.csv / paired.csv / results.json / horizon.png / report.md (+ examples/ side by side)."""
    failures = failures or {}
    out_dir.mkdir(parents=True, exist_ok=True)
    prov = run_provenance(runs_[0], datasets[0] if datasets else None)
    prov.pop("training", None)  # one line per model, in the cost table
    prov["plugins"] = {"model": ", ".join(f"{r.config.model_name} {r.config.model_version}" for r in runs_),
                       "dataset": prov["plugins"]["dataset"], "metrics": prov["plugins"]["metrics"]}
    if protocol_line:
        prov["protocol"] = protocol_line
    prov["budget"] = budget_statement([r.config.train.parsed_budget for r in runs_])
    if executor:
        prov["executor"] = (f"{executor}: runs not yet scored were trained and scored as jobs (records in jobs.json); "
                            "runs found scored were gathered as they were")
    io.write_text(out_dir / "results.csv", table.to_csv(index=False))
    io.write_text(out_dir / "paired.csv", paired.to_csv(index=False))
    io.write_json(out_dir / "results.json", {
        "provenance": prov,
        "runs": {r.config.model_name: str(r.run_dir) for r in runs_},
        "result_sets": {r.config.model_name: str(r.eval_dir) for r in runs_ if r.eval_dir is not None},
        "configs": {r.config.model_name: r.config.to_dict() for r in runs_},
        "failures": failures,
        "rows": json.loads(table.to_json(orient="records")),
        "paired": json.loads(paired.to_json(orient="records")),
    })
    from vpbench.report.plots import horizon_plot

    horizon_plot(table, out_dir / "horizon.png", title=f"{runs_[0].config.dataset_name}")
    ref = reference or runs_[0].config.model_name
    sections = []
    if failures:
        sections.append(markdown.section("Failed", markdown_table(["model", "result"],
                                                                  [[k, f"failed: {v}"] for k, v in failures.items()])))
    sections.append(markdown.section(
        "Paired differences",
        f"Each model minus `{ref}` on the same test clips (per-clip means over the predicted frames), "
        "with a 95% paired bootstrap CI; the verdict says whether the model is significantly better "
        f"or worse than `{ref}` (the CI excludes 0). Metrics that could not be computed are left out.",
        markdown_table(PAIRED_HEADERS, _paired_rows(paired))))
    best = best_rows(table, paired, ref)
    if best:
        sections.append(markdown.section("Best per metric", markdown_table(["metric", "best", "value", "vs reference"],
                                                                           best)))
    if datasets:
        sections.append(markdown.section("How this differs from the published protocol",
                                         markdown_table(PROTOCOL_HEADERS, protocol_rows(runs_, datasets, harness))))
    media = markdown.HORIZON_SECTION
    if examples:
        from vpbench.report.media import save_comparison

        media += "\n## Predictions on the same test clips\n\n"
        for i, (context, truth, preds) in enumerate(examples):
            png, gif = out_dir / "examples" / f"clip{i:05d}.png", out_dir / "examples" / f"clip{i:05d}.gif"
            save_comparison(png, gif, context, truth, preds)
            media += f"![clip {i}](examples/{png.name})\n\n![clip {i} animated](examples/{gif.name})\n\n"
    configs = {r.config.model_name: r.config.to_dict() for r in runs_}
    markdown.write_report(out_dir / "report.md", "vpbench comparison", prov, table=table, sections=sections,
                          notes=note, media=media, config=configs)


def best_rows(table: pd.DataFrame, paired: pd.DataFrame, reference: str) -> list[list[str]]:
    """Per quality metric: the model with the best mean, and its paired difference to the
    reference with the CI (is it significantly ahead?)."""
    from vpbench.report.tables import COST_METRICS

    df = table[(table["horizon"].astype(str) == "all") & ~table["metric"].isin(COST_METRICS)]
    rows = []
    for metric, group in df.groupby("metric", sort=False):
        group = group.dropna(subset=["value"])
        if group.empty:
            continue
        higher = bool(group["higher_is_better"].iloc[0])
        top = group.loc[group["value"].idxmax() if higher else group["value"].idxmin()]
        if top["model"] == reference:
            versus = "is the reference"
        else:
            match = paired[(paired["model"] == top["model"]) & (paired["metric"] == metric)]
            versus = (f"{fmt_value(match['diff'].iloc[0])} [{fmt_value(match['ci_low'].iloc[0])}, "
                      f"{fmt_value(match['ci_high'].iloc[0])}]: {match['verdict'].iloc[0]}") if len(match) else "-"
        rows.append([str(metric), str(top["model"]), fmt_value(float(top["value"])), versus])
    return rows
