"""SimVP with the Inception-UNet translator (Gao et al., CVPR 2022, arXiv 2206.05099), as
configured in the OpenSTL tables (``SimVP+IncepU``, "SimVP.V1").

Encoder: ``N_S`` conv blocks (3x3 conv, GroupNorm(2), SiLU), stride 2 in every second block, on
each frame; translator: the ``T x hid_S`` channels of all input frames stacked and mapped by a
UNet of ``N_T`` Inception blocks (1x1 conv to ``hid_T / 2``, then grouped convs of kernels
3, 5, 7, 11, each with GroupNorm and LeakyReLU(0.2), summed; decoder blocks read the skip of the
matching encoder block concatenated); decoder: ``N_S`` conv blocks with PixelShuffle upsampling
in every second one, the first encoder block's features added before the last, and a 1x1
read-out. Moving MNIST: hid_S 64, hid_T 512, N_S 4, N_T 8: 57,946,113 parameters, 19.4G MACs.

Translators: ``model.translator`` swaps the Inception-UNet for one of the MetaFormer blocks of
OpenSTL's MetaVP table (:mod:`vpbench_baselines.translators`: gsta, tau, van, poolformer,
convnext, convmixer, mlpmixer, vit, swin, uniformer, hornet, moganet), with the same encoder,
decoder and rollout; ``gsta`` and ``tau`` are also models of their own with their papers'
defaults.

Rollout: SimVP maps ``n_in`` frames to ``n_in`` frames at once. For a horizon ``n_out > n_in`` it
is called again on the latest ``n_in`` frames (its own predictions included), as OpenSTL does,
and training back-propagates through the whole rollout; for ``n_out < n_in`` the first
``n_out`` outputs are kept. FLOPs and speed are measured over the whole rollout.

Departures: the parameter count is 57.9M where the OpenSTL table prints 58.0M (0.09% apart; the
MACs, 19.36G counted here against 19.4G, agree) -- see the README's notes on published counts.
Initialisation: truncated normal (std 0.02) for the encoder / decoder convolutions as in OpenSTL;
PyTorch defaults elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import vpbench
from vpbench import ConfigError, DataSpec, Stage


@dataclass(frozen=True)
class SimVPConfig:
    hid_s: int = 64  # channels of the spatial encoder / decoder
    hid_t: int = 512  # channels of the translator
    n_s: int = 4  # encoder (and decoder) blocks; every second one halves (doubles) the resolution
    n_t: int = 8  # translator blocks (incepu: in each half of the UNet)
    # incepu (SimVP.V1's Inception-UNet) or a MetaFormer block of vpbench_baselines.translators:
    # gsta, tau, van, poolformer, convnext, convmixer, mlpmixer, vit, swin, uniformer, hornet, moganet
    translator: str = "incepu"
    kernels: tuple[int, ...] = (3, 5, 7, 11)  # incepu: Inception branch kernels
    groups: int = 8  # incepu: groups of the Inception branch convolutions
    mlp_ratio: float = 8.0  # MetaFormer blocks: hidden channels of the MLP per channel
    drop_path: float = 0.0  # MetaFormer blocks: stochastic depth of the last block (others linspace(0.01, it))
    alpha: float = 0.0  # weight of TAU's differential divergence regularisation (0: MSE only)
    spatio_kernel: int = 3  # kernel of the encoder / decoder convolutions
    steps: int = 125000  # optimiser steps (OpenSTL: 200 epochs x 10000 clips / batch 16)
    lr: float = 1e-3
    warmup_steps: int = 0
    batch: int = 0  # clips per step; 0 = train.batch_size

    def __post_init__(self) -> None:
        from vpbench_baselines.translators import KINDS

        vpbench.positive(self, "hid_s", "hid_t", "n_s", "groups", "spatio_kernel")
        if self.translator not in ("incepu", *KINDS):
            raise ConfigError(f"translator must be one of incepu, {', '.join(KINDS)}; got {self.translator!r}")
        if self.n_t < 2:
            raise ConfigError(f"n_t must be >= 2 (a translator needs a first and a last block), got {self.n_t}")
        if not self.kernels or any(k % 2 == 0 for k in self.kernels):
            raise ConfigError(f"kernels must be odd sizes, got {self.kernels}")
        if self.hid_s % 2:
            raise ConfigError("hid_s must be even (GroupNorm of 2 groups)")
        if self.translator == "incepu" and self.hid_t % (2 * self.groups):
            raise ConfigError("hid_s must be even and hid_t divisible by 2 * groups (GroupNorm)")
        if self.mlp_ratio <= 0 or not 0 <= self.drop_path < 1 or self.alpha < 0:
            raise ConfigError("mlp_ratio must be > 0, drop_path in [0, 1) and alpha >= 0")
        if self.steps < 0 or self.lr <= 0:
            raise ConfigError("steps must be >= 0 and lr > 0")


class ConvBlock(nn.Module):
    """conv (stride 2 to go down; conv to 4x channels + PixelShuffle to go up), GroupNorm(2), SiLU."""

    def __init__(self, cin: int, cout: int, k: int, down: bool = False, up: bool = False):
        super().__init__()
        if up:
            self.conv = nn.Sequential(nn.Conv2d(cin, 4 * cout, k, padding=k // 2), nn.PixelShuffle(2))
        else:
            stride = 2 if down else 1
            self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=(k - stride + 1) // 2)
        self.norm = nn.GroupNorm(2, cout)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return F.silu(self.norm(self.conv(x)))


class Inception(nn.Module):
    """1x1 conv to ``mid`` channels, then the sum of grouped k x k convs (GroupNorm, LeakyReLU)."""

    def __init__(self, cin: int, mid: int, cout: int, kernels: tuple[int, ...], groups: int):
        super().__init__()
        self.reduce = nn.Conv2d(cin, mid, 1)
        g = groups if mid % groups == 0 else 1
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(mid, cout, k, padding=k // 2, groups=g), nn.GroupNorm(g, cout),
                          nn.LeakyReLU(0.2)) for k in kernels)

    def forward(self, x):
        x = self.reduce(x)
        return sum(branch(x) for branch in self.branches)


class IncepUNet(nn.Module):
    """The translator: ``n_t`` Inception blocks down, ``n_t`` up with skip concatenation."""

    def __init__(self, channels: int, hid: int, n_t: int, kernels, groups):
        super().__init__()
        mid = hid // 2
        self.enc = nn.ModuleList([Inception(channels, mid, hid, kernels, groups)]
                                 + [Inception(hid, mid, hid, kernels, groups) for _ in range(n_t - 1)])
        self.dec = nn.ModuleList([Inception(hid, mid, hid, kernels, groups)]
                                 + [Inception(2 * hid, mid, hid, kernels, groups) for _ in range(n_t - 2)]
                                 + [Inception(2 * hid, mid, channels, kernels, groups)])

    def forward(self, z):
        skips = []
        for i, layer in enumerate(self.enc):
            z = layer(z)
            if i < len(self.enc) - 1:
                skips.append(z)
        z = self.dec[0](z)
        for layer in self.dec[1:]:
            z = layer(torch.cat([z, skips.pop()], 1))
        return z


class SimVP(nn.Module):
    name = "simvp"
    version = "0.1.0"
    description = "SimVP + Inception-UNet translator (Gao et al. 2022), OpenSTL configuration"
    Config = SimVPConfig
    presets = {
        "smoke": {"model": {"hid_s": 8, "hid_t": 32, "n_s": 2, "n_t": 2, "kernels": (3, 5), "groups": 4,
                            "steps": 60, "lr": 3e-3},
                  "data": {"n_train": 256, "n_val": 32, "n_test": 32},
                  "train": {"batch_size": 8, "val_clips": 16}, "eval": {"batch_size": 16, "examples": 2}},
        # ~0.42 s/step on 2 idle cores: 3000 steps ~21 min (600 steps, 4 min, scored MSE 122.4 /
        # SSIM 0.456 on 500 test clips; still improving)
        "cpu": {"dataset_name": "mmnist",
                "model": {"hid_s": 16, "hid_t": 64, "n_s": 2, "n_t": 4, "steps": 3000, "lr": 2e-3, "warmup_steps": 50},
                "train": {"batch_size": 8, "val_clips": 32, "ckpt_every": 100},
                "eval": {"max_clips": 500, "batch_size": 100, "examples": 3}},
        "paper": {"train": {"batch_size": 16, "amp": "auto", "val_every": 5000, "ckpt_every": 2000, "num_workers": 4}},
        # the KTH row of the OpenSTL table (12.2M): hid_S 64, hid_T 256, N_S 2, N_T 6 (12,152,385)
        "paper@kth": {"model": {"hid_s": 64, "hid_t": 256, "n_s": 2, "n_t": 6, "steps": 100000}},
    }

    def __init__(self, config: SimVPConfig, spec: DataSpec):
        super().__init__()
        c = self.config = config
        self.spec = spec
        factor = 2 ** (c.n_s // 2)
        if spec.height % factor or spec.width % factor:
            raise ConfigError(f"frames of {spec.height}x{spec.width} do not divide by 2^(n_s/2) = {factor}")
        down = [i % 2 == 1 for i in range(c.n_s)]  # False, True, False, True, ...
        k = c.spatio_kernel
        self.enc = nn.ModuleList(ConvBlock(spec.channels if i == 0 else c.hid_s, c.hid_s, k, down=d)
                                 for i, d in enumerate(down))
        self.dec = nn.ModuleList(ConvBlock(c.hid_s, c.hid_s, k, up=u) for u in reversed(down))
        self.readout = nn.Conv2d(c.hid_s, spec.channels, 1)
        self.hid = self.make_translator(spec.n_in * c.hid_s)
        # grouped convolutions in channels-last layout: their backward pass is 20-30x faster on CPU
        # (oneDNN; measured 1.6 s -> 0.06 s for 32 -> 64 channels, 8 groups, 32x32, batch 16)
        self.hid.to(memory_format=torch.channels_last)

    def make_translator(self, channels: int) -> nn.Module:
        """The translator over the ``channels = n_in * hid_s`` stacked features of the frames."""
        c = self.config
        if c.translator == "incepu":
            return IncepUNet(channels, c.hid_t, c.n_t, c.kernels, c.groups)
        from vpbench_baselines.translators import MetaTranslator

        factor = 2 ** (c.n_s // 2)
        resolution = (self.spec.height // factor, self.spec.width // factor)
        return MetaTranslator(channels, c.hid_t, c.n_t, c.translator, c.mlp_ratio, c.drop_path, resolution)

    def stages(self) -> list[Stage]:
        c = self.config
        return [Stage("train", self.parameters, c.steps, c.lr, warmup_steps=c.warmup_steps, batch_size=c.batch or None)]

    import_sources = ("openstl",)

    @classmethod
    def import_state_dict(cls, source: str, state: dict, config: SimVPConfig) -> dict:
        """OpenSTL's ``SimVP_Model`` keys (``method='SimVP'`` or ``'TAU'``) as this model's."""
        # Swin's shifted-window masks: timm saves them, OpenSTL's forward never applies them
        return {openstl_key(k): v for k, v in state.items() if not k.endswith(".attn_mask")}

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """One native call: ``(B, n_in, C, H, W)`` -> the next ``n_in`` frames (unclamped)."""
        b, t, ch, h, w = frames.shape
        x = frames.reshape(b * t, ch, h, w)
        first = x = self.enc[0](x)
        for layer in self.enc[1:]:
            x = layer(x)
        _, cz, hz, wz = x.shape
        z = self.hid(x.reshape(b, t * cz, hz, wz).contiguous(memory_format=torch.channels_last))
        z = z.contiguous().reshape(b * t, cz, hz, wz)
        for layer in self.dec[:-1]:
            z = layer(z)
        y = self.readout(self.dec[-1](z + first))
        return y.reshape(b, t, ch, h, w)

    def rollout(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        return repeated_calls(self, context, n_out)

    def training_step(self, batch, stage: str) -> dict:
        context, future = batch
        pred = self.rollout(context, future.shape[1])
        mse = F.mse_loss(pred, future)
        if self.config.alpha == 0:
            return {"loss": mse}
        div = divergence_regularisation(pred, future)
        return {"loss": mse + self.config.alpha * div, "mse": mse.detach(), "divergence": div.detach()}

    @torch.no_grad()
    def predict(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        return self.rollout(context, n_out).clamp(0, 1)


OPENSTL_KEYS = [  # (pattern, replacement) applied in order
    (r"^enc\.enc\.(\d+)\.conv\.", r"enc.\1."), (r"^dec\.dec\.(\d+)\.conv\.", r"dec.\1."), (r"^dec\.readout\.", "readout."),
    (r"^hid\.(enc|dec)\.(\d+)\.conv1\.", r"hid.\1.\2.reduce."),  # IncepU
    (r"^hid\.(enc|dec)\.(\d+)\.layers\.(\d+)\.conv\.", r"hid.\1.\2.branches.\3.0."),
    (r"^hid\.(enc|dec)\.(\d+)\.layers\.(\d+)\.norm\.", r"hid.\1.\2.branches.\3.1."),
    (r"^hid\.enc\.(\d+)\.block\.", r"hid.blocks.\1."), (r"^hid\.enc\.(\d+)\.reduction\.", r"hid.reductions.\1."),
    (r"attn\.spatial_gating_unit\.conv(0|_spatial)\.", r"attn.attention.kernel.conv\1."),
    (r"attn\.spatial_gating_unit\.", "attn.attention."), (r"mlp\.dwconv\.dwconv\.", "mlp.dwconv."),
]


def openstl_key(key: str) -> str:
    """An OpenSTL SimVP state-dict key as vpbench's (the same network; other module names)."""
    import re

    for pattern, replacement in OPENSTL_KEYS:
        key = re.sub(pattern, replacement, key)
    return key


