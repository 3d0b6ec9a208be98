"""Decoders of one frame of the VPN prior's codes (:class:`vpbench_shrvqvae.vpn.VPNPrior`) under
the temporal stream's condition, from cached layer inputs of earlier positions: the codes of the
naive loop (:meth:`VPNPrior.generate_naive`; tested), in fewer steps.

:class:`Sequential` takes one position and level per step, every layer from its own cache
(``layer.cache``). :class:`Wavefront` (the default) takes the positions of a wavefront together:
positions that cannot depend on each other (:func:`wavefronts`), the earlier positions' part of
every layer as one product per layer and step, and each level through only the channel groups
its logits read. Both take ``choose(logits (N, classes), level, parent_global or None, noise
(N, classes)) -> local (N,)``, ``to_global`` (local ``(..., n)`` -> global) and the frame's
Gumbel noise ``(B, H, W, n, classes)``, and return local codes ``(B, n, H, W)``.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from vpbench import sampled_loop
from vpbench.layers.masked_conv import CausalConv3d, causal_mask


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


class Sequential:
    """One position and level after the other; the layers' caches live as long as the decoder
    (one per generation), each frame starts them again under its condition."""

    def __init__(self, prior, like: torch.Tensor, lookup: Callable):
        b, _, hh, ww = like.shape
        self.prior, self.lookup = prior, lookup
        inputs = [prior.conv_in.weight.shape[1]] + [prior.conv_in.weight.shape[0]] * len(prior.blocks)
        self.caches = [layer.cache(like.new_zeros(b, c, 0, hh, ww)) for layer, c in zip(prior.layers(), inputs)]

    def frame(self, cond: torch.Tensor, choose: Callable, to_global: Callable, noise: torch.Tensor) -> torch.Tensor:
        prior, n = self.prior, self.prior.levels
        b, _, hh, ww = cond.shape
        for cache, terms in zip(self.caches, prior.cond_terms(cond)):
            cache.begin_frame(terms)
        out = torch.zeros(b, n, hh, ww, dtype=torch.long, device=cond.device)

        def evaluate(glob: torch.Tensor, y: int, x: int, store: bool) -> torch.Tensor:
            v = prior.embed(glob, self.lookup(glob))
            for cache in self.caches:
                v = cache.step(v, y, x, store)
            return prior.head.at(torch.relu(v)).reshape(b, n, prior.classes)

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


def kernels(prior) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """The spatial kernels of the prior's first layer and of its gated blocks (None without blocks)."""
    return prior.conv_in.kernel[1:], prior.blocks[0].conv_a.kernel[1:] if len(prior.blocks) else None


