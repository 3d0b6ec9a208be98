"""How a metric grows with training compute: saturating power-law fits and their crossings.

A model's metric at training FLOPs ``C`` is fitted as ``y = asymptote + A * (C / C0) ** -alpha``
(``C0`` the smallest budget measured, so ``A`` is the gap to the asymptote there). For a
lower-is-better metric ``A > 0``, for a higher-is-better one ``A < 0``; ``alpha > 0`` always.
This is the form of the compute-scaling literature (Kaplan et al. 2020, Hoffmann et al. 2022:
loss = E + A / C^alpha) applied to a benchmark metric. For each ``alpha`` on a fine log grid
the other two parameters are a linear least-squares fit, so the fit is global over the grid
(no starting point, no local minimum) and needs nothing but numpy.

Uncertainty comes from resampling clips: every bootstrap replicate draws one set of clip indices
and applies it to every budget and every model (the clips are the same everywhere), so the
replicates of two models are paired and their crossings have a CI too. A fit is reported as
ill-determined, with the reason, instead of numbers when: fewer than four budgets; the metric
does not move beyond its noise over the measured range; the best exponent lies at the edge of
the searched range; the bootstrap leaves the exponent spread over more than a factor of ten; or
the asymptote's CI is wider than the whole range the metric covered (the curve has not begun to
level off, so where it ends is a guess).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ALPHA_GRID = np.geomspace(0.01, 4.0, 600)
MIN_BUDGETS = 4
MAX_ALPHA_SPREAD = 10.0  # an exponent whose 95% CI spans more than this factor is ill-determined
MAX_EDGE_SHARE = 0.2  # ... as is one where this share of the replicates ends at the grid's edge


@dataclass(frozen=True)
class Curve:
    """``y = asymptote + gap * (C / c0) ** -alpha``."""

    alpha: float
    asymptote: float
    gap: float
    c0: float

    def __call__(self, flops: np.ndarray | float) -> np.ndarray:
        return self.asymptote + self.gap * (np.asarray(flops, dtype=np.float64) / self.c0) ** -self.alpha


@dataclass
class Fit:
    """A model's fitted curve, its bootstrap CIs, or why there is none (``reason``)."""

    curve: Curve | None
    reason: str = ""  # empty when the fit is determined
    alpha_ci: tuple[float, float] = (math.nan, math.nan)
    asymptote_ci: tuple[float, float] = (math.nan, math.nan)
    replicates: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))  # (alpha, asymptote, gap) per draw

    @property
    def determined(self) -> bool:
        return self.curve is not None and not self.reason


def _solve(x: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every alpha (G,) and every row of ``y`` (R, n): least-squares (asymptote, gap) and
    the residual sum of squares, each (R, G)."""
    u = x[None, :] ** -alphas[:, None]  # (G, n)
    n = x.size
    su, suu = u.sum(1), (u * u).sum(1)  # (G,)
    sy = y.sum(1)  # (R,)
    suy = y @ u.T  # (R, G)
    det = n * suu - su * su  # > 0 unless u is constant
    gap = (n * suy - su[None, :] * sy[:, None]) / det[None, :]
    asym = (sy[:, None] - gap * su[None, :]) / n
    resid = y[:, None, :] - asym[:, :, None] - gap[:, :, None] * u[None, :, :]
    return asym, gap, (resid * resid).sum(2)


def _best(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``y``: (alpha, asymptote, gap, index of the best alpha on the grid). The grid's
    best alpha is refined by the vertex of a parabola through its neighbours' residuals in
    log alpha, so the estimate is not quantised to the grid."""
    _, _, sse = _solve(x, y, ALPHA_GRID)
    i = sse.argmin(1)
    rows = np.arange(y.shape[0])
    j = np.clip(i, 1, ALPHA_GRID.size - 2)
    step = math.log(ALPHA_GRID[1] / ALPHA_GRID[0])
    left, mid, right = sse[rows, j - 1], sse[rows, j], sse[rows, j + 1]
    curvature = left - 2 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curvature > 0, 0.5 * (left - right) / curvature, 0.0)
    inner = (i > 0) & (i < ALPHA_GRID.size - 1)
    alpha = np.where(inner, ALPHA_GRID[j] * np.exp(np.clip(shift, -1, 1) * step), ALPHA_GRID[i])
    u = x[None, :] ** -alpha[:, None]  # (R, n): the two linear parameters at each row's own alpha
    n = x.size
    su, suu, sy, suy = u.sum(1), (u * u).sum(1), y.sum(1), (u * y).sum(1)
    gap = (n * suy - su * sy) / (n * suu - su * su)
    return alpha, (sy - gap * su) / n, gap, i


