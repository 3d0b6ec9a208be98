"""Budget ladders: one comparison per training budget, and how each model's quality grows with
compute (``vpbench compare ... --budget 4e12,1.3e13,4e13``).

Every (model, budget) is its own run (the budget is part of a run's identity), so a ladder
re-run with one more budget trains only that budget's runs and reuses the rest. Every budget's
comparison scores every model on the same clips (one protocol), which makes the clip bootstrap
of :mod:`vpbench.scaling` paired across budgets and models. A multi-stage model spends each
budget in its preset's proportion between stages (:func:`vpbench.budget.plan_steps`); the
scaling report states the steps each stage got.

Written beside the per-budget comparisons (``budget-<B>/``): ``scaling.csv`` (one row per model,
budget and metric: the counted training FLOPs and measured time the run spent, the metric and
its CI), ``scaling.md`` (fits, the best model per budget, crossings) and ``scaling-<metric>.png``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vpbench import io, results, rundir, scaling
from vpbench.budget import load_record
from vpbench.compare import Outcome, run_comparison
from vpbench.config import cli_sets, parse_budget
from vpbench.errors import ConfigError
from vpbench.events import Events
from vpbench.report import markdown
from vpbench.report.tables import fmt_value, markdown_table
from vpbench.stats import bootstrap_ci, paired_difference

EXTRAPOLATE = 10.0  # crossings are sought up to this factor past the largest budget measured


def parse_ladder(text: str) -> list[str]:
    """``"4e12,1.3e13"`` -> the budgets, smallest first; each checked with the config's grammar."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    parsed = [parse_budget(t) for t in items]
    if len({p.kind for p in parsed}) > 1:
        raise ConfigError(f"--budget {text}: a ladder's budgets are all FLOPs or all durations, not both")
    if len({p.value for p in parsed}) != len(parsed):
        raise ConfigError(f"--budget {text}: a budget is given twice")
    return [t for _, t in sorted(zip((p.value for p in parsed), items))]


@dataclass
class Point:
    """One model at one budget: what its training spent and its per-clip scores."""

    model: str
    budget: str
    flops: float  # counted training FLOPs (0 for a model that does not train)
    seconds: float
    stages: str  # steps per stage, as trained
    per_clip: dict[str, np.ndarray]  # metric -> (clips,) mean over predicted frames
    higher: dict[str, bool]


def run_ladder(harness: Any, models: list[str], budgets: list[str], *, out: str | Path | None = None,
               sets: list[str] | None = None, events: Events | None = None, executor: Any = None,
               detach: bool = False, gather_only: bool = False, command: list[str] | None = None,
               track: Any = None, **compare: Any) -> list[Outcome] | None:
    """One :func:`~vpbench.compare.run_comparison` per budget (smallest first) into
    ``out/budget-<B>``, then the scaling report in ``out``. With a job executor every (model,
    budget) of the ladder is submitted at once (one array), then each budget is gathered;
    ``detach`` returns None once they are submitted. Every run is tracked by ``track`` (None:
    its config's ``track``)."""
    events = events or Events()
    out_dir = Path(out) if out else rundir.timestamped_dir("ladder")
    rundir.check_output_dir(out_dir, "ladder")
    if executor is not None and executor.kind != "inline":
        return _ladder_jobs(harness, models, budgets, out_dir, sets, events, executor, detach, gather_only, command,
                            track=track, **compare)
    outcomes = []
    with rundir.claimed(out_dir, "ladder"):
        for budget in budgets:
            events.message(f"ladder: budget {budget} ({len(outcomes) + 1} of {len(budgets)})")
            outcomes.append(run_comparison(harness, models, sets=cli_sets(sets, budget=budget),
                                           out=out_dir / f"budget-{budget}", events=events, track=track, **compare))
        write_scaling(out_dir, points(outcomes), _provenance(outcomes), note=compare.get("note", ""))
    return outcomes


def _provenance(outcomes: list[Outcome]) -> dict[str, Any]:
    return json.loads((outcomes[0].out_dir / "results.json").read_text()).get("provenance", {})


