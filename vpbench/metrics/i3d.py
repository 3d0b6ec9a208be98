"""I3D (Carreira & Zisserman, CVPR 2017): Inception-v1 inflated to 3D, the network FVD embeds clips with.

Written here in plain torch. The module names follow the endpoint names of DeepMind's Sonnet
model (``Conv3d_1a_7x7`` ... ``Mixed_5c``, ``logits``), with the branch layout ``b0``, ``b1a``,
``b1b``, ``b2a``, ``b2b``, ``b3b`` inside each Inception block and ``conv3d`` / ``bn`` inside each
unit, so the state dict of the PyTorch port used by the common FVD implementations (VideoGPT,
TATS, MCVD: ``i3d_pretrained_400.pt``, Kinetics-400 weights converted from TensorFlow) loads
key for key, with no renaming (see :mod:`vpbench.metrics.fvd`).

Padding is TensorFlow's ``SAME``: ``max(k - s, 0)`` (or ``max(k - n % s, 0)`` when the stride
does not divide the size ``n``) split with the extra element at the end, so every stride-2
stage maps a size ``n`` to ``ceil(n / 2)``. Max pools pad with zeros, which equals TF's
"ignore the padding" because every pooled tensor follows a ReLU. Input ``(B, 3, T, H, W)`` in
[-1, 1]; output the 400 Kinetics logits of the clip, ``(B, 400)``: an average pool of
``(2, 7, 7)`` (stride 1, VALID) over the Mixed_5c map, the 1x1x1 logits convolution, and the
mean over the remaining time steps.

Receptive-field arithmetic (:func:`feature_size`): time is strided by 2 three times
(Conv3d_1a, MaxPool3d_4a, MaxPool3d_5a), space five times, so ``T`` frames of ``H x W`` give
a ``ceil(T/8) x ceil(H/32) x ceil(W/32)`` map before the pool. The ``(2, 7, 7)`` pool needs
``ceil(T/8) >= 2`` and ``ceil(H/32) >= 7``: at least **9 frames** (:data:`MIN_FRAMES`) and
**193 pixels** (:data:`MIN_SIZE`); 16 frames at 224x224 give exactly a ``2 x 7 x 7`` map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (b0, b1a, b1b, b2a, b2b, b3b) output channels of each Inception block, as in Szegedy et al. 2015
BLOCKS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
POOL = (2, 7, 7)
TIME_STRIDES = 3  # stride-2 stages along time
SPACE_STRIDES = 5  # stride-2 stages along height and width
MIN_FRAMES = 2 ** TIME_STRIDES * (POOL[0] - 1) + 1  # 9
MIN_SIZE = 2 ** SPACE_STRIDES * (POOL[1] - 1) + 1  # 193
BN_EPS = 1e-5  # what the PyTorch port whose weights are loaded uses (Sonnet's TF model: 1e-3)


def feature_size(frames: int, height: int, width: int) -> tuple[int, int, int]:
    """The ``(T', H', W')`` of the Mixed_5c map for a clip of ``frames x height x width``."""
    return (math.ceil(frames / 2 ** TIME_STRIDES), math.ceil(height / 2 ** SPACE_STRIDES),
            math.ceil(width / 2 ** SPACE_STRIDES))


def _same(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def _triple(v: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


class Unit3D(nn.Module):
    """Conv3d (SAME padding, no bias) + batch norm + ReLU; the logits unit has a bias and neither."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int, int] = 1,
                 stride: int | tuple[int, int, int] = 1, norm: bool = True, relu: bool = True, eps: float = BN_EPS):
        super().__init__()
        self.kernel, self.stride, self.relu = _triple(kernel), _triple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=not norm)
        self.bn = nn.BatchNorm3d(cout, eps=eps) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same(x, self.kernel, self.stride), self.kernel, self.stride)


class Inception(nn.Module):
    """Four branches: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; 3x3x3 max pool -> 1x1; concatenated."""

    def __init__(self, cin: int, widths: tuple[int, ...], eps: float = BN_EPS):
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = widths
        self.b0 = Unit3D(cin, c0, eps=eps)
        self.b1a, self.b1b = Unit3D(cin, c1a, eps=eps), Unit3D(c1a, c1b, 3, eps=eps)
        self.b2a, self.b2b = Unit3D(cin, c2a, eps=eps), Unit3D(c2a, c2b, 3, eps=eps)
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c3, eps=eps)
        self.out_channels = c0 + c1b + c2b + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class I3D(nn.Module):
    """Inception-v1 I3D up to the Kinetics logits; ``forward`` ``(B, 3, T, H, W)`` in [-1, 1] -> ``(B, classes)``.

    ``width`` scales every channel count (1.0: the real network; a small value gives a cheap
    network of the same structure for tests); ``pool`` is the final average pool's kernel.
    """

    def __init__(self, classes: int = 400, width: float = 1.0, pool: tuple[int, int, int] = POOL, eps: float = BN_EPS):
        super().__init__()

        def w(c: int) -> int:
            return max(1, round(c * width))

        self.pool = tuple(pool)
        self.Conv3d_1a_7x7 = Unit3D(3, w(64), 7, 2, eps=eps)
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(w(64), w(64), eps=eps)
        self.Conv3d_2c_3x3 = Unit3D(w(64), w(192), 3, eps=eps)
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        channels = w(192)
        for name, widths in BLOCKS.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
            block = Inception(channels, tuple(w(c) for c in widths), eps)
            setattr(self, name, block)
            channels = block.out_channels
        self.features_dim = channels
        self.logits = Unit3D(channels, classes, norm=False, relu=False)
        self.order = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
                      "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
                      "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c"]

    @property
    def min_frames(self) -> int:
        return 2 ** TIME_STRIDES * (self.pool[0] - 1) + 1

    @property
    def min_size(self) -> int:
        return 2 ** SPACE_STRIDES * (max(self.pool[1:]) - 1) + 1

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The Mixed_5c map, ``(B, 1024, ceil(T/8), ceil(H/32), ceil(W/32))`` for the real network."""
        for name in self.order:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D takes (B, 3, T, H, W) clips, got shape {tuple(x.shape)}")
        t, h, w = x.shape[2:]
        if t < self.min_frames or min(h, w) < self.min_size:
            raise ValueError(f"I3D needs clips of at least {self.min_frames} frames of {self.min_size}x{self.min_size} "
                             f"pixels (its {self.pool} pool over a map strided 8x in time, 32x in space), got {t} "
                             f"frames of {h}x{w}")
        x = F.avg_pool3d(self.trunk(x), self.pool, stride=1)
        return self.logits(x).flatten(3).mean(dim=(2, 3))
