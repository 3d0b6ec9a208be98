"""Model-agnostic evaluation: predict -> metric plugins -> tidy rows.

The evaluator streams a split through ``model.predict`` and every metric's ``per_frame``,
keeping only the ``(clips, n_out)`` score matrix of each metric, so the split never has to fit
in memory. Each prediction gets a fresh copy of the context only (the future frames are not
reachable from what the model receives), and is checked against the contract: shape
``(B, n_out, C, H, W)``, finite, within ``[0, 1]``. A metric that writes into the frames it is
given is refused (one line naming it): the metrics after it would score changed frames. A split
is checked when it is opened (:func:`open_split`: its length, the dataset's spec and its first
clip), so a faulty dataset is named instead of the model or a metric it would break.

Aggregates are means over clips and frames; 95% confidence intervals come from a percentile
bootstrap over test clips (clip-level means), and comparisons of two models on the same clips
are paired (bootstrap of per-clip differences).

Set-level metrics (FVD) are streamed too: each batch's predicted and true clips (formed by the
:class:`SetProtocol`: context frames or not, clip length, resize) go through ``features`` and
only the ``(clips, D)`` features are kept. The score is computed once at the end (the mean over
``repeats`` draws of ``clips`` clips), its CI by a percentile bootstrap over clips (the same
resampled clips in both sets), and a paired comparison is a paired bootstrap of the difference
of two models' scores on the same resampled clips (:func:`paired_set_difference`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from vpbench.errors import ConfigError, DataError, MetricUnavailable, PluginError, VPBenchError, one_line
from vpbench.events import Events
from vpbench.protocols import DataSpec, is_set_metric, member
from vpbench.stats import bootstrap_ci, set_summary

RANGE_TOLERANCE = 1e-4
COLUMNS = [
    "run", "model", "variant", "dataset", "split", "metric", "horizon", "seed",
    "value", "ci_low", "ci_high", "n_clips", "unit", "higher_is_better",
    "model_version", "dataset_version", "metric_version", "device",
]


@dataclass
class Scores:
    """Per-clip, per-horizon scores of each metric: ``{name: (clips, n_out) array}``; for each
    set-level metric the ``(clips, D)`` features of the predicted and of the true clips."""

    values: dict[str, np.ndarray]
    n_clips: int
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> why it is n/a
    features: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # set metric -> (pred, true)
    protocol: SetProtocol | None = None


@dataclass(frozen=True)
class SetProtocol:
    """How the clips a set-level metric sees are formed (the ``eval.fvd_*`` options, resolved)."""

    include_context: bool = False  # the n_in context frames (the same in both sets) precede the n_out frames
    frames: int = 0  # clip length: the first ``frames`` frames; 0 = all
    resize: int = 224  # frames resized to resize x resize, bilinear (align_corners=False); 0 = native size
    clips: int = 0  # clips per draw; 0 = every scored clip
    repeats: int = 1  # draws without replacement (mean and standard deviation of the score)
    include_context_source: str = "set"  # "set" (eval.fvd_include_context) or the dataset convention it came from
    samples: int = 1  # predictions per clip: a set metric scores the first

    def describe(self) -> dict[str, Any]:
        out = {"include_context": self.include_context, "include_context_from": self.include_context_source,
               "frames": self.frames, "resize": self.resize, "interpolation": "bilinear" if self.resize else "none",
               "clips": self.clips, "repeats": self.repeats}
        if self.samples > 1:
            out["sample"] = f"the first of {self.samples} per clip"
        return out

    def clip(self, context: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        x = torch.cat([context, frames], dim=1) if self.include_context else frames
        if self.frames:
            x = x[:, : self.frames]
        from vpbench.metrics.fvd import resize_clips

        return resize_clips(x, self.resize)


def set_protocol(eval_cfg: Any, dataset_name: str, spec: DataSpec, n_clips: int, metrics: Sequence[Any],
                 includes_context: bool = False) -> SetProtocol:
    """The resolved protocol of the set-level metrics in ``metrics``, checked before anything is scored:
    a clip shorter than a metric's ``min_frames`` or than ``eval.fvd_frames`` is a ConfigError, never padded.
    ``includes_context`` is the dataset's published convention (``Dataset.fvd_includes_context``), the
    default of ``eval.fvd_include_context``."""
    include = eval_cfg.fvd_include_context
    source = "eval.fvd_include_context"
    if include is None:
        include = bool(includes_context)
        source = f"the published convention of {dataset_name}" if include else "default (predictions only)"
    length = (spec.n_in if include else 0) + spec.n_out
    what = f"{spec.n_in} context + {spec.n_out} predicted frames" if include else f"the {spec.n_out} predicted frames"
    if eval_cfg.fvd_frames > length:
        raise ConfigError(f"eval.fvd_frames={eval_cfg.fvd_frames} but the clips have {length} frames ({what}, "
                          f"eval.fvd_include_context={str(include).lower()}); clips are never padded")
    used = eval_cfg.fvd_frames or length
    for metric in metrics:
        if not is_set_metric(metric):
            continue
        need = int(member(metric, "min_frames", "set_metric"))
        if used < need:
            hint = ("set eval.fvd_include_context=true to add the context frames" if not include and spec.n_in + spec.n_out >= need
                    else "use a protocol with more frames (data.n_out)")
            raise ConfigError(f"{metric.name} needs clips of at least {need} frames but gets {used} ({what}, "
                              f"eval.fvd_include_context={str(include).lower()}, eval.fvd_frames={eval_cfg.fvd_frames}); "
                              f"{hint} (clips are never padded)")
    if eval_cfg.fvd_clips > n_clips:
        raise ConfigError(f"eval.fvd_clips={eval_cfg.fvd_clips} but only {n_clips} clips are scored "
                          "(eval.max_clips / the split); set eval.fvd_clips=0 for all of them")
    if eval_cfg.fvd_repeats > 1 and not (0 < eval_cfg.fvd_clips < n_clips):
        raise ConfigError(f"eval.fvd_repeats={eval_cfg.fvd_repeats} needs 0 < eval.fvd_clips < {n_clips} (the scored "
                          "clips): draws of every clip would all be the same set")
    return SetProtocol(bool(include), eval_cfg.fvd_frames, eval_cfg.fvd_resize, eval_cfg.fvd_clips,
                       eval_cfg.fvd_repeats, source, eval_cfg.samples)


def check_spec(spec: Any, dataset_name: str) -> Any:
    """A dataset's ``spec``: its five sizes must be positive integers; the error names the dataset."""
    fields = ("n_in", "n_out", "channels", "height", "width")
    values = {f: getattr(spec, f, None) for f in fields}
    bad = [f"{f}={v!r}" for f, v in values.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1]
    if bad:
        raise PluginError(f"dataset '{dataset_name}'{_origin('dataset', dataset_name)}: its spec has {', '.join(bad)}; "
                          "n_in, n_out, channels, height and width must be positive integers")
    return spec


