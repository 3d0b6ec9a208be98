"""report.md: one writer for every report vpbench writes (a result set, a run's index of its
sets, a comparison, an ablation, a combined report), so each says how it was made the same way.

A report is its title, ``## How this was made`` (command, git revision, versions, device, seed,
training and budget, from the provenance), the results tables of its tidy table, its own
sections, notes, media (plots and example strips) and the full resolved config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from vpbench import io
from vpbench.report.tables import horizon_table, markdown_table, summary

HOW_MADE = "## How this was made"
HORIZON_SECTION = "## Per-horizon curves\n\n![per-horizon metrics](horizon.png)\n"  # beside report.md
RESULTS_NOTE = ("Means over test clips and predicted frames; ± is the half-width of the 95% bootstrap confidence "
                "interval over clips. ↑ higher is better, ↓ lower is better. MSE and MAE are per-frame sums over "
                "pixels on [0, 1] frames (OpenSTL's convention); PSNR in dB; SSIM with data_range 1 (scikit-image's "
                "definition).")
COST_NOTE = ("Cost: parameters; GMACs / GFLOPs for one prediction (n_in -> n_out frames, batch 1), counted with "
             "torch.utils.flop_counter (MACs = FLOPs / 2, OpenSTL's \"FLOPs\" unit); latency at batch 1 on the run's "
             "device. Training cost: `train_steps` optimiser steps, `train_flops` training FLOPs (one real step of "
             "each stage counted forward + backward with the same counter, times its steps), `train_time` measured "
             "training wall time (validation included), on the device named.")


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
    if prov.get("executor"):
        lines.append(f"- executor: {prov['executor']}")
    for key, value in prov.get("dataset", {}).items():
        lines.append(f"- dataset {key}: {value}")
    return "\n".join(lines)


def section(heading: str, *blocks: str) -> str:
    """A ``## heading`` section of paragraphs and tables."""
    return "\n\n".join([f"## {heading}", *blocks])


def example_links(examples: int) -> str:
    """The media of a result set: its per-horizon plot and its first ``examples`` strips and GIFs."""
    if not examples:
        return HORIZON_SECTION
    lines = ["## Example predictions", "", "Rows: context, ground truth, prediction, |error|. GIFs: truth | prediction.", ""]
    lines += [f"![clip {i}](examples/clip{i:05d}.png) ([GIF](examples/clip{i:05d}.gif))" for i in range(examples)]
    return HORIZON_SECTION + "\n" + "\n".join(lines + [""])


def compose(title: str, provenance: dict[str, Any] | None, *, table: pd.DataFrame | None = None,
            sections: Sequence[str] = (), notes: str = "", media: str = "", config: dict[str, Any] | None = None) -> str:
    """The markdown of a report: ``# title``; how it was made; the quality and cost tables of
    ``table``; ``sections`` (markdown blocks, each opening with its ``## heading``); ``notes``;
    the per-frame table; ``media``; the full ``config``."""
    how = provenance_block(provenance) if provenance else "- not recorded (no result set yet)"
    if config:
        how += "\n- config: the full resolved config is written at the end of this report (Config)"
    parts = [f"# {title}", "", HOW_MADE, how, ""]
    if table is not None:
        headers, rows = summary(table, all_keys=True, kind="quality")
        c_headers, c_rows = summary(table, all_keys=True, kind="cost")
        parts += ["## Results", RESULTS_NOTE, "", markdown_table(headers, rows), ""]
        if c_rows:
            parts += [COST_NOTE, "", markdown_table(c_headers, c_rows), ""]
    for block in sections:
        parts += [block.rstrip("\n"), ""]
    if notes.strip():
        parts += [section("Notes", notes.strip()), ""]
    if table is not None:
        h_headers, h_rows = horizon_table(table)
        if h_rows:
            parts += ["## Per predicted frame", "", markdown_table(h_headers, h_rows), ""]
    if media:
        parts += [media]
    if config is not None:
        parts += ["## Config", "", "```json", json.dumps(config, indent=2), "```", ""]
    return "\n".join(parts)


def write_report(path: str | Path, title: str, provenance: dict[str, Any] | None, **parts: Any) -> None:
    """Write ``report.md`` at ``path`` (atomically); ``parts`` as for :func:`compose`."""
    io.write_text(path, compose(title, provenance, **parts))


def set_metric_section(protocol: dict[str, Any], details: dict[str, dict[str, str]]) -> str:
    """How the set-level metrics (FVD) formed their two sets of clips, and what their values depend on."""
    clips = f"{protocol['clips']} clips" if protocol.get("clips") else "every scored clip"
    lines = [
        f"- clips: {'context + predicted frames' if protocol.get('include_context') else 'predicted frames only'} "
        f"(`eval.fvd_include_context={str(protocol.get('include_context')).lower()}`, from "
        f"{protocol.get('include_context_from', '?')}); length "
        f"{protocol.get('frames') or 'all frames'} (`eval.fvd_frames`), never padded",
        f"- frames resized to {protocol.get('resize')}x{protocol.get('resize')} ({protocol.get('interpolation')}, "
        "`eval.fvd_resize`)" if protocol.get("resize") else "- frames at their native size (`eval.fvd_resize=0`)",
        f"- per draw: {clips} (`eval.fvd_clips`); {protocol.get('repeats', 1)} draw(s) (`eval.fvd_repeats`); "
        "the value is the mean over draws (`NAME@stdR`: their standard deviation), the CI a percentile bootstrap "
        "over clips of one draw's score (the same resampled clips in both sets)",
    ]
    if protocol.get("sample"):
        lines.append(f"- predictions: {protocol['sample']} (set-level metrics have no best-/mean-/worst-of-K)")
    for name, info in details.items():
        if info:
            lines.append(f"- {name}: " + ", ".join(f"{k} `{v}`" for k, v in info.items()))
    return section("Set-level metrics", "They score the set of predicted clips against the set of true clips: one "
                   "value, no per-frame curve.", "\n".join(lines))
