"""MSE, MAE, PSNR and SSIM as metric plugins.

Conventions (OpenSTL's, so numbers line up with its benchmark tables):

- ``mse`` / ``mae``: per frame, the SUM over C*H*W of the squared / absolute error on [0, 1]
  data, then averaged over frames and clips (KTH 128x128: per-pixel MSE * 16384).
  ``mse_px`` / ``mae_px`` are the per-pixel means.
- ``psnr``: per frame ``10 log10(1 / per-pixel MSE)`` on [0, 1] predictions clipped to
  [0, 1], averaged. A frame predicted exactly would give +inf; the per-pixel MSE is floored
  at 1e-10 so such a frame scores 100 dB and averages stay finite.
- ``ssim``: per frame, scikit-image's ``structural_similarity`` definition (7x7 uniform
  window, K1 = 0.01, K2 = 0.03, sample covariance, border of 3 pixels excluded, channels
  averaged) with ``data_range = 1`` stated explicitly; predictions clipped to [0, 1].
  ``ssim_dr2`` is the same with data_range 2, what OpenSTL's pinned old scikit-image used
  for float frames (inflated; a compatibility option only, never the default).
"""

from __future__ import annotations

import torch

from vpbench.hookspecs import hookimpl


def _frames(x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 5:
        raise ValueError(f"expected (B, T, C, H, W) frames, got shape {tuple(x.shape)}")
    return x


class _PixelSum:
    version = "1"
    higher_is_better = False

    def __init__(self, name: str, power: int, reduce: str):
        self.name, self.power, self.reduce = name, power, reduce
        self.unit = "sum/frame" if reduce == "sum" else "px"
        kind = "squared" if power == 2 else "absolute"
        where = "summed over the pixels of a frame" if reduce == "sum" else "per pixel"
        self.description = f"{kind} error on [0,1], {where}"

    def per_frame(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = (_frames(pred).float() - _frames(target).float()).abs()
        err = diff.pow(self.power) if self.power != 1 else diff
        err = err.flatten(2)
        return err.sum(-1) if self.reduce == "sum" else err.mean(-1)


class PSNR:
    name = "psnr"
    version = "1"
    higher_is_better = True
    unit = "dB"
    description = "10 log10(1 / per-pixel MSE), predictions clipped to [0,1]"
    mse_floor = 1e-10

    def per_frame(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = _frames(pred).float().clamp(0, 1)
        mse = (pred - _frames(target).float()).pow(2).flatten(2).mean(-1)
        return -10.0 * torch.log10(mse.clamp_min(self.mse_floor))


CHUNK_PIXELS = 2**17  # frame pixels per SSIM chunk (32 frames of 64x64: ~2.6 MB of float32 statistics)


def _box_mean(x: torch.Tensor, win_size: int) -> torch.Tensor:
    """Mean over every valid ``win_size`` x ``win_size`` window of the last two dimensions
    (separable box sums: unfold + sum is ~3x faster than avg_pool2d on CPU)."""
    return x.unfold(-2, win_size, 1).sum(-1).unfold(-1, win_size, 1).sum(-1) / (win_size * win_size)


def _ssim_map(ux, uy, uxx, uyy, uxy, win_size: int, data_range: float, k1: float, k2: float) -> torch.Tensor:
    """SSIM per window from the five local means, with the unbiased (sample) covariance."""
    n = win_size * win_size
    cov = n / (n - 1)
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def _check_window(h: int, w: int, win_size: int) -> None:
    if min(h, w) < win_size:
        raise ValueError(f"SSIM needs frames of at least {win_size}x{win_size}")


def ssim_per_frame(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Batched SSIM, ``(B, T, C, H, W)`` -> ``(B, T)``, scikit-image's definition.

    Local statistics use a ``win_size`` uniform window over valid positions only (the same
    numbers scikit-image keeps after cropping its filtered maps by ``(win_size - 1) // 2``),
    with the unbiased (sample) covariance. The five local means (x, y, x², y², xy) are
    pooled in one separable pass, a cache-sized chunk of frames at a time. float32 stays within 4e-6 of scikit-image (float64) even on
    near-constant frames (tested to 1e-4); pass ``dtype=torch.float64`` for closer agreement.
    """
    b, t, c, h, w = pred.shape
    _check_window(h, w, win_size)
    x = pred.reshape(b * t * c, 1, h, w).to(dtype)
    y = target.reshape(b * t * c, 1, h, w).to(dtype)
    chunk = max(1, CHUNK_PIXELS // (h * w))
    out = []
    for xi, yi in zip(x.split(chunk), y.split(chunk)):  # chunks whose statistics stay in cache
        stats = _box_mean(torch.cat([xi, yi, xi * xi, yi * yi, xi * yi], dim=1), win_size)  # (n, 5, H', W')
        out.append(_ssim_map(*stats.unbind(1), win_size, data_range, k1, k2).mean(dim=(1, 2)))
    return torch.cat(out).reshape(b, t, c).mean(-1).float()


def expected_ssim(
    candidates: torch.Tensor,
    samples: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean SSIM of each candidate frame against each sample frame: ``(C, B, T, ch, H, W)`` and
    ``(K, B, T, ch, H, W)`` -> ``(C, B, T)``, the same definition as :func:`ssim_per_frame`.

    The expected SSIM of a prediction under a predictive distribution known by its samples
    (minimum-Bayes-risk decoding). Window means of x, x², y and y² are computed once per frame;
    only the cross term is computed per (candidate, sample) pair.
    """
    c, b, t, ch, h, w = candidates.shape
    if samples.shape[1:] != candidates.shape[1:]:
        raise ValueError(f"candidates {tuple(candidates.shape)} and samples {tuple(samples.shape)} differ in frame shape")
    _check_window(h, w, win_size)
    x = candidates.reshape(c, -1, h, w).float()
    y = samples.reshape(samples.shape[0], -1, h, w).float()  # (K, B*T*ch, H, W)
    uy, uyy = _box_mean(y, win_size), _box_mean(y * y, win_size)
    out = []
    for xi in x:  # one candidate at a time bounds the memory to K pair maps
        ux, uxx = _box_mean(xi, win_size), _box_mean(xi * xi, win_size)
        s = _ssim_map(ux, uy, uxx, uyy, _box_mean(xi * y, win_size), win_size, data_range, k1, k2)
        out.append(s.mean(dim=(2, 3)).mean(0))  # over windows, then samples: (B*T*ch,)
    return torch.stack(out).reshape(c, b, t, ch).mean(-1)


class SSIM:
    version = "1"
    higher_is_better = True
    unit = ""

    def __init__(self, name: str = "ssim", data_range: float = 1.0):
        self.name, self.data_range = name, data_range
        self.description = f"scikit-image SSIM, 7x7 uniform window, data_range={data_range:g}"

    def per_frame(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = _frames(pred).float().clamp(0, 1)
        return ssim_per_frame(pred, _frames(target).float(), data_range=self.data_range)


METRICS = (
    _PixelSum("mse", 2, "sum"),
    _PixelSum("mae", 1, "sum"),
    _PixelSum("mse_px", 2, "mean"),
    _PixelSum("mae_px", 1, "mean"),
    PSNR(),
    SSIM("ssim", 1.0),
    SSIM("ssim_dr2", 2.0),
)


@hookimpl
def vpbench_register_metrics(register):
    for metric in METRICS:
        register(metric)