def check_clip(context: Any, future: Any, spec: DataSpec, dataset_name: str, where: str) -> None:
    """One clip (or batch) of a dataset against its spec: shapes, a float (or uint8) dtype, finite values
    in ``[0, 1]``; the error names the dataset and says which clip."""
    who = f"dataset '{dataset_name}'{_origin('dataset', dataset_name)}"
    for part, frames, n in (("context", context, spec.n_in), ("future", future, spec.n_out)):
        expected = (n, *spec.frame_shape)
        if not torch.is_tensor(frames):
            raise PluginError(f"{who}: the {part} of {where} is {type(frames).__name__}, not a tensor")
        if tuple(frames.shape[-4:]) != expected or frames.dim() not in (4, 5):
            raise PluginError(f"{who}: the {part} of {where} has shape {tuple(frames.shape)}, its spec says {expected} "
                              f"({part} frames, C, H, W)")
        if not (frames.is_floating_point() or frames.dtype in (torch.uint8, torch.bool)):
            raise PluginError(f"{who}: the {part} of {where} is {frames.dtype}; frames must be float in [0, 1]")
        if frames.is_floating_point() and not torch.isfinite(frames).all():
            raise PluginError(f"{who}: the {part} of {where} has NaN or Inf values")
        lo, hi = float(frames.min()), float(frames.max())
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise PluginError(f"{who}: the {part} of {where} has values in [{lo:.4g}, {hi:.4g}]; frames must be in "
                              "[0, 1] (divide 8-bit frames by 255)")


