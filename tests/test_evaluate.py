"""Evaluation: contract checks on predictions, tidy rows, confidence intervals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vpbench.builtin.digits import Digits, DigitsConfig
from vpbench.builtin.trivial import Blank, CopyLast
from vpbench.errors import PluginError
from vpbench.evaluate import check_prediction, score, tidy
from vpbench.metrics.basic import METRICS
from vpbench.protocols import DataSpec
from vpbench.stats import bootstrap_ci, paired_difference

SPEC = DataSpec(2, 3, 1, 8, 8)


@pytest.mark.parametrize(
    "pred, message",
    [
        (torch.zeros(1, 2, 1, 8, 8), "shape \\(1, 2, 1, 8, 8\\), expected \\(1, 3, 1, 8, 8\\)"),
        (torch.full((1, 3, 1, 8, 8), 1.5), "values in \\[1.5, 1.5\\]"),
        (torch.full((1, 3, 1, 8, 8), float("nan")), "NaN or Inf"),
        (np.zeros((1, 3, 1, 8, 8)), "not a tensor"),
    ],
)
def test_prediction_contract_names_the_model(pred, message):
    with pytest.raises(PluginError, match=f"model 'bad'.*{message}"):
        check_prediction(pred, torch.zeros(1, 2, 1, 8, 8), SPEC, "bad")


def test_bootstrap_ci_covers_mean_and_shrinks_with_more_clips():
    rng = np.random.default_rng(0)
    small, large = rng.normal(5, 1, 50), rng.normal(5, 1, 5000)
    lo_s, hi_s = bootstrap_ci(small, 2000)
    lo_l, hi_l = bootstrap_ci(large, 2000)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5  # ~ 1/sqrt(100) = 1/10 in theory
    assert bootstrap_ci(small, 500, seed=3) == bootstrap_ci(small, 500, seed=3)
    assert np.isnan(bootstrap_ci(np.array([1.0]))[0])


def test_paired_difference_detects_a_consistent_gap():
    rng = np.random.default_rng(1)
    a = rng.normal(10, 5, 300)  # large between-clip spread
    b = a + 0.5 + rng.normal(0, 0.1, 300)  # small but consistent gain
    d = paired_difference(a, b)
    assert d["diff"] == pytest.approx(0.5, abs=0.05) and d["ci_low"] > 0.4
    with pytest.raises(ValueError):
        paired_difference(a, b[:10])


def test_score_and_tidy_rows_per_horizon():
    data = Digits(DigitsConfig(n_test=10, n_in=4, n_out=3))
    model = Blank(Blank.Config(), data.spec)
    metrics = [m for m in METRICS if m.name in ("mse", "ssim")]
    scores = score(model, data.split("test"), data.spec, metrics, model_name="blank", device=torch.device("cpu"),
                   batch_size=4, max_clips=7)
    assert scores.n_clips == 7 and scores.values["mse"].shape == (7, 3)
    # the blank frame's per-frame squared-error sum is the sum of squared pixel values
    truth = torch.stack([data.split("test")[i][1] for i in range(7)])
    np.testing.assert_allclose(scores.values["mse"], truth.pow(2).flatten(2).sum(-1).numpy(), rtol=1e-5)
    table = tidy(scores, metrics, {"run": "r", "model": "blank", "variant": "v", "dataset": "digits",
                                   "split": "test", "seed": 0}, resamples=200)
    assert len(table) == 2 * (1 + 3)
    assert list(table.query("metric == 'mse'")["horizon"]) == ["all", "1", "2", "3"]
    overall = table.query("metric == 'mse' and horizon == 'all'").iloc[0]
    assert overall["value"] == pytest.approx(scores.values["mse"].mean())
    assert overall["ci_low"] < overall["value"] < overall["ci_high"]


def test_predict_gets_a_private_copy_of_the_context():
    """A model cannot reach the future frames through the storage of its input."""
    seen = {}

    class Peek(CopyLast):
        def predict(self, context, n_out):
            seen["storage"] = context.untyped_storage().nbytes()
            return super().predict(context, n_out)

    clip = torch.rand(1, 5, 1, 8, 8)
    spec = DataSpec(2, 3, 1, 8, 8)
    from vpbench.evaluate import predict

    predict(Peek(None, spec), clip[:, :2], spec, "peek")
    assert seen["storage"] == 2 * 64 * 4  # only the two context frames


def test_samples_give_best_mean_and_worst_of_k():
    from vpbench.evaluate import derived_metrics

    class Noisy(CopyLast):
        name = "noisy"

        def predict(self, context, n_out):
            base = super().predict(context, n_out)
            return (base + 0.3 * torch.rand_like(base)).clamp(0, 1)

    data = Digits(DigitsConfig(n_test=6, n_in=2, n_out=2, size=32, glyph_size=14))
    metrics = [m for m in METRICS if m.name in ("mse", "ssim")]
    kw = dict(model_name="noisy", device=torch.device("cpu"), batch_size=3, samples=4, seed=7)
    a = score(Noisy(None, data.spec), data.split("test"), data.spec, metrics, **kw)
    b = score(Noisy(None, data.spec), data.split("test"), data.spec, metrics, **kw)
    assert all(np.array_equal(a.values[k], b.values[k]) for k in a.values)  # reproducible
    first, best, mean = a.values["mse"], a.values["mse@best4"], a.values["mse@mean4"]
    assert (best.mean(1) <= first.mean(1) + 1e-12).all() and (best.mean(1) <= mean.mean(1) + 1e-12).all()
    assert not np.allclose(first, mean)  # the four samples differ
    ssim_best = a.values["ssim@best4"].mean(1)
    assert (ssim_best >= a.values["ssim"].mean(1) - 1e-12).all()  # higher is better for SSIM
    worst = a.values["mse@worst4"]
    assert (worst.mean(1) >= first.mean(1) - 1e-12).all() and (worst.mean(1) >= mean.mean(1) - 1e-12).all()
    assert (a.values["ssim@worst4"].mean(1) <= a.values["ssim"].mean(1) + 1e-12).all()
    names = [m.name for m in derived_metrics(metrics, 4)]
    assert names == ["mse", "ssim", "mse@best4", "mse@mean4", "mse@worst4", "ssim@best4", "ssim@mean4", "ssim@worst4"]
    table = tidy(a, derived_metrics(metrics, 4), {"run": "r", "model": "noisy", "variant": "v", "dataset": "d",
                                                  "split": "test", "seed": 7}, resamples=50)
    assert set(table["metric"]) == set(names)
