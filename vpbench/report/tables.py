"""The tidy results table as a summary: one row per model (and variant), one column per
metric, ``value ± CI half-width``, with the better direction as an arrow in each header."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.markup import escape
from rich.table import Table

COST_METRICS = ("params", "params_trainable", "gflops", "gmacs", "latency", "throughput", "train_steps", "train_flops",
                "train_time")
KEYS = ("model", "variant", "dataset")
HIDDEN_IN_SUMMARY = ("params_trainable", "gflops", "throughput")  # in results.csv; too wide for the summary


def fmt_value(value: float, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit in ("count", "FLOPs"):
        for div, suffix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
            if abs(value) >= div and (unit == "FLOPs" or div <= 1e9):
                return f"{value / div:.2f}{suffix}"
        return f"{value:.0f}"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, 3 - magnitude) if magnitude < 3 else 1
    return f"{value:.{min(decimals, 5)}f}"


def fmt_cell(value: float, lo: float, hi: float, unit: str) -> str:
    text = fmt_value(value, unit)
    if lo is None or hi is None or any(isinstance(v, float) and math.isnan(v) for v in (lo, hi)):
        return text
    return f"{text} ±{fmt_value((hi - lo) / 2)}"


def header(metric: str, higher_is_better: bool, unit: str) -> str:
    arrow = "↑" if higher_is_better else "↓"
    if unit in ("count", "FLOPs"):
        return metric
    unit = "" if unit in ("nan", "None") else unit  # an empty unit read back from a CSV
    return f"{metric} {arrow}" + (f" [{unit}]" if unit else "")


def summary(table: pd.DataFrame, horizon: str = "all", all_keys: bool = False,
            kind: str = "all", hide: tuple[str, ...] = ()) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the summary view (rows: model/variant/dataset; cells: formatted).

    ``kind``: ``quality`` (metrics), ``cost`` (parameters, MACs, speed) or ``all``. Key
    columns other than ``model`` that hold one value only are left out unless ``all_keys``
    (the title or the provenance names them).
    """
    df = table[(table["horizon"].astype(str) == horizon) & ~table["metric"].isin(HIDDEN_IN_SUMMARY)]
    if kind == "quality":
        df = df[~df["metric"].isin(COST_METRICS)]
    elif kind == "cost":
        df = table[(table["horizon"].astype(str) == "all") & table["metric"].isin(COST_METRICS)
                   & ~table["metric"].isin(hide)]
    if df.empty:
        return [], []
    metrics = list(dict.fromkeys(df["metric"]))
    metrics = [m for m in metrics if m not in COST_METRICS] + [m for m in metrics if m in COST_METRICS]
    keys = [k for k in KEYS if all_keys or k == "model" or df[k].nunique() > 1]
    first = df.drop_duplicates("metric").set_index("metric")
    clips = kind == "quality"  # every row says how many clips it was scored on
    devices = kind == "cost" and "device" in df and (df["metric"] == "train_time").any()
    headers = keys + (["clips"] if clips else []) + [
        header(m, bool(first.loc[m, "higher_is_better"]), str(first.loc[m, "unit"])) for m in metrics
    ] + (["trained on"] if devices else [])
    rows = []
    for key, group in df.groupby(keys, sort=False):
        by_metric = group.set_index("metric")
        row = [str(k) for k in key]
        if clips:
            row.append(", ".join(str(int(n)) for n in dict.fromkeys(group["n_clips"])))
        for m in metrics:
            if m in by_metric.index:
                r = by_metric.loc[m]
                row.append(fmt_cell(float(r["value"]), _f(r["ci_low"]), _f(r["ci_high"]), str(r["unit"])))
            else:
                row.append("n/a")
        if devices:
            trained = group[group["metric"] == "train_time"]["device"]
            row.append(short_device(str(trained.iloc[0])) if len(trained) else "n/a")
        rows.append(row)
    return headers, rows


def short_device(description: str) -> str:
    """``cpu`` or ``cuda: <GPU name>`` from a provenance device description."""
    head = description.split(",")[0]
    return "cpu" if head.startswith("cpu") else head


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def rich_table(table: pd.DataFrame, title: str | None = None, horizon: str = "all", kind: str = "quality") -> Table:
    headers, rows = summary(table, horizon, kind=kind, hide=HIDDEN_IN_SUMMARY)
    caption = "± = half-width of the 95% bootstrap CI over test clips" if kind != "cost" else \
        ("MACs and FLOPs per prediction (n_in -> n_out, batch 1); latency at batch 1; see profile.json. Training: "
         "optimiser steps, FLOPs (counted, forward + backward) and wall time (measured)")
    out = Table(title=title if kind != "cost" else f"cost: {title}", caption=caption)
    n_keys = sum(1 for h in headers if h in KEYS)
    for i, h in enumerate(headers):
        out.add_column(h, justify="left" if i < n_keys else "right", min_width=8 if i < n_keys else None)
    for row in rows:
        out.add_row(*(escape(str(cell)) for cell in row))  # names and labels, never markup
    return out


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def horizon_table(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Per-horizon means: one row per model/variant x metric, one column per horizon."""
    df = table[(table["horizon"].astype(str) != "all") & ~table["metric"].isin(COST_METRICS)]
    horizons = sorted({int(h) for h in df["horizon"]})
    headers = ["model", "variant", "metric"] + [str(h) for h in horizons]
    rows = []
    for (model, variant, metric), group in df.groupby(["model", "variant", "metric"], sort=False):
        values = {int(h): v for h, v in zip(group["horizon"], group["value"])}
        rows.append([str(model), str(variant), str(metric)] + [fmt_value(values.get(h, float("nan"))) for h in horizons])
    return headers, rows