def open_split(dataset: Any, part: str, dataset_name: str) -> Any:
    """``dataset.split(part)``, checked before any model or metric sees it: its length, the dataset's
    spec and its first clip (:func:`check_clip`); a fault is one line naming the dataset."""
    split = dataset.split(part)
    try:
        n = len(split)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PluginError(f"dataset '{dataset_name}'{_origin('dataset', dataset_name)}: the length of its {part} split "
                          f"is invalid ({one_line(exc)}); __len__ must return the number of clips, >= 0") from None
    spec = check_spec(dataset.spec, dataset_name)
    if n > 0:
        try:
            clip = split[0]
            context, future = clip
        except VPBenchError:
            raise
        except Exception as exc:
            raise DataError(f"dataset '{dataset_name}' failed to load clip 0 of its {part} split: "
                            f"{one_line(exc)}") from exc
        check_clip(context, future, spec, dataset_name, f"clip 0 of its {part} split")
    return split


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
    protocol: SetProtocol | None = None,
) -> Scores:
    """Scores of every metric on every clip of ``split`` (or its first ``max_clips``).

    With a distributed context each rank scores clips ``rank::world`` and the per-clip scores
    (and set-metric features) of all ranks are gathered (in clip order) before anything is
    aggregated. Set-level metrics embed the first of the ``samples`` predictions of each clip.

    Every metric gets the same ``pred`` and ``future`` tensors, so one that edits them in place is
    refused: after each metric their version counters and sums are compared (:class:`_Untouched`),
    and a change stops the evaluation with a :class:`PluginError` naming the metric.
    """
    events = events or Events()
    n = clips_scored(len(split), max_clips)
    indices = list(range(n)) if dist is None else list(range(dist.rank, n, dist.world))
    if len(indices) < len(split):
        split = torch.utils.data.Subset(split, indices)
    loader = torch.utils.data.DataLoader(split, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    model.eval()
    protocol = protocol or SetProtocol(samples=samples)
    set_metrics = [m for m in metrics if is_set_metric(m)]
    metrics = [m for m in metrics if not is_set_metric(m)]
    chunks: dict[str, list[np.ndarray]] = {m.name: [] for m in metrics}
    feats: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {m.name: ([], []) for m in set_metrics}
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
            inputs = _Untouched(pred, future)
            for metric in metrics:
                per_sample[metric.name].append(_metric_values(metric, pred, future, unavailable, events))
                inputs.check(metric)
            if k == 0 and any(m.name not in unavailable for m in set_metrics):
                fake, real = protocol.clip(context, pred), protocol.clip(context, future)
                inputs = _Untouched(pred, future, fake, real)
                for metric in set_metrics:
                    for into, clips in zip(feats[metric.name], (fake, real)):
                        into.append(_set_features(metric, clips, unavailable, events))
                    inputs.check(metric)
        for metric in metrics:
            stack = np.stack(per_sample[metric.name])  # (K, B, T)
            chunks[metric.name].append(stack[0])
            if samples > 1:
                clip_means = stack.mean(axis=2)
                best = clip_means.argmax(0) if metric.higher_is_better else clip_means.argmin(0)
                worst = clip_means.argmin(0) if metric.higher_is_better else clip_means.argmax(0)
                chunks.setdefault(f"{metric.name}@best{samples}", []).append(stack[best, np.arange(stack.shape[1])])
                chunks.setdefault(f"{metric.name}@mean{samples}", []).append(stack.mean(0))
                chunks.setdefault(f"{metric.name}@worst{samples}", []).append(stack[worst, np.arange(stack.shape[1])])
        events.task_advance("eval", len(context))
    events.task_end("eval")
    values = {k: np.concatenate(v) if v else np.zeros((0, spec.n_out)) for k, v in chunks.items()}
    features = {k: tuple(_stack_features(part) for part in v) for k, v in feats.items()}
    if dist is not None:
        parts = dist.gather((indices, values, unavailable, features))
        order = np.argsort(np.concatenate([np.asarray(i, dtype=np.int64) for i, _, _, _ in parts]))
        values = {k: np.concatenate([v[k] for _, v, _, _ in parts])[order] for k in values}
        features = {k: tuple(np.concatenate([f[k][j] for _, _, _, f in parts])[order] for j in (0, 1))
                    for k in features}
        for _, _, u, _ in parts:
            unavailable.update(u)
    for k in features:
        if k in unavailable:
            features[k] = (np.full((n, 0), np.nan), np.full((n, 0), np.nan))
    if set_metrics and samples > 1:
        events.message(f"{', '.join(m.name for m in set_metrics)}: set-level, scored on the first of the {samples} "
                       "samples of each clip (no best-/mean-/worst-of-K)")
    return Scores(values, n, unavailable, features, protocol)


class _Untouched:
    """The frames every metric is handed, checked after each metric for in-place writes: version
    counters catch torch's in-place ops, a wrapping integer sum of each tensor's bits catches writes
    that bypass them (``.data``, numpy views) and, unlike a float sum, does not depend on the order
    of summation. Cheaper than a copy per metric: one read of the frames, no allocation."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.tensors = tensors
        self.state = self._state()

    def _state(self) -> tuple[list[int], torch.Tensor]:
        sums = torch.stack([_bit_sum(t) for t in self.tensors])
        return [t._version for t in self.tensors], sums

    def check(self, metric: Any) -> None:
        versions, sums = self._state()
        before_versions, before_sums = self.state
        if versions != before_versions or not torch.equal(sums, before_sums):
            raise PluginError(f"metric '{metric.name}'{_origin('metric', metric.name, metric)} wrote into the frames it scores "
                              "(pred or target, in place); every metric after it would score changed frames. Compute "
                              "on copies (e.g. pred.clone() or out-of-place ops) instead")
        self.state = versions, sums


_INTS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bit_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t``'s elements read as integers (wrapping), as an int64 scalar."""
    t = t.detach()
    size = t.element_size()
    bits = t.view(_INTS[size]) if size in _INTS else t.view(torch.int64)
    return bits.sum(dtype=torch.int64 if size == 8 else torch.int32).long()


def _origin(kind: str, name: str, obj: Any = None) -> str:
    """`` from plugin 'p' (dist version)`` when the process-wide harness registered ``name`` (as ``obj``,
    when given), else ``""``."""
    from vpbench import plugins

    harness = plugins._HARNESS
    if harness is None:
        return ""
    registry = {"metric": harness.metrics, "model": harness.models, "dataset": harness.datasets}[kind]
    if name not in registry or (obj is not None and registry.get(name) is not obj):
        return ""
    return f" from {registry.entry(name).source}"


def clips_scored(n_split: int, max_clips: int) -> int:
    """How many clips of a split of ``n_split`` are scored: the first ``max_clips`` (0: all)."""
    return n_split if max_clips <= 0 else min(n_split, max_clips)


def _stack_features(parts: list[np.ndarray | None]) -> np.ndarray:
    found = [p for p in parts if p is not None]
    dim = found[0].shape[1] if found else 0
    return np.concatenate([p if p is not None else np.full((0, dim), np.nan) for p in parts]) if found \
        else np.zeros((0, 0))


def _set_features(metric, clips: torch.Tensor, unavailable: dict[str, str], events: Events) -> np.ndarray | None:
    """``metric.features(clips)`` as float64 ``(B, D)``, checked; None once the metric is unavailable."""
    if metric.name in unavailable:
        return None
    try:
        values = metric.features(clips)
    except MetricUnavailable as exc:
        unavailable[metric.name] = str(exc)
        events.message(f"{metric.name}: n/a. {exc}")
        return None
    except Exception as exc:
        raise PluginError(f"metric '{metric.name}' raised in features: {one_line(exc)}") from exc
    if not torch.is_tensor(values) or values.dim() != 2 or values.shape[0] != clips.shape[0]:
        shape = tuple(values.shape) if torch.is_tensor(values) else type(values).__name__
        raise PluginError(f"metric '{metric.name}': features returned {shape}, expected ({clips.shape[0]}, D): "
                          "one feature vector per clip")
    if not torch.isfinite(values).all():
        raise PluginError(f"metric '{metric.name}': features returned NaN or Inf")
    return values.detach().double().cpu().numpy()


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
    """``metrics`` plus, with ``samples`` K > 1, the best-, mean- and worst-of-K views of each
    per-frame metric (set-level metrics score the first sample and get none)."""
    out = list(metrics)
    if samples > 1:
        for m in metrics:
            if is_set_metric(m):
                continue
            out += [Derived(f"{m.name}@{kind}{samples}", m.unit, m.higher_is_better, str(m.version))
                    for kind in ("best", "mean", "worst")]
    return out


def tidy(scores: Scores, metrics: Sequence[Any], meta: dict[str, Any], resamples: int = 1000) -> pd.DataFrame:
    """One row per metric x horizon (``all`` and 1..n_out) with value and 95% CI; a set-level
    metric has one row (``all``), plus ``NAME@std{R}`` with the spread over R > 1 draws."""
    rows = []
    for metric in metrics:
        if is_set_metric(metric):
            rows += _set_rows(scores, metric, meta, resamples)
            continue
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


def _set_rows(scores: Scores, metric, meta: dict[str, Any], resamples: int) -> list[dict[str, Any]]:
    pred, true = scores.features.get(metric.name, (np.zeros((0, 0)), np.zeros((0, 0))))
    s = set_summary(metric, pred, true, scores.protocol, resamples, seed=meta.get("seed", 0))
    base = {**meta, "horizon": "all", "n_clips": s["n_clips"], "unit": metric.unit,
            "higher_is_better": bool(metric.higher_is_better), "metric_version": str(getattr(metric, "version", ""))}
    rows = [{**base, "metric": metric.name, "value": s["value"], "ci_low": s["ci_low"], "ci_high": s["ci_high"]}]
    repeats = scores.protocol.repeats if scores.protocol is not None else 1
    if repeats > 1:
        rows.append({**base, "metric": f"{metric.name}@std{repeats}", "value": s["std"], "ci_low": np.nan,
                     "ci_high": np.nan})
    return rows


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


def training_rows(record: Any, meta: dict[str, Any]) -> pd.DataFrame:
    """What training cost (a run's ``training.json`` record): optimiser steps, counted training FLOPs
    and measured wall time, on the device it ran on. Empty without a record (runs trained before it was kept)."""
    if record is None:
        return pd.DataFrame(columns=COLUMNS)
    rows = [("train_steps", record.steps_taken, "count", False), ("train_flops", record.flops, "FLOPs", False),
            ("train_time", record.seconds, "s", False)]
    return cost_rows(rows, {**meta, "device": record.device})


def predict_first(model: torch.nn.Module, split: Any, spec: DataSpec, model_name: str, device: torch.device,
                  count: int) -> list[torch.Tensor]:
    """Predictions (CPU) for the first ``count`` clips of ``split``, one clip at a time."""
    out = []
    for i in range(min(count, len(split))):
        context, _ = split[i]
        with torch.no_grad():
            out.append(predict(model, context[None].to(device), spec, model_name)[0].cpu())
    return out
