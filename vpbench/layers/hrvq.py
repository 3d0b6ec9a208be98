"""Hierarchical residual vector quantisation (HR-VQVAE, Adiban et al., BMVC 2022, arXiv 2208.04554).

``levels`` levels of ``codebook_size`` (M) codewords each. Level 1 has one codebook; level i has
M^(i-1) codebooks of M codewords, stored as one table of M^i rows (``codebooks[i]``): the codebook used at a
position is the child of the codeword chosen one level up, so the global index at level i is
``parent * M + k_i``. Each level quantises the residual the previous levels left
(``r_0 = z``, ``e_i`` = nearest codeword to ``r_{i-1}`` in the selected codebook,
``r_i = r_{i-1} - e_i``); the decoder gets ``e = e_1 + ... + e_n`` through a straight-through
estimator from ``z``. The search costs ``n * M`` distances per position, not ``M^n``.

Modes: ``tree`` (above), ``residual`` (one flat codebook of M per level, plain residual VQ),
``flat`` (one level of M^levels codewords: a VQ-VAE with the tree's number of paths).

Losses: per level ``||sg[r_{i-1}] - e_i||^2`` (loss-updated codebooks only) +
``beta ||r_{i-1} - sg[e_i]||^2`` where ``r_{i-1}`` is built from ``z`` and stop-gradient
codewords, so commitment reaches the encoder only and the codebook term the codebook only.
EMA updates (decay 0.99, eps 1e-5) move codebooks in training mode only.

Pitfall handled (measured on a prototype: 3881 of 4096 level-3 codewords never trained kept
their random norm and decoded to noise when a prior picked them): level-1 codewords start
from the first batch's encoder outputs, deeper levels start near zero (``child_init``), dead
codewords of used parents are restarted from current residuals routed to that parent, and
``seen`` records which codewords occur in training codes so a prior can be restricted to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vpbench.layers.vq import ema_update, float32, nearest, perplexity


@dataclass
class HRVQOutput:
    quantized: torch.Tensor  # (B, D, H, W) straight-through sum of the levels' codewords
    codes: torch.Tensor  # (B, L, H, W) local indices k_i in 0..M-1 (flat mode: 0..M^levels-1)
    loss: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)  # per-level perplexity and usage


class Codebook(nn.Module):
    """One level's table of codewords ``(size, D)`` (a parameter when updated by loss, else a buffer
    moved by EMA with its statistics ``cluster`` and ``embed_sum``), the step each codeword was last
    used (``last_used``) and whether it occurred in training codes (``seen``)."""

    FIELDS = ("table", "cluster", "embed_sum", "last_used", "seen")

    def __init__(self, size: int, dim: int, scale: float, update: str, decay: float, eps: float):
        super().__init__()
        self.ema, self.decay, self.eps = update == "ema", decay, eps
        init = torch.randn(size, dim) * scale
        if self.ema:
            self.register_buffer("table", init)
            self.register_buffer("cluster", torch.zeros(size))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.table = nn.Parameter(init)
        self.register_buffer("last_used", torch.zeros(size, dtype=torch.long))
        self.register_buffer("seen", torch.zeros(size, dtype=torch.bool))

    @torch.no_grad()
    def record(self, glob: torch.Tensor, x: torch.Tensor, step: torch.Tensor) -> None:
        """Codewords ``glob`` were chosen for the vectors ``x`` at training step ``step``."""
        self.last_used[glob] = step
        self.seen[glob] = True
        if self.ema:
            ema_update(self.table, self.cluster, self.embed_sum, glob, x, self.decay, self.eps)

    @torch.no_grad()
    def reset(self, idx: torch.Tensor, vectors: torch.Tensor, step: torch.Tensor) -> None:
        """Restart codewords ``idx`` near ``vectors``."""
        self.table.data[idx] = vectors + 1e-4 * torch.randn_like(vectors)
        if self.ema:
            self.embed_sum[idx] = self.table.data[idx]
            self.cluster[idx] = 1.0
        self.last_used[idx] = step


class HRVQ(nn.Module):
    _version = 2  # the state-dict layout: one Codebook per level (version 1: f-string-named tensors)

    def __init__(self, levels: int = 3, codebook_size: int = 16, dim: int = 32, mode: str = "tree", beta: float = 0.25,
                 update: str = "ema", decay: float = 0.99, eps: float = 1e-5, child_init: float = 1e-3,
                 dead_after: int = 200, restart_every: int = 50):
        super().__init__()
        if mode not in ("tree", "residual", "flat"):
            raise ValueError("mode must be tree, residual or flat")
        if update not in ("ema", "loss"):
            raise ValueError("update must be ema or loss")
        self.mode, self.M, self.dim, self.beta, self.update = mode, codebook_size, dim, beta, update
        self.dead_after, self.restart_every = dead_after, restart_every
        self.levels = 1 if mode == "flat" else levels
        self.sizes = self._sizes(levels)
        self.codebooks = nn.ModuleList(Codebook(size, dim, 1.0 / dim**0.5 if i == 0 else child_init, update, decay, eps)
                                       for i, size in enumerate(self.sizes))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Version 1 state dicts named a level's tensors ``table{i}``, ``cluster{i}``, ``embed_sum{i}``,
        ``last_used{i}``, ``seen{i}``; they load as ``codebooks.{i}.*`` (found by name: a state dict
        rebuilt as a plain dict has lost its version)."""
        for level in range(len(self.codebooks)):
            for name in Codebook.FIELDS:
                old = f"{prefix}{name}{level}"
                if old in state_dict:
                    state_dict[f"{prefix}codebooks.{level}.{name}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _sizes(self, levels: int) -> list[int]:
        if self.mode == "tree":
            return [self.M ** (i + 1) for i in range(levels)]
        if self.mode == "residual":
            return [self.M] * levels
        return [self.M**levels]

    @property
    def classes(self) -> int:
        """Choices per level for a prior (M; flat mode: M^levels)."""
        return self.sizes[0] if self.mode == "flat" else self.M

    def global_index(self, level: int, parent: torch.Tensor | None, local: torch.Tensor) -> torch.Tensor:
        if self.mode == "tree" and level > 0:
            return parent * self.M + local
        return local

    def candidates(self, level: int, parent: torch.Tensor | None) -> torch.Tensor:
        """The codebook each position searches at ``level``: ``(M, D)`` or ``(N, M, D)``."""
        table = self.codebooks[level].table
        if self.mode == "tree" and level > 0:
            rows = parent[:, None] * self.M + torch.arange(self.M, device=parent.device)
            return table[rows]
        return table

    # -- forward -------------------------------------------------------------------------
    @float32
    def forward(self, z: torch.Tensor) -> HRVQOutput:
        b, d, h, w = z.shape
        r0 = z.permute(0, 2, 3, 1).reshape(-1, d)
        if self.training and not bool(self.initialised):
            self._init_from(r0.detach())
        residual = r0
        parent = None
        locals_, globals_, loss = [], [], r0.new_zeros(())
        total = torch.zeros_like(r0)
        for level in range(self.levels):
            cand = self.candidates(level, parent)
            local = nearest(residual.detach(), cand.detach())
            glob = self.global_index(level, parent, local)
            e = self.codebooks[level].table[glob]
            loss = loss + self.beta * F.mse_loss(residual, e.detach())
            if self.update == "loss":
                loss = loss + F.mse_loss(e, residual.detach())
            if self.training:
                self.codebooks[level].record(glob, residual.detach(), self.step)
            total = total + e
            residual = residual - e.detach()  # later levels see stop-gradient codewords
            locals_.append(local)
            globals_.append(glob)
            parent = glob
        if self.training:
            self.step += 1
            if self.restart_every and int(self.step) % self.restart_every == 0:
                self._restart_dead(r0.detach(), globals_)
        quantized = r0 + (total - r0).detach()  # straight-through: decoder gradients reach z unchanged
        quantized = quantized.reshape(b, h, w, d).permute(0, 3, 1, 2)
        codes = torch.stack(locals_, 1).reshape(b, h, w, self.levels).permute(0, 3, 1, 2)
        stats = {}
        if self.training:  # logged during training only (and bincount has no meta kernel)
            for level, glob in enumerate(globals_):
                stats[f"perplexity{level + 1}"] = float(perplexity(glob, self.sizes[level]))
                stats[f"usage{level + 1}"] = float(self.codebooks[level].seen.float().mean())
        return HRVQOutput(quantized, codes, loss, stats)

    def quantize_residuals(self, z: torch.Tensor) -> list[torch.Tensor]:
        """The residual norms after each level (``(levels + 1,)`` means over positions)."""
        r = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        norms, parent = [r.norm(dim=1).mean()], None
        for level in range(self.levels):
            local = nearest(r, self.candidates(level, parent))
            glob = self.global_index(level, parent, local)
            r = r - self.codebooks[level].table[glob]
            norms.append(r.norm(dim=1).mean())
            parent = glob
        return norms

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, L, H, W)`` local codes -> ``(B, D, H, W)`` sum of the path's codewords."""
        b, _, h, w = codes.shape
        flat = codes.permute(0, 2, 3, 1).reshape(-1, self.levels)
        total, parent = 0.0, None
        for level in range(self.levels):
            glob = self.global_index(level, parent, flat[:, level])
            total = total + self.codebooks[level].table[glob]
            parent = glob
        return total.reshape(b, h, w, self.dim).permute(0, 3, 1, 2)

    def cumulative_codewords(self, glob: torch.Tensor) -> torch.Tensor:
        """Global indices ``(..., L)`` -> ``(..., L, D)``: at level ``g`` the sum of the path's
        codewords of levels ``<= g`` (the quantised latent after ``g + 1`` levels), detached."""
        parts = [book.table.detach()[glob[..., level]] for level, book in enumerate(self.codebooks)]
        return torch.stack(parts, -2).cumsum(-2)

    def global_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Local codes ``(..., L)`` -> global indices per level ``(..., L)``."""
        out, parent = [], None
        for level in range(self.levels):
            glob = self.global_index(level, parent, codes[..., level])
            out.append(glob)
            parent = glob
        return torch.stack(out, -1)

    # -- training bookkeeping ---------------------------------------------------------------
    @torch.no_grad()
    def _init_from(self, r0: torch.Tensor) -> None:
        book = self.codebooks[0]
        idx = torch.randint(0, r0.shape[0], (book.table.shape[0],), device=r0.device)
        book.table.data.copy_(r0[idx] + 1e-3 * torch.randn_like(book.table))
        if book.ema:
            book.embed_sum.copy_(book.table.data)
            book.cluster.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _restart_dead(self, r0: torch.Tensor, globals_: list[torch.Tensor]) -> None:
        """Dead codewords (unused for ``dead_after`` steps) of parents in use restart from a
        residual that reached that parent in this batch."""
        residual = r0
        for level in range(self.levels):
            book = self.codebooks[level]
            dead = (self.step - book.last_used) > self.dead_after
            if level == 0 or self.mode != "tree":
                pool_rows = torch.arange(residual.shape[0], device=r0.device)
                dead_idx = dead.nonzero().flatten()
                if len(dead_idx):
                    pick = pool_rows[torch.randint(0, len(pool_rows), (len(dead_idx),), device=r0.device)]
                    book.reset(dead_idx, residual[pick], self.step)
            else:
                parent = globals_[level - 1]
                dead_idx = dead.nonzero().flatten()
                if len(dead_idx):
                    # a dead child of parent p restarts from a residual routed to p, if any
                    order = torch.argsort(parent)
                    sorted_parent = parent[order]
                    want = dead_idx // self.M
                    lo = torch.searchsorted(sorted_parent, want)
                    hi = torch.searchsorted(sorted_parent, want, right=True)
                    has = hi > lo
                    if has.any():
                        span = (hi - lo)[has]
                        offs = (torch.rand(len(span), device=r0.device) * span).long()
                        rows = order[lo[has] + offs]
                        book.reset(dead_idx[has], residual[rows], self.step)
            residual = residual - book.table[globals_[level]]