def _ladder_jobs(harness: Any, models: list[str], budgets: list[str], out_dir: Path, sets: list[str] | None,
                 events: Events, executor: Any, detach: bool, gather_only: bool, command: list[str] | None, *,
                 resume: bool = False, keep_going: bool = False, note: str = "", track: Any = None,
                 **plan: Any) -> list[Outcome] | None:
    from vpbench import executor as ex
    from vpbench.compare import finish, gather, job_tasks, plan_comparison
    from vpbench.tracking import check_tracking

    ex.preflight(executor, detach)
    plans = [plan_comparison(harness, models, sets=cli_sets(sets, budget=b), out=out_dir / f"budget-{b}",
                             events=events, **plan) for b in budgets]
    check_tracking(harness, track, [r for p in plans for r in p.runs])
    with rundir.claimed(out_dir, "ladder"):
        tasks = [t for b, p in zip(budgets, plans) for t in job_tasks(p, label=f"{b} ", track=track)]
        jobs = ex.execute(tasks, executor, out_dir, events, detach=detach, gather_only=gather_only, command=command)
        if detach:
            return None
        lines = ex.failed_lines(jobs)
        scored = [gather(p, lines) for p in plans]
        missing = [f"{b} {k}: {v}" for b, sc in zip(budgets, scored) for k, v in sc.failures.items()]
        if missing and not keep_going:
            raise ex.not_done(missing, len(budgets) * len(models), "run")
        outcomes = [finish(p, sc, harness, note, events, executor=executor.describe()) for p, sc in zip(plans, scored)]
        write_scaling(out_dir, points(outcomes), _provenance(outcomes), note=note)
    return outcomes


def points(outcomes: list[Outcome]) -> list[Point]:
    """The (model, budget) points of a ladder of comparisons."""
    return [point(run.config.model_name, run, outcome.table[outcome.table["model"] == run.config.model_name])
            for outcome in outcomes for run in outcome.runs
            if run.config.model_name not in outcome.failures and run.eval_dir is not None]


def point(name: str, run: Any, table: pd.DataFrame) -> Point:
    """One trained and scored run as a point of ``name``'s curve: what it spent, its per-clip scores."""
    rows = table[table["horizon"].astype(str) == "all"]
    cost = {r.metric: float(r.value) for r in rows.itertuples() if r.metric in ("train_flops", "train_time")}
    record = load_record(run.run_dir)
    stages = ", ".join(f"{s.name} {s.steps_taken:,}" for s in record.stages) if record and record.stages else "-"
    scores = results.read_per_clip(run.eval_dir)
    higher = {r.metric: str(r.higher_is_better) == "True" for r in rows.itertuples()}
    per_clip = {m: v.reshape(v.shape[0], -1).mean(1) for m, v in scores.items() if m in higher and np.isfinite(v).all()}
    return Point(name, run.config.train.budget, cost.get("train_flops", 0.0), cost.get("train_time", 0.0), stages,
                 per_clip, higher)


def run_ablation_ladder(harness: Any, model: str, axes: dict[str, list[str]], budgets: list[str], out: Path, *,
                        sets: list[str] | None = None, events: Events | None = None, **ablation: Any):
    """One ablation per budget (smallest first) into ``out/budget-<B>``, then the scaling report
    of its variants (each variant a curve) in ``out``: which design scales better. None once a
    ``detach`` submitted a budget's jobs."""
    from vpbench.ablate import run_ablation
    from vpbench.provenance import run_provenance

    events = events or Events()
    rundir.check_output_dir(out, "ladder")
    done = []
    with rundir.claimed(out, "ladder"):
        executor = ablation.get("executor")
        if executor is not None and executor.kind != "inline" and not ablation.get("gather_only"):
            from vpbench.executor import save_command

            save_command(out, ablation.get("command"))
        for budget in budgets:
            events.message(f"ladder: budget {budget} ({len(done) + 1} of {len(budgets)})")
            found = run_ablation(harness, model, axes, out / f"budget-{budget}", sets=cli_sets(sets, budget=budget),
                                 events=events, **ablation)
            if found is None:
                return None
            done.append(found)
        pts = [point(v.label, v.run, table[table["variant"] == v.label]) for table, _, variants in done for v in variants]
        write_scaling(out, pts, run_provenance(done[0][2][0].run), what="variant")
    return done