def wavefronts(kernel_sizes: tuple, hh: int, ww: int) -> list[list[tuple[int, int]]]:
    """Positions in decoding steps: ``(y, x)`` with ``x + s * y == step``, where ``s`` is one
    more than the widest kernel radius (``kernel_sizes``: :func:`kernels`). A position's inputs
    reach at most that radius to the right per row above, so no position depends on another of
    its own step."""
    s = max(kw // 2 for _, kw in filter(None, kernel_sizes)) + 1
    return [[(y, step - s * y) for y in range(hh) if 0 <= step - s * y < ww] for step in range(ww + s * (hh - 1))]


@functools.lru_cache(maxsize=1)  # the schedule depends on the shapes only
def plan(kernel_sizes: tuple, b: int, hh: int, ww: int, device: torch.device) -> list[dict]:
    """The wavefront schedule of a ``b x hh x ww`` frame: per front, its rows' flat positions
    and, for the first layer's cache and the blocks' (one kernel size), the flat indices of
    each row's patch (the earlier cells its kernel's mask keeps: :func:`causal_cells`) and
    own cell."""
    first, blocks = kernel_sizes
    sizes = {"first": first} if blocks is None else {"first": first, "blocks": blocks}
    out = []
    for front in wavefronts(kernel_sizes, hh, ww):
        ys = torch.tensor([y for y, _ in front], device=device).repeat(b)
        xs = torch.tensor([x for _, x in front], device=device).repeat(b)
        bs = torch.arange(b, device=device).repeat_interleave(len(front))
        step = {"pos": (bs * hh + ys) * ww + xs}
        for name, (kh, kw) in sizes.items():
            base = (bs * (hh + kh - 1) + ys) * (ww + kw - 1) + xs
            dy, dx = causal_cells(kh, kw)
            step[name] = ((base[:, None] + (dy * (ww + kw - 1) + dx).to(device)).flatten(),
                          base + (kh // 2) * (ww + kw - 1) + kw // 2)
        out.append(step)
    return out


def embed_table(prior, lookup: Callable, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The prior's ``embed`` as one table: ``embed(glob) == table[glob + offsets].sum(-2) + bias``. Row
    ``(j, code)`` holds what that level-``j`` code adds to every group ``g >= j`` (its codeword
    through group ``g``'s projection, linear, and at ``g == j`` its index embedding)."""
    n = prior.levels
    rows = []
    for j, size in enumerate(emb.num_embeddings for emb in prior.index_embeds):
        probe = torch.zeros(size, n, dtype=torch.long, device=device)
        probe[:, j] = torch.arange(size, device=device)
        cum = lookup(probe)  # (size, n, D): cumulative, so level j's own codeword is a difference
        codeword = cum[:, j] - (cum[:, j - 1] if j else 0)
        rows.append(torch.cat([codeword @ prior.inputs[g].weight.t() * (g >= j)
                               + (prior.index_embeds[g].weight if g == j else 0) for g in range(n)], -1))
    sizes = torch.tensor([r.shape[0] for r in rows], device=device)
    offsets = torch.cumsum(sizes, 0) - sizes
    return torch.cat(rows), offsets, torch.cat([proj.bias for proj in prior.inputs])


def wavefront_weights(prior) -> dict:
    """The spatial network's weights for :class:`Wavefront`. Per layer the masked kernel
    of earlier positions as one matrix (a row block of ``Cin`` per kept cell: :func:`causal_cells`) and, per level
    ``j``, the centre kernel cut to the groups that level's logits read (outputs ``<= j``;
    inputs ``< j`` for the first layer, mask A, ``<= j`` after, mask B). A block's two
    convolutions are interleaved group by group (:func:`interleave_gates`) so the gates of
    groups ``<= j`` are a prefix; its projection and the head are cut the same way."""
    n, e = prior.levels, prior.inputs[0].out_features
    h = prior.conv_in.weight.shape[0] // n

    def split(conv: CausalConv3d) -> tuple[torch.Tensor, torch.Tensor]:
        around, centre = conv.incremental_weights()  # (Cout, Cin, kh, kw), (Cout, Cin)
        dy, dx = causal_cells(*conv.kernel[1:])
        return around.permute(2, 3, 1, 0)[dy, dx].flatten(0, 1), centre.t()

    around, centre = split(prior.conv_in)
    out = {"first": around, "first_own": [centre[: j * e, : (j + 1) * h].contiguous() for j in range(n)],
           "around": [], "levels": [[] for _ in range(n)]}
    for block in prior.blocks:
        (pa, ca), (pb, cb) = split(block.conv_a), split(block.conv_b)
        own, proj = interleave_gates(ca, cb, n), (block.proj.weight * block.proj.mask).t()
        out["around"].append(interleave_gates(pa, pb, n))  # stacked below: (blocks, cells * C, 2C)
        for j, level in enumerate(out["levels"]):  # per level: (own inputs, projection, its bias)
            w = (j + 1) * h
            level.append((own[:w, : 2 * w].contiguous(), proj[:w, :w].contiguous(), block.proj.bias[:w]))
    if prior.blocks:
        out["around"] = torch.stack(out["around"])
    head, k = (prior.head.weight * prior.head.mask).t(), prior.classes
    out["head"] = [(head[: (j + 1) * h, j * k:(j + 1) * k].contiguous(), prior.head.bias[j * k:(j + 1) * k])
                   for j in range(n)]
    return out


def condition_tables(prior, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every layer's bias plus the stream's condition at every position of one frame: the first
    layer's ``(B * H * W, C)`` and the blocks' ``(blocks, B * H * W, 2C)``, gates interleaved."""
    flat = lambda t: t.permute(0, 2, 3, 1).flatten(0, 2)  # noqa: E731
    (first_term,), *block_terms = prior.cond_terms(cond)
    first = flat(first_term) + prior.conv_in.bias
    if not prior.blocks:
        return first, None
    gates = [interleave_gates(flat(a) + block.conv_a.bias, flat(b) + block.conv_b.bias, prior.levels)
             for block, (a, b) in zip(prior.blocks, block_terms)]
    return first, torch.stack(gates)


class Wavefront:
    """The positions of a wavefront together (the schedule: :func:`plan`). Per front, the earlier
    positions' part of every layer is one matrix product from the caches (the blocks' as one
    batched product); then each level adds only the front's own inputs, through the groups its
    logits read. No layer's output at a position reads that position's last code (mask A keeps
    it out of the first layer), so the last level's pass leaves every block input final and only
    the first layer's input is written again. The weights (:func:`wavefront_weights`) and, with
    index embeddings, the embedding table (:func:`embed_table`) are prepared once per decoder."""

    def __init__(self, prior, like: torch.Tensor, lookup: Callable):
        b, _, hh, ww = like.shape
        self.prior, self.lookup = prior, lookup
        self.plan = plan(kernels(prior), b, hh, ww, like.device)
        self.weights = wavefront_weights(prior)
        self.table = embed_table(prior, lookup, like.device) if len(prior.index_embeds) else None

    def embed(self, glob: torch.Tensor) -> torch.Tensor:
        if self.table is None:
            return self.prior.embed(glob, self.lookup(glob))
        rows, offsets, bias = self.table
        return rows[glob + offsets].sum(-2) + bias

    def frame(self, cond: torch.Tensor, choose: Callable, to_global: Callable, noise: torch.Tensor) -> torch.Tensor:
        prior, weights = self.prior, self.weights
        b, _, hh, ww = cond.shape
        n, k, nb, dev = prior.levels, prior.classes, len(prior.blocks), cond.device
        e, h = prior.inputs[0].out_features, prior.conv_in.weight.shape[0] // n
        first_pre, blocks_pre = condition_tables(prior, cond)
        (kh, kw), cin = prior.conv_in.kernel[1:], prior.conv_in.weight.shape[1]
        first_cache = cond.new_zeros(b * (hh + kh - 1) * (ww + kw - 1), cin)
        if nb:
            (kh, kw), c = prior.blocks[0].conv_a.kernel[1:], prior.conv_in.weight.shape[0]
            blocks_cache = cond.new_zeros(nb, b * (hh + kh - 1) * (ww + kw - 1), c)
        noise = noise.reshape(b * hh * ww, n, k)
        out = torch.zeros(b * hh * ww, n, dtype=torch.long, device=dev)
        for step in self.plan:
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
                    v = torch.addmm(v, self.embed(glob)[:, : j * e], weights["first_own"][j])
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
            first_cache.index_copy_(0, own, self.embed(glob))
            if nb:
                blocks_cache.index_copy_(1, block_own, torch.stack(inputs))
            out.index_copy_(0, pos, local)
        return out.view(b, hh, ww, n).permute(0, 3, 1, 2)