def repeated_calls(model: nn.Module, context: torch.Tensor, n_out: int) -> torch.Tensor:
    """``n_out`` frames from a model mapping ``n_in`` frames to the next ``n_in``: called again on
    the latest ``n_in`` frames (its own outputs included) until the horizon is covered."""
    n_in = context.shape[1]
    frames, made = context, []
    while sum(p.shape[1] for p in made) < n_out:
        pred = model(frames[:, -n_in:])
        made.append(pred)
        frames = torch.cat([frames, pred], 1)
    return torch.cat(made, 1)[:, :n_out]


def divergence_regularisation(pred: torch.Tensor, target: torch.Tensor, tau: float = 0.1,
                              eps: float = 1e-12) -> torch.Tensor:
    """TAU's differential divergence regularisation (Tan et al. 2023, Eq. 6): KL divergence from
    the softmax (temperature ``tau``) over pixels of the true frame differences to that of the
    predicted ones, ``sum p_pred * log(p_pred / p_true)``, averaged over frames and elements as in
    OpenSTL's code (``eps`` inside both logs as there); 0 for fewer than three frames."""
    b, t = pred.shape[:2]
    if t <= 2:
        return pred.new_zeros(())
    p = torch.softmax((pred[:, 1:] - pred[:, :-1]).reshape(b, t - 1, -1) / tau, -1)
    q = torch.softmax((target[:, 1:] - target[:, :-1]).reshape(b, t - 1, -1) / tau, -1)
    return (p * torch.log(p / (q + eps) + eps)).mean()