def fit_curve(flops: np.ndarray, means: np.ndarray) -> Curve:
    """The least-squares curve through ``(flops, means)`` (at least three points)."""
    flops, means = np.asarray(flops, dtype=np.float64), np.asarray(means, dtype=np.float64)
    c0 = float(flops.min())
    alpha, asym, gap, _ = _best(flops / c0, means[None, :])
    return Curve(float(alpha[0]), float(asym[0]), float(gap[0]), c0)


def fit(flops: np.ndarray, per_clip: np.ndarray, resamples: int = 1000, seed: int = 0) -> Fit:
    """Fit one model's ladder. ``per_clip`` is (budgets, clips): the metric of every scored clip
    at every budget, the same clips in every row. See :func:`fit_many` for several models whose
    bootstrap replicates must be paired."""
    return fit_many({"_": (flops, per_clip)}, resamples, seed)["_"]


def draws(n_clips: int, resamples: int, seed: int) -> np.ndarray:
    """The clip indices of every bootstrap replicate (resamples, clips), shared by all models."""
    return np.random.default_rng(seed).integers(0, n_clips, size=(resamples, n_clips))


def fit_many(ladders: dict[str, tuple[np.ndarray, np.ndarray]], resamples: int = 1000, seed: int = 0) -> dict[str, Fit]:
    """Fit every model's ladder ``{name: (flops (B,), per_clip (B, clips))}``; all models' clips
    are the same clips, so one set of bootstrap draws serves all and replicate ``r`` of one
    model pairs with replicate ``r`` of another."""
    n_clips = {np.asarray(p).shape[1] for _, p in ladders.values()}
    if len(n_clips) != 1:
        raise ValueError(f"every ladder must score the same clips; clip counts: {sorted(n_clips)}")
    idx = draws(n_clips.pop(), resamples, seed)
    return {name: _fit_one(np.asarray(f, dtype=np.float64), np.asarray(p, dtype=np.float64), idx)
            for name, (f, p) in ladders.items()}


