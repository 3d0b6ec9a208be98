"""ST-PixelCNN: an autoregressive prior over the code volumes of HR-VQVAE.

Order: time, then raster (row, column), then level 1..n inside a position. Input: the global
code of every level embedded (one table per level, concatenated as channel groups) plus a
learned spatial position embedding. Body: a mask-A causal 3-D convolution, gated residual
blocks of mask-B causal 3-D convolutions, and a causal spatiotemporal attention block after
every ``attn_every``-th block. Output: per position, one head of ``classes`` logits per level.

Generation: ``generate_naive`` re-runs the whole network on the whole volume for every
(frame, row, column, level) step; ``generate`` is the cached incremental version, every layer
keeping its own cache (``layer.cache``): the layer inputs of finished frames are kept, the
previous frames' contribution to each convolution is computed once per frame, and each step
evaluates the network at one position only, from the cached inputs of earlier positions. Both
give identical codes (tested).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from vpbench import sampled_loop
from vpbench.layers.attention import CausalSTAttention
from vpbench.layers.masked_conv import CausalConv3d, GatedBlock, GroupLinear


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
    def start(self, context: torch.Tensor) -> list:
        """Every layer's cache (``layer.cache``) after the context frames' global codes ``(B, T0, n, H, W)``."""
        h, caches = self.embed(context), []
        for layer in (self.conv_in, *self.body):
            caches.append(layer.cache(h))
            h = layer(h)
        return caches

    def step(self, caches: list, codes_p: torch.Tensor, h: int, w: int, store: bool = False) -> torch.Tensor:
        """Logits ``(B, n, classes)`` at ``(h, w)`` of the current frame from global codes
        ``(B, n)`` at that position (levels not yet chosen may hold anything). ``store`` writes
        the position's layer inputs into the caches (call it once all levels are chosen)."""
        v = torch.cat([emb(codes_p[:, i]) for i, emb in enumerate(self.embeds)], -1) + self.pos[:, h, w]
        for cache in caches:
            v = cache.step(v, h, w, store)
        return self.head.at(torch.relu(v)).reshape(v.shape[0], self.levels, self.classes)

    @torch.no_grad()
    def generate(self, context: torch.Tensor, n_out: int, choose: Callable, to_global: Callable) -> torch.Tensor:
        """Future local codes ``(B, n_out, n, H, W)`` after the context's global codes.

        ``choose(logits (B, classes), level, parent_global or None) -> local (B,)`` picks a code;
        ``to_global(local (B, n)) -> global (B, n)`` walks the tree.
        """
        b, _, n, h, w = context.shape
        caches = self.start(context)
        out = torch.zeros(b, n_out, n, h, w, dtype=torch.long, device=context.device)
        # frames and positions cost the same, or (attention) grow by one key each: FLOP counts run three
        for t in sampled_loop(range(n_out)):
            for cache in caches:
                cache.begin_frame()
            for y, x in sampled_loop([(y, x) for y in range(h) for x in range(w)]):
                local = torch.zeros(b, n, dtype=torch.long, device=context.device)
                for level in range(n):
                    glob = to_global(local)
                    logits = self.step(caches, glob, y, x)[:, level]
                    local[:, level] = choose(logits, level, glob[:, level - 1] if level else None)
                out[:, t, :, y, x] = local
                self.step(caches, to_global(local), y, x, store=True)
            for cache in caches:
                cache.end_frame()
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

