"""3-D causal masked convolutions over code volumes ``(B, C, T, H, W)``.

Order: time, then raster (row, column), then channel group (the level inside a position, like
PixelCNN's R, G, B). A kernel of ``(kt, kh, kw)`` sees the ``kt - 1`` previous frames whole
(causal padding in time), the rows above and the columns to the left in the current frame,
and, at the centre, input groups ``< g`` (mask A, first layer) or ``<= g`` (mask B) for output
group ``g``. Masks are buffers applied to the weight functionally.

Every layer also has an incremental form for cached generation: ``past(prev)`` is the
contribution of the previous frames to the current one (computed once per frame) and
``at(cache, v, h, w, past_hw)`` the output at one position from the cached inputs of earlier
positions in the frame plus the current position's input vector ``v``. ``layer.cache(frames)``
keeps that state for a generator (:class:`ConvCache`): ``begin_frame``, ``step`` per position,
``end_frame``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def group_of(index: torch.Tensor, channels: int, groups: int) -> torch.Tensor:
    return index * groups // channels


def centre_mask(cout: int, cin: int, groups: int, mask_type: str) -> torch.Tensor:
    go = group_of(torch.arange(cout), cout, groups)[:, None]
    gi = group_of(torch.arange(cin), cin, groups)[None, :]
    return (gi < go) if mask_type == "A" else (gi <= go)


def causal_mask(cout: int, cin: int, kernel: tuple[int, int, int], groups: int, mask_type: str) -> torch.Tensor:
    kt, kh, kw = kernel
    mask = torch.zeros(cout, cin, kt, kh, kw)
    mask[:, :, : kt - 1] = 1  # earlier frames, whole
    mask[:, :, kt - 1, : kh // 2] = 1  # rows above in the current frame
    mask[:, :, kt - 1, kh // 2, : kw // 2] = 1  # columns to the left in the current row
    mask[:, :, kt - 1, kh // 2, kw // 2] = centre_mask(cout, cin, groups, mask_type).float()
    return mask


class CausalConv3d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (3, 3, 3), groups: int = 1,
                 mask_type: str = "B"):
        super().__init__()
        kt, kh, kw = kernel
        if kh % 2 == 0 or kw % 2 == 0 or kt < 1:
            raise ValueError("spatial kernel sizes must be odd and the time kernel >= 1")
        self.kernel, self.groups, self.mask_type = kernel, groups, mask_type
        self.weight = nn.Parameter(torch.empty(cout, cin, kt, kh, kw))
        self.bias = nn.Parameter(torch.zeros(cout))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.register_buffer("mask", causal_mask(cout, cin, kernel, groups, mask_type))

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kt, kh, kw = self.kernel
        x = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2, kt - 1, 0))
        return F.conv3d(x, self.masked_weight(), self.bias)

    # -- incremental ------------------------------------------------------------------------
    def past(self, prev: list[torch.Tensor]) -> torch.Tensor:
        """Contribution of the ``kt - 1`` previous frames' inputs (oldest first, ``(B, C, H, W)``)."""
        kt, kh, kw = self.kernel
        w = self.masked_weight()
        out = 0.0
        for j, frame in enumerate(prev[-(kt - 1):] if kt > 1 else []):
            offset = kt - 1 - len(prev[-(kt - 1):]) + j
            out = out + F.conv2d(frame, w[:, :, offset], padding=(kh // 2, kw // 2))
        return out

    def incremental_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weights of the current frame without the centre, centre weights ``(Cout, Cin)``)."""
        kt, kh, kw = self.kernel
        current = self.masked_weight()[:, :, kt - 1]
        centre = current[:, :, kh // 2, kw // 2].clone()
        around = current.clone()
        around[:, :, kh // 2, kw // 2] = 0
        return around, centre

    def at(self, cache: torch.Tensor, v: torch.Tensor, h: int, w: int, past_hw, weights) -> torch.Tensor:
        """Output ``(B, Cout)`` at ``(h, w)``. ``cache``: this layer's inputs of the current frame,
        zero-padded by the kernel radius, holding the final values of earlier positions."""
        _, kh, kw = self.kernel
        around, centre = weights
        patch = cache[:, :, h : h + kh, w : w + kw]
        out = torch.einsum("bikl,oikl->bo", patch, around) + v @ centre.t() + self.bias
        return out + past_hw if torch.is_tensor(past_hw) else out

    def cache(self, frames: torch.Tensor) -> ConvCache:
        """Cached generation after the finished frames' inputs ``frames`` ``(B, Cin, T, H, W)``."""
        return ConvCache(self, [self], frames)


class GroupLinear(nn.Module):
    """A 1x1x1 masked convolution: output group ``g`` reads input groups ``<= g`` (B) / ``< g`` (A)."""

    def __init__(self, cin: int, cout: int, groups: int, mask_type: str = "B"):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.register_buffer("mask", centre_mask(cout, cin, groups, mask_type).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, Cout, T, H, W)``."""
        return torch.einsum("bcthw,oc->bothw", x, self.weight * self.mask) + self.bias[:, None, None, None]

    def at(self, v: torch.Tensor) -> torch.Tensor:
        return v @ (self.weight * self.mask).t() + self.bias


class GatedBlock(nn.Module):
    """Gated residual block (Gated PixelCNN's ``tanh(a) * sigmoid(b)``) of masked 3-D convs.

    ``cond = (ca, cb)``, terms added to the two gates before the nonlinearities, makes it the
    conditional form (van den Oord et al. 2016, arXiv 1606.05328); a condition computed from
    earlier frames only needs no mask. In ``at`` it enters as ``past_a`` / ``past_b``."""

    def __init__(self, channels: int, kernel: tuple[int, int, int], groups: int):
        super().__init__()
        self.conv_a = CausalConv3d(channels, channels, kernel, groups, "B")
        self.conv_b = CausalConv3d(channels, channels, kernel, groups, "B")
        self.proj = GroupLinear(channels, channels, groups, "B")

    def forward(self, x: torch.Tensor, cond: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        a, b = self.conv_a(x), self.conv_b(x)
        if cond is not None:
            a, b = a + cond[0], b + cond[1]
        return x + self.proj(torch.tanh(a) * torch.sigmoid(b))

    def at(self, cache, v, h, w, past_a, past_b, weights_a, weights_b) -> torch.Tensor:
        a = self.conv_a.at(cache, v, h, w, past_a, weights_a)
        b = self.conv_b.at(cache, v, h, w, past_b, weights_b)
        return v + self.proj.at(torch.tanh(a) * torch.sigmoid(b))

    def cache(self, frames: torch.Tensor) -> ConvCache:
        """Cached generation after the finished frames' inputs ``frames`` ``(B, C, T, H, W)``."""
        return ConvCache(self, [self.conv_a, self.conv_b], frames)


class ConvCache:
    """A layer's state for generation position by position: the inputs of the last ``kt - 1``
    finished frames and the current frame's, zero-padded by the kernel radius and final at the
    positions already generated. ``convs`` read that one input (a :class:`GatedBlock`'s two);
    ``layer.at`` takes their past terms and incremental weights in that order."""

    def __init__(self, layer: nn.Module, convs: list[CausalConv3d], frames: torch.Tensor):
        self.layer, self.convs, self.frames = layer, convs, frames
        kt, kh, kw = convs[0].kernel
        self.keep, self.radius = kt - 1, (kh // 2, kw // 2)
        self.history = list(frames.unbind(2))[-self.keep:] if self.keep else []
        self.weights = [conv.incremental_weights() for conv in convs]

    def begin_frame(self, terms: list[torch.Tensor] | None = None) -> None:
        """Start a frame; ``terms`` (one ``(B, Cout, H, W)`` per convolution: a condition) are
        added to the convolutions' outputs like the previous frames' contribution."""
        self.past = [conv.past(self.history) if self.history else 0.0 for conv in self.convs]
        if terms is not None:
            self.past = [past + term if torch.is_tensor(past) else term for past, term in zip(self.past, terms)]
        b, _, _, h, w = self.frames.shape
        (rh, rw), cin = self.radius, self.convs[0].weight.shape[1]
        self.current = self.frames.new_zeros(b, cin, h + 2 * rh, w + 2 * rw)

    def step(self, v: torch.Tensor, h: int, w: int, store: bool = False) -> torch.Tensor:
        """The layer's output ``(B, Cout)`` at ``(h, w)`` for the input ``v`` ``(B, Cin)`` there;
        ``store`` writes ``v`` into the cache (once it is final)."""
        if store:
            self.current[:, :, h + self.radius[0], w + self.radius[1]] = v
        past = [p[:, :, h, w] if torch.is_tensor(p) else p for p in self.past]
        return self.layer.at(self.current, v, h, w, *past, *self.weights)

    def end_frame(self) -> None:
        if self.keep:
            (rh, rw), (h, w) = self.radius, self.frames.shape[-2:]
            self.history = (self.history + [self.current[:, :, rh : rh + h, rw : rw + w].clone()])[-self.keep:]
