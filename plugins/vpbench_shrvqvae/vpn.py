"""VPN prior: a recurrent model of time and a masked PixelCNN of space over HR-VQVAE codes.

The split of Video Pixel Networks (Kalchbrenner et al. 2016, arXiv 1610.00527): a ConvLSTM
stream reads every past frame whole (no mask is needed in time) and its state at frame ``t``
conditions a masked spatial PixelCNN over frame ``t``'s codes, in raster order and level order
inside a position (group masks A / B, as :mod:`vpbench_shrvqvae.prior`). Its inputs start
from the frozen codewords of the autoencoder: level ``g`` of a position enters as the quantised
latent after levels ``1..g`` (the sum of the path's codewords), projected per level, plus a
learned embedding of the code index (codewords alone leave deeper-level codes hard to tell
apart: RESULTS.md). A 3x3 conv of the last frame's inputs is added to the stream's condition.

Departures from VPN: codes instead of pixels, a ConvLSTM instead of their convolutional LSTM
with dilated encoders, and the conditioning added to the gates of Gated PixelCNN blocks (van
den Oord et al. 2016, conditional form) instead of VPN's multiplicative units.

Generation: :meth:`VPNPrior.generate` advances the stream once per frame and decodes each frame
from cached layer inputs of earlier positions, by wavefronts of positions that cannot depend on
each other (the default) or one position and level per step (the decoders:
:mod:`vpbench_shrvqvae.vpn_decoding`); :meth:`VPNPrior.generate_naive` re-runs the whole model
on the whole clip at every step. All give identical codes (tested).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from vpbench import sampled_loop
from vpbench.layers.masked_conv import CausalConv3d, GatedBlock, GroupLinear
from vpbench_shrvqvae.vpn_decoding import Sequential, Wavefront


class ConvLSTMCell(nn.Module):
    """Shi et al. (2015) without peepholes: gates from one convolution of ``[x, h]``."""

    def __init__(self, cin: int, hidden: int, kernel: int):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(cin + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        h, c = state
        i, f, g, o = self.gates(torch.cat([x, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class VPNPrior(nn.Module):
    """Logits of every frame's codes given the codewords of the clip.

    ``forward`` takes global codes ``(B, T, H, W, n)`` and their cumulative codewords
    ``(B, T, H, W, n, D)`` (level ``g``: the sum of the path's codewords of levels ``<= g``) and
    returns ``(B, T, n, classes, H, W)``; the logits of
    frame ``t`` depend on frames ``< t`` through the stream and on the earlier positions (and
    earlier levels of the same position) of frame ``t`` through the masked network.
    """

    def __init__(self, *, levels: int, classes: int, dim: int, latent_hw: tuple[int, int], embed: int = 16,
                 hidden: int = 32, blocks: int = 4, kernel_space: int = 3, first_kernel_space: int = 5,
                 stream_hidden: int = 64, stream_layers: int = 2, stream_kernel: int = 3,
                 table_sizes: list[int] | None = None):
        super().__init__()
        n = self.levels = levels
        self.classes = classes
        channels = n * hidden
        # temporal stream over whole past frames
        self.stream_in = nn.Conv2d(n * embed, stream_hidden, stream_kernel, padding=stream_kernel // 2)
        self.cells = nn.ModuleList(ConvLSTMCell(stream_hidden, stream_hidden, stream_kernel)
                                   for _ in range(stream_layers))
        self.stream_out = nn.Conv2d(stream_hidden, stream_hidden, 1)
        self.skip = nn.Conv2d(n * embed, stream_hidden, stream_kernel, padding=stream_kernel // 2)
        self.pos = nn.Parameter(torch.zeros(stream_hidden, *latent_hw))
        # masked spatial PixelCNN over the current frame, conditioned on the stream's state
        self.inputs = nn.ModuleList(nn.Linear(dim, embed) for _ in range(n))
        self.index_embeds = nn.ModuleList(nn.Embedding(size, embed) for size in table_sizes or [])
        self.conv_in = CausalConv3d(n * embed, channels, (1, first_kernel_space, first_kernel_space), n, "A")
        self.cond_in = nn.Conv2d(stream_hidden, channels, 1)
        self.blocks = nn.ModuleList(GatedBlock(channels, (1, kernel_space, kernel_space), n) for _ in range(blocks))
        self.conds = nn.ModuleList(nn.Conv2d(stream_hidden, 2 * channels, 1) for _ in range(blocks))
        self.head = GroupLinear(channels, n * classes, n, "B")

    # -- temporal stream ------------------------------------------------------------------
    def stream_start(self, batch: int, like: torch.Tensor) -> list:
        h, w = self.pos.shape[1:]
        zeros = like.new_zeros(batch, self.cells[0].hidden, h, w)
        return [(zeros, zeros) for _ in self.cells]

    def stream_step(self, frame: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """Read one embedded frame ``(B, H, W, n * E)``; return the condition of the next frame
        ``(B, S, H, W)`` and the new state."""
        frame = frame.permute(0, 3, 1, 2)
        x = self.stream_in(frame)
        new = []
        for cell, s in zip(self.cells, state):
            x, s = cell(x, s)
            new.append(s)
        return self.condition(x) + self.skip(frame), new

    def condition(self, top: torch.Tensor) -> torch.Tensor:
        return self.stream_out(top) + self.pos

    def contexts(self, x: torch.Tensor) -> torch.Tensor:
        """The condition of every embedded frame ``(B, T, S, H, W)``: frame ``t``'s from frames ``< t``."""
        b, t = x.shape[:2]
        state = self.stream_start(b, x)
        out = [self.condition(state[-1][0])]
        for i in range(t - 1):
            cond, state = self.stream_step(x[:, i], state)
            out.append(cond)
        return torch.stack(out, 1)

    # -- spatial network ------------------------------------------------------------------
    def embed(self, glob: torch.Tensor, codewords: torch.Tensor) -> torch.Tensor:
        """Global codes ``(..., n)`` and their cumulative codewords ``(..., n, D)`` -> ``(..., n * E)``:
        level ``g``'s codeword projected (plus its index embedding, if any) into group ``g``."""
        parts = []
        for i, proj in enumerate(self.inputs):
            v = proj(codewords[..., i, :])
            parts.append(v + self.index_embeds[i](glob[..., i]) if len(self.index_embeds) else v)
        return torch.cat(parts, -1)

    def forward(self, glob: torch.Tensor, codewords: torch.Tensor) -> torch.Tensor:
        b, t, hh, ww = glob.shape[:4]
        x = self.embed(glob, codewords)  # (B, T, H, W, n*E)
        cond = self.contexts(x).flatten(0, 1)  # (B*T, S, H, W)
        return self.spatial(x.flatten(0, 1), self.cond_terms(cond)).reshape(b, t, self.levels, self.classes, hh, ww)

    def cond_terms(self, cond: torch.Tensor) -> list[list[torch.Tensor]]:
        """What the condition ``(B, S, H, W)`` adds to each layer's convolutions: the first
        convolution's output, then the two gates of every block."""
        return [[self.cond_in(cond)]] + [list(proj(cond).chunk(2, 1)) for proj in self.conds]

    def spatial(self, x: torch.Tensor, terms: list[list[torch.Tensor]]) -> torch.Tensor:
        """Logits ``(B, n, classes, H, W)`` of whole frames from their embedded codes ``(B, H, W, n*E)``."""
        b, hh, ww = x.shape[:3]
        h = self.conv_in(x.permute(0, 3, 1, 2)[:, :, None]) + terms[0][0][:, :, None]
        for block, (a, c) in zip(self.blocks, terms[1:]):
            h = block(h, (a[:, :, None], c[:, :, None]))
        return self.head(torch.relu(h))[:, :, 0].reshape(b, self.levels, self.classes, hh, ww)

    def layers(self) -> list[nn.Module]:
        """The masked layers of the spatial network, in order."""
        return [self.conv_in, *self.blocks]

    # -- generation ---------------------------------------------------------------------
    def noise(self, like: torch.Tensor) -> torch.Tensor:
        """Gumbel noise ``(B, H, W, n, classes)`` for one frame, drawn from the global RNG: with it
        fixed, sampling is a deterministic function of the logits (Gumbel-max), the same for every
        decoding order."""
        b, _, hh, ww = like.shape
        u = torch.rand(b, hh, ww, self.levels, self.classes, device=like.device)
        return -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-7)))

    @torch.no_grad()
    def generate(self, context: torch.Tensor, n_out: int, choose: Callable, to_global: Callable,
                 lookup: Callable, wavefront: bool = True) -> torch.Tensor:
        """Future local codes ``(B, n_out, n, H, W)`` after the context's global codes
        ``(B, T0, n, H, W)``. ``choose(logits (N, classes), level, parent_global or None, noise
        (N, classes)) -> local (N,)`` picks codes; ``to_global`` walks the tree (local ``(..., n)``
        -> global); ``lookup(global (..., n)) -> (..., n, D)`` gives cumulative codewords. The
        stream advances once per frame; each frame is decoded by wavefronts (``wavefront``) or
        position by position from cached layer inputs: identical codes."""
        b, t0, n, hh, ww = context.shape
        glob = context.permute(0, 1, 3, 4, 2)  # (B, T0, H, W, n)
        frames = self.embed(glob, lookup(glob))
        state = self.stream_start(b, frames)
        for i in range(t0):
            cond, state = self.stream_step(frames[:, i], state)
        decoder = (Wavefront if wavefront else Sequential)(self, cond, lookup)
        out = torch.zeros(b, n_out, n, hh, ww, dtype=torch.long, device=context.device)
        # a frame costs the same every time: FLOP counts run three
        for t in sampled_loop(range(n_out)):
            if t:
                glob = to_global(out[:, t - 1].permute(0, 2, 3, 1))  # (B, H, W, n)
                cond, state = self.stream_step(self.embed(glob, lookup(glob)), state)
            out[:, t] = decoder.frame(cond, choose, to_global, self.noise(cond))
        return out

    @torch.no_grad()
    def generate_naive(self, context: torch.Tensor, n_out: int, choose: Callable, to_global: Callable,
                       lookup: Callable) -> torch.Tensor:
        """The same codes as :meth:`generate`, re-running the whole model at every step."""
        b, t0, n, hh, ww = context.shape
        local = torch.zeros(b, t0 + n_out, n, hh, ww, dtype=torch.long, device=context.device)
        glob = torch.zeros_like(local)
        glob[:, :t0] = context
        for t in range(t0, t0 + n_out):
            noise = self.noise(glob[:, 0])
            for y in range(hh):
                for x in range(ww):
                    for level in range(n):
                        g = glob.permute(0, 1, 3, 4, 2)
                        logits = self(g, lookup(g))[:, t, level, :, y, x]
                        parent = glob[:, t, level - 1, y, x] if level else None
                        local[:, t, level, y, x] = choose(logits, level, parent, noise[:, y, x, level])
                        glob[:, t, :, y, x] = to_global(local[:, t, :, y, x])
        return local[:, t0:]
