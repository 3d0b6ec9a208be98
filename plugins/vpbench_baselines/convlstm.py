"""ConvLSTM (Shi et al., NeurIPS 2015, arXiv 1506.04214), as configured in the OpenSTL tables.

``ConvLSTM-S``: 4 stacked cells of 128 channels, 5x5 kernels, patch 4 on Moving MNIST (patch 2 on
KTH), a 1x1 bias-free read-out conv, scheduled sampling; 15.0M parameters and 56.8G MACs per
10 -> 10 Moving MNIST prediction (the whole 19-step rollout, fused multiply-adds).

Departures and filled gaps:

- The cell follows OpenSTL's: bias-free convolutions of the input (to 4 gates) and of the hidden
  state (to 4 gates), no peephole connections (Shi et al. have Hadamard peepholes on the cell
  state), no forget-gate bias.
- OpenSTL's cell also allocates an output convolution ``conv_o`` (2h -> h, 5x5) and, in later
  versions, a 1x1 ``conv_last`` (2h -> h) that its forward pass never uses; the published
  parameter counts include them (Moving MNIST table: ``conv_o`` only, 4 x 128 x 128 x 2 x 25 +
  the rest = 14,952,448 = 15.0M; KTH table: both, 14,928,384 = 14.9M, as ``openstl_unused``
  chooses). We allocate them too, so the cost table shows the published count, but they are
  never trained (not in the stage's parameters) and never run (MACs exclude them, as fvcore's do).
  ``openstl_unused = "none"`` drops them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from vpbench.protocols import DataSpec
from vpbench_baselines.recurrent import RecurrentConfig, RecurrentModel, presets


@dataclass(frozen=True)
class ConvLSTMConfig(RecurrentConfig):
    # unused cell weights OpenSTL allocates (they only change the parameter count; see the module doc)
    openstl_unused: Literal["none", "conv_o", "conv_o+conv_last"] = "conv_o"


class ConvLSTMCell(nn.Module):
    def __init__(self, cin: int, hidden: int, k: int, unused: str):
        super().__init__()
        self.hidden = hidden
        self.conv_x = nn.Conv2d(cin, 4 * hidden, k, padding=k // 2, bias=False)
        self.conv_h = nn.Conv2d(hidden, 4 * hidden, k, padding=k // 2, bias=False)
        self.unused = nn.ModuleList()
        if unused != "none":
            self.unused.append(nn.Conv2d(2 * hidden, hidden, k, padding=k // 2, bias=False))
        if unused == "conv_o+conv_last":
            self.unused.append(nn.Conv2d(2 * hidden, hidden, 1, bias=False))

    def forward(self, x, h, c):
        i, f, g, o = (self.conv_x(x) + self.conv_h(h)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class ConvLSTM(RecurrentModel):
    name = "convlstm"
    description = "ConvLSTM-S (Shi et al. 2015), OpenSTL configuration"
    Config = ConvLSTMConfig
    presets = presets({"openstl_unused": "none"},
                      {"hidden": 48, "steps": 1500, "sampling_stop_iter": 1000, "sampling_rate": 1e-3,
                       "openstl_unused": "none"},
                      {"openstl_unused": "conv_o+conv_last"})

    def __init__(self, config: ConvLSTMConfig, spec: DataSpec):
        super().__init__(config, spec)
        c = config
        self.cells = nn.ModuleList(
            ConvLSTMCell(self.frame_channels if i == 0 else c.hidden, c.hidden, c.filter_size, c.openstl_unused)
            for i in range(c.layers))

    def trained_parameters(self):
        unused = {id(p) for cell in self.cells for p in cell.unused.parameters()}
        return [p for p in self.parameters() if id(p) not in unused]

    def init_state(self, batch, height, width, like):
        zeros = like.new_zeros(batch, self.config.hidden, height, width)
        return [(zeros, zeros) for _ in self.cells]

    def step(self, x, state):
        new = []
        for cell, (h, c) in zip(self.cells, state):
            h, c = cell(x, h, c)
            new.append((h, c))
            x = h
        return x, new
