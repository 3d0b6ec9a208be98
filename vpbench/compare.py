"""Comparisons of models on the same clips: paired differences and the combined report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from vpbench import io
from vpbench.evaluate import paired_difference
from vpbench.report.markdown import run_report
from vpbench.report.tables import fmt_value, markdown_table


def paired_table(per_clip: dict[str, dict[str, np.ndarray]], reference: str, harness: Any,
                 resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """For each model and metric: mean of (model - reference) over paired clips, 95% CI,
    and whether the model is significantly better or worse (CI excludes 0)."""
    rows = []
    ref = per_clip[reference]
    for model, scores in per_clip.items():
        if model == reference:
            continue
        for metric, values in scores.items():
            if metric not in ref or ref[metric].shape != values.shape:
                continue
            d = paired_difference(ref[metric].mean(axis=1), values.mean(axis=1), resamples, seed)
            higher = bool(harness.metrics.get(metric).higher_is_better) if metric in harness.metrics else False
            if d["ci_low"] > 0 or d["ci_high"] < 0:
                better = (d["diff"] > 0) == higher
                verdict = "better" if better else "worse"
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


def write_comparison(out_dir: Path, table: pd.DataFrame, paired: pd.DataFrame, runs_: list, harness: Any) -> None:
    from vpbench.runs import run_provenance

    out_dir.mkdir(parents=True, exist_ok=True)
    prov = run_provenance(runs_[0])
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
    extra = "## Paired differences\n\n" + markdown_table(PAIRED_HEADERS, _paired_rows(paired))
    media = "## Per-horizon curves\n\n![per-horizon metrics](horizon.png)\n"
    io.write_text(out_dir / "report.md", run_report(table, prov, None, title="vpbench comparison", extra=extra,
                                                    media=media))
