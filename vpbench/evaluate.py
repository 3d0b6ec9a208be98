"""Model-agnostic evaluation: predict -> metric plugins -> tidy rows.

The evaluator streams a split through ``model.predict`` and every metric's ``per_frame``,
keeping only the ``(clips, n_out)`` score matrix of each metric, so the split never has to fit
in memory. Each prediction gets a fresh copy of the context only (the future frames are not
reachable from what the model receives), and is checked against the contract: shape
``(B, n_out, C, H, W)``, finite, within ``[0, 1]``.

Aggregates are means over clips and frames; 95% confidence intervals come from a percentile
bootstrap over test clips (clip-level means), and comparisons of two models on the same clips
are paired (bootstrap of per-clip differences).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from vpbench.errors import MetricUnavailable, PluginError, one_line
from vpbench.events import Events
from vpbench.protocols import DataSpec

RANGE_TOLERANCE = 1e-4
COLUMNS = [
    "run", "model", "variant", "dataset", "split", "metric", "horizon", "seed",
    "value", "ci_low", "ci_high", "n_clips", "unit", "higher_is_better",
    "model_version", "dataset_version", "metric_version", "device",
]


@dataclass
class Scores:
    """Per-clip, per-horizon scores of each metric: ``{name: (clips, n_out) array}``."""

    values: dict[str, np.ndarray]
    n_clips: int
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> why it is n/a


def check_prediction(pred: Any, context: torch.Tensor, spec: DataSpec, model_name: str) -> torch.Tensor:
    """The contract every ``predict`` output must meet; a clear error names the model."""
    expected = (context.shape[0], spec.n_out, *spec.frame_shape)
    if not torch.is_tensor(pred):
        raise PluginError(f"model '{model_name}': predict returned {type(pred).__name__}, not a tensor")
    if tuple(pred.shape) != expected:
        raise PluginError(
            f"model '{model_name}': predict returned shape {tuple(pred.shape)}, expected {expected} "
            "(B, n_out, C, H, W)"
        )
    if not torch.isfinite(pred).all():
        raise PluginError(f"model '{model_name}': predict returned NaN or Inf values")
    lo, hi = float(pred.min()), float(pred.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise PluginError(
            f"model '{model_name}': predict returned values in [{lo:.4g}, {hi:.4g}]; frames must be "
            "in [0, 1] (clamp or use a sigmoid)"
        )
    return pred


def predict(model: torch.nn.Module, context: torch.Tensor, spec: DataSpec, model_name: str) -> torch.Tensor:
    """``model.predict`` on a private copy of ``context``, checked against the contract."""
    context = context.detach().clone().contiguous()
    try:
        pred = model.predict(context, spec.n_out)
    except PluginError:
        raise
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:
        raise PluginError(f"model '{model_name}' raised in predict: {one_line(exc)}") from exc
    return check_prediction(pred, context, spec, model_name).float()


@torch.no_grad()
def score(
    model: torch.nn.Module,
    split: torch.utils.data.Dataset,
    spec: DataSpec,
    metrics: Sequence[Any],
    *,
    model_name: str,
    device: torch.device,
    batch_size: int = 16,
    max_clips: int = 0,
    events: Events | None = None,
    num_workers: int = 0,
    dist: Any = None,
    samples: int = 1,
    seed: int = 0,
) -> Scores:
    """Scores of every metric on every clip of ``split`` (or its first ``max_clips``).

    With a distributed context each rank scores clips ``rank::world`` and the per-clip scores
    of all ranks are gathered (in clip order) before anything is aggregated.
    """
    events = events or Events()
    n = clips_scored(len(split), max_clips)
    indices = list(range(n)) if dist is None else list(range(dist.rank, n, dist.world))
    if len(indices) < len(split):
        split = torch.utils.data.Subset(split, indices)
    loader = torch.utils.data.DataLoader(split, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {m.name: [] for m in metrics}
    unavailable: dict[str, str] = {}
    events.task_start("eval", f"evaluating {model_name}", n)
    for batch_index, (context, future) in enumerate(loader):
        context, future = context.to(device), future.to(device)
        per_sample: dict[str, list[np.ndarray]] = {m.name: [] for m in metrics}
        for k in range(samples):
            # every batch and sample draws from its own seeded stream: stochastic models are
            # reproducible and their K samples differ
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(hash((seed, batch_index, k)) % 2**31)
                pred = predict(model, context, spec, model_name)
            for metric in metrics:
                per_sample[metric.name].append(_metric_values(metric, pred, future, unavailable, events))
        for metric in metrics:
            stack = np.stack(per_sample[metric.name])  # (K, B, T)
            chunks[metric.name].append(stack[0])
            if samples > 1:
                clip_means = stack.mean(axis=2)
                best = clip_means.argmax(0) if metric.higher_is_better else clip_means.argmin(0)
                chunks.setdefault(f"{metric.name}@best{samples}", []).append(stack[best, np.arange(stack.shape[1])])
                chunks.setdefault(f"{metric.name}@mean{samples}", []).append(stack.mean(0))
        events.task_advance("eval", len(context))
    events.task_end("eval")
    values = {k: np.concatenate(v) if v else np.zeros((0, spec.n_out)) for k, v in chunks.items()}
    if dist is not None:
        parts = dist.gather((indices, values, unavailable))
        order = np.concatenate([np.asarray(i, dtype=np.int64) for i, _, _ in parts])
        values = {k: np.concatenate([v[k] for _, v, _ in parts])[np.argsort(order)] for k in values}
        for _, _, u in parts:
            unavailable.update(u)
    return Scores(values, n, unavailable)


def clips_scored(n_split: int, max_clips: int) -> int:
    """How many clips of a split of ``n_split`` are scored: the first ``max_clips`` (0: all)."""
    return n_split if max_clips <= 0 else min(n_split, max_clips)


def _metric_values(metric, pred, future, unavailable: dict[str, str], events: Events) -> np.ndarray:
    if metric.name in unavailable:
        return np.full(tuple(pred.shape[:2]), np.nan)
    try:
        values = metric.per_frame(pred, future)
    except MetricUnavailable as exc:  # reported as n/a, with one line saying why
        unavailable[metric.name] = str(exc)
        events.message(f"{metric.name}: n/a. {exc}")
        return np.full(tuple(pred.shape[:2]), np.nan)
    except Exception as exc:
        raise PluginError(f"metric '{metric.name}' raised: {one_line(exc)}") from exc
    expected = tuple(pred.shape[:2])
    if not torch.is_tensor(values):
        raise PluginError(f"metric '{metric.name}': per_frame returned {type(values).__name__}, not a tensor of "
                          f"shape {expected} (B, T)")
    if tuple(values.shape) != expected:
        raise PluginError(f"metric '{metric.name}': per_frame returned shape {tuple(values.shape)}, expected "
                          f"{expected} (B, T): one score per clip and predicted frame")
    if not torch.isfinite(values).all():
        raise PluginError(f"metric '{metric.name}': per_frame returned NaN or Inf (raise "
                          "vpbench.errors.MetricUnavailable for a metric that cannot be computed here)")
    return values.detach().double().cpu().numpy()


@dataclass(frozen=True)
class Derived:
    """A best-of-K / mean-of-K view of a metric (same unit, direction and version)."""

    name: str
    unit: str
    higher_is_better: bool
    version: str = ""


def derived_metrics(metrics: Sequence[Any], samples: int) -> list[Any]:
    out = list(metrics)
    if samples > 1:
        for m in metrics:
            out += [Derived(f"{m.name}@best{samples}", m.unit, m.higher_is_better, str(m.version)),
                    Derived(f"{m.name}@mean{samples}", m.unit, m.higher_is_better, str(m.version))]
    return out


def bootstrap_ci(x: np.ndarray, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``x`` (1-D, one value per clip)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2 or resamples <= 0 or not np.isfinite(x).all():
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // len(x))  # bound memory for large test sets
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, len(x), size=(stop - start, len(x)))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def paired_difference(a: np.ndarray, b: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean of ``b - a`` over paired clips with its bootstrap 95% CI."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired clips must match: {a.shape} vs {b.shape}")
    diff = b - a
    lo, hi = bootstrap_ci(diff, resamples, seed)
    return {"diff": float(diff.mean()), "ci_low": lo, "ci_high": hi}


def tidy(scores: Scores, metrics: Sequence[Any], meta: dict[str, Any], resamples: int = 1000) -> pd.DataFrame:
    """One row per metric x horizon (``all`` and 1..n_out) with value and 95% CI."""
    rows = []
    for metric in metrics:
        values = scores.values[metric.name]  # (clips, n_out)
        columns = [("all", values.mean(axis=1))]
        columns += [(str(h + 1), values[:, h]) for h in range(values.shape[1])]
        for horizon, per_clip in columns:
            lo, hi = bootstrap_ci(per_clip, resamples, seed=meta.get("seed", 0))
            rows.append({
                **meta, "metric": metric.name, "horizon": horizon, "value": float(per_clip.mean()),
                "ci_low": lo, "ci_high": hi, "n_clips": len(per_clip), "unit": metric.unit,
                "higher_is_better": bool(metric.higher_is_better), "metric_version": str(getattr(metric, "version", "")),
            })
    return pd.DataFrame(rows, columns=COLUMNS)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """``(total, trainable)``; trainable = parameters some training stage optimises."""
    total = sum(p.numel() for p in model.parameters())
    seen: dict[int, int] = {}
    for stage in model.stages():
        for p in stage.params():
            seen[id(p)] = p.numel()
    return total, sum(seen.values())


def cost_rows(rows: list[tuple[str, float, str, bool]], meta: dict[str, Any]) -> pd.DataFrame:
    """Cost measurements (parameters, FLOPs, speed) as rows of the same tidy table."""
    return pd.DataFrame([
        {**meta, "metric": name, "horizon": "all", "value": float(value), "ci_low": np.nan, "ci_high": np.nan,
         "n_clips": 0, "unit": unit, "higher_is_better": higher}
        for name, value, unit, higher in rows
    ], columns=COLUMNS)
