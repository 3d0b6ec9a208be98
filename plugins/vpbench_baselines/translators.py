"""MetaFormer translators of the SimVP family: a stack of blocks over the frames' stacked features.

``MetaTranslator`` maps ``(B, T * C, H, W)`` to the same shape with ``n`` blocks of one kind:
the first works at ``T * C`` channels and reduces to ``hid`` with a 1x1 convolution, the middle
ones work at ``hid``, the last works at ``hid`` and expands back (OpenSTL's ``MidMetaNet``;
Tan et al. 2022, "SimVP: Towards Simple yet Powerful Spatiotemporal Predictive Learning",
arXiv 2211.12509). Block kinds:

- ``gsta`` (SimVP.V2's gated spatiotemporal attention): BatchNorm, 1x1 conv, GELU, large-kernel
  attention (5x5 depth-wise, 7x7 depth-wise with dilation 3, 1x1 conv to a value and a sigmoid
  gate; a 21x21 receptive field), 1x1 conv, shortcut; then BatchNorm and a convolutional MLP
  (1x1, 3x3 depth-wise, GELU, 1x1); both branches scaled per channel (init 0.01);
- ``tau`` (Tan et al. 2023, "Temporal Attention Unit", arXiv 2206.12126): as ``gsta`` with the
  attention replaced by the temporal attention unit: the same large-kernel statical attention
  (to ``dim`` channels, no gate) times a squeeze-and-excitation dynamical attention (global
  average pool, two bias-free linear layers with reduction ``dim // max(dim // 16, 4)``, ReLU,
  sigmoid), times the input;
- ``van`` (Guo et al. 2022, Visual Attention Network): as ``gsta`` with the large-kernel
  attention multiplying the input (``x * conv1(LK(x))``) instead of gating a value;
- ``poolformer`` (Yu et al. 2022, MetaFormer): GroupNorm(1), ``avgpool3x3(x) - x`` as the token
  mixer, GroupNorm(1), an MLP of 1x1 convolutions; layer scale 1e-5;
- ``convnext`` (Liu et al. 2022): 7x7 depth-wise conv, channel LayerNorm, an MLP of 1x1
  convolutions, layer scale 1e-6, one residual branch;
- ``convmixer`` (Trockman & Kolter 2022): ``x + BN(GELU(dw11x11(x)))``, then
  ``BN(GELU(pw(x)))`` (no residual around the point-wise part).
- token blocks over the ``H * W`` positions as tokens (pre-norm LayerNorm, GELU MLPs):
  ``mlpmixer`` (Tolstikhin et al. 2021; token MLP of ``dim / 2``, LayerNorm eps 1e-6), ``vit``
  (Dosovitskiy et al. 2021; 8 heads) and ``swin`` (Liu et al. 2021; 8 heads in windows of
  ``min(8, 7 if H % 7 == 0 else max(4, H // 16))`` with a relative position bias, shifted by half
  a window in every second block; as in OpenSTL's code the shifted windows get no attention
  mask).
- ``uniformer`` (Li et al. 2022): convolutional blocks (``x + dw3x3(x)``, then BN, 1x1, 5x5
  depth-wise, 1x1; BN and a 1x1-conv MLP) where a block changes the width, self-attention
  blocks (``x + dw3x3(x)``, then pre-norm attention with 8 heads and an MLP, layer scale 1e-6) in
  between;
- ``hornet`` (Rao et al. 2022): recursive gated convolution of order 4 (a 7x7 depth-wise conv
  over ``dim / 8 + ... + dim`` channels and point-wise products), channel LayerNorms, an MLP,
  layer scale 1e-6;
- ``moganet`` (Li et al. 2024): multi-order gated aggregation (dilated depth-wise convs of
  dilation 1, 2, 3 over channel splits 1 : 3 : 4, SiLU gates, feature decomposition against the
  global mean) and a channel-aggregation MLP, BatchNorm, layer scale 1e-5.

Stochastic depth as in OpenSTL's code: rates ``linspace(0.01, drop_path, n)`` for all but the
last block, ``drop_path`` for the last (so blocks keep a small rate when ``drop_path`` is 0).
Initialisation as OpenSTL's: convolutions ``normal(0, sqrt(2 / fan_out))``, linear layers
truncated normal (std 0.02). State-dict names follow OpenSTL's (timm 0.6's for the token blocks), so
its checkpoints map key by key (``vpbench import openstl``); every kind equals OpenSTL's module
on the same weights (max abs difference <= 6.7e-8, checked outside the tests).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): drop the whole residual branch per sample."""
    if rate == 0 or not training:
        return x
    keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device, dtype=x.dtype) >= rate
    return x * keep / (1 - rate)