def scaling_table(pts: list[Point]) -> pd.DataFrame:
    rows = []
    for p in pts:
        for metric, values in p.per_clip.items():
            lo, hi = bootstrap_ci(values)
            rows.append({"model": p.model, "budget": p.budget, "train_flops": p.flops, "train_time": p.seconds,
                         "stages": p.stages, "metric": metric, "value": float(values.mean()), "ci_low": lo,
                         "ci_high": hi, "n_clips": len(values), "higher_is_better": p.higher[metric]})
    return pd.DataFrame(rows)


def fits(pts: list[Point], metric: str) -> tuple[dict[str, scaling.Fit], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The fitted curve of every model that trains, on ``metric`` (paired bootstrap over clips)."""
    ladders: dict[str, tuple[list, list]] = {}
    for p in pts:
        if p.flops > 0 and metric in p.per_clip:
            ladders.setdefault(p.model, ([], []))
            ladders[p.model][0].append(p.flops)
            ladders[p.model][1].append(p.per_clip[metric])
    arrays = {m: (np.array(f), np.stack(v)) for m, (f, v) in ladders.items()}
    return (scaling.fit_many(arrays) if arrays else {}), arrays


def best_per_budget(pts: list[Point], metric: str) -> list[list[str]]:
    """Per budget: the best model on ``metric`` and its paired difference to the runner-up."""
    rows = []
    for budget in dict.fromkeys(p.budget for p in pts):
        here = [p for p in pts if p.budget == budget and metric in p.per_clip]
        if len(here) < 2:
            continue
        higher = here[0].higher[metric]
        ranked = sorted(here, key=lambda p: p.per_clip[metric].mean(), reverse=higher)
        first, second = ranked[0], ranked[1]
        d = paired_difference(first.per_clip[metric], second.per_clip[metric])  # runner-up minus best
        rows.append([budget, first.model, fmt_value(first.per_clip[metric].mean()), second.model,
                     f"{fmt_value(d['diff'])} [{fmt_value(d['ci_low'])}, {fmt_value(d['ci_high'])}]",
                     "yes" if d["ci_low"] > 0 or d["ci_high"] < 0 else "no"])
    return rows


def _fit_rows(found: dict[str, scaling.Fit]) -> list[list[str]]:
    rows = []
    for model, fit in found.items():
        if not fit.determined:
            rows.append([model, "ill-determined", "", fit.reason])
            continue
        a, (alo, ahi) = fit.curve.alpha, fit.alpha_ci
        e, (elo, ehi) = fit.curve.asymptote, fit.asymptote_ci
        rows.append([model, f"{a:.3g} [{alo:.3g}, {ahi:.3g}]", f"{fmt_value(e)} [{fmt_value(elo)}, {fmt_value(ehi)}]", ""])
    return rows


def _crossing_rows(found: dict[str, scaling.Fit], arrays: dict, lo: float, hi: float) -> list[list[str]]:
    rows = []
    names = sorted(found)
    if len(names) < 2:
        return [[names[0] if names else "-", "-", "no pair: fewer than two learned models", ""]]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if not (found[a].determined and found[b].determined):
                rows.append([a, b, "n/a (a fit is ill-determined)", ""])
                continue
            c = scaling.crossing(found[a], found[b], lo, hi, EXTRAPOLATE)
            where = {"measured": "inside the measured range", "extrapolated": f"extrapolated (at most {EXTRAPOLATE:g}x "
                     "past the largest budget)", "none": "no crossing"}[c.where]
            at = f"{c.flops:.3g} [{c.ci[0]:.3g}, {c.ci[1]:.3g}] ({c.share:.0%} of draws cross)" if math.isfinite(c.flops) else ""
            rows.append([a, b, where, at])
    return rows


def plot(path: Path, table: pd.DataFrame, metric: str, found: dict[str, scaling.Fit]) -> None:
    """``metric`` against training FLOPs from the scaling table: a line with 95% CI bars per
    learned model, its fitted curve dashed, the floors as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = table[table["metric"] == metric]
    for model, mine in rows[rows["train_flops"] > 0].groupby("model", sort=False):
        mine = mine.sort_values("train_flops")
        x, y = mine["train_flops"].to_numpy(), mine["value"].to_numpy()
        line = ax.errorbar(x, y, yerr=[y - mine["ci_low"].to_numpy(), mine["ci_high"].to_numpy() - y], marker="o",
                           capsize=3, label=model)
        fit = found.get(model)
        if fit is not None and fit.determined:
            grid = np.geomspace(x.min(), x.max() * 3, 100)
            ax.plot(grid, fit.curve(grid), "--", color=line[0].get_color(), alpha=0.7)
    for floor in rows[rows["train_flops"] == 0].drop_duplicates("model", keep="last").itertuples():
        ax.axhline(floor.value, linestyle=":", color="grey")
        ax.annotate(floor.model, (ax.get_xlim()[0], floor.value), fontsize=8, color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs (counted)")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_scaling(out_dir: Path, pts: list[Point], prov: dict[str, Any], what: str = "model", note: str = "") -> None:
    """``scaling.csv``, ``scaling-<metric>.png`` and ``scaling.md`` of a ladder in ``out_dir``
    (``prov``: the provenance its report states; ``what``: a model of a comparison, or a variant
    of an ablation)."""
    table = scaling_table(pts)
    with io.atomic_path(out_dir / "scaling.csv") as tmp:
        table.to_csv(tmp, index=False)
    trained = [p.flops for p in pts if p.flops > 0]
    lo, hi = (min(trained), max(trained)) if trained else (math.nan, math.nan)
    spent = sorted((p for p in pts if p.flops > 0), key=lambda p: (p.model, p.flops))
    sections = [markdown.section("Budgets and what each run spent", markdown_table(
        ["model", "budget", "steps per stage (the preset's proportion)", "training FLOPs (counted)", "training time"],
        [[p.model, p.budget, p.stages, f"{p.flops:.3g}", f"{p.seconds:.0f} s"] for p in spent]))]
    for metric in dict.fromkeys(table["metric"]) if not table.empty else ():
        found, arrays = fits(pts, metric)
        plot(out_dir / f"scaling-{metric}.png", table, metric, found)
        sections.append(markdown.section(
            metric, f"![{metric} against training FLOPs](scaling-{metric}.png)",
            "Fit: metric = asymptote + A x (C / C0)^-alpha (C0 the smallest budget), 95% CIs from 1000 paired "
            "bootstrap draws of the clips; a fit the data cannot determine says why instead of giving numbers.",
            markdown_table(["model", "alpha [95% CI]", "asymptote [95% CI]", "ill-determined because"], _fit_rows(found)),
            "Best model per budget (the runner-up minus the best, paired over clips, 95% CI; significant when the CI "
            "excludes 0):",
            markdown_table(["budget", "best", "value", "runner-up", "runner-up minus best", "significant"],
                           best_per_budget(pts, metric)),
            f"Where the fitted curves cross (sought from the smallest budget up to {EXTRAPOLATE:g}x the largest):",
            markdown_table(["model", "model", "crossing", "training FLOPs [95% CI]"], _crossing_rows(found, arrays, lo, hi))))
    budgets = list(dict.fromkeys(p.budget for p in sorted(pts, key=lambda p: parse_budget(p.budget).value)))
    prov = dict(prov)
    prov["budget"] = (f"a ladder of {len(budgets)} budgets, {', '.join(budgets)}, each spent by every learned {what} "
                      "(a multi-stage model in its preset's proportion between stages); one "
                      f"{'comparison' if what == 'model' else 'ablation'} per budget in budget-<B>/")
    markdown.write_report(out_dir / "scaling.md", "vpbench scaling ladder", prov, sections=sections, notes=note)
