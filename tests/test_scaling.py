"""Saturating power-law fits of metric against training FLOPs (vpbench.scaling)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vpbench import scaling
from vpbench.scaling import Curve, crossing, first_crossing, fit, fit_curve, fit_many

FLOPS = np.geomspace(4e12, 4e14, 5)


def ladder(curve: Curve, flops=FLOPS, clips: int = 500, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """(budgets, clips): the curve plus a per-clip difficulty shared by every budget (as real
    clips are) and independent noise per (budget, clip)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, noise, clips)
    return curve(flops)[:, None] + difficulty[None, :] + rng.normal(0, noise / 2, (len(flops), clips))


def test_noise_free_curve_is_recovered_exactly():
    true = Curve(alpha=0.5, asymptote=50.0, gap=100.0, c0=4e12)
    got = fit_curve(FLOPS, true(FLOPS))
    assert got.alpha == pytest.approx(0.5, rel=0.01)
    assert got.asymptote == pytest.approx(50.0, rel=0.01)
    assert got.gap == pytest.approx(100.0, rel=0.01)
    assert got.c0 == 4e12


@pytest.mark.parametrize("true", [Curve(0.5, 50.0, 100.0, 4e12),  # MSE-like: falls to its asymptote
                                  Curve(0.3, 0.85, -0.25, 4e12),  # SSIM-like: rises to it
                                  Curve(1.2, 10.0, 40.0, 4e12)])
def test_noisy_exponent_inside_its_bootstrap_ci(true):
    per_clip = ladder(true, noise=abs(true.gap) * 0.2, seed=1)
    result = fit(FLOPS, per_clip, resamples=400, seed=0)
    assert result.determined, result.reason
    lo, hi = result.alpha_ci
    assert lo < true.alpha < hi
    assert abs(result.curve.alpha - true.alpha) < 0.35 * true.alpha
    alo, ahi = result.asymptote_ci
    assert alo < true.asymptote < ahi
    assert result.replicates.shape == (400, 3)


def test_fewer_than_four_budgets_is_ill_determined():
    true = Curve(0.5, 50.0, 100.0, 4e12)
    result = fit(FLOPS[:3], ladder(true, FLOPS[:3]), resamples=50)
    assert not result.determined and "at least 4" in result.reason
    assert result.curve is None


def test_flat_metric_is_ill_determined():
    flat = Curve(0.5, 50.0, 0.0, 4e12)  # no trend, only clip noise
    result = fit(FLOPS, ladder(flat, noise=20.0, seed=3), resamples=100)
    assert not result.determined and "noise" in result.reason


def test_a_linear_trend_in_log_flops_has_no_determined_exponent():
    # y falling linearly in log C (no saturation in range): exponents near zero fit as well as
    # any other, so the fit must not claim a CI it cannot support
    y = 100.0 - 10.0 * np.log10(FLOPS / FLOPS[0])
    per_clip = y[:, None] + np.random.default_rng(0).normal(0, 5.0, (len(FLOPS), 300))
    result = fit(FLOPS, per_clip, resamples=200)
    assert not result.determined
    assert "edge" in result.reason or "factor" in result.reason


def test_unsorted_budgets_fit_the_same_curve():
    true = Curve(0.7, 5.0, 20.0, 4e12)
    per_clip = ladder(true, noise=2.0, seed=4)
    order = np.array([3, 0, 4, 1, 2])
    a = fit(FLOPS, per_clip, resamples=50, seed=2)
    b = fit(FLOPS[order], per_clip[order], resamples=50, seed=2)
    assert a.curve == b.curve and a.alpha_ci == b.alpha_ci


def test_first_crossing_of_known_curves():
    falling = Curve(1.0, 0.0, 1.0, 1.0)  # y = 1 / C
    level = Curve(1.0, 0.1, 0.0, 1.0)  # y = 0.1
    assert first_crossing(falling, level, 1.0, 100.0) == pytest.approx(10.0, rel=1e-9)
    assert math.isnan(first_crossing(falling, level, 20.0, 100.0))


