"""Comparisons of models on the same clips: paired differences and the combined report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from vpbench import io
from vpbench.evaluate import clips_scored, paired_difference
from vpbench.report.markdown import HORIZON_SECTION, run_report
from vpbench.report.tables import fmt_value, markdown_table


def same_clips(runs_: list) -> tuple[list, str]:
    """Runs whose evaluation covers the same clips: the first model's split and the smallest
    ``eval.max_clips`` any of them asks for (presets differ: a cpu preset scores 500 clips, a
    floor without training the whole split). Paired differences need the same clips, and a
    table over different clips would compare unlike things. Returns the runs and a message
    (empty when nothing had to change)."""
    import dataclasses

    split = runs_[0].config.eval.split
    limits = [r.config.eval.max_clips for r in runs_ if r.config.eval.max_clips > 0]
    n = min(limits) if limits else 0
    changed, out = [], []
    for r in runs_:
        ev = r.config.eval
        if ev.split != split or ev.max_clips != n:
            changed.append(r.config.model_name)
            config = dataclasses.replace(r.config, eval=dataclasses.replace(ev, split=split, max_clips=n))
            r = dataclasses.replace(r, config=config)
        out.append(r)
    if not changed:
        return out, ""
    what = f"the first {n} clips" if n else "every clip"
    return out, f"every model is scored on {what} of the {split} split (changed for {', '.join(changed)})"


def paired_differences(per_clip: dict[str, dict[str, np.ndarray]], reference: str, resamples: int = 1000,
                       seed: int = 0) -> list[tuple[str, str, dict[str, float]]]:
    """``(name, metric, difference)`` of every other entry of ``per_clip`` against ``reference``:
    mean of (name - reference) over paired clips with its 95% bootstrap CI. Metrics scored on
    other clips, or that could not be computed (LPIPS without weights), are left out."""
    ref = per_clip[reference]
    out = []
    for name, scores in per_clip.items():
        if name == reference:
            continue
        for metric, values in scores.items():
            if metric not in ref or ref[metric].shape != values.shape:
                continue
            if not (np.isfinite(values).any() and np.isfinite(ref[metric]).any()):
                continue
            out.append((name, metric, paired_difference(ref[metric].mean(axis=1), values.mean(axis=1), resamples, seed)))
    return out


def paired_table(per_clip: dict[str, dict[str, np.ndarray]], reference: str, harness: Any,
                 resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """For each model and metric: mean of (model - reference) over paired clips, 95% CI,
    and whether the model is significantly better or worse (CI excludes 0)."""
    rows = []
    for model, metric, d in paired_differences(per_clip, reference, resamples, seed):
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


def training_budget(model_cls: type, config: Any, spec: Any) -> dict[str, int]:
    """Optimiser steps per stage of ``model_cls`` under ``config`` (built on the meta device)."""
    import torch

    with torch.device("meta"):
        model = model_cls(config, spec)
    return {stage.name: stage.steps for stage in model.stages()}


def protocol_rows(runs_: list, datasets: list, harness: Any) -> list[list[str]]:
    """Per model: what was trained and scored here next to the model's ``paper`` preset, so a
    reader sees at once how far a run is from the published protocol."""
    from vpbench import config as cfgmod

    rows = []
    for run, data in zip(runs_, datasets):
        cfg = run.config
        model_cls = harness.models.get(cfg.model_name)
        here = training_budget(model_cls, cfg.model, data.spec)
        paper = "no paper preset"
        if "paper" in {k.split("@")[0] for k in getattr(model_cls, "presets", {})}:
            ref = cfgmod.resolve(cfg.model_name, model_cls, harness.datasets.get, dataset=cfg.dataset_name,
                                 preset="paper")
            paper = ", ".join(f"{k} {v:,}" for k, v in training_budget(model_cls, ref.model, data.spec).items()) or "-"
        n_test = len(data.split(cfg.eval.split))
        scored = clips_scored(n_test, cfg.eval.max_clips)
        rows.append([cfg.model_name, cfg.preset, ", ".join(f"{k} {v:,}" for k, v in here.items()) or "untrained",
                     paper, f"{scored:,} of {n_test:,}", f"{cfg.train.batch_size}"])
    return rows


PROTOCOL_HEADERS = ["model", "preset", "optimiser steps here", "steps in the paper preset", "test clips scored",
                    "batch"]


def write_comparison(out_dir: Path, table: pd.DataFrame, paired: pd.DataFrame, runs_: list, harness: Any,
                     datasets: list | None = None, examples: list | None = None, note: str = "") -> None:
    """results.csv / paired.csv / results.json / horizon.png / report.md (+ examples/ side by side)."""
    from vpbench.runs import run_provenance

    out_dir.mkdir(parents=True, exist_ok=True)
    prov = run_provenance(runs_[0], datasets[0] if datasets else None)
    io.write_text(out_dir / "results.csv", table.to_csv(index=False))
    io.write_text(out_dir / "paired.csv", paired.to_csv(index=False))
    io.write_json(out_dir / "results.json", {
        "provenance": prov,
        "runs": {r.config.model_name: str(r.run_dir) for r in runs_},
        "configs": {r.config.model_name: r.config.to_dict() for r in runs_},
        "rows": json.loads(table.to_json(orient="records")),
        "paired": json.loads(paired.to_json(orient="records")),
    })
    from vpbench.report.plots import horizon_plot

    horizon_plot(table, out_dir / "horizon.png", title=f"{runs_[0].config.dataset_name}")
    ref = runs_[0].config.model_name
    extra = ("## Paired differences\n\n"
             f"Each model minus `{ref}` on the same test clips (per-clip means over the predicted frames), "
             "with a 95% paired bootstrap CI; the verdict says whether the model is significantly better "
             f"or worse than `{ref}` (the CI excludes 0). Metrics that could not be computed are left out.\n\n"
             + markdown_table(PAIRED_HEADERS, _paired_rows(paired)))
    if datasets:
        extra += ("\n\n## How this differs from the published protocol\n\n"
                  + markdown_table(PROTOCOL_HEADERS, protocol_rows(runs_, datasets, harness)))
    if note:
        extra += "\n\n## Notes\n\n" + note.strip() + "\n"
    media = HORIZON_SECTION
    if examples:
        from vpbench.report.media import save_comparison

        media += "\n## Predictions on the same test clips\n\n"
        for i, (context, truth, preds) in enumerate(examples):
            png, gif = out_dir / "examples" / f"clip{i:05d}.png", out_dir / "examples" / f"clip{i:05d}.gif"
            save_comparison(png, gif, context, truth, preds)
            media += f"![clip {i}](examples/{png.name})\n\n![clip {i} animated](examples/{gif.name})\n\n"
    configs = {r.config.model_name: r.config.to_dict() for r in runs_}
    report = run_report(table, prov, configs, title="vpbench comparison", extra=extra, media=media)
    io.write_text(out_dir / "report.md", report)