@dataclass(frozen=True)
class GSTAConfig(SimVPConfig):
    translator: str = "gsta"


@dataclass(frozen=True)
class TAUConfig(SimVPConfig):
    translator: str = "tau"
    alpha: float = 0.1  # the paper's and OpenSTL's weight of the divergence term


def _meta_presets(kth_drop_path: float) -> dict:
    return {
        "smoke": {"model": {"hid_s": 8, "hid_t": 32, "n_s": 2, "n_t": 2, "mlp_ratio": 2.0, "steps": 60, "lr": 3e-3},
                  "data": {"n_train": 256, "n_val": 32, "n_test": 32},
                  "train": {"batch_size": 8, "val_clips": 16}, "eval": {"batch_size": 16, "examples": 2}},
        "cpu": {"dataset_name": "mmnist",
                "model": {"hid_s": 16, "hid_t": 64, "n_s": 2, "n_t": 4, "mlp_ratio": 4.0, "steps": 3000, "lr": 2e-3,
                          "warmup_steps": 50},
                "train": {"batch_size": 8, "val_clips": 32, "ckpt_every": 100},
                "eval": {"max_clips": 500, "batch_size": 100, "examples": 3}},
        "paper": {"train": {"batch_size": 16, "amp": "auto", "val_every": 5000, "ckpt_every": 2000, "num_workers": 4}},
        "paper@kth": {"model": {"hid_s": 64, "hid_t": 256, "n_s": 2, "n_t": 6, "drop_path": kth_drop_path,
                                "steps": 100000}},
    }