def init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class LargeKernel(nn.Module):
    """Depth-wise ``2d - 1`` conv, then a depth-wise dilated conv: a ``kernel`` x ``kernel`` field."""

    def __init__(self, dim: int, kernel: int = 21, dilation: int = 3):
        super().__init__()
        k0 = 2 * dilation - 1
        k1 = kernel // dilation + ((kernel // dilation) % 2 - 1)
        self.conv0 = nn.Conv2d(dim, dim, k0, padding=(k0 - 1) // 2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, k1, padding=dilation * (k1 - 1) // 2, groups=dim, dilation=dilation)

    def forward(self, x):
        return self.conv_spatial(self.conv0(x))


class GatedAttention(nn.Module):
    """gSTA's attention: large kernel, then a 1x1 conv to a value and a gate."""

    def __init__(self, dim: int, kernel: int = 21):
        super().__init__()
        self.kernel = LargeKernel(dim, kernel)
        self.conv1 = nn.Conv2d(dim, 2 * dim, 1)

    def forward(self, x):
        value, gate = self.conv1(self.kernel(x)).chunk(2, 1)
        return torch.sigmoid(gate) * value


class TemporalAttention(nn.Module):
    """TAU: statical (large-kernel) attention times dynamical (squeeze-and-excitation) attention."""

    def __init__(self, dim: int, kernel: int = 21, reduction: int = 16):
        super().__init__()
        self.kernel = LargeKernel(dim, kernel)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        hidden = dim // max(dim // reduction, 4)
        self.fc = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, dim, bias=False),
                                nn.Sigmoid())

    def forward(self, x):
        statical = self.conv1(self.kernel(x))
        dynamical = self.fc(x.mean((2, 3)))[:, :, None, None]
        return dynamical * statical * x


class AttentionBranch(nn.Module):
    """1x1 conv, GELU, the block's attention, 1x1 conv, plus the input."""

    def __init__(self, dim: int, attention: nn.Module):
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.attention = attention
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        return self.proj_2(self.attention(nn.functional.gelu(self.proj_1(x)))) + x


class ConvMLP(nn.Module):
    """1x1 conv up, 3x3 depth-wise conv, GELU, 1x1 conv down."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.dwconv(self.fc1(x))))


class VANAttention(nn.Module):
    """VAN's large-kernel attention: the input times a 1x1 conv of the large kernel's output."""

    def __init__(self, dim: int, kernel: int = 21):
        super().__init__()
        self.kernel = LargeKernel(dim, kernel)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        return x * self.conv1(self.kernel(x))


ATTENTIONS = {"gsta": GatedAttention, "tau": TemporalAttention, "van": VANAttention}


class AttentionBlock(nn.Module):
    """gSTA / TAU / VAN block: ``x + s1 * attn(BN(x))``, then ``x + s2 * mlp(BN(x))``."""

    def __init__(self, dim: int, kind: str, mlp_ratio: float, drop_rate: float, kernel: int = 21):
        super().__init__()
        attention = ATTENTIONS[kind](dim, kernel)
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = AttentionBranch(dim, attention)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ConvMLP(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), 1e-2))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), 1e-2))
        self.drop_rate = drop_rate
        self.apply(init_weights)

    def forward(self, x):
        x = x + drop_path(self.layer_scale_1[:, None, None] * self.attn(self.norm1(x)), self.drop_rate, self.training)
        return x + drop_path(self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x)), self.drop_rate, self.training)


class PointwiseMLP(nn.Module):
    """1x1 conv up, GELU, 1x1 conv down."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class PoolFormerBlock(nn.Module):
    """``x + s1 * (pool(GN(x)) - GN(x))``, then ``x + s2 * mlp(GN(x))`` (GN: one group)."""

    def __init__(self, dim: int, mlp_ratio: float, drop_rate: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(1, dim)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.norm2 = nn.GroupNorm(1, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = PointwiseMLP(dim, hidden)
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), 1e-5))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), 1e-5))
        self.drop_rate = drop_rate
        for m in (self.mlp.fc1, self.mlp.fc2):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x):
        y = self.norm1(x)
        x = x + drop_path(self.layer_scale_1[:, None, None] * (self.pool(y) - y), self.drop_rate, self.training)
        return x + drop_path(self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x)), self.drop_rate, self.training)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of ``(B, C, H, W)`` (eps 1e-6, as ConvNeXt's)."""

    def __init__(self, dim: int):
        super().__init__(dim, eps=1e-6)

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """``x + gamma * mlp(LN(dw7x7(x)))``."""

    def __init__(self, dim: int, mlp_ratio: float, drop_rate: float):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = ChannelNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = PointwiseMLP(dim, hidden)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))
        self.drop_rate = drop_rate
        self.apply(init_weights)

    def forward(self, x):
        return x + drop_path(self.gamma[:, None, None] * self.mlp(self.norm(self.conv_dw(x))), self.drop_rate,
                             self.training)


