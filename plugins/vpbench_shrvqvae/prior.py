"""ST-PixelCNN: an autoregressive prior over the code volumes of HR-VQVAE.

Order: time, then raster (row, column), then level 1..n inside a position. Input: the global
code of every level embedded (one table per level, concatenated as channel groups) plus a
learned spatial position embedding. Body: a mask-A causal 3-D convolution, gated residual
blocks of mask-B causal 3-D convolutions, and a causal spatiotemporal attention block after
every ``attn_every``-th block. Output: per position, one head of ``classes`` logits per level.

Generation: ``generate_naive`` re-runs the whole network on the whole volume for every
(frame, row, column, level) step; ``generate`` is the cached incremental version: the layer
inputs of finished frames are kept, the previous frames' contribution to each convolution is
computed once per frame, and each step evaluates the network at one position only, from the
cached inputs of earlier positions. Both give identical codes (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from vpbench.layers.attention import CausalSTAttention
from vpbench.layers.masked_conv import CausalConv3d, GatedBlock, GroupLinear
from vpbench.profile import sampled_loop


class STPixelCNN(nn.Module):
    def __init__(self, levels: int, table_sizes: list[int], classes: int, latent_hw: tuple[int, int],
                 embed: int = 16, hidden: int = 32, blocks: int = 4, kernel_time: int = 3, kernel_space: int = 3,
                 first_kernel_space: int = 5, attn_every: int = 4, heads_per_group: int = 1):
        super().__init__()
        n = levels
        self.levels, self.classes, self.embed_dim = n, classes, embed
        channels = n * hidden
        self.embeds = nn.ModuleList(nn.Embedding(size, embed) for size in table_sizes)
        self.pos = nn.Parameter(torch.zeros(n * embed, *latent_hw))
        self.conv_in = CausalConv3d(n * embed, channels, (kernel_time, first_kernel_space, first_kernel_space), n, "A")
        body: list[nn.Module] = []
        for i in range(blocks):
            body.append(GatedBlock(channels, (kernel_time, kernel_space, kernel_space), n))
            if attn_every and (i + 1) % attn_every == 0:
                body.append(CausalSTAttention(channels, n, heads_per_group))
        self.body = nn.ModuleList(body)
        self.head = GroupLinear(channels, n * classes, n, "B")

    # -- full volume ----------------------------------------------------------------------
    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """Global codes ``(B, T, n, H, W)`` -> ``(B, n * E, T, H, W)``."""
        parts = [emb(codes[:, :, i]) for i, emb in enumerate(self.embeds)]  # (B, T, H, W, E) each
        x = torch.cat(parts, -1).permute(0, 4, 1, 2, 3)
        return x + self.pos[:, None]

    def forward_embedded(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for layer in self.body:
            h = layer(h)
        b, _, t, hh, ww = h.shape
        out = self.head(torch.relu(h))  # (B, n * classes, T, H, W)
        return out.reshape(b, self.levels, self.classes, t, hh, ww).permute(0, 3, 1, 2, 4, 5)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Global codes ``(B, T, n, H, W)`` -> logits ``(B, T, n, classes, H, W)``."""
        return self.forward_embedded(self.embed(codes))

    # -- cached incremental generation ----------------------------------------------------
    def _conv_layers(self) -> list[CausalConv3d]:
        convs = [self.conv_in]
        for layer in self.body:
            if isinstance(layer, GatedBlock):
                convs += [layer.conv_a, layer.conv_b]
        return convs

    def _layer_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Input of conv_in and of every body layer for a full volume ``x`` (embedded)."""
        inputs = [x]
        h = self.conv_in(x)
        for layer in self.body:
            inputs.append(h)
            h = layer(h)
        return inputs

    def start(self, context: torch.Tensor, n_out: int) -> GenState:
        """State after the context frames' global codes ``(B, T0, n, H, W)``, with room for
        ``n_out`` more frames."""
        x = self.embed(context)
        inputs = self._layer_inputs(x)
        t0 = x.shape[2]
        state = GenState(hw=tuple(x.shape[-2:]), frames=t0)
        for i, inp in enumerate(inputs):
            layer = self.conv_in if i == 0 else self.body[i - 1]
            if isinstance(layer, CausalSTAttention):
                frames = [layer.keys_values(inp[:, :, t]) for t in range(t0)]
                for store, part in ((state.hist_k, 0), (state.hist_v, 1)):
                    known = torch.stack([kv[part] for kv in frames], 1)  # (B, T0, P, nh, d)
                    store.append(torch.cat([known, known.new_zeros(known.shape[0], n_out, *known.shape[2:])], 1))
                state.history.append([])
            else:
                state.history.append([inp[:, :, t] for t in range(inp.shape[2])])
                state.hist_k.append(None)
                state.hist_v.append(None)
        state.weights = {id(c): c.incremental_weights() for c in self._conv_layers()}
        return state

    def begin_frame(self, state: GenState) -> None:
        h, w = state.hw
        state.past, state.cache, state.cur_k, state.cur_v = {}, [], [], []
        for i in range(len(self.body) + 1):
            layer = self.conv_in if i == 0 else self.body[i - 1]
            if isinstance(layer, CausalSTAttention):
                b = state.hist_k[i].shape[0]
                state.cache.append(None)
                state.cur_k.append(torch.zeros(b, h * w, layer.heads, layer.d, dtype=state.hist_k[i].dtype,
                                               device=state.hist_k[i].device))
                state.cur_v.append(torch.zeros_like(state.cur_k[-1]))
                continue
            convs = [layer] if i == 0 else [layer.conv_a, layer.conv_b]
            prev = state.history[i]
            for conv in convs:
                state.past[id(conv)] = conv.past(prev)
            _, kh, kw = convs[0].kernel
            ref = prev[-1]
            state.cache.append(torch.zeros(ref.shape[0], ref.shape[1], h + kh - 1, w + kw - 1, dtype=ref.dtype,
                                           device=ref.device))
            state.cur_k.append(None)
            state.cur_v.append(None)

    def step(self, state: GenState, codes_p: torch.Tensor, h: int, w: int, store: bool = False) -> torch.Tensor:
        """Logits ``(B, n, classes)`` at ``(h, w)`` of the current frame from global codes
        ``(B, n)`` at that position (levels not yet chosen may hold anything). ``store`` writes
        the position's layer inputs into the caches (call it once all levels are chosen)."""
        v = torch.cat([emb(codes_p[:, i]) for i, emb in enumerate(self.embeds)], -1) + self.pos[:, h, w]
        pos = h * state.hw[1] + w
        for i in range(len(self.body) + 1):
            layer = self.conv_in if i == 0 else self.body[i - 1]
            if isinstance(layer, CausalSTAttention):
                if store:
                    k, val = layer.keys_values(v[:, :, None, None])
                    state.cur_k[i][:, pos], state.cur_v[i][:, pos] = k[:, 0], val[:, 0]
                v = layer.at(v, pos, state.hist_k[i][:, :state.frames], state.hist_v[i][:, :state.frames],
                             state.cur_k[i], state.cur_v[i])
                continue
            conv = layer if i == 0 else layer.conv_a
            _, kh, kw = conv.kernel
            if store:
                state.cache[i][:, :, h + kh // 2, w + kw // 2] = v
            if i == 0:
                v = layer.at(state.cache[i], v, h, w, _hw(state.past[id(layer)], h, w), state.weights[id(layer)])
            else:
                v = layer.at(state.cache[i], v, h, w, _hw(state.past[id(layer.conv_a)], h, w),
                             _hw(state.past[id(layer.conv_b)], h, w), state.weights[id(layer.conv_a)],
                             state.weights[id(layer.conv_b)])
        return self.head.at(torch.relu(v)).reshape(v.shape[0], self.levels, self.classes)

    def end_frame(self, state: GenState) -> None:
        h, w = state.hw
        for i in range(len(self.body) + 1):
            layer = self.conv_in if i == 0 else self.body[i - 1]
            if isinstance(layer, CausalSTAttention):
                state.hist_k[i][:, state.frames] = state.cur_k[i]
                state.hist_v[i][:, state.frames] = state.cur_v[i]
            else:
                conv = layer if i == 0 else layer.conv_a
                _, kh, kw = conv.kernel
                state.history[i].append(state.cache[i][:, :, kh // 2 : kh // 2 + h, kw // 2 : kw // 2 + w].clone())

    @torch.no_grad()
    def generate(self, context: torch.Tensor, n_out: int, choose: Callable, to_global: Callable) -> torch.Tensor:
        """Future local codes ``(B, n_out, n, H, W)`` after the context's global codes.

        ``choose(logits (B, classes), level, parent_global or None) -> local (B,)`` picks a code;
        ``to_global(local (B, n)) -> global (B, n)`` walks the tree.
        """
        b, _, n, h, w = context.shape
        state = self.start(context, n_out)
        out = torch.zeros(b, n_out, n, h, w, dtype=torch.long, device=context.device)
        # frames and positions cost the same, or (attention) grow by one key each: FLOP counts run three
        for t in sampled_loop(range(n_out)):
            state.frames = context.shape[1] + t
            self.begin_frame(state)
            for y, x in sampled_loop([(y, x) for y in range(h) for x in range(w)]):
                local = torch.zeros(b, n, dtype=torch.long, device=context.device)
                for level in range(n):
                    glob = to_global(local)
                    logits = self.step(state, glob, y, x)[:, level]
                    local[:, level] = choose(logits, level, glob[:, level - 1] if level else None)
                out[:, t, :, y, x] = local
                self.step(state, to_global(local), y, x, store=True)
            self.end_frame(state)
        return out

    @torch.no_grad()
    def generate_naive(self, context: torch.Tensor, n_out: int, choose: Callable, to_global: Callable) -> torch.Tensor:
        """The same codes as :meth:`generate`, re-running the whole volume at every step."""
        b, t0, n, h, w = context.shape
        local = torch.zeros(b, t0 + n_out, n, h, w, dtype=torch.long, device=context.device)
        glob = torch.zeros_like(local)
        glob[:, :t0] = context
        for t in range(t0, t0 + n_out):
            for y in range(h):
                for x in range(w):
                    for level in range(n):
                        logits = self(glob)[:, t, level, :, y, x]
                        parent = glob[:, t, level - 1, y, x] if level else None
                        local[:, t, level, y, x] = choose(logits, level, parent)
                        glob[:, t, :, y, x] = to_global(local[:, t, :, y, x])
        return local[:, t0:]


def _hw(past, h: int, w: int):
    return past[:, :, h, w] if torch.is_tensor(past) else past


@dataclass
class GenState:
    hw: tuple[int, int]
    history: list = field(default_factory=list)  # per layer: list of (B, C, H, W) inputs of finished frames
    frames: int = 0  # frames finished (context included)
    hist_k: list = field(default_factory=list)  # per attention layer: (B, T0 + n_out, P, nh, d), the first `frames` final
    hist_v: list = field(default_factory=list)
    weights: dict = field(default_factory=dict)
    past: dict = field(default_factory=dict)
    cache: list = field(default_factory=list)
    cur_k: list = field(default_factory=list)
    cur_v: list = field(default_factory=list)
