"""Causal spatiotemporal self-attention over code volumes, respecting level groups.

Each position ``(t, h, w)`` attends to (i) the same spatial position in every earlier frame,
(ii) every earlier position (raster order) of its own frame and (iii) a learned null key, all
in one softmax. This factorised ("axial") form replaces full attention over all earlier
positions of the volume, which would cost ``(T * H * W)^2`` and is out of reach at KTH's
32 x 32 x 30 latent volume; together with the masked convolutions every earlier position
stays reachable. Keys and values come only from strictly earlier positions (fully visible),
while queries and the output projection are group-masked (mask B), so level ``g`` of a
position never sees levels ``>= g`` of the same position. Heads are split per level group.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vpbench.layers.masked_conv import GroupLinear


class CausalSTAttention(nn.Module):
    def __init__(self, channels: int, groups: int, heads_per_group: int = 1):
        super().__init__()
        self.heads = groups * heads_per_group
        if channels % self.heads:
            raise ValueError("channels must divide into groups x heads_per_group")
        self.d = channels // self.heads
        self.q = GroupLinear(channels, channels, groups, "B")
        self.k = nn.Linear(channels, channels)
        self.v = nn.Linear(channels, channels)
        self.null_k = nn.Parameter(torch.randn(self.heads, self.d) * 0.02)
        self.null_v = nn.Parameter(torch.zeros(self.heads, self.d))
        self.out = GroupLinear(channels, channels, groups, "B")

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:-1], self.heads, self.d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> same shape (residual added)."""
        b, c, t, h, w = x.shape
        p = h * w
        tokens = x.permute(0, 2, 3, 4, 1).reshape(b, t, p, c)
        q = self._split(tokens @ (self.q.weight * self.q.mask).t() + self.q.bias)  # (B, T, P, nh, d)
        k, v = self._split(self.k(tokens)), self._split(self.v(tokens))
        scale = 1.0 / math.sqrt(self.d)
        s_null = torch.einsum("btphd,hd->bhtp", q, self.null_k)[..., None]
        s_time = torch.einsum("btphd,bsphd->bhtps", q, k)
        s_space = torch.einsum("btphd,btqhd->bhtpq", q, k)
        earlier_t = torch.ones(t, t, dtype=torch.bool, device=x.device).tril(-1)  # [t, s]: s < t
        earlier_p = torch.ones(p, p, dtype=torch.bool, device=x.device).tril(-1)  # [p, q]: q < p
        s_time = s_time.masked_fill(~earlier_t[:, None, :], float("-inf"))
        s_space = s_space.masked_fill(~earlier_p, float("-inf"))
        weights = torch.softmax(torch.cat([s_null, s_time, s_space], -1) * scale, -1)
        w_null, w_time, w_space = weights.split([1, t, p], -1)
        out = w_null[..., 0, None].permute(0, 2, 3, 1, 4) * self.null_v  # (B, T, P, nh, d)
        out = out + torch.einsum("bhtps,bsphd->btphd", w_time, v) + torch.einsum("bhtpq,btqhd->btphd", w_space, v)
        out = self.out.at(out.reshape(b, t, p, c))
        return x + out.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)

    # -- incremental ------------------------------------------------------------------------
    def keys_values(self, frame_inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, H, W)`` inputs of a frame -> keys and values ``(B, P, nh, d)``."""
        tokens = frame_inputs.flatten(2).transpose(1, 2)
        return self._split(self.k(tokens)), self._split(self.v(tokens))

    def at(self, v_in: torch.Tensor, pos: int, hist_k, hist_v, cur_k, cur_v) -> torch.Tensor:
        """Output at flat position ``pos`` of the current frame. ``hist_k/v``: ``(B, T_prev, P, nh, d)``
        of earlier frames (or None); ``cur_k/v``: ``(B, P, nh, d)`` of the current frame, final for
        positions ``< pos``."""
        q = self._split(self.q.at(v_in))  # (B, nh, d)
        keys = [self.null_k[None].expand(q.shape[0], -1, -1)[:, None]]
        values = [self.null_v[None].expand(q.shape[0], -1, -1)[:, None]]
        if hist_k is not None:
            keys.append(hist_k[:, :, pos])
            values.append(hist_v[:, :, pos])
        if pos > 0:
            keys.append(cur_k[:, :pos])
            values.append(cur_v[:, :pos])
        k, v = torch.cat(keys, 1), torch.cat(values, 1)  # (B, S, nh, d)
        weights = torch.softmax(torch.einsum("bhd,bshd->bhs", q, k) / math.sqrt(self.d), -1)
        out = torch.einsum("bhs,bshd->bhd", weights, v).reshape(q.shape[0], -1)
        return v_in + self.out.at(out)

    def cache(self, frames: torch.Tensor) -> AttentionCache:
        """Cached generation after the finished frames' inputs ``frames`` ``(B, C, T, H, W)``, ``T >= 1``."""
        return AttentionCache(self, frames)


class AttentionCache:
    """A :class:`CausalSTAttention`'s state for generation position by position (the interface of
    :class:`vpbench.layers.masked_conv.ConvCache`): the keys and values of the finished frames
    and of the current frame's positions already generated."""

    def __init__(self, attn: CausalSTAttention, frames: torch.Tensor):
        self.attn, self.width = attn, frames.shape[-1]
        self.keys, self.values = map(list, zip(*(attn.keys_values(frames[:, :, t]) for t in range(frames.shape[2]))))

    def begin_frame(self, terms=None) -> None:
        self.hist_k, self.hist_v = torch.stack(self.keys, 1), torch.stack(self.values, 1)  # (B, T, P, nh, d)
        self.cur_k = self.hist_k.new_zeros(self.hist_k[:, 0].shape)
        self.cur_v = torch.zeros_like(self.cur_k)

    def step(self, v: torch.Tensor, h: int, w: int, store: bool = False) -> torch.Tensor:
        pos = h * self.width + w
        if store:
            k, val = self.attn.keys_values(v[:, :, None, None])
            self.cur_k[:, pos], self.cur_v[:, pos] = k[:, 0], val[:, 0]
        return self.attn.at(v, pos, self.hist_k, self.hist_v, self.cur_k, self.cur_v)

    def end_frame(self) -> None:
        self.keys.append(self.cur_k)
        self.values.append(self.cur_v)
