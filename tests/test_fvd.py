"""FVD and the set-level metric kind: I3D shapes and receptive field, the float64 Frechet distance
against scipy, streaming, bootstrap, repeats, the n/a path and the protocol's clear errors."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from vpbench.builtin.bair import BAIRFVD
from vpbench.builtin.digits import Digits, DigitsConfig
from vpbench.builtin.trivial import CopyLast
from vpbench.config import EvalConfig
from vpbench.errors import ConfigError, MetricUnavailable, RegistryError
from vpbench.evaluate import SetProtocol, derived_metrics, score, set_protocol, tidy
from vpbench.metrics import fvd as fvdmod
from vpbench.metrics.fvd import FVD, check_state_dict, frechet_distance, frechet_from_stats
from vpbench.metrics.i3d import I3D, MIN_FRAMES, MIN_SIZE, feature_size
from vpbench.protocols import DataSpec, is_set_metric, member, validate_metric
from vpbench.stats import paired_set_difference, set_summary

TINY = dict(width=0.125, pool=(2, 1, 1))  # the real structure at 1/8 of the channels, any frame size


def tiny_fvd() -> FVD:
    torch.manual_seed(0)
    return FVD(I3D(**TINY).eval())


def test_receptive_field_arithmetic():
    assert feature_size(16, 224, 224) == (2, 7, 7)  # the usual protocol: exactly the (2, 7, 7) pool
    assert (MIN_FRAMES, MIN_SIZE) == (9, 193)
    assert feature_size(8, 192, 192) == (1, 6, 6) and feature_size(9, 193, 193) == (2, 7, 7)
    net = I3D(**TINY).eval()
    for t in (1, 5, 8, 9, 16, 17):
        for h in (32, 40):
            out = net.trunk(torch.zeros(1, 3, t, h, h))
            assert tuple(out.shape[2:]) == feature_size(t, h, h), (t, h)
    assert out.shape[1] == net.features_dim == 128  # 1024 channels at width 1/8


def test_i3d_shapes_and_minimum_clip():
    net = I3D(**TINY).eval()
    assert net.min_frames == 9
    with torch.no_grad():
        assert tuple(net(torch.zeros(2, 3, 9, 32, 32)).shape) == (2, 400)
        with pytest.raises(ValueError, match="at least 9 frames"):
            net(torch.zeros(2, 3, 8, 32, 32))
    full = I3D()
    assert full.min_frames == 9 and full.min_size == 193
    assert sum(p.numel() for p in full.parameters()) == 12_697_264
    keys = full.state_dict()
    assert "Mixed_5c.b3b.bn.running_var" in keys and tuple(keys["logits.conv3d.weight"].shape) == (400, 1024, 1, 1, 1)
    with pytest.raises(ValueError, match="193x193"):
        full(torch.zeros(1, 3, 16, 64, 64))


def test_state_dict_check_names_missing_and_misshaped_keys():
    net = I3D(**TINY)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    check_state_dict(net, state)  # num_batches_tracked may be absent
    broken = dict(state)
    del broken["Mixed_4b.b0.conv3d.weight"]
    with pytest.raises(MetricUnavailable, match="missing Mixed_4b.b0.conv3d.weight"):
        check_state_dict(net, broken)
    broken = dict(state, **{"logits.conv3d.bias": torch.zeros(3)})
    with pytest.raises(MetricUnavailable, match="shape logits.conv3d.bias"):
        check_state_dict(net, broken)


def test_features_are_deterministic_and_grey_is_repeated():
    metric = tiny_fvd()
    clips = torch.rand(3, 9, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    a, b = metric.features(clips), metric.features(clips.clone())
    assert a.shape == (3, 400) and torch.equal(a, b)
    assert torch.equal(a, metric.features(clips.expand(-1, -1, 3, -1, -1)))


def _scipy_frechet(x, y):
    linalg = pytest.importorskip("scipy.linalg")
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@pytest.mark.parametrize("n, d", [(200, 16), (300, 40), (12, 40)])  # the D x D route and the small-set (Gram) route
def test_frechet_distance_matches_scipy_sqrtm(n, d):
    rng = np.random.default_rng(d)
    x = rng.normal(0, 1, (n, d)) @ rng.normal(0, 1, (d, d))
    y = rng.normal(0.3, 1, (n, d)) @ rng.normal(0, 1, (d, d))
    expected = _scipy_frechet(x, y)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)
    if n > d:
        assert frechet_from_stats(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)) == \
            pytest.approx(expected, rel=1e-6)


def test_frechet_distance_is_exactly_zero_for_equal_sets():
    x = np.random.default_rng(0).normal(size=(50, 20))
    assert frechet_distance(x, x.copy()) == 0.0
    assert FVD(I3D(**TINY)).score(torch.from_numpy(x), torch.from_numpy(x)) == 0.0
    assert frechet_distance(x, x + 1e-3) > 0


def test_bootstrap_ci_and_repeats():
    class MeanGap:  # a set metric whose score is the distance of the set means
        name, version, higher_is_better, unit = "gap", "1", False, ""

        def features(self, clips):
            return clips.flatten(1)

        def score(self, pred_feats, true_feats):
            return float((pred_feats.mean(0) - true_feats.mean(0)).abs().sum())

    rng = np.random.default_rng(0)
    true = rng.normal(0, 1, (400, 2))
    pred = true + rng.normal(1, 1, (400, 2))
    s = set_summary(MeanGap(), pred, true, SetProtocol(), resamples=300, seed=1)
    assert s["ci_low"] < s["value"] < s["ci_high"] and math.isnan(s["std"]) and s["n_clips"] == 400
    again = set_summary(MeanGap(), pred, true, SetProtocol(), resamples=300, seed=1)
    assert {k: v for k, v in again.items() if k != "std"} == {k: v for k, v in s.items() if k != "std"}  # seeded
    r = set_summary(MeanGap(), pred, true, SetProtocol(clips=100, repeats=5), resamples=100, seed=1)
    assert r["n_clips"] == 100 and r["std"] > 0 and (r["ci_high"] - r["ci_low"]) > (s["ci_high"] - s["ci_low"])
    assert paired_set_difference(MeanGap(), (pred, true), (pred, true), 50) == {"diff": 0.0, "ci_low": 0.0,
                                                                               "ci_high": 0.0}
    better = paired_set_difference(MeanGap(), (pred, true), (true + 0.01, true), 200)
    assert better["ci_high"] < 0  # the second set is closer on every resample


class Shifted(CopyLast):
    name = "shifted"

    def predict(self, context, n_out):
        return (super().predict(context, n_out) * 0.8).clamp(0, 1)


def _digits(n_out=9):
    return Digits(DigitsConfig(n_test=10, n_in=2, n_out=n_out, size=32, glyph_size=14))


def test_streaming_equals_all_at_once_and_tidy_row():
    data = _digits()
    metric = tiny_fvd()
    protocol = SetProtocol(resize=0)
    kw = dict(model_name="shifted", device=torch.device("cpu"), protocol=protocol)
    small = score(Shifted(None, data.spec), data.split("test"), data.spec, [metric], batch_size=3, **kw)
    whole = score(Shifted(None, data.spec), data.split("test"), data.spec, [metric], batch_size=10, **kw)
    (ps, ts), (pw, tw) = small.features["fvd"], whole.features["fvd"]
    assert ps.shape == (10, 400) and np.allclose(ps, pw, atol=1e-5) and np.allclose(ts, tw, atol=1e-5)
    clips = torch.stack([data.split("test")[i][1] for i in range(10)])
    assert np.allclose(tw, metric.features(clips).double().numpy(), atol=1e-5)  # predictions only by default
    table = tidy(whole, [metric], {"run": "r", "model": "shifted", "variant": "v", "dataset": "digits",
                                   "split": "test", "seed": 0}, resamples=20)
    assert list(table["metric"]) == ["fvd"] and list(table["horizon"]) == ["all"]  # no per-horizon rows
    row = table.iloc[0]
    assert row["value"] == pytest.approx(metric.score(torch.from_numpy(pw), torch.from_numpy(tw))) and row["value"] > 0
    assert row["ci_low"] <= row["ci_high"] and row["n_clips"] == 10


def test_context_and_resize_shape_what_the_metric_sees():
    seen = []

    class Record:
        name, version, higher_is_better, unit = "rec", "1", False, ""

        def features(self, clips):
            seen.append(tuple(clips.shape))
            return clips.flatten(2).mean(-1)

        def score(self, pred_feats, true_feats):
            return 0.0

    data = _digits(n_out=3)
    kw = dict(model_name="copylast", device=torch.device("cpu"), batch_size=10)
    score(CopyLast(None, data.spec), data.split("test"), data.spec, [Record()],
          protocol=SetProtocol(include_context=True, frames=4, resize=48), **kw)
    assert seen == [(10, 4, 1, 48, 48)] * 2


def test_the_bair_datasets_declare_fvd_on_context_and_predictions():
    from vpbench.plugins import get_harness

    datasets = get_harness().datasets
    declared = {n for n in datasets.names() if member(datasets.get(n), "fvd_includes_context", "dataset")}
    assert declared == {"bair", "bair2", "bair_fvd"}


def test_protocol_defaults_overrides_and_clear_errors():
    fvd = FVD(I3D(**TINY))
    spec = DataSpec(1, 15, 3, 64, 64)
    bair = set_protocol(EvalConfig(), "bair_fvd", spec, 256, [fvd], BAIRFVD.fvd_includes_context)
    assert bair.include_context and "bair_fvd" in bair.include_context_source  # 16-frame clips
    off = set_protocol(EvalConfig(fvd_include_context=False), "bair_fvd", spec, 256, [fvd], BAIRFVD.fvd_includes_context)
    assert not off.include_context and off.describe()["include_context_from"] == "eval.fvd_include_context"
    mmnist = set_protocol(EvalConfig(), "mmnist", DataSpec(10, 10, 1, 64, 64), 100, [fvd])
    assert not mmnist.include_context  # Moving MNIST: the 10 predicted frames
    with pytest.raises(ConfigError, match="fvd needs clips of at least 9 frames but gets 5.*eval.fvd_include_context=true"):
        set_protocol(EvalConfig(), "kth", DataSpec(10, 5, 1, 64, 64), 100, [fvd])
    with pytest.raises(ConfigError, match="eval.fvd_frames=20 but the clips have 16 frames.*never padded"):
        set_protocol(EvalConfig(fvd_frames=20), "bair_fvd", spec, 256, [fvd], BAIRFVD.fvd_includes_context)
    with pytest.raises(ConfigError, match="eval.fvd_clips=300 but only 256"):
        set_protocol(EvalConfig(fvd_clips=300), "bair_fvd", spec, 256, [fvd], BAIRFVD.fvd_includes_context)
    with pytest.raises(ConfigError, match="eval.fvd_repeats=4 needs 0 < eval.fvd_clips < 256"):
        set_protocol(EvalConfig(fvd_repeats=4), "bair_fvd", spec, 256, [fvd], BAIRFVD.fvd_includes_context)
    assert set_protocol(EvalConfig(fvd_clips=100, fvd_repeats=4, samples=3), "bair_fvd", spec, 256,
                        [fvd], BAIRFVD.fvd_includes_context).describe()["sample"] == "the first of 3 per clip"


def test_set_metric_registration_and_no_derived_views():
    fvd = FVD()
    assert is_set_metric(fvd) and validate_metric(fvd) == "fvd"
    assert [m.name for m in derived_metrics([fvd], 4)] == ["fvd"]
    bad = FVD()
    bad.min_frames = 0
    with pytest.raises(RegistryError, match="min_frames"):
        validate_metric(bad)


def test_without_weights_fvd_is_na_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("VPBENCH_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(fvdmod.WEIGHTS_ENV, raising=False)
    metric = FVD()
    with pytest.raises(MetricUnavailable) as info:
        metric.features(torch.rand(1, 16, 3, 224, 224))
    line = str(info.value)
    assert "\n" not in line and "i3d_pretrained_400.pt" in line and str(tmp_path) in line
    data = _digits()
    scores = score(Shifted(None, data.spec), data.split("test"), data.spec, [FVD()], model_name="shifted",
                   device=torch.device("cpu"), batch_size=5)
    assert "fvd" in scores.unavailable
    row = tidy(scores, [FVD()], {"seed": 0}, resamples=10).iloc[0]
    assert math.isnan(row["value"]) and row["metric"] == "fvd"


def test_conformance_suite_skips_fvd_without_weights(tmp_path, monkeypatch, harness):
    from vpbench import testing

    monkeypatch.setenv("VPBENCH_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(fvdmod.WEIGHTS_ENV, raising=False)
    cases = testing.metric_cases(harness, "fvd")
    assert len(cases) == 8  # four checks, on 1- and 3-channel clips
    outcomes = [testing.outcome(c) for c in cases]
    assert {o.status for o in outcomes} == {"skipped"}, [(o.case, o.status, o.detail) for o in outcomes]


def test_conformance_suite_passes_a_set_metric(harness, monkeypatch):
    from vpbench import testing

    monkeypatch.setattr(harness.metrics.get("fvd"), "_net", I3D(**TINY).eval())
    outcomes = [testing.outcome(c) for c in testing.metric_cases(harness, "fvd")]
    assert {o.status for o in outcomes} == {"passed"}, [(o.case, o.status, o.detail) for o in outcomes]


@pytest.mark.slow
def test_fvd_with_the_real_weights():
    """Needs i3d_pretrained_400.pt (not on our machines): FVD(set, set) = 0; a noised set scores higher."""
    if not fvdmod.weights_path().is_file():
        pytest.skip(f"no I3D weights at {fvdmod.weights_path()}")
    metric = FVD()
    gen = torch.Generator().manual_seed(0)
    clips = torch.rand(8, 16, 3, 64, 64, generator=gen)
    clips = fvdmod.resize_clips(clips, 224)
    real = metric.features(clips)
    noised = metric.features((clips + 0.2 * torch.randn(clips.shape, generator=gen)).clamp(0, 1))
    assert metric.score(real, real.clone()) == 0.0
    assert metric.score(noised, real) > 0.0
    assert metric.score(noised, real) > metric.score(metric.features(clips.flip(0)), real)


def test_replace_keeps_protocol_frozen():
    p = SetProtocol()
    assert replace(p, clips=5).clips == 5 and p.clips == 0
