"""report.md: the results table with provenance (how the numbers were made)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from vpbench.report.tables import horizon_table, markdown_table, summary

HORIZON_SECTION = "## Per-horizon curves\n\n![per-horizon metrics](horizon.png)\n"  # beside report.md


def provenance_block(prov: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items())
    lines = [
        f"- command: `{prov.get('command', '?')}`",
        f"- git revision: `{prov.get('git_revision', '?')}`",
        f"- versions: {versions}",
        f"- device: {prov.get('device', '?')}",
        f"- seed: {prov.get('seed', '?')}",
        f"- created: {prov.get('created', '?')}",
    ]
    plugins = prov.get("plugins")
    if plugins:
        lines.append(f"- plugin versions: model {plugins.get('model', '?')}; dataset {plugins.get('dataset', '?')}; "
                     f"metrics {plugins.get('metrics', '?')}")
    if prov.get("training"):
        lines.append(f"- training: {prov['training']}")
    if prov.get("budget"):
        lines.append(f"- budget: {prov['budget']}")
    if prov.get("protocol"):
        lines.append(f"- protocol: {prov['protocol']}")
    for key, value in prov.get("dataset", {}).items():
        lines.append(f"- dataset {key}: {value}")
    return "\n".join(lines)


def run_report(table: pd.DataFrame, prov: dict[str, Any], config: dict[str, Any] | None,
               title: str = "vpbench results", extra: str = "", media: str = "") -> str:
    headers, rows = summary(table, all_keys=True, kind="quality")
    c_headers, c_rows = summary(table, all_keys=True, kind="cost")
    h_headers, h_rows = horizon_table(table)
    parts = [
        f"# {title}",
        "",
        "## How this was made",
        provenance_block(prov)
        + ("\n- config: the full resolved config is written at the end of this report (Config)" if config else ""),
        "",
        "## Results",
        "Means over test clips and predicted frames; ± is the half-width of the 95% bootstrap "
        "confidence interval over clips. ↑ higher is better, ↓ lower is better. MSE and MAE are "
        "per-frame sums over pixels on [0, 1] frames (OpenSTL's convention); PSNR in dB; SSIM "
        "with data_range 1 (scikit-image's definition).",
        "",
        markdown_table(headers, rows),
        "",
    ]
    if c_rows:
        parts += ["Cost: parameters; GMACs / GFLOPs for one prediction (n_in -> n_out frames, batch 1), counted "
                  "with torch.utils.flop_counter (MACs = FLOPs / 2, OpenSTL's \"FLOPs\" unit); latency at batch 1 "
                  "on the run's device. Training cost: `train_steps` optimiser steps, `train_flops` training FLOPs "
                  "(one real step of each stage counted forward + backward with the same counter, times its steps), "
                  "`train_time` measured training wall time (validation included), on the device named.", "",
                  markdown_table(c_headers, c_rows), ""]
    if extra:
        parts += [extra, ""]
    if h_rows:
        parts += ["## Per predicted frame", "", markdown_table(h_headers, h_rows), ""]
    if media:
        parts += [media]
    if config is not None:
        parts += ["## Config", "", "```json", json.dumps(config, indent=2), "```", ""]
    return "\n".join(parts)