class ConvMixerBlock(nn.Module):
    """``x + BN(GELU(dw(x)))``, then ``BN(GELU(pw(x)))``; OpenSTL uses an 11x11 depth-wise kernel."""

    def __init__(self, dim: int, mlp_ratio: float, drop_rate: float, kernel: int = 11):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, kernel, groups=dim, padding="same")
        self.norm_1 = nn.BatchNorm2d(dim)
        self.conv_pw = nn.Conv2d(dim, dim, 1)
        self.norm_2 = nn.BatchNorm2d(dim)
        self.apply(init_weights)

    def forward(self, x):
        x = x + self.norm_1(nn.functional.gelu(self.conv_dw(x)))
        return self.norm_2(nn.functional.gelu(self.conv_pw(x)))


class TokenMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens ``(B, N, C)``, with an optional additive bias."""

    def __init__(self, dim: int, heads: int = 8):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class TokenBlock(nn.Module):
    """A block over the positions as tokens: ``(B, C, H, W)`` in and out."""

    def forward(self, x):
        b, c, h, w = x.shape
        return self.tokens(x.flatten(2).transpose(1, 2), h, w).reshape(b, h, w, c).permute(0, 3, 1, 2)

    def residual(self, x, branch):
        return x + drop_path(branch, self.drop_rate, self.training)


class MixerBlock(TokenBlock):
    def __init__(self, dim: int, seq_len: int, mlp_ratio: float, drop_rate: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_tokens = TokenMLP(seq_len, int(0.5 * dim))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_channels = TokenMLP(dim, int(mlp_ratio * dim))
        self.drop_rate = drop_rate
        self.apply(init_weights)

    def tokens(self, x, h, w):
        x = self.residual(x, self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2))
        return self.residual(x, self.mlp_channels(self.norm2(x)))


class ViTBlock(TokenBlock):
    def __init__(self, dim: int, mlp_ratio: float, drop_rate: float, heads: int = 8):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = TokenMLP(dim, int(dim * mlp_ratio))
        self.drop_rate = drop_rate
        self.apply(init_weights)

    def tokens(self, x, h, w):
        x = self.residual(x, self.attn(self.norm1(x)))
        return self.residual(x, self.mlp(self.norm2(x)))


def relative_position_index(window: int) -> torch.Tensor:
    """Index into a ``(2w - 1)^2`` table of every pair of positions of a ``w x w`` window."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # (2, w*w)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


