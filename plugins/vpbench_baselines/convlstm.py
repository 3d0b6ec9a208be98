"""ConvLSTM (Shi et al., NeurIPS 2015, arXiv 1506.04214), as configured in the OpenSTL tables.

``ConvLSTM-S``: 4 stacked cells of 128 channels, 5x5 kernels, patch 4 on Moving MNIST (patch 2 on
KTH), a 1x1 bias-free read-out conv, scheduled sampling; 15.0M parameters and 56.8G MACs per
10 -> 10 Moving MNIST prediction (the whole 19-step rollout, fused multiply-adds).

Departures and filled gaps:

- The cell follows OpenSTL's: bias-free convolutions of the input (to 4 gates) and of the hidden
  state (to 4 gates), no peephole connections (Shi et al. have Hadamard peepholes on the cell
  state), no forget-gate bias.
- OpenSTL's cell also allocates an output convolution ``conv_o`` (2h -> h, 5x5) and a 1x1
  ``conv_last`` (2h -> h) that its forward pass never uses, in every commit since 2022-07-27;
  its parameter counts include them: 15,083,520 on Moving MNIST (the published table rounds to
  15.0M, 0.6% below what OpenSTL's code allocates) and 14,928,384 = 14.9M on KTH. We allocate
  them too (``openstl_unused``, default ``conv_o+conv_last``), so the cost table shows OpenSTL's
  count, but they are never trained (not in the stage's parameters) and never run (MACs exclude
  them, as fvcore's do); ``params_trainable`` shows what runs. ``none`` drops them.
- ``cell``: ``standard`` computes ``h = o * tanh(c)`` (Shi et al.; OpenSTL since 2023-12-08);
  ``openstl2023`` computes ``h = o * g``, the cell of OpenSTL from 2022-07-27 until that fix,
  which trained its published ConvLSTM rows and released checkpoints (2023). The ``paper``
  presets use ``openstl2023``; ``smoke`` and ``cpu`` use ``standard``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from vpbench import DataSpec
from vpbench_baselines.recurrent import RecurrentConfig, RecurrentModel, openstl_recurrent_keys, presets


@dataclass(frozen=True)
class ConvLSTMConfig(RecurrentConfig):
    # unused cell weights OpenSTL allocates (they only change the parameter count; see the module doc)
    openstl_unused: Literal["none", "conv_o", "conv_o+conv_last"] = "conv_o+conv_last"
    cell: Literal["standard", "openstl2023"] = "standard"  # h = o * tanh(c), or OpenSTL 2022-23's h = o * g


class ConvLSTMCell(nn.Module):
    def __init__(self, cin: int, hidden: int, k: int, unused: str, cell: str = "standard"):
        super().__init__()
        self.hidden, self.cell = hidden, cell
        self.conv_x = nn.Conv2d(cin, 4 * hidden, k, padding=k // 2, bias=False)
        self.conv_h = nn.Conv2d(hidden, 4 * hidden, k, padding=k // 2, bias=False)
        self.unused = nn.ModuleList()
        if unused != "none":
            self.unused.append(nn.Conv2d(2 * hidden, hidden, k, padding=k // 2, bias=False))
        if unused == "conv_o+conv_last":
            self.unused.append(nn.Conv2d(2 * hidden, hidden, 1, bias=False))

    def forward(self, x, h, c):
        i, f, g, o = (self.conv_x(x) + self.conv_h(h)).chunk(4, 1)
        g = torch.tanh(g)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * g
        return torch.sigmoid(o) * (g if self.cell == "openstl2023" else torch.tanh(c)), c


class ConvLSTM(RecurrentModel):
    name = "convlstm"
    description = "ConvLSTM-S (Shi et al. 2015), OpenSTL configuration"
    Config = ConvLSTMConfig
    presets = presets({"openstl_unused": "none"},
                      {"hidden": 48, "steps": 1500, "sampling_stop_iter": 1000, "sampling_rate": 1e-3,
                       "openstl_unused": "none"},
                      {}, paper={"cell": "openstl2023"})

    def __init__(self, config: ConvLSTMConfig, spec: DataSpec):
        super().__init__(config, spec)
        c = config
        self.cells = nn.ModuleList(
            ConvLSTMCell(self.frame_channels if i == 0 else c.hidden, c.hidden, c.filter_size, c.openstl_unused, c.cell)
            for i in range(c.layers))

    import_sources = ("openstl",)

    @classmethod
    def import_state_dict(cls, source: str, state: dict, config: ConvLSTMConfig) -> dict:
        """OpenSTL's ``ConvLSTM_Model`` keys as this model's (its unused convolutions included)."""
        return openstl_recurrent_keys(state, {"conv_o.0": "unused.0", "conv_last": "unused.1"}, config)

    def trained_parameters(self):
        unused = {id(p) for cell in self.cells for p in cell.unused.parameters()}
        return [p for p in self.parameters() if id(p) not in unused]

    def init_state(self, batch, height, width, like):
        zeros = like.new_zeros(batch, self.config.hidden, height, width)
        return [(zeros, zeros) for _ in self.cells]

    def step(self, x, state, aux=None):
        new = []
        for cell, (h, c) in zip(self.cells, state):
            h, c = cell(x, h, c)
            new.append((h, c))
            x = h
        return x, new