def _fit_one(flops: np.ndarray, per_clip: np.ndarray, idx: np.ndarray) -> Fit:
    order = np.argsort(flops)
    flops, per_clip = flops[order], per_clip[order]
    if len(set(flops.tolist())) < MIN_BUDGETS:
        return Fit(None, f"{len(set(flops.tolist()))} budget(s); a fit needs at least {MIN_BUDGETS}")
    means = per_clip.mean(1)
    curve = fit_curve(flops, means)
    x = flops / curve.c0
    # does the metric move beyond its noise? the fitted change over the range against the
    # standard error of the difference between the first and the last budget (paired clips)
    diff = per_clip[-1] - per_clip[0]
    se = diff.std(ddof=1) / math.sqrt(diff.size) if diff.size > 1 else math.inf
    change = abs(curve(flops[-1]) - curve(flops[0]))
    if not change > 2 * se:
        return Fit(curve, f"the metric changes by {change:.3g} over the measured budgets, within its noise "
                          f"(2 x SE {2 * se:.3g}): no trend to fit")
    if _best(x, means[None, :])[3][0] in (0, ALPHA_GRID.size - 1):
        return Fit(curve, f"the best exponent lies at the edge of the searched range ({ALPHA_GRID[0]:g}-{ALPHA_GRID[-1]:g})")
    boot = per_clip[:, idx].mean(2).T  # (resamples, budgets)
    alpha, asym, gap, where = _best(x, boot)
    replicates = np.stack([alpha, asym, gap], 1)
    lo, hi = np.quantile(alpha, [0.025, 0.975])
    out = Fit(curve, "", (float(lo), float(hi)), tuple(float(v) for v in np.quantile(asym, [0.025, 0.975])), replicates)
    edge = float(np.isin(where, (0, ALPHA_GRID.size - 1)).mean())
    if edge > MAX_EDGE_SHARE:
        out.reason = f"{edge:.0%} of the bootstrap fits put the exponent at the edge of the searched range"
    elif hi > MAX_ALPHA_SPREAD * lo:
        out.reason = f"the exponent's 95% CI [{lo:.3g}, {hi:.3g}] spans more than a factor of {MAX_ALPHA_SPREAD:g}"
    elif out.asymptote_ci[1] - out.asymptote_ci[0] > np.ptp(means):
        a_lo, a_hi = out.asymptote_ci
        out.reason = (f"the asymptote's 95% CI [{a_lo:.4g}, {a_hi:.4g}] is wider than the whole measured range "
                      f"({means.min():.4g} to {means.max():.4g}): the curve has not begun to level off")
    return out


@dataclass(frozen=True)
class Crossing:
    """Where curve ``a`` meets curve ``b``: ``flops`` (NaN for none), ``where`` is ``measured``,
    ``extrapolated`` or ``none``; ``ci`` from the paired replicates that cross; ``share`` of
    replicates crossing within the same range."""

    flops: float
    where: str
    ci: tuple[float, float] = (math.nan, math.nan)
    share: float = math.nan


def first_crossing(a: Curve, b: Curve, lo: float, hi: float, points: int = 512) -> float:
    """The smallest ``C`` in ``[lo, hi]`` where the two curves are equal (NaN when none)."""
    grid = np.geomspace(lo, hi, points)
    d = a(grid) - b(grid)
    if d[0] == 0:
        return float(lo)
    sign = np.sign(d)
    change = np.nonzero(sign[:-1] * sign[1:] <= 0)[0]
    if change.size == 0:
        return math.nan
    i = int(change[0])
    left, right = math.log(grid[i]), math.log(grid[i + 1])
    for _ in range(60):  # bisection in log C
        mid = (left + right) / 2
        if np.sign(a(math.exp(mid)) - b(math.exp(mid))) == sign[i]:
            left = mid
        else:
            right = mid
    return math.exp((left + right) / 2)


def crossing(a: Fit, b: Fit, flops_min: float, flops_max: float, factor: float = 10.0) -> Crossing:
    """Where two determined fits cross between the smallest budget measured and ``factor``
    times the largest: the point estimate, whether it lies inside the measured range, and a
    95% CI over the paired bootstrap replicates that also cross there."""
    if not (a.determined and b.determined):
        return Crossing(math.nan, "none")
    hi = flops_max * factor
    point = first_crossing(a.curve, b.curve, flops_min, hi)
    at = []
    n = min(len(a.replicates), len(b.replicates))
    for ra, rb in zip(a.replicates[:n], b.replicates[:n]):
        c = first_crossing(Curve(*ra, a.curve.c0), Curve(*rb, b.curve.c0), flops_min, hi, points=128)
        if math.isfinite(c):
            at.append(c)
    share = len(at) / n if n else math.nan
    ci = tuple(float(v) for v in np.quantile(at, [0.025, 0.975])) if len(at) >= 2 else (math.nan, math.nan)
    if not math.isfinite(point):
        return Crossing(math.nan, "none", ci, share)
    return Crossing(point, "measured" if point <= flops_max else "extrapolated", ci, share)
