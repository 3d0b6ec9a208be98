"""Metric values on hand-made frames and parity with scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vpbench.builtin.digits import Digits, DigitsConfig
from vpbench.metrics.basic import METRICS

M = {m.name: m for m in METRICS}


def frames(b=1, t=1, c=1, h=8, w=8, value=0.0):
    return torch.full((b, t, c, h, w), value)


def test_mse_mae_are_per_frame_pixel_sums():
    target = frames(t=2)
    pred = target.clone()
    pred[0, 0, 0, :2, :3] = 0.5  # 6 pixels off by 0.5 in frame 1
    pred[0, 1, 0, 0, 0] = 1.0  # 1 pixel off by 1.0 in frame 2
    assert M["mse"].per_frame(pred, target).tolist() == [[1.5, 1.0]]
    assert M["mae"].per_frame(pred, target).tolist() == [[3.0, 1.0]]
    assert M["mse_px"].per_frame(pred, target)[0, 0].item() == pytest.approx(1.5 / 64)
    assert M["mae_px"].per_frame(pred, target)[0, 1].item() == pytest.approx(1 / 64)


def test_psnr_known_values_and_clipping():
    target = frames(h=10, w=10)
    pred = target + 0.1  # per-pixel MSE 0.01 -> 20 dB
    assert M["psnr"].per_frame(pred, target).item() == pytest.approx(20.0, abs=1e-4)
    assert M["psnr"].per_frame(target, target).item() == pytest.approx(100.0)  # floored MSE
    over = target.clone()
    over[..., 0, 0] = 3.0  # clipped to 1 before PSNR -> MSE 1/100
    assert M["psnr"].per_frame(over, target).item() == pytest.approx(20.0, abs=1e-4)


def test_ssim_of_identical_frames_is_one_and_dr2_is_inflated():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 1, 16, 16, generator=g)
    assert torch.allclose(M["ssim"].per_frame(x, x), torch.ones(2, 3), atol=1e-6)
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert (M["ssim_dr2"].per_frame(y, x) > M["ssim"].per_frame(y, x)).all()


def _skimage_ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    if a.shape[0] == 1:
        return structural_similarity(a[0], b[0], data_range=data_range)
    return structural_similarity(a, b, data_range=data_range, channel_axis=0)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("data_range, name", [(1.0, "ssim"), (2.0, "ssim_dr2")])
def test_ssim_psnr_parity_with_scikit_image_on_random_frames(channels, data_range, name):
    g = torch.Generator().manual_seed(channels)
    target = torch.rand(3, 2, channels, 23, 31, generator=g)
    pred = (target + 0.15 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    ours = M[name].per_frame(pred, target).numpy()
    ours_psnr = M["psnr"].per_frame(pred, target).numpy()
    for i in range(3):
        for j in range(2):
            a = target[i, j].double().numpy()
            b = pred[i, j].double().numpy()
            assert abs(ours[i, j] - _skimage_ssim(a, b, data_range)) < 1e-4
            assert abs(ours_psnr[i, j] - peak_signal_noise_ratio(a, b, data_range=1.0)) < 1e-4


def test_ssim_parity_with_scikit_image_on_real_digit_frames():
    split = Digits(DigitsConfig(n_test=4)).split("test")
    context, future = zip(*[split[i] for i in range(4)])
    target = torch.stack(future)
    pred = torch.stack(context)[:, -1:].expand_as(target)  # copy-last predictions
    ours = M["ssim"].per_frame(pred, target).numpy()
    ref = np.array([[structural_similarity(target[i, j, 0].double().numpy(), pred[i, j, 0].double().numpy(),
                                           data_range=1.0) for j in range(target.shape[1])] for i in range(4)])
    assert np.abs(ours - ref).max() < 1e-4
    assert ref.min() < 0.95  # the frames really differ


def test_metrics_reject_wrong_rank():
    with pytest.raises(ValueError, match="expected \\(B, T, C, H, W\\)"):
        M["mse"].per_frame(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8))


def test_expected_ssim_is_the_mean_scikit_image_ssim_over_samples():
    from vpbench.metrics.basic import expected_ssim

    g = torch.Generator().manual_seed(5)
    samples = torch.rand(4, 2, 3, 2, 12, 10, generator=g)  # K, B, T, C, H, W
    candidates = torch.stack([samples[0], torch.zeros_like(samples[0]),
                              (samples[1] + 0.1 * torch.randn(samples[1].shape, generator=g)).clamp(0, 1)])
    ours = expected_ssim(candidates, samples).numpy()
    assert ours.shape == (3, 2, 3)
    for c in range(3):
        for b in range(2):
            for t in range(3):
                ref = np.mean([_skimage_ssim(samples[k, b, t].double().numpy(), candidates[c, b, t].double().numpy(), 1.0)
                               for k in range(4)])
                assert abs(ours[c, b, t] - ref) < 1e-4
    with pytest.raises(ValueError, match="differ in frame shape"):
        expected_ssim(candidates, samples[:, :1])


def test_ssim_is_the_same_whatever_the_chunking():
    """SSIM runs a cache-sized chunk of frames at a time; a frame's score never depends on its
    neighbours in the batch (70 frames of 64x64 span three chunks)."""
    from vpbench.metrics.basic import CHUNK_PIXELS, ssim_per_frame

    g = torch.Generator().manual_seed(4)
    target = torch.rand(7, 10, 1, 64, 64, generator=g)
    pred = (target + 0.2 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    assert 70 > 2 * CHUNK_PIXELS // (64 * 64)
    together = ssim_per_frame(pred, target)
    alone = torch.stack([torch.stack([ssim_per_frame(pred[i:i + 1, j:j + 1], target[i:i + 1, j:j + 1])[0, 0]
                                      for j in range(10)]) for i in range(7)])
    assert torch.equal(together, alone)