def test_crossing_inside_extrapolated_and_none():
    # a: starts worse (higher MSE) and improves faster than b; they meet at C* = c0 * 10
    c0 = FLOPS[0]
    b = Curve(0.5, 40.0, 60.0, c0)
    # choose a's gap so that a(10 c0) == b(10 c0) with alpha 1.5 and asymptote 20
    gap_a = (b(10 * c0) - 20.0) / 10 ** -1.5
    a = Curve(1.5, 20.0, gap_a, c0)
    fits = fit_many({"a": (FLOPS, ladder(a, noise=1.0, seed=5)), "b": (FLOPS, ladder(b, noise=1.0, seed=15))},
                    resamples=200)
    inside = crossing(fits["a"], fits["b"], FLOPS[0], FLOPS[-1])
    assert inside.where == "measured"
    assert inside.flops == pytest.approx(10 * c0, rel=0.15)
    assert inside.ci[0] < 10 * c0 < inside.ci[1] and inside.share > 0.9
    # measured only up to 10 c0: a crossing at 25 c0 lies past the range, within the factor
    late_b = Curve(0.5, 40.0, 60.0, c0)
    gap_late = (late_b(25 * c0) - 20.0) / 25 ** -1.5
    late_a = Curve(1.5, 20.0, gap_late, c0)
    flops = np.geomspace(4e12, 4e13, 5)
    fits = fit_many({"a": (flops, ladder(late_a, flops, noise=0.2, seed=6)),
                     "b": (flops, ladder(late_b, flops, noise=0.2, seed=16))}, resamples=200)
    later = crossing(fits["a"], fits["b"], flops[0], flops[-1], factor=10)
    assert later.where == "extrapolated" and later.flops > flops[-1]
    assert later.flops == pytest.approx(25 * c0, rel=0.2)
    assert later.ci[0] < 25 * c0 < later.ci[1]
    # and not at all when the extrapolation allowed stops short of it
    assert crossing(fits["a"], fits["b"], flops[0], flops[-1], factor=1.5).where == "none"
    # parallel curves never meet
    apart = fit_many({"a": (FLOPS, ladder(b, noise=1.0, seed=7)),
                      "b": (FLOPS, ladder(Curve(0.5, 10.0, 60.0, c0), noise=1.0, seed=7))}, resamples=100)
    assert crossing(apart["a"], apart["b"], FLOPS[0], FLOPS[-1]).where == "none"


def test_replicates_are_paired_across_models():
    true = Curve(0.5, 50.0, 100.0, 4e12)
    per_clip = ladder(true, noise=20.0, seed=8)
    fits = fit_many({"x": (FLOPS, per_clip), "y": (FLOPS, per_clip.copy())}, resamples=100, seed=3)
    np.testing.assert_array_equal(fits["x"].replicates, fits["y"].replicates)
    with pytest.raises(ValueError, match="same clips"):
        fit_many({"x": (FLOPS, per_clip), "y": (FLOPS, per_clip[:, :10])})


def test_grid_bounds_are_what_the_reasons_say():
    assert scaling.ALPHA_GRID[0] == pytest.approx(0.01) and scaling.ALPHA_GRID[-1] == pytest.approx(4.0)


def test_a_curve_that_has_not_begun_to_level_off_has_no_determined_asymptote():
    """A small exponent over four budgets (the metric still falling nearly evenly per decade):
    the asymptote's CI is wider than everything measured, so the fit says so instead of
    giving an asymptote far outside the data; the same exponent on a curve that has levelled
    off is determined."""
    flops = np.geomspace(4e12, 1.3e14, 4)
    still_falling = fit(flops, ladder(Curve(0.08, 15.0, 135.0, 4e12), flops=flops, noise=30.0, seed=2),
                        resamples=400)
    assert not still_falling.determined
    assert "has not begun to level off" in still_falling.reason
    lo, hi = still_falling.asymptote_ci
    measured = still_falling.curve(flops)
    assert hi - lo > measured.max() - measured.min()
    levelled = fit(flops, ladder(Curve(1.0, 100.0, 50.0, 4e12), flops=flops, noise=30.0, seed=2), resamples=400)
    assert levelled.determined, levelled.reason
