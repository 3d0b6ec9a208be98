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

Generation: :meth:`VPNPrior.generate` advances the stream once per frame and evaluates the
spatial network from cached layer inputs of earlier positions: a wavefront of positions that
cannot depend on each other per step, each level through only the channel groups its logits
read (``wavefront``, the default), or one position and level per step, or (``parallel``)
decodes the frame by fixed-point iteration over whole-frame passes;
:meth:`VPNPrior.generate_naive` re-runs the whole model on the whole clip at every step. All
give identical codes (tested).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from vpbench.layers.masked_conv import CausalConv3d, GatedBlock, GroupLinear, causal_mask
from vpbench.profile import sampled_loop


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


def causal_cells(kh: int, kw: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column offsets, in raster order, of the earlier positions a masked ``kh x kw``
    kernel of the current frame reads (its mask's kept cells, centre aside): the rows above and
    the columns left of the centre."""
    kept = causal_mask(1, 1, (1, kh, kw), 1, "A")[0, 0, 0]  # the centre is masked for a single group
    return kept.nonzero().unbind(1)


def interleave_gates(a: torch.Tensor, b: torch.Tensor, groups: int) -> torch.Tensor:
    """A block's two gates ``(..., C)`` side by side group by group, ``(..., 2C)``:
    ``a_0, b_0, a_1, b_1, ...``, so the gates of groups ``<= j`` are a prefix."""
    return torch.stack([a.unflatten(-1, (groups, -1)), b.unflatten(-1, (groups, -1))], -2).flatten(-3)


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
        self._plans: dict = {}  # the last wavefront schedule, by batch, grid and device

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

    def cond_terms(self, cond: torch.Tensor) -> list[torch.Tensor]:
        """What the condition ``(B, S, H, W)`` adds to each layer: the first convolution's output,
        then the two gates of every block."""
        return [self.cond_in(cond)] + [t for proj in self.conds for t in proj(cond).chunk(2, 1)]

    def spatial(self, x: torch.Tensor, terms: list[torch.Tensor]) -> torch.Tensor:
        """Logits ``(B, n, classes, H, W)`` of whole frames from their embedded codes ``(B, H, W, n*E)``."""
        b, hh, ww = x.shape[:3]
        h = self.conv_in(x.permute(0, 3, 1, 2)[:, :, None]) + terms[0][:, :, None]
        for i, block in enumerate(self.blocks):
            h = block(h, (terms[2 * i + 1][:, :, None], terms[2 * i + 2][:, :, None]))
        return self.head(torch.relu(h))[:, :, 0].reshape(b, self.levels, self.classes, hh, ww)

    # -- cached incremental generation ----------------------------------------------------
    def _layers(self) -> list[CausalConv3d]:
        return [self.conv_in] + [conv for block in self.blocks for conv in (block.conv_a, block.conv_b)]

    def _cached_convs(self) -> list[CausalConv3d]:
        """One convolution per layer whose inputs are cached (a block's two read the same input)."""
        return [self.conv_in] + [block.conv_a for block in self.blocks]

    def noise(self, like: torch.Tensor) -> torch.Tensor:
        """Gumbel noise ``(B, H, W, n, classes)`` for one frame, drawn from the global RNG: with it
        fixed, sampling is a deterministic function of the logits (Gumbel-max), the same for every
        decoding order."""
        b, _, hh, ww = like.shape
        u = torch.rand(b, hh, ww, self.levels, self.classes, device=like.device)
        return -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-7)))

    def _frame(self, cond: torch.Tensor, weights: dict, choose: Callable, to_global: Callable,
               lookup: Callable, noise: torch.Tensor) -> torch.Tensor:
        """Local codes ``(B, n, H, W)`` of one frame under the stream's condition ``(B, S, H, W)``,
        one position and level after the other from cached layer inputs."""
        b, _, hh, ww = cond.shape
        n = self.levels
        extra = self.cond_terms(cond)
        caches = []
        for conv in self._cached_convs():
            _, kh, kw = conv.kernel
            cin = conv.weight.shape[1]
            caches.append(cond.new_zeros(b, cin, hh + kh - 1, ww + kw - 1))
        out = torch.zeros(b, n, hh, ww, dtype=torch.long, device=cond.device)

        def evaluate(glob: torch.Tensor, y: int, x: int, store: bool) -> torch.Tensor:
            v = self.embed(glob, lookup(glob))
            for i, cache in enumerate(caches):
                conv = self.conv_in if i == 0 else self.blocks[i - 1].conv_a
                _, kh, kw = conv.kernel
                if store:
                    cache[:, :, y + kh // 2, x + kw // 2] = v
                if i == 0:
                    v = conv.at(cache, v, y, x, extra[0][:, :, y, x], weights[id(conv)])
                else:
                    block = self.blocks[i - 1]
                    v = block.at(cache, v, y, x, extra[2 * i - 1][:, :, y, x], extra[2 * i][:, :, y, x],
                                 weights[id(block.conv_a)], weights[id(block.conv_b)])
            return self.head.at(torch.relu(v)).reshape(b, n, self.classes)

        # every position costs the same: FLOP counts run three
        for y, x in sampled_loop([(y, x) for y in range(hh) for x in range(ww)]):
            local = torch.zeros(b, n, dtype=torch.long, device=cond.device)
            for level in range(n):
                glob = to_global(local)
                logits = evaluate(glob, y, x, store=False)[:, level]
                local[:, level] = choose(logits, level, glob[:, level - 1] if level else None, noise[:, y, x, level])
            out[:, :, y, x] = local
            evaluate(to_global(local), y, x, store=True)
        return out

    def _frame_parallel(self, cond: torch.Tensor, choose: Callable, to_global: Callable, lookup: Callable,
                        noise: torch.Tensor, guess: torch.Tensor, stats: list | None) -> torch.Tensor:
        """The same codes as :meth:`_frame` by fixed-point (Jacobi) iteration: evaluate the whole
        frame on a guess, choose every code at once, repeat until nothing changes (Song et al.
        2021, arXiv 2002.03629). A code depends only on codes before it in the decoding order, so
        after ``k`` passes the first ``k`` codes are final and the fixed point is the sequential
        result; ``guess`` (the previous frame's codes) makes it come after a few passes."""
        terms = self.cond_terms(cond)
        b, n, hh, ww = guess.shape
        local, passes = guess, 0
        while passes <= hh * ww * n:  # the bound is never reached: see above
            passes += 1
            glob = to_global(local.permute(0, 2, 3, 1))  # (B, H, W, n)
            logits = self.spatial(self.embed(glob, lookup(glob)), terms).permute(0, 3, 4, 1, 2)  # (B, H, W, n, K)
            new = torch.stack([
                choose(logits[..., g, :].reshape(-1, self.classes), g, glob[..., g - 1].reshape(-1) if g else None,
                       noise[..., g, :].reshape(-1, self.classes)).reshape(b, hh, ww)
                for g in range(n)], 1)
            if torch.equal(new, local):
                break
            local = new
        if stats is not None:
            stats.append(passes)
        return local

    # -- wavefront generation ----------------------------------------------------------
    def wavefronts(self, hh: int, ww: int) -> list[list[tuple[int, int]]]:
        """Positions in decoding steps: ``(y, x)`` with ``x + s * y == step``, where ``s`` is one
        more than the widest kernel radius. A position's inputs reach at most that radius to the
        right per row above, so no position depends on another of its own step."""
        s = max(conv.kernel[2] // 2 for conv in self._layers()) + 1
        return [[(y, step - s * y) for y in range(hh) if 0 <= step - s * y < ww] for step in range(ww + s * (hh - 1))]

    def _embed_table(self, lookup: Callable, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`embed` as one table: ``embed(glob) == table[glob + offsets].sum(-2) + bias``. Row
        ``(j, code)`` holds what that level-``j`` code adds to every group ``g >= j`` (its codeword
        through group ``g``'s projection, linear, and at ``g == j`` its index embedding)."""
        n = self.levels
        rows = []
        for j, size in enumerate(emb.num_embeddings for emb in self.index_embeds):
            probe = torch.zeros(size, n, dtype=torch.long, device=device)
            probe[:, j] = torch.arange(size, device=device)
            cum = lookup(probe)  # (size, n, D): cumulative, so level j's own codeword is a difference
            codeword = cum[:, j] - (cum[:, j - 1] if j else 0)
            rows.append(torch.cat([codeword @ self.inputs[g].weight.t() * (g >= j)
                                   + (self.index_embeds[g].weight if g == j else 0) for g in range(n)], -1))
        sizes = torch.tensor([r.shape[0] for r in rows], device=device)
        offsets = torch.cumsum(sizes, 0) - sizes
        return torch.cat(rows), offsets, torch.cat([proj.bias for proj in self.inputs])

    def _wavefront_weights(self) -> dict:
        """The spatial network's weights for :meth:`_frame_wavefront`. Per layer the masked kernel
        of earlier positions as one matrix (a row block of ``Cin`` per kept cell: :func:`causal_cells`) and, per level
        ``j``, the centre kernel cut to the groups that level's logits read (outputs ``<= j``;
        inputs ``< j`` for the first layer, mask A, ``<= j`` after, mask B). A block's two
        convolutions are interleaved group by group (:func:`interleave_gates`) so the gates of
        groups ``<= j`` are a prefix; its projection and the head are cut the same way."""
        n, e = self.levels, self.inputs[0].out_features
        h = self.conv_in.weight.shape[0] // n

        def split(conv: CausalConv3d) -> tuple[torch.Tensor, torch.Tensor]:
            around, centre = conv.incremental_weights()  # (Cout, Cin, kh, kw), (Cout, Cin)
            dy, dx = causal_cells(*conv.kernel[1:])
            return around.permute(2, 3, 1, 0)[dy, dx].flatten(0, 1), centre.t()

        around, centre = split(self.conv_in)
        out = {"first": around, "first_own": [centre[: j * e, : (j + 1) * h].contiguous() for j in range(n)],
               "around": [], "levels": [[] for _ in range(n)]}
        for block in self.blocks:
            (pa, ca), (pb, cb) = split(block.conv_a), split(block.conv_b)
            own, proj = interleave_gates(ca, cb, n), (block.proj.weight * block.proj.mask).t()
            out["around"].append(interleave_gates(pa, pb, n))  # stacked below: (blocks, cells * C, 2C)
            for j, level in enumerate(out["levels"]):  # per level: (own inputs, projection, its bias)
                w = (j + 1) * h
                level.append((own[:w, : 2 * w].contiguous(), proj[:w, :w].contiguous(), block.proj.bias[:w]))
        if self.blocks:
            out["around"] = torch.stack(out["around"])
        head, k = (self.head.weight * self.head.mask).t(), self.classes
        out["head"] = [(head[: (j + 1) * h, j * k:(j + 1) * k].contiguous(), self.head.bias[j * k:(j + 1) * k])
                       for j in range(n)]
        return out

    def _condition_tables(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every layer's bias plus the stream's condition at every position of one frame: the first
        layer's ``(B * H * W, C)`` and the blocks' ``(blocks, B * H * W, 2C)``, gates interleaved."""
        n = self.levels
        terms = self.cond_terms(cond)
        flat = lambda t: t.permute(0, 2, 3, 1).flatten(0, 2)  # noqa: E731
        first = flat(terms[0]) + self.conv_in.bias
        if not self.blocks:
            return first, None
        gates = []
        for i, block in enumerate(self.blocks):
            a, b = flat(terms[2 * i + 1]) + block.conv_a.bias, flat(terms[2 * i + 2]) + block.conv_b.bias
            gates.append(interleave_gates(a, b, n))
        return first, torch.stack(gates)

    def _plan(self, b: int, hh: int, ww: int, device: torch.device) -> list[dict]:
        """The wavefront schedule of a ``b x hh x ww`` frame: per front, its rows' flat positions
        and, for the first layer's cache and the blocks' (one kernel size), the flat indices of
        each row's patch (the earlier cells its kernel's mask keeps: :func:`causal_cells`) and
        own cell."""
        sizes = {"first": self.conv_in.kernel[1:]}
        if self.blocks:
            sizes["blocks"] = self.blocks[0].conv_a.kernel[1:]
        plan = []
        for front in self.wavefronts(hh, ww):
            ys = torch.tensor([y for y, _ in front], device=device).repeat(b)
            xs = torch.tensor([x for _, x in front], device=device).repeat(b)
            bs = torch.arange(b, device=device).repeat_interleave(len(front))
            step = {"pos": (bs * hh + ys) * ww + xs}
            for name, (kh, kw) in sizes.items():
                base = (bs * (hh + kh - 1) + ys) * (ww + kw - 1) + xs
                dy, dx = causal_cells(kh, kw)
                step[name] = ((base[:, None] + (dy * (ww + kw - 1) + dx).to(device)).flatten(),
                              base + (kh // 2) * (ww + kw - 1) + kw // 2)
            plan.append(step)
        return plan

    def _frame_wavefront(self, cond: torch.Tensor, choose: Callable, to_global: Callable, lookup: Callable,
                         noise: torch.Tensor, plan: list[dict], weights: dict, table: tuple | None = None) -> torch.Tensor:
        """The same codes as :meth:`_frame` in fewer steps: the positions of a wavefront together
        (``plan``: :meth:`_plan`). Per front, the earlier positions' part of every layer is one
        matrix product from the caches (the blocks' as one batched product); then each level
        adds only the front's own inputs, through the groups its logits read. No layer's output
        at a position reads that position's last code (mask A keeps it out of the first layer),
        so the last level's pass leaves every block input final and only the first layer's input
        is written again. ``weights``: :meth:`_wavefront_weights`; ``table``: :meth:`_embed_table`,
        or None for :meth:`embed`."""
        b, _, hh, ww = cond.shape
        n, k, nb, dev = self.levels, self.classes, len(self.blocks), cond.device
        e, h = self.inputs[0].out_features, self.conv_in.weight.shape[0] // n
        first_pre, blocks_pre = self._condition_tables(cond)
        (kh, kw), cin = self.conv_in.kernel[1:], self.conv_in.weight.shape[1]
        first_cache = cond.new_zeros(b * (hh + kh - 1) * (ww + kw - 1), cin)
        if nb:
            (kh, kw), c = self.blocks[0].conv_a.kernel[1:], self.conv_in.weight.shape[0]
            blocks_cache = cond.new_zeros(nb, b * (hh + kh - 1) * (ww + kw - 1), c)
        noise = noise.reshape(b * hh * ww, n, k)
        out = torch.zeros(b * hh * ww, n, dtype=torch.long, device=dev)

        def embed(glob: torch.Tensor) -> torch.Tensor:
            if table is None:
                return self.embed(glob, lookup(glob))
            rows, offsets, bias = table
            return rows[glob + offsets].sum(-2) + bias

        for step in plan:
            pos, (patch, own) = step["pos"], step["first"]
            r = pos.shape[0]
            near = torch.addmm(first_pre.index_select(0, pos), first_cache.index_select(0, patch).view(r, -1),
                               weights["first"])
            if nb:  # (blocks, rows, 2C)
                block_patch, block_own = step["blocks"]
                near_blocks = torch.baddbmm(blocks_pre.index_select(1, pos),
                                            blocks_cache.index_select(1, block_patch).view(nb, r, -1), weights["around"])
            local, glob = torch.zeros(r, n, dtype=torch.long, device=dev), None
            step_noise = noise.index_select(0, pos).unbind(1)  # per level (rows, classes)
            for j in range(n):
                width, last = (j + 1) * h, j == n - 1  # the channels of groups <= j
                v = near if last else near[:, :width]
                if j:
                    v = torch.addmm(v, embed(glob)[:, : j * e], weights["first_own"][j])
                inputs = []
                nears = (near_blocks if last else near_blocks[:, :, : 2 * width]).unbind(0) if nb else ()
                for near_block, (w_own, w_proj, proj_bias) in zip(nears, weights["levels"][j]):
                    inputs.append(v)
                    z = torch.addmm(near_block, v, w_own)
                    if j:  # gates interleaved by group: (a_0, b_0, ..., a_j, b_j)
                        gate_a, gate_b = z.view(r, j + 1, 2, h).unbind(2)
                        gated = torch.tanh(gate_a).mul_(torch.sigmoid(gate_b)).view(r, width)
                    else:  # (a_0, b_0): two halves, two ops fewer
                        gate_a, gate_b = z.chunk(2, 1)
                        gated = torch.tanh(gate_a).mul_(torch.sigmoid(gate_b))
                    v = torch.addmm(v + proj_bias, gated, w_proj)
                head, head_bias = weights["head"][j]
                logits = torch.addmm(head_bias, torch.relu(v), head)
                local[:, j] = choose(logits, j, glob[:, j - 1] if j else None, step_noise[j])
                glob = to_global(local)
            first_cache.index_copy_(0, own, embed(glob))
            if nb:
                blocks_cache.index_copy_(1, block_own, torch.stack(inputs))
            out.index_copy_(0, pos, local)
        return out.view(b, hh, ww, n).permute(0, 3, 1, 2)

    @torch.no_grad()
    def generate(self, context: torch.Tensor, n_out: int, choose: Callable, to_global: Callable,
                 lookup: Callable, parallel: bool = False, stats: list | None = None,
                 wavefront: bool = True) -> torch.Tensor:
        """Future local codes ``(B, n_out, n, H, W)`` after the context's global codes
        ``(B, T0, n, H, W)``. ``choose(logits (N, classes), level, parent_global or None, noise
        (N, classes)) -> local (N,)`` picks codes; ``to_global`` walks the tree (local ``(..., n)``
        -> global); ``lookup(global (..., n)) -> (..., n, D)`` gives cumulative codewords. The
        stream advances once per frame; each frame is decoded by fixed-point iteration
        (``parallel``, the number of passes appended to ``stats``), by wavefronts (``wavefront``)
        or position by position from cached layer inputs: identical codes."""
        b, t0, n, hh, ww = context.shape
        glob = context.permute(0, 1, 3, 4, 2)  # (B, T0, H, W, n)
        frames = self.embed(glob, lookup(glob))
        state = self.stream_start(b, frames)
        for i in range(t0):
            cond, state = self.stream_step(frames[:, i], state)
        if parallel:
            guess = context[:, -1].clone()
            if n > 1:  # the last context frame's local codes
                guess[:, 1:] = context[:, -1, 1:] % self.classes
        elif wavefront:
            key = (b, hh, ww, str(context.device))
            if key not in self._plans:  # the schedule depends on the shape only
                self._plans = {key: self._plan(b, hh, ww, context.device)}
            plan, weights = self._plans[key], self._wavefront_weights()
            table = self._embed_table(lookup, context.device) if len(self.index_embeds) else None
        else:
            weights = {id(conv): conv.incremental_weights() for conv in self._layers()}
        out = torch.zeros(b, n_out, n, hh, ww, dtype=torch.long, device=context.device)
        # a sequential frame costs the same every time (FLOP counts run three); a parallel one, as many
        # passes as its fixed point needs
        for t in range(n_out) if parallel else sampled_loop(range(n_out)):
            if t:
                glob = to_global(out[:, t - 1].permute(0, 2, 3, 1))  # (B, H, W, n)
                cond, state = self.stream_step(self.embed(glob, lookup(glob)), state)
            noise = self.noise(cond)
            if parallel:
                guess = self._frame_parallel(cond, choose, to_global, lookup, noise, guess, stats)
                out[:, t] = guess
            elif wavefront:
                out[:, t] = self._frame_wavefront(cond, choose, to_global, lookup, noise, plan, weights, table)
            else:
                out[:, t] = self._frame(cond, weights, choose, to_global, lookup, noise)
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