class WindowAttention(SelfAttention):
    """Self-attention in a ``w x w`` window with a learned relative position bias (Swin)."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__(dim, heads)
        self.relative_position_bias_table = nn.Parameter(torch.empty((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window))  # saved, as timm 0.6's

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[1]
        rel = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return super().forward(x, rel.reshape(n, n, -1).permute(2, 0, 1)[None].to(x.dtype))


class SwinBlock(ViTBlock):
    def __init__(self, dim: int, resolution: tuple[int, int], layer: int, mlp_ratio: float, drop_rate: float,
                 heads: int = 8):
        super().__init__(dim, mlp_ratio, drop_rate, heads)
        h = resolution[0]
        self.window = min(8, 7 if h % 7 == 0 else max(4, h // 16))
        self.shift = 0 if layer % 2 == 0 else self.window // 2
        self.attn = WindowAttention(dim, heads, self.window)
        self.attn.apply(init_weights)
        nn.init.trunc_normal_(self.attn.relative_position_bias_table, std=0.02)

    def tokens(self, x, h, w):
        b, _, c = x.shape
        win, shift = self.window, self.shift
        if h % win or w % win:
            raise ValueError(f"a {h}x{w} latent does not divide into {win}x{win} windows")
        y = self.norm1(x).reshape(b, h, w, c)
        if shift:
            y = torch.roll(y, (-shift, -shift), (1, 2))
        windows = y.reshape(b, h // win, win, w // win, win, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, win * win, c)
        out = self.attn(windows)
        y = out.reshape(b, h // win, w // win, win, win, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        if shift:
            y = torch.roll(y, (shift, shift), (1, 2))
        x = self.residual(x, y.reshape(b, h * w, c))
        return self.residual(x, self.mlp(self.norm2(x)))


class UniformerConvBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, drop_rate: float):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.norm2 = nn.BatchNorm2d(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = PointwiseMLP(dim, hidden)
        self.drop_rate = drop_rate
        self.apply(init_weights)

    def forward(self, x):
        x = x + self.pos_embed(x)
        x = x + drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))), self.drop_rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_rate, self.training)


class UniformerAttentionBlock(ViTBlock):
    def __init__(self, dim: int, mlp_ratio: float, drop_rate: float):
        super().__init__(dim, mlp_ratio, drop_rate)
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        init_weights(self.pos_embed)
        self.gamma_1 = nn.Parameter(torch.full((dim,), 1e-6))
        self.gamma_2 = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x):
        return super().forward(x + self.pos_embed(x))

    def tokens(self, x, h, w):
        x = self.residual(x, self.gamma_1 * self.attn(self.norm1(x)))
        return self.residual(x, self.gamma_2 * self.mlp(self.norm2(x)))


class RecursiveGatedConv(nn.Module):
    """HorNet's g^n conv: ``proj_in`` to ``dims[0] + sum(dims)`` channels, a 7x7 depth-wise conv
    of the second part, then ``x = pw_i(x) * dw_i`` for every order, ``proj_out``."""

    def __init__(self, dim: int, order: int = 4):
        super().__init__()
        self.dims = [dim // 2**i for i in range(order)][::-1]
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        self.dwconv = nn.Conv2d(sum(self.dims), sum(self.dims), 7, padding=3, groups=sum(self.dims))
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.pws = nn.ModuleList(nn.Conv2d(self.dims[i], self.dims[i + 1], 1) for i in range(order - 1))

    def forward(self, x):
        first, rest = self.proj_in(x).split((self.dims[0], sum(self.dims)), 1)
        gates = self.dwconv(rest).split(self.dims, 1)
        x = first * gates[0]
        for pw, gate in zip(self.pws, gates[1:]):
            x = pw(x) * gate
        return self.proj_out(x)


class HorNetBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, drop_rate: float):
        super().__init__()
        self.norm1 = ChannelNorm(dim)
        self.gnconv = RecursiveGatedConv(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, int(mlp_ratio * dim))
        self.pwconv2 = nn.Linear(int(mlp_ratio * dim), dim)
        self.gamma1 = nn.Parameter(torch.full((dim,), 1e-6))
        self.gamma2 = nn.Parameter(torch.full((dim,), 1e-6))
        self.drop_rate = drop_rate
        self.apply(init_weights)

    def forward(self, x):
        x = x + drop_path(self.gamma1[:, None, None] * self.gnconv(self.norm1(x)), self.drop_rate, self.training)
        y = self.gamma2 * self.pwconv2(nn.functional.gelu(self.pwconv1(self.norm2(x.permute(0, 2, 3, 1)))))
        return x + drop_path(y.permute(0, 3, 1, 2), self.drop_rate, self.training)


class MultiOrderConv(nn.Module):
    """MogaNet's value branch: a 5x5 depth-wise conv, then dilated depth-wise convs (5x5 dilation
    2, 7x7 dilation 3) on the last two of three channel splits (1 : 3 : 4), a point-wise conv."""

    def __init__(self, dim: int):
        super().__init__()
        self.d1, self.d2 = 3 * dim // 8, 4 * dim // 8
        self.d0 = dim - self.d1 - self.d2
        self.DW_conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.DW_conv1 = nn.Conv2d(self.d1, self.d1, 5, padding=4, groups=self.d1, dilation=2)
        self.DW_conv2 = nn.Conv2d(self.d2, self.d2, 7, padding=9, groups=self.d2, dilation=3)
        self.PW_conv = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        x0 = self.DW_conv0(x)
        x1 = self.DW_conv1(x0[:, self.d0:self.d0 + self.d1])
        x2 = self.DW_conv2(x0[:, x0.shape[1] - self.d2:])
        return self.PW_conv(torch.cat([x0[:, :self.d0], x1, x2], 1))


class MultiOrderGatedAggregation(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.gate = nn.Conv2d(dim, dim, 1)
        self.value = MultiOrderConv(dim)
        self.proj_2 = nn.Conv2d(dim, dim, 1)
        self.sigma = nn.Parameter(torch.full((1, dim, 1, 1), 1e-5))

    def forward(self, x):
        y = self.proj_1(x)
        y = nn.functional.silu(y + self.sigma * (y - y.mean((2, 3), keepdim=True)))
        return self.proj_2(nn.functional.silu(self.gate(y)) * nn.functional.silu(self.value(y))) + x


class ChannelAggregationMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.decompose = nn.Conv2d(hidden, 1, 1)
        self.sigma = nn.Parameter(torch.full((1, hidden, 1, 1), 1e-5))

    def forward(self, x):
        x = nn.functional.gelu(self.dwconv(self.fc1(x)))
        x = x + self.sigma * (x - nn.functional.gelu(self.decompose(x)))
        return self.fc2(x)


class MogaBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, drop_rate: float):
        super().__init__()
        if dim % 8:
            raise ValueError(f"MogaNet's channel split needs a width divisible by 8, got {dim}")
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = MultiOrderGatedAggregation(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ChannelAggregationMLP(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(torch.full((1, dim, 1, 1), 1e-5))
        self.layer_scale_2 = nn.Parameter(torch.full((1, dim, 1, 1), 1e-5))
        self.drop_rate = drop_rate
        self.apply(init_weights)

    def forward(self, x):
        x = x + drop_path(self.layer_scale_1 * self.attn(self.norm1(x)), self.drop_rate, self.training)
        return x + drop_path(self.layer_scale_2 * self.mlp(self.norm2(x)), self.drop_rate, self.training)


def make_block(kind: str, dim: int, mlp_ratio: float, drop_rate: float, resolution: tuple[int, int] = (1, 1),
               layer: int = 0, changes_width: bool = False) -> nn.Module:
    if kind in ATTENTIONS:
        return AttentionBlock(dim, kind, mlp_ratio, drop_rate)
    if kind == "uniformer":
        cls = UniformerConvBlock if changes_width or layer == 0 else UniformerAttentionBlock
        return cls(dim, mlp_ratio, drop_rate)
    if kind == "mlpmixer":
        return MixerBlock(dim, resolution[0] * resolution[1], mlp_ratio, drop_rate)
    if kind == "vit":
        return ViTBlock(dim, mlp_ratio, drop_rate)
    if kind == "swin":
        return SwinBlock(dim, resolution, layer, mlp_ratio, drop_rate)
    others = {"poolformer": PoolFormerBlock, "convnext": ConvNeXtBlock, "convmixer": ConvMixerBlock,
              "hornet": HorNetBlock, "moganet": MogaBlock}
    return others[kind](dim, mlp_ratio, drop_rate)


KINDS = ("gsta", "tau", "van", "poolformer", "convnext", "convmixer", "mlpmixer", "vit", "swin", "uniformer",
         "hornet", "moganet")


class MetaTranslator(nn.Module):
    def __init__(self, channels: int, hid: int, n: int, kind: str, mlp_ratio: float = 8.0, drop_path: float = 0.0,
                 resolution: tuple[int, int] = (1, 1)):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown translator block {kind!r}: {', '.join(KINDS)}")
        rates = [1e-2 + (drop_path - 1e-2) * i / (n - 1) for i in range(n - 1)] + [drop_path]
        dims = [(channels, hid)] + [(hid, hid)] * (n - 2) + [(hid, channels)]
        self.blocks = nn.ModuleList(make_block(kind, cin, mlp_ratio, rate, resolution, i, cin != cout)
                                    for i, ((cin, cout), rate) in enumerate(zip(dims, rates)))
        self.reductions = nn.ModuleList(nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity() for cin, cout in dims)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for block, reduce in zip(self.blocks, self.reductions):
            z = reduce(block(z))
        return z
