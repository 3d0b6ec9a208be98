"""How a result was made: command, git revision, versions, device, seed, time."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import torch

from vpbench.budget import load_record
from vpbench.config import format_seconds
from vpbench.protocols import is_set_metric, member
from vpbench.runtime import native_bf16_cpu

_AT_START: dict[Path, str] = {}  # the revision each checkout had when this process pinned it


def _query(path: Path) -> str:
    try:
        sha = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def _checkout(path: Path | None) -> Path:
    return (path or Path(__file__).resolve().parent).resolve()


def pin_revision(path: Path | None = None) -> None:
    """Remember the revision now (a command's start: the code it runs is the code it loaded)."""
    path = _checkout(path)
    if path not in _AT_START:
        _AT_START[path] = _query(path)


def git_revision(path: Path | None = None) -> str:
    """``<sha>`` or ``<sha>+dirty`` of the checkout holding vpbench, else ``unknown``; the pinned
    revision when :func:`pin_revision` ran, saying so if the checkout has moved since."""
    path = _checkout(path)
    now = _query(path)
    start = _AT_START.get(path, now)
    return now if start == now else f"{start} (the checkout moved to {now} while this command ran)"


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda: {props.name}, {props.total_memory / 2**30:.0f} GiB, torch CUDA {torch.version.cuda}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    bf16 = ", native bf16 (train.amp=on trains in bf16)" if native_bf16_cpu() else ""
    return f"cpu: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads{bf16}"


def versions(distributions: list[str] | None = None) -> dict[str, str]:
    names = ["vpbench", "torch", "numpy", "pandas", "pluggy", "scikit-image", "av"]
    names += [d for d in distributions or [] if d not in names]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "vpbench":
                from vpbench.version import __version__

                out[name] = f"{__version__} (source)"
    return out


def command_line() -> str:
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("vpbench", "__main__.py"):
        argv[0] = "vpbench"
    return shlex.join(argv)


def provenance(device: torch.device, seed: int, distributions: list[str] | None = None) -> dict[str, Any]:
    return {
        "command": command_line(),
        "git_revision": git_revision(),
        "versions": versions(distributions),
        "device": device_description(device),
        "seed": seed,
        "platform": platform.platform(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def run_provenance(run: Any, dataset: Any | None = None, metrics: Sequence[Any] = ()) -> dict[str, Any]:
    """:func:`provenance` of a run (a :class:`vpbench.runs.Run`): its plugins and their distributions,
    its dataset's info, once it trained one line of what training was and cost, and the settings of
    the set-level metrics among ``metrics`` (those it scored)."""
    sources = {run.harness.source_of("model", run.config.model_name).distribution,
               run.harness.source_of("dataset", run.config.dataset_name).distribution}
    prov = provenance(run.device, run.config.seed, sorted(sources))
    if dataset is not None:
        prov["dataset"] = {k: str(v) for k, v in dataset.info().items()}
    cfg = run.config
    model_src, data_src = (run.harness.source_of("model", cfg.model_name), run.harness.source_of("dataset", cfg.dataset_name))
    prov["plugins"] = {"model": f"{cfg.model_name} {cfg.model_version}", "dataset": f"{cfg.dataset_name} {cfg.dataset_version}",
                       "model_distribution": f"'{model_src.distribution}' ({model_src.version})",
                       "dataset_distribution": f"'{data_src.distribution}' ({data_src.version})",
                       "metrics": ", ".join(f"{m} {getattr(run.harness.metrics.get(m), 'version', '?')}"
                                            for m in cfg.eval.metrics if m in run.harness.metrics)}
    record = load_record(run.run_dir)
    if record is not None:
        prov["training"] = training_line(record)
    details = {m.name: {k: str(v) for k, v in member(m, "details", "set_metric")().items()} for m in metrics if is_set_metric(m)}
    if details:
        prov["set_metrics"] = details
    return prov


def training_line(record: Any) -> str:
    """One line of what a run's training was and cost."""
    budget = record.parsed_budget
    if not record.stages:
        return "none (the model does not train)"
    head = f"budget {budget.describe()} ({record.budget})" if budget else "the stages' own steps (no shared budget)"
    stages = ", ".join(f"{s.name} {s.steps_taken:,}" + (f" of {s.steps:,}" if s.steps_taken != s.steps else "")
                       for s in record.stages)
    return (f"{head}: {record.steps_taken:,} optimiser steps ({stages}), {record.flops:.3g} training FLOPs "
            f"(counted), {format_seconds(record.seconds)} (measured) on {record.device}; replay with "
            f"`--set train.steps={record.replay()}`")
