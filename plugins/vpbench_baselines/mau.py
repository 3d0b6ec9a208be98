"""MAU, the motion-aware unit (Chang et al., NeurIPS 2021), as configured in the OpenSTL tables.

Frames (patch 1) are encoded by a 1x1 conv and ``log2(sr_size)`` stride-2 3x3 convs (LeakyReLU
0.2) to a ``1 / sr_size`` grid; a stack of MAU cells runs there; transposed convs decode back and a
1x1 conv reads the frame out. A MAU cell keeps a temporal state ``T`` and passes a spatial state
``S`` up the stack. Its attention module weighs the layer's last ``tau`` temporal states by the
softmax over them of ``<S_prev_i, conv(S)> / sqrt(C H W)`` (``S_prev_i``: the spatial inputs the
layer saw at those steps) into a motion trend, gated with the current ``T`` by ``sigmoid(conv(T))``;
its fusion module then mixes the fused temporal and the spatial information both ways through
sigmoid gates (all convs with LayerNorm over ``C x H x W``, as OpenSTL's). ``cell_mode=residual``
adds ``S`` back; ``model_mode=recall`` adds the encoder features to the decoder's. OpenSTL also
allocates a ``merge`` and a ``conv_last_sr`` 1x1 conv its forward never runs; they are allocated
(never trained) so the count is OpenSTL's: 4,483,588 on Moving MNIST (published 4.5M).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from vpbench import ConfigError, DataSpec
from vpbench_baselines.recurrent import RecurrentConfig, RecurrentModel, presets


@dataclass(frozen=True)
class MAUConfig(RecurrentConfig):
    hidden: int = 64
    patch_size: int = 1
    sr_size: int = 4  # the cells run on a 1 / sr_size grid (a power of 2)
    tau: int = 5  # temporal states the attention module looks back on
    cell_mode: Literal["normal", "residual"] = "normal"
    model_mode: Literal["normal", "recall"] = "normal"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sr_size < 1 or self.sr_size & (self.sr_size - 1) or self.tau < 1:
            raise ConfigError(f"sr_size must be a power of 2 and tau >= 1, got {self.sr_size} and {self.tau}")


def conv_norm(cin: int, cout: int, k: int, hw: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2), nn.LayerNorm([cout, *hw]))


class MAUCell(nn.Module):
    def __init__(self, hidden: int, k: int, hw: tuple[int, int], tau: int, mode: str):
        super().__init__()
        self.hidden, self.tau, self.mode = hidden, tau, mode
        self.d = hidden * hw[0] * hw[1]
        self.conv_t = conv_norm(hidden, 3 * hidden, k, hw)
        self.conv_t_next = conv_norm(hidden, hidden, k, hw)
        self.conv_s = conv_norm(hidden, 3 * hidden, k, hw)
        self.conv_s_next = conv_norm(hidden, hidden, k, hw)

    def forward(self, t, s, t_att, s_att):
        """``t_att`` / ``s_att``: ``(tau, B, C, H, W)`` past temporal states and spatial inputs."""
        weights = torch.softmax((s_att * self.conv_s_next(s)).sum((2, 3, 4)) / math.sqrt(self.d), 0)
        trend = (t_att * weights[:, :, None, None, None]).sum(0)
        gate = torch.sigmoid(self.conv_t_next(t))
        fused = t * gate + (1 - gate) * trend
        t_g, t_t, t_s = self.conv_t(fused).chunk(3, 1)
        s_g, s_t, s_s = self.conv_s(s).chunk(3, 1)
        t_gate, s_gate = torch.sigmoid(t_g), torch.sigmoid(s_g)
        t_new = t_gate * t_t + (1 - t_gate) * s_t
        s_new = s_gate * s_s + (1 - s_gate) * t_s
        return t_new, s_new + s if self.mode == "residual" else s_new


class MAU(RecurrentModel):
    name = "mau"
    description = "MAU: motion-aware unit (Chang et al. 2021), OpenSTL configuration"
    Config = MAUConfig
    presets = presets({"hidden": 16, "sr_size": 2, "tau": 3, "filter_size": 3},
                      {"hidden": 16, "steps": 1200, "sampling_stop_iter": 800, "sampling_rate": 1.25e-3},
                      {"patch_size": 1, "sr_size": 2, "lr": 5e-4})

    def __init__(self, config: MAUConfig, spec: DataSpec):
        super().__init__(config, spec)
        c, h = config, config.hidden
        factor = c.patch_size * c.sr_size
        if spec.height % factor or spec.width % factor:
            raise ConfigError(f"frames of {spec.height}x{spec.width} do not divide by patch_size x sr_size = {factor}")
        n = int(math.log2(c.sr_size))
        hw = (spec.height // factor, spec.width // factor)
        self.encoders = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(self.frame_channels, h, 1), nn.LeakyReLU(0.2))]
            + [nn.Sequential(nn.Conv2d(h, h, 3, 2, 1), nn.LeakyReLU(0.2)) for _ in range(n)])
        self.decoders = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(h, h, 3, 2, 1, output_padding=1), *([nn.LeakyReLU(0.2)] if i < n - 1 else []))
            for i in range(n))
        self.conv_last = nn.Conv2d(h, self.frame_channels, 1)  # OpenSTL's srcnn: the read-out, with a bias
        self.merge = nn.Conv2d(2 * h, h, 1)  # allocated by OpenSTL, unused
        self.conv_last_sr = nn.Conv2d(2 * self.frame_channels, self.frame_channels, 1)  # allocated by OpenSTL, unused
        self.cells = nn.ModuleList(MAUCell(h, c.filter_size, hw, c.tau, c.cell_mode) for _ in range(c.layers))
        self.grid = hw

    import_sources = ("openstl",)

    @classmethod
    def import_state_dict(cls, source: str, state: dict, config: MAUConfig) -> dict:
        """OpenSTL's ``MAU_Model`` keys as this model's."""
        out = {}
        for key, value in state.items():
            key = re.sub(r"^cell_list\.", "cells.", key)
            key = re.sub(r"^encoders\.(\d+)\.encoder_t(_conv)?-?\d+\.", r"encoders.\1.0.", key)
            key = re.sub(r"^decoders\.(\d+)\.c_decoder\d+\.", r"decoders.\1.0.", key)
            out[key.replace("srcnn.0.", "conv_last.")] = value
        out["iteration"] = torch.tensor(max(config.sampling_stop_iter, config.steps), dtype=torch.long)
        return out

    def trained_parameters(self):
        unused = {id(p) for m in (self.merge, self.conv_last_sr) for p in m.parameters()}
        return [p for p in self.parameters() if id(p) not in unused]

    def init_state(self, batch, height, width, like):
        zeros = like.new_zeros(batch, self.config.hidden, *self.grid)
        layers, tau = self.config.layers, self.config.tau
        return [zeros] * layers, [[zeros] * tau for _ in range(layers)], [[zeros] * tau for _ in range(layers)]

    def step(self, x, state, aux=None):
        temporal, t_hist, s_hist = state
        features = []
        for encoder in self.encoders:
            x = encoder(x)
            features.append(x)
        s = x
        new_t, new_t_hist, new_s_hist = [], [], []
        for cell, t, th, sh in zip(self.cells, temporal, t_hist, s_hist):
            t, s_next = cell(t, s, torch.stack(th), torch.stack(sh))
            new_s_hist.append(sh[1:] + [s])
            new_t_hist.append(th[1:] + [t])
            new_t.append(t)
            s = s_next
        out = s
        for i, decoder in enumerate(self.decoders):
            out = decoder(out)
            if self.config.model_mode == "recall":
                out = out + features[-2 - i]
        return out, (new_t, new_t_hist, new_s_hist)
