"""The plugin conformance suite: the contract every model, dataset and metric must meet.

Run it with ``vpbench check NAME`` (a plugin's entry-point name, its distribution, or one
model, dataset or metric), or from a plugin's own tests::

    import pytest
    from vpbench import testing

    @pytest.mark.parametrize("case", testing.cases("myplugin"), ids=str)
    def test_vpbench_contract(case):
        testing.run(case)

A model is checked on small real digits, on every dataset its own plugin registers (its
channel count and frame size), and on three-channel frames. A metric is checked on one and
three channels. A plugin that could not be loaded yields one failing case that says why,
never an empty suite.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from vpbench import config as cfgmod
from vpbench.errors import ConfigError, DataError, MetricUnavailable, RegistryError, VPBenchError, one_line
from vpbench.evaluate import check_prediction, check_spec, predict
from vpbench.plugins import Harness, get_harness
from vpbench.protocols import SPLITS, DataSpec, enter_stage, is_set_metric, member
from vpbench.registry import suggest
from vpbench.runtime import seed_everything

SMALL_DIGITS = ["data.n_train=8", "data.n_val=4", "data.n_test=4", "data.n_in=4", "data.n_out=3", "data.size=32",
                "data.glyph_size=14", "data.glyph_bank=8"]
RGB_SPEC = DataSpec(n_in=4, n_out=3, channels=3, height=32, width=32)
INFO_KEYS = ("source", "licence", "citation", "protocol")


class CheckSkipped(Exception):
    """A check that cannot run here (data not on disk, a metric without its weights)."""


@dataclass(frozen=True)
class Case:
    """One check of one registered object: ``case.fn()`` passes, raises AssertionError, or skips."""

    kind: str  # model | dataset | metric | tracker | plugin
    name: str
    check: str
    fn: Callable[[], None]
    on: str = ""  # the data it runs on: a dataset name or a frame layout

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}:{self.check}" + (f"@{self.on}" if self.on else "")


@dataclass(frozen=True)
class Outcome:
    case: Case
    status: str  # passed | failed | skipped
    message: str = ""


def run(case: Case) -> None:
    """Run ``case`` inside pytest: a skipped check becomes ``pytest.skip`` with its reason."""
    try:
        case.fn()
    except CheckSkipped as exc:
        if "pytest" in sys.modules:
            import pytest

            pytest.skip(f"{case}: {exc}")
        raise


def outcome(case: Case) -> Outcome:
    """Run ``case`` and say how it went (what ``vpbench check`` prints)."""
    try:
        case.fn()
    except CheckSkipped as exc:
        return Outcome(case, "skipped", str(exc))
    except AssertionError as exc:
        return Outcome(case, "failed", str(exc) or "assertion failed")
    except Exception as exc:  # a plugin raising is a failed check, with the plugin's message
        return Outcome(case, "failed", one_line(exc))
    return Outcome(case, "passed")


# -- which objects a target names ----------------------------------------------------------------
def cases(target: str | None = None, harness: Harness | None = None, data_dir: str | Path | None = None) -> list[Case]:
    """Every check of ``target`` (a plugin, distribution, model, dataset or metric; ``None``: all)."""
    harness = harness or get_harness()
    root = Path(data_dir) if data_dir is not None else None
    records = [r for r in harness.records if target in (None, r.name, r.distribution)]
    out: list[Case] = []
    for r in records:
        if r.error:
            out.append(Case("plugin", r.name, "loads", _fails(f"plugin '{r.name}' ({r.distribution}) could not be "
                                                               f"loaded: {r.error}")))
    if records:
        models = [m for r in records for m in r.registered.models]
        datasets = [d for r in records for d in r.registered.datasets]
        metrics = [m for r in records for m in r.registered.metrics]
        trackers = [t for r in records for t in r.registered.trackers]
        if not (models or datasets or metrics or trackers or out):
            out.append(Case("plugin", target or "all", "registers something",
                            _fails(f"plugin '{target}' registered no model, dataset or metric")))
    elif target in harness.models or target in harness.datasets or target in harness.metrics or target in harness.trackers:
        models = [target] if target in harness.models else []
        datasets = [target] if target in harness.datasets else []
        metrics = [target] if target in harness.metrics else []
        trackers = [target] if target in harness.trackers else []
    else:
        known = sorted({r.name for r in harness.records} | {r.distribution for r in harness.records}
                       | set(harness.models.names()) | set(harness.datasets.names()) | set(harness.metrics.names()))
        raise RegistryError(f"nothing called '{target}' is installed{suggest(str(target), known)}: give a plugin, "
                            "a distribution, or a model, dataset or metric name (see `vpbench plugins`)")
    for name in models:
        out += model_cases(harness, name, root)
    for name in datasets:
        out += dataset_cases(harness, name, root)
    for name in metrics:
        out += metric_cases(harness, name)
    for name in trackers:
        out.append(Case("tracker", name, "starts, logs and finishes", _bind(_tracker_round_trip, harness, name)))
    return out


def _fails(message: str) -> Callable[[], None]:
    def fn() -> None:
        raise AssertionError(message)
    return fn


def _own_datasets(harness: Harness, model: str) -> list[str]:
    """The datasets registered by the plugin that registered ``model``, digits aside."""
    for r in harness.records:
        if model in r.registered.models:
            return [d for d in r.registered.datasets if d != "digits"]
    return []


# -- models --------------------------------------------------------------------------------------
@dataclass
class _Setup:
    """A model built for one data layout, with two clips of that layout."""

    model: torch.nn.Module
    spec: DataSpec
    context: torch.Tensor
    future: torch.Tensor


def _build(harness: Harness, name: str, on: str, root: Path | None, seed: int = 0) -> _Setup:
    cls = harness.models.get(name)
    preset = "smoke" if any(k.split("@")[0] == "smoke" for k in member(cls, "presets")) else "none"
    dataset = "digits" if on == "rgb" else on
    sets = SMALL_DIGITS if dataset == "digits" else []
    try:
        cfg = cfgmod.resolve(name, cls, harness.datasets.get, dataset=dataset, preset=preset, sets=sets, seed=seed)
    except ConfigError as exc:
        raise CheckSkipped(f"model '{name}' does not take dataset {dataset}: {exc}") from None
    if on == "rgb":
        spec = RGB_SPEC
        gen = torch.Generator().manual_seed(seed)
        context = torch.rand(2, spec.n_in, *spec.frame_shape, generator=gen)
        future = torch.rand(2, spec.n_out, *spec.frame_shape, generator=gen)
    else:
        data = _open_dataset(harness, dataset, cfg.data, root)
        spec = data.spec
        split = data.split("test")
        items = [split[i] for i in range(min(2, len(split)))]
        context, future = torch.stack([c for c, _ in items]), torch.stack([f for _, f in items])
    seed_everything(seed)
    try:
        model = cls(cfg.model, spec)
    except ConfigError as exc:
        raise CheckSkipped(f"model '{name}' declines {spec.channels}-channel {spec.height}x{spec.width} frames: "
                           f"{exc}") from None
    return _Setup(model, spec, context, future)


def _open_dataset(harness: Harness, name: str, config: Any, root: Path | None) -> Any:
    from vpbench.runs import open_dataset

    try:
        return open_dataset(harness, name, config, root)
    except (DataError, ConfigError) as exc:
        raise CheckSkipped(f"dataset {name} needs data or settings not available here: {exc}") from None


def model_cases(harness: Harness, name: str, root: Path | None = None) -> list[Case]:
    layouts = ["digits", *_own_datasets(harness, name), "rgb"]
    checks: list[tuple[str, Callable[[Harness, str, str, Path | None], None]]] = [
        ("predicts the contract shape and range", _model_shape),
        ("never sees the future", _model_causal),
        ("is deterministic under a seed", _model_deterministic),
        ("leaves its input unchanged", _model_pure),
        ("trains every stage with a differentiable loss", _model_trains),
    ]
    return [Case("model", name, check, _bind(fn, harness, name, on, root), on) for on in layouts for check, fn in checks]


def _bind(fn: Callable[..., None], *args: Any) -> Callable[[], None]:
    return lambda: fn(*args)


def _model_shape(harness: Harness, name: str, on: str, root: Path | None) -> None:
    s = _build(harness, name, on, root)
    s.model.eval()
    with torch.no_grad():
        pred = s.model.predict(s.context.clone(), s.spec.n_out)
    try:
        check_prediction(pred, s.context, s.spec, name)
    except VPBenchError as exc:
        raise AssertionError(str(exc)) from None


def _model_causal(harness: Harness, name: str, on: str, root: Path | None) -> None:
    a_setup = _build(harness, name, on, root)
    a_setup.model.eval()
    with torch.no_grad():
        seed_everything(1)
        a = predict(a_setup.model, a_setup.context, a_setup.spec, name)
        seed_everything(1)
        b = predict(a_setup.model, a_setup.context, a_setup.spec, name)
    assert torch.equal(a, b), (f"model '{name}': two predictions of the same context under the same seed differ "
                               "(predict must depend on the context and the random stream only)")
    clip = torch.cat([a_setup.context, torch.rand_like(a_setup.future)], 1)  # nothing for predict to peek at
    with torch.no_grad():
        seed_everything(1)
        c = predict(a_setup.model, clip[:, : a_setup.spec.n_in], a_setup.spec, name)
    assert torch.equal(a, c), f"model '{name}': the prediction changed when only the future frames changed"


def _model_deterministic(harness: Harness, name: str, on: str, root: Path | None) -> None:
    one, two = _build(harness, name, on, root, seed=3), _build(harness, name, on, root, seed=3)
    s1, s2 = one.model.state_dict(), two.model.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1), (
        f"model '{name}': two models built under seed 3 have different weights")
    one.model.eval()
    two.model.eval()
    with torch.no_grad():
        seed_everything(5)
        p1 = one.model.predict(one.context.clone(), one.spec.n_out)
        seed_everything(5)
        p2 = two.model.predict(one.context.clone(), one.spec.n_out)
    assert torch.equal(p1, p2), f"model '{name}': equal models predict differently under the same seed"


def _model_pure(harness: Harness, name: str, on: str, root: Path | None) -> None:
    s = _build(harness, name, on, root)
    s.model.eval()
    context = s.context.clone()
    with torch.no_grad():
        s.model.predict(context, s.spec.n_out)
    assert torch.equal(context, s.context), (f"model '{name}': predict wrote into its input tensor (the context) in "
                                             "place; clone it before editing (the harness hands predict a copy, "
                                             "other callers may not)")


def _model_trains(harness: Harness, name: str, on: str, root: Path | None) -> None:
    s = _build(harness, name, on, root)
    stages = s.model.stages()
    names = [st.name for st in stages]
    assert len(set(names)) == len(names), f"model '{name}': stage names repeat: {names}"
    for stage in stages:
        enter_stage(s.model, stage)
        losses = s.model.training_step((s.context, s.future), stage.name)
        assert isinstance(losses, dict) and "loss" in losses, (
            f"model '{name}': training_step of stage '{stage.name}' returned {type(losses).__name__} without 'loss'")
        loss = losses["loss"]
        assert torch.is_tensor(loss) and loss.dim() == 0 and torch.isfinite(loss), (
            f"model '{name}': stage '{stage.name}' loss is not a finite scalar tensor")
        params = [p for p in stage.params() if p.requires_grad]
        assert params, f"model '{name}': stage '{stage.name}' has no trainable parameters"
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        assert any(g is not None and bool(g.abs().sum() > 0) for g in grads), (
            f"model '{name}': the loss of stage '{stage.name}' does not depend on the stage's parameters")
        member(s.model, "on_stage_end")(stage.name)


# -- datasets ------------------------------------------------------------------------------------
def dataset_cases(harness: Harness, name: str, root: Path | None = None) -> list[Case]:
    checks = [("yields clips of its spec in [0, 1]", _dataset_items), ("indexes deterministically", _dataset_repeat),
              ("has train, val and test splits", _dataset_splits), ("says where its data comes from", _dataset_info)]
    return [Case("dataset", name, check, _bind(fn, harness, name, root)) for check, fn in checks]


def _dataset_items(harness: Harness, name: str, root: Path | None) -> None:
    data = _open_dataset(harness, name, None, root)
    spec, split = data.spec, data.split("test")
    assert isinstance(spec, DataSpec), f"dataset {name}: spec is {type(spec).__name__}, not a DataSpec"
    check_spec(spec, name)
    for i in range(min(3, len(split))):
        context, future = split[i]
        assert tuple(context.shape) == (spec.n_in, *spec.frame_shape), (
            f"dataset {name}: context of clip {i} is {tuple(context.shape)}, spec says {(spec.n_in, *spec.frame_shape)}")
        assert tuple(future.shape) == (spec.n_out, *spec.frame_shape), (
            f"dataset {name}: future of clip {i} is {tuple(future.shape)}, spec says {(spec.n_out, *spec.frame_shape)}")
        for part, frames in (("context", context), ("future", future)):
            assert frames.dtype == torch.float32, f"dataset {name}: {part} is {frames.dtype}, not float32"
            assert 0 <= float(frames.min()) and float(frames.max()) <= 1, f"dataset {name}: {part} leaves [0, 1]"


def _dataset_repeat(harness: Harness, name: str, root: Path | None) -> None:
    one, two = _open_dataset(harness, name, None, root), _open_dataset(harness, name, None, root)
    a, b = one.split("test")[0], two.split("test")[0]
    again = one.split("test")[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[0], again[0]), (
        f"dataset {name}: clip 0 of the test split differs between reads (every model must see the same clips)")


def _dataset_splits(harness: Harness, name: str, root: Path | None) -> None:
    data = _open_dataset(harness, name, None, root)
    for part in SPLITS:
        assert len(data.split(part)) > 0, f"dataset {name}: split {part} is empty"


def _dataset_info(harness: Harness, name: str, root: Path | None) -> None:
    info = _open_dataset(harness, name, None, root).info()
    missing = [k for k in INFO_KEYS if k not in info]
    assert not missing, f"dataset {name}: info() lacks {', '.join(missing)}"


# -- metrics -------------------------------------------------------------------------------------
def metric_cases(harness: Harness, name: str) -> list[Case]:
    if is_set_metric(harness.metrics.get(name)):
        set_checks = [("embeds every clip", _set_shape), ("scores a set against itself best", _set_best),
                      ("is deterministic", _set_deterministic), ("leaves its input unchanged", _set_pure)]
        return [Case("metric", name, check, _bind(fn, harness, name, channels), f"{channels}ch")
                for channels in (1, 3) for check, fn in set_checks]
    checks = [("scores every frame", _metric_shape), ("scores identical frames best", _metric_best),
              ("is deterministic", _metric_deterministic), ("leaves its inputs unchanged", _metric_pure)]
    return [Case("metric", name, check, _bind(fn, harness, name, channels), f"{channels}ch")
            for channels in (1, 3) for check, fn in checks]


def _tracker_round_trip(harness: Harness, name: str) -> None:
    """Build the tracker, then start / log / log_media / finish on a temporary run directory, without
    a real server (``MLFLOW_TRACKING_URI`` unset, ``WANDB_MODE=offline``)."""
    import os
    import tempfile
    from unittest import mock

    from vpbench.errors import ConfigError

    try:
        tracker = harness.trackers.get(name)()
    except ConfigError as exc:  # its package is not installed
        raise CheckSkipped(str(exc)) from None
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"WANDB_MODE": "offline"}
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, env, clear=True):
        run_dir = Path(tmp) / "run"
        run_dir.mkdir()
        image = run_dir / "strip.png"
        from PIL import Image

        Image.new("RGB", (8, 4), (255, 0, 0)).save(image)
        tracker.start(run_dir, {"model_name": "check", "train": {"lr": 0.001}}, {"seed": 0})
        tracker.log({"train/loss": 0.5}, 1)
        tracker.log({"test/mse": 0.25, "test/mse@h1": 0.2}, 2)
        tracker.log_media("examples/strip.png", image, 2)
        tracker.finish("success")


def _frames(channels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(2, 3, channels, 64, 64, generator=gen)
    near = (target + 0.05 * torch.randn(target.shape, generator=gen)).clamp(0, 1)
    return target, near


def _per_frame(harness: Harness, name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    metric = harness.metrics.get(name)
    try:
        values = metric.per_frame(pred, target)
    except MetricUnavailable as exc:
        raise CheckSkipped(f"metric {name} is unavailable here: {exc}") from None
    assert torch.is_tensor(values), f"metric {name}: per_frame returned {type(values).__name__}, not a tensor"
    return values


def _metric_shape(harness: Harness, name: str, channels: int) -> None:
    target, near = _frames(channels, 0)
    values = _per_frame(harness, name, near, target)
    assert tuple(values.shape) == (2, 3), f"metric {name}: per_frame returned {tuple(values.shape)}, expected (B, T) = (2, 3)"
    assert torch.isfinite(values).all(), f"metric {name}: per_frame returned NaN or Inf"


def _metric_best(harness: Harness, name: str, channels: int) -> None:
    metric = harness.metrics.get(name)
    target, near = _frames(channels, 1)
    far = torch.rand(target.shape, generator=torch.Generator().manual_seed(2))
    same, close, away = (_per_frame(harness, name, p, target).double() for p in (target.clone(), near, far))
    sign = 1.0 if metric.higher_is_better else -1.0
    assert torch.isfinite(same).all(), f"metric {name}: identical frames score NaN or Inf (clamp, e.g. PSNR's MSE floor)"
    worst_gap = float((sign * (same - close)).min())
    assert worst_gap >= 0, (f"metric {name}: identical frames score worse than noisy ones "
                            f"(higher_is_better={metric.higher_is_better}; check the sign)")
    assert bool((sign * (close - away) > 0).all()), (
        f"metric {name}: a slightly noisy prediction does not score better than an unrelated one "
        f"(higher_is_better={metric.higher_is_better})")


def _metric_deterministic(harness: Harness, name: str, channels: int) -> None:
    target, near = _frames(channels, 3)
    a, b = _per_frame(harness, name, near, target), _per_frame(harness, name, near.clone(), target.clone())
    assert torch.equal(a, b), f"metric {name}: the same frames scored twice give different values"


def _metric_pure(harness: Harness, name: str, channels: int) -> None:
    target, near = _frames(channels, 4)
    pred_seen, target_seen = near.clone(), target.clone()
    _per_frame(harness, name, pred_seen, target_seen)
    for part, seen, given in (("pred", pred_seen, near), ("target", target_seen, target)):
        assert torch.equal(seen, given), (f"metric {name}: per_frame wrote into its {part} tensor in place; the "
                                          "harness refuses such a metric (every metric after it would score changed "
                                          "frames): compute on copies or with out-of-place ops")


def _clips(harness: Harness, name: str, channels: int, seed: int) -> torch.Tensor:
    """Four random clips of the metric's ``min_frames`` frames (at least 4), at the size the evaluator
    gives set-level metrics by default (``eval.fvd_resize`` = 224)."""
    frames = max(4, int(member(harness.metrics.get(name), "min_frames", "set_metric")))
    return torch.rand(4, frames, channels, 224, 224, generator=torch.Generator().manual_seed(seed))


def _features(harness: Harness, name: str, clips: torch.Tensor) -> torch.Tensor:
    metric = harness.metrics.get(name)
    try:
        feats = metric.features(clips)
    except MetricUnavailable as exc:
        raise CheckSkipped(f"metric {name} is unavailable here: {exc}") from None
    assert torch.is_tensor(feats), f"metric {name}: features returned {type(feats).__name__}, not a tensor"
    return feats


def _set_shape(harness: Harness, name: str, channels: int) -> None:
    feats = _features(harness, name, _clips(harness, name, channels, 0))
    assert feats.dim() == 2 and feats.shape[0] == 4, (
        f"metric {name}: features returned {tuple(feats.shape)}, expected (B, D) = (4, D)")
    assert torch.isfinite(feats).all(), f"metric {name}: features returned NaN or Inf"


def _set_best(harness: Harness, name: str, channels: int) -> None:
    metric = harness.metrics.get(name)
    clips = _clips(harness, name, channels, 1)
    feats = _features(harness, name, clips)
    other = _features(harness, name, _clips(harness, name, channels, 2).mul(0.5))
    same, away = float(metric.score(feats, feats.clone())), float(metric.score(other, feats))
    sign = 1.0 if metric.higher_is_better else -1.0
    assert math.isfinite(same), f"metric {name}: a set scored against itself gives {same}"
    assert sign * (same - away) >= 0, (f"metric {name}: a set scored against itself ({same:.4g}) is worse than "
                                       f"against another set ({away:.4g}) (higher_is_better={metric.higher_is_better})")


def _set_deterministic(harness: Harness, name: str, channels: int) -> None:
    metric = harness.metrics.get(name)
    clips = _clips(harness, name, channels, 3)
    a, b = _features(harness, name, clips), _features(harness, name, clips.clone())
    assert torch.equal(a, b), f"metric {name}: the same clips embedded twice give different features"
    other = _features(harness, name, _clips(harness, name, channels, 4))
    assert float(metric.score(other, a)) == float(metric.score(other.clone(), a.clone())), (
        f"metric {name}: the same sets scored twice give different values")


def _set_pure(harness: Harness, name: str, channels: int) -> None:
    clips = _clips(harness, name, channels, 5)
    seen = clips.clone()
    _features(harness, name, seen)
    assert torch.equal(seen, clips), (f"metric {name}: features wrote into its clips in place; the harness refuses "
                                      "such a metric (the metrics after it would embed changed clips): compute on "
                                      "copies or with out-of-place ops")


def summary(outcomes: list[Outcome]) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for o in outcomes:
        counts[o.status] += 1
    return counts


__all__ = ["Case", "CheckSkipped", "Outcome", "cases", "dataset_cases", "metric_cases", "model_cases", "outcome",
           "run", "summary"]
