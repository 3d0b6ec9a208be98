"""Per-horizon metric curves (matplotlib, PNG): one panel per metric, one line per model /
variant, the 95% CI as a band."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vpbench import io
from vpbench.report.tables import COST_METRICS


def horizon_plot(table: pd.DataFrame, path: str | Path, title: str = "") -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = table[(table["horizon"].astype(str) != "all") & ~table["metric"].isin(COST_METRICS)].copy()
    df = df[np.isfinite(df["value"].astype(float))]
    if df.empty:
        return None
    df["h"] = df["horizon"].astype(int)
    metrics = list(dict.fromkeys(df["metric"]))
    cols = min(3, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        part = df[df["metric"] == metric]
        for (model, variant), g in part.groupby(["model", "variant"], sort=False):
            g = g.sort_values("h")
            label = model if part["variant"].nunique() == 1 else f"{model} ({variant})"
            ax.plot(g["h"], g["value"], marker="o", markersize=3, label=label)
            ax.fill_between(g["h"], g["ci_low"].astype(float), g["ci_high"].astype(float), alpha=0.2)
        better = "higher" if bool(part["higher_is_better"].iloc[0]) else "lower"
        unit = str(part["unit"].iloc[0])
        ax.set_title(f"{metric} ({better} is better)")
        ax.set_xlabel("predicted frame")
        ax.set_ylabel(f"{metric} [{unit}]" if unit and unit != "nan" else metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
