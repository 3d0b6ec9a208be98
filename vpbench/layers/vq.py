"""Vector quantisation with one codebook (van den Oord et al., NeurIPS 2017).

``VectorQuantizer(z) -> VQOutput(quantized, codes, loss, perplexity)``; ``decode_codes`` is
its inverse. Codebook updates are either by loss (``||sg[z] - e||^2``) or by exponential
moving averages of the assigned vectors (decay 0.99, Laplace-smoothed counts; the codebook
term is then dropped). The commitment term ``beta ||z - sg[e]||^2`` reaches the encoder only;
the straight-through estimator passes decoder gradients to ``z`` unchanged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vpbench.runtime import autocast_off


@dataclass
class VQOutput:
    quantized: torch.Tensor  # (B, D, H, W), straight-through
    codes: torch.Tensor  # (B, H, W) long
    loss: torch.Tensor  # scalar: commitment (+ codebook when updated by loss)
    perplexity: torch.Tensor  # scalar


def float32(forward):
    """Run a quantiser's forward in float32 whatever autocast says: nearest-codeword distances in
    bf16 / fp16 flip codes near ties (codes seen in training would differ from those seen in
    evaluation) and EMA statistics lose precision. The output goes on in float32."""

    @functools.wraps(forward)
    def wrapper(self, z: torch.Tensor, *args, **kwargs):
        with autocast_off(z.device):
            return forward(self, z.float(), *args, **kwargs)

    return wrapper


def nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest row of ``codebook`` for every row of ``x``.

    ``codebook`` is ``(M, D)`` (shared) or ``(N, M, D)`` (one candidate set per row of ``x``).
    """
    if codebook.dim() == 2:
        d = x.pow(2).sum(1, keepdim=True) - 2 * x @ codebook.t() + codebook.pow(2).sum(1)[None]
    else:
        d = (x[:, None, :] - codebook).pow(2).sum(-1)
    return d.argmin(-1)


def perplexity(codes: torch.Tensor, size: int) -> torch.Tensor:
    counts = torch.bincount(codes.flatten(), minlength=size).float()
    p = counts / counts.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())


def ema_update(table: torch.Tensor, cluster: torch.Tensor, embed_sum: torch.Tensor, codes: torch.Tensor,
               x: torch.Tensor, decay: float, eps: float) -> None:
    """In-place EMA codebook update with the vectors ``x`` assigned to ``codes``."""
    size = table.shape[0]
    counts = torch.bincount(codes, minlength=size).to(x.dtype)
    sums = torch.zeros_like(embed_sum).index_add_(0, codes, x)
    cluster.mul_(decay).add_(counts, alpha=1 - decay)
    embed_sum.mul_(decay).add_(sums, alpha=1 - decay)
    n = cluster.sum()
    smoothed = (cluster + eps) / (n + size * eps) * n
    used = cluster > eps  # never-used entries keep their value
    table[used] = (embed_sum / smoothed[:, None])[used]


class VectorQuantizer(nn.Module):
    def __init__(self, codebook_size: int, dim: int, beta: float = 0.25, update: str = "ema", decay: float = 0.99,
                 eps: float = 1e-5):
        super().__init__()
        if update not in ("ema", "loss"):
            raise ValueError("update must be 'ema' or 'loss'")
        self.codebook_size, self.dim, self.beta, self.update, self.decay, self.eps = codebook_size, dim, beta, update, decay, eps
        init = torch.randn(codebook_size, dim) / dim**0.5
        if update == "ema":
            self.register_buffer("embed", init)
            self.register_buffer("cluster", torch.zeros(codebook_size))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.embed = nn.Parameter(init)

    @float32
    def forward(self, z: torch.Tensor) -> VQOutput:
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        codes = nearest(flat.detach(), self.embed.detach())
        e = self.embed[codes] if self.update == "loss" else self.embed[codes].detach()
        loss = self.beta * F.mse_loss(flat, e.detach())
        if self.update == "loss":
            loss = loss + F.mse_loss(e, flat.detach())
        elif self.training:
            with torch.no_grad():
                ema_update(self.embed, self.cluster, self.embed_sum, codes, flat.detach(), self.decay, self.eps)
        quantized = flat + (e - flat).detach()
        quantized = quantized.reshape(b, h, w, d).permute(0, 3, 1, 2)
        return VQOutput(quantized, codes.reshape(b, h, w), loss, perplexity(codes, self.codebook_size))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, H, W)`` codes -> ``(B, D, H, W)`` codewords."""
        return self.embed[codes].permute(0, 3, 1, 2)
