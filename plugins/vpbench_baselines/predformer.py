"""PredFormer (Tang et al. 2024, "Video Prediction Transformers without Recurrence or
Convolution", arXiv 2410.04733): a pure transformer over patch tokens of all context frames.

Each frame is cut into ``patch x patch`` patches, each linearly embedded, plus a fixed sinusoidal
embedding of the token's place among the ``n_in * patches`` tokens. ``ndepth`` PredFormer layers
follow; a layer is a sequence of gated transformers (pre-norm multi-head attention without
qkv bias, then a pre-norm SwiGLU MLP of ``dim * scale_dim``, each residual; a final LayerNorm),
each attending either over time (the ``n_in`` tokens of one patch position) or over space (the
patches of one frame). ``layout`` spells the sequence: ``tsst`` (Quadruplet-TSST, the paper's
Moving MNIST model and the default), ``ts`` / ``st`` (Binary), ``tst`` / ``sts`` (Triplet),
``stts`` (Quadruplet-STTS). A LayerNorm and a linear head map each token back to its patch. The
model maps ``n_in`` frames to the next ``n_in``; longer horizons call it again on its own
outputs, as SimVP and the authors' code do.

Moving MNIST configuration (the authors' ``configs/mmnist/PredFormer.py`` with their training
script: patch 8, dim 256, 8 heads of 32, scale_dim 4, depth 1, Ndepth 6, TSST, no dropout;
AdamW, lr 1e-3, weight decay 0.01, batch 16, 2000 epochs): 25,297,728 parameters, counted here
(``vpbench profile predformer --dataset mmnist --preset paper`` prints it with the MACs).
Departures: the factorised (FacST / FacTS) and full-attention variants are not offered; the
learning rate follows the trainer's warm-up + cosine schedule instead of one-cycle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import vpbench
from vpbench import ConfigError, DataSpec, Stage
from vpbench_baselines.simvp import repeated_calls
from vpbench_baselines.translators import drop_path


@dataclass(frozen=True)
class PredFormerConfig:
    patch: int = 8  # patch side in pixels
    dim: int = 256  # token width
    heads: int = 8
    dim_head: int = 32
    scale_dim: int = 4  # SwiGLU hidden width per token channel
    depth: int = 1  # attention + MLP pairs inside one gated transformer
    ndepth: int = 6  # PredFormer layers
    layout: str = "tsst"  # t: attention over time, s: over space, in order, inside one layer
    dropout: float = 0.0
    attn_dropout: float = 0.0
    drop_path: float = 0.0
    steps: int = 1250000  # 2000 epochs x 10000 clips / batch 16, the authors' Moving MNIST run
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 0
    batch: int = 0  # clips per step; 0 = train.batch_size

    def __post_init__(self) -> None:
        vpbench.positive(self, "patch", "dim", "heads", "dim_head", "scale_dim", "depth", "ndepth")
        if not self.layout or set(self.layout) - {"t", "s"}:
            raise ConfigError(f"layout must be a string of t (time) and s (space), e.g. tsst, got {self.layout!r}")
        vpbench.in_range(self, 0, 1, "dropout", "attn_dropout", "drop_path", closed=False)
        if self.steps < 0 or self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError("steps must be >= 0, lr > 0 and weight_decay >= 0")


def sinusoidal(positions: int, dim: int) -> torch.Tensor:
    """``(positions, dim)``: ``sin`` / ``cos`` of ``p / 10000^(2 (i // 2) / dim)`` on even / odd ``i``,
    computed as the authors' ``sinusoidal_embedding`` does: each angle a Python float, rounded to
    float32, then ``sin`` / ``cos`` in float32 (in float64 throughout the table differs by up to
    3e-5 over 640 positions)."""
    angle = torch.tensor([[p / (10000 ** (2 * (i // 2) / dim)) for i in range(dim)] for p in range(positions)],
                         dtype=torch.float32)
    even = torch.arange(dim) % 2 == 0
    return torch.where(even, torch.sin(angle), torch.cos(angle))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.to_qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return F.dropout(self.to_out(out.transpose(1, 2).reshape(b, n, -1)), self.dropout, self.training)


class SwiGLU(nn.Module):
    """``fc2(SiLU(fc1_g(x)) * fc1_x(x))`` (Shazeer 2020)."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1_g = nn.Linear(dim, hidden)
        self.fc1_x = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = dropout

    def forward(self, x):
        x = F.dropout(F.silu(self.fc1_g(x)) * self.fc1_x(x), self.dropout, self.training)
        return F.dropout(self.fc2(x), self.dropout, self.training)


class GatedTransformer(nn.Module):
    def __init__(self, c: PredFormerConfig):
        super().__init__()
        self.attn_norms = nn.ModuleList(nn.LayerNorm(c.dim) for _ in range(c.depth))
        self.attns = nn.ModuleList(Attention(c.dim, c.heads, c.dim_head, c.attn_dropout) for _ in range(c.depth))
        self.mlp_norms = nn.ModuleList(nn.LayerNorm(c.dim) for _ in range(c.depth))
        self.mlps = nn.ModuleList(SwiGLU(c.dim, c.dim * c.scale_dim, c.dropout) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.dim)
        self.drop_rate = c.drop_path

    def forward(self, x):
        for attn_norm, attn, mlp_norm, mlp in zip(self.attn_norms, self.attns, self.mlp_norms, self.mlps):
            x = x + drop_path(attn(attn_norm(x)), self.drop_rate, self.training)
            x = x + drop_path(mlp(mlp_norm(x)), self.drop_rate, self.training)
        return self.norm(x)


class PredFormerLayer(nn.Module):
    def __init__(self, c: PredFormerConfig):
        super().__init__()
        self.layout = c.layout
        self.parts = nn.ModuleList(GatedTransformer(c) for _ in c.layout)

    def forward(self, x):
        """``(B, T, N, D)`` tokens: ``t`` parts attend over T per patch, ``s`` parts over N per frame."""
        b, t, n, d = x.shape
        for axis, part in zip(self.layout, self.parts):
            if axis == "t":
                x = part(x.transpose(1, 2).reshape(b * n, t, d)).reshape(b, n, t, d).transpose(1, 2)
            else:
                x = part(x.reshape(b * t, n, d)).reshape(b, t, n, d)
        return x


class PredFormer(nn.Module):
    name = "predformer"
    version = "0.1.0"
    description = "PredFormer: gated transformers over space and time, no recurrence or convolution (Tang et al. 2024)"
    Config = PredFormerConfig
    presets = {
        "smoke": {"model": {"patch": 4, "dim": 32, "heads": 2, "dim_head": 16, "scale_dim": 2, "ndepth": 1,
                            "steps": 60, "lr": 3e-3},
                  "data": {"n_train": 256, "n_val": 32, "n_test": 32},
                  "train": {"batch_size": 8, "val_clips": 16}, "eval": {"batch_size": 16, "examples": 2}},
        "cpu": {"dataset_name": "mmnist",
                "model": {"dim": 64, "heads": 4, "dim_head": 16, "scale_dim": 2, "ndepth": 2, "steps": 3000,
                          "lr": 1e-3, "warmup_steps": 50},
                "train": {"batch_size": 8, "val_clips": 32, "ckpt_every": 100},
                "eval": {"max_clips": 500, "batch_size": 100, "examples": 3}},
        "paper": {"train": {"batch_size": 16, "amp": "auto", "val_every": 5000, "ckpt_every": 2000, "num_workers": 4}},
    }

    def __init__(self, config: PredFormerConfig, spec: DataSpec):
        super().__init__()
        c = self.config = config
        self.spec = spec
        if spec.height % c.patch or spec.width % c.patch:
            raise ConfigError(f"frames of {spec.height}x{spec.width} do not divide into {c.patch}x{c.patch} patches")
        self.grid = (spec.height // c.patch, spec.width // c.patch)
        patches = self.grid[0] * self.grid[1]
        self.to_patch_embedding = nn.Linear(spec.channels * c.patch**2, c.dim)
        self.register_buffer("pos_embedding", sinusoidal(spec.n_in * patches, c.dim).reshape(1, spec.n_in, patches, c.dim),
                             persistent=False)
        self.blocks = nn.ModuleList(PredFormerLayer(c) for _ in range(c.ndepth))
        self.head_norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, spec.channels * c.patch**2)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    import_sources = ("openstl", "predformer")

    @classmethod
    def import_state_dict(cls, source: str, state: dict, config: PredFormerConfig) -> dict:
        """The authors' ``PredFormer_Model`` keys (their OpenSTL-based code) as this model's."""
        parts = {f"{a}_{b}_transformer": i for i, (a, b) in enumerate(  # TSST's four gated transformers
            [("ts", "temporal"), ("ts", "space"), ("st", "space"), ("st", "temporal")])}
        out = {}
        for key, value in state.items():
            key = key.replace("to_patch_embedding.1.", "to_patch_embedding.").replace("mlp_head.0.", "head_norm.")
            key = key.replace("mlp_head.1.", "head.")
            m = re.match(r"blocks\.(\d+)\.(\w+?_transformer)\.(.*)", key)
            if m:
                rest = re.sub(r"layers\.(\d+)\.0\.norm\.", r"attn_norms.\1.", m.group(3))
                rest = re.sub(r"layers\.(\d+)\.0\.fn\.to_out\.0\.", r"attns.\1.to_out.", rest)
                rest = re.sub(r"layers\.(\d+)\.0\.fn\.", r"attns.\1.", rest)
                rest = re.sub(r"layers\.(\d+)\.1\.norm\.", r"mlp_norms.\1.", rest)
                rest = re.sub(r"layers\.(\d+)\.1\.fn\.", r"mlps.\1.", rest)
                key = f"blocks.{m.group(1)}.parts.{parts.get(m.group(2), m.group(2))}.{rest}"
            out[key] = value
        return out

    def stages(self) -> list[Stage]:
        c = self.config
        return [Stage("train", self.parameters, c.steps, c.lr, weight_decay=c.weight_decay,
                      warmup_steps=c.warmup_steps, batch_size=c.batch or None)]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, n_in, C, H, W)`` -> the next ``n_in`` frames (unclamped)."""
        b, t, ch, h, w = frames.shape
        p, (gh, gw) = self.config.patch, self.grid
        x = frames.reshape(b, t, ch, gh, p, gw, p).permute(0, 1, 3, 5, 4, 6, 2).reshape(b, t, gh * gw, p * p * ch)
        x = self.to_patch_embedding(x) + self.pos_embedding
        for block in self.blocks:
            x = block(x)
        y = self.head(self.head_norm(x)).reshape(b, t, gh, gw, ch, p, p)  # the head's features are (C, p, p)
        return y.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, t, ch, h, w)

    def rollout(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        return repeated_calls(self, context, n_out)

    def training_step(self, batch, stage: str) -> dict:
        context, future = batch
        return {"loss": F.mse_loss(self.rollout(context, future.shape[1]), future)}

    @torch.no_grad()
    def predict(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        return self.rollout(context, n_out).clamp(0, 1)

