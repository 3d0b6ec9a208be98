"""The statistics of scores: percentile-bootstrap confidence intervals over test clips, paired
differences of two models on the same clips, and the summary and paired differences of
set-level metrics (FVD), whose score is of a whole set of clips rather than per clip."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


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


def _set_score(metric, pred: np.ndarray, true: np.ndarray, idx: np.ndarray) -> float:
    value = metric.score(torch.from_numpy(pred[idx]), torch.from_numpy(true[idx]))
    return float(value)


def set_summary(metric, pred: np.ndarray, true: np.ndarray, protocol: Any = None,
                resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """The score of a set metric under ``protocol`` (a :class:`~vpbench.evaluate.SetProtocol`):
    ``value`` (the mean over ``repeats`` draws of ``clips`` clips without replacement; one draw
    of every clip by default), ``std`` over the draws (NaN for one), and a percentile-bootstrap
    CI of one draw's score (``clips`` clips resampled with replacement, the same indices in both
    sets). Features are ``(N, D)``."""
    clips, repeats = (protocol.clips, protocol.repeats) if protocol is not None else (0, 1)
    n = len(pred)
    size = clips if 0 < clips < n else n
    nan = float("nan")
    if n < 2 or pred.shape[1] == 0 or not (np.isfinite(pred).all() and np.isfinite(true).all()):
        return {"value": nan, "std": nan, "ci_low": nan, "ci_high": nan, "n_clips": size}
    rng = np.random.default_rng(seed)
    draws = [rng.choice(n, size, replace=False) for _ in range(repeats)] if size < n else [np.arange(n)]
    scores = [_set_score(metric, pred, true, d) for d in draws]
    lo = hi = nan
    if resamples > 0:
        boot = [_set_score(metric, pred, true, rng.integers(0, n, size)) for _ in range(resamples)]
        alpha = (1 - level) / 2
        lo, hi = (float(q) for q in np.quantile(boot, [alpha, 1 - alpha]))
    return {"value": float(np.mean(scores)), "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else nan,
            "ci_low": lo, "ci_high": hi, "n_clips": size}


def paired_set_difference(metric, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
                          resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """``score(b) - score(a)`` of a set metric on the same clips, with a paired bootstrap 95% CI:
    each resample draws clip indices once and scores both models' sets on them."""
    (pa, ta), (pb, tb) = a, b
    if pa.shape != pb.shape or ta.shape != tb.shape or len(pa) < 2:
        raise ValueError(f"paired clips must match: {pa.shape} vs {pb.shape}")
    n = len(pa)
    every = np.arange(n)
    diff = _set_score(metric, pb, tb, every) - _set_score(metric, pa, ta, every)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        boot.append(_set_score(metric, pb, tb, idx) - _set_score(metric, pa, ta, idx))
    lo, hi = (float(q) for q in np.quantile(boot, [0.025, 0.975])) if boot else (float("nan"),) * 2
    return {"diff": float(diff), "ci_low": lo, "ci_high": hi}


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


def paired_set_differences(features: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], reference: str,
                           harness: Any, resamples: int = 1000, seed: int = 0) -> list[tuple[str, str, dict[str, float]]]:
    """``(name, metric, difference)`` for the set-level metrics (FVD), which have no per-clip values:
    the difference of the two models' set scores on the same clips, with a paired bootstrap CI
    (each resample scores both models on the same resampled clips). Left out where the clips
    differ or a metric could not be computed."""
    ref = features.get(reference, {})
    out = []
    for name, sets in features.items():
        if name == reference:
            continue
        for metric, (pred, true) in sets.items():
            if metric not in ref or metric not in harness.metrics or ref[metric][0].shape != pred.shape:
                continue
            if pred.size == 0 or not (np.isfinite(pred).all() and np.isfinite(ref[metric][0]).all()):
                continue
            out.append((name, metric, paired_set_difference(harness.metrics.get(metric), ref[metric], (pred, true),
                                                            resamples, seed)))
    return out