class GSTA(SimVP):
    """SimVP.V2 (Tan et al. 2022, arXiv 2211.12509): SimVP's encoder and decoder around a stack of
    gated spatiotemporal attention blocks (:mod:`vpbench_baselines.translators`). Moving MNIST
    (OpenSTL's ``SimVP_gSTA``: hid_S 64, hid_T 512, N_S 4, N_T 8, mlp_ratio 8): the published
    46.8M parameters / 16.5G MACs. Checked outside the tests against OpenSTL's own modules on the
    same random weights (state-dict keys mapped one to one, eval mode, 10 -> 10 and 10 -> 20):
    max abs difference 6e-8, as for TAU. Departures: the learning rate follows the trainer's
    warm-up + cosine schedule, not OpenSTL's one-cycle."""

    name = "gsta"
    version = "0.1.0"
    description = "SimVP.V2: gated spatiotemporal attention translator (Tan et al. 2022)"
    Config = GSTAConfig
    presets = _meta_presets(0.2)


class TAU(GSTA):
    """TAU (Tan et al., CVPR 2023, arXiv 2206.12126): the temporal attention unit (statical
    large-kernel attention times dynamical squeeze-and-excitation attention) as SimVP's
    translator, trained with MSE plus ``alpha`` times the differential divergence
    regularisation. Moving MNIST (OpenSTL's ``TAU``: hid_S 64, hid_T 512, N_S 4, N_T 8): the
    published 44.7M parameters / 16.0G MACs. Departures as :class:`GSTA`."""

    name = "tau"
    description = "TAU: temporal attention unit + differential divergence loss (Tan et al. 2023)"
    Config = TAUConfig
    presets = _meta_presets(0.1)
