"""PredRNN (Wang et al., NeurIPS 2017), as configured in the OpenSTL tables.

Four stacked spatiotemporal LSTM (ST-LSTM) cells of 128 channels, 5x5 kernels, patch 4 on Moving
MNIST (patch 2 on KTH), a 1x1 bias-free read-out; the spatiotemporal memory ``M`` flows up the
stack within a step and from the top cell to the bottom cell of the next step (the zigzag);
scheduled sampling. 23.8M parameters and 116.0G MACs per 10 -> 10 Moving MNIST prediction
(19-step rollout); 23.6M on KTH.

Cell (the paper's equations, OpenSTL's layout): bias-free convs of the input (to 7 gate maps),
the hidden state (4), the memory M (3); ``c' = f*c + i*g`` and ``m' = f'*m + i'*g'`` with a
forget-gate bias of 1; the output gate also reads a 5x5 conv of ``[c', m']`` and the new hidden
state is ``o * tanh(conv1x1([c', m']))``. The memory-decoupling loss of PredRNN-V2 is not part
of PredRNN (V1); reverse scheduled sampling (V2) is available as ``sampling = "reverse"``.
"""

from __future__ import annotations

import torch
from torch import nn

from vpbench.errors import ConfigError
from vpbench.protocols import DataSpec
from vpbench_baselines.recurrent import RecurrentConfig, RecurrentModel, openstl_recurrent_keys, presets


class STLSTMCell(nn.Module):
    def __init__(self, cin: int, hidden: int, k: int):
        super().__init__()
        self.hidden, p = hidden, k // 2
        self.conv_x = nn.Conv2d(cin, 7 * hidden, k, padding=p, bias=False)
        self.conv_h = nn.Conv2d(hidden, 4 * hidden, k, padding=p, bias=False)
        self.conv_m = nn.Conv2d(hidden, 3 * hidden, k, padding=p, bias=False)
        self.conv_o = nn.Conv2d(2 * hidden, hidden, k, padding=p, bias=False)
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1, bias=False)

    def forward(self, x, h, c, m):
        i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = self.conv_x(x).chunk(7, 1)
        i_h, f_h, g_h, o_h = self.conv_h(h).chunk(4, 1)
        i_m, f_m, g_m = self.conv_m(m).chunk(3, 1)
        c = torch.sigmoid(f_x + f_h + 1.0) * c + torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h)
        m = torch.sigmoid(f_xm + f_m + 1.0) * m + torch.sigmoid(i_xm + i_m) * torch.tanh(g_xm + g_m)
        mem = torch.cat([c, m], 1)
        h = torch.sigmoid(o_x + o_h + self.conv_o(mem)) * torch.tanh(self.conv_last(mem))
        return h, c, m


class PredRNN(RecurrentModel):
    name = "predrnn"
    description = "PredRNN (Wang et al. 2017), OpenSTL configuration"
    Config = RecurrentConfig
    presets = presets({}, {"hidden": 32, "steps": 1200, "sampling_stop_iter": 800, "sampling_rate": 1.25e-3}, {})

    def __init__(self, config: RecurrentConfig, spec: DataSpec):
        super().__init__(config, spec)
        c = config
        self.cells = nn.ModuleList(STLSTMCell(self.frame_channels if i == 0 else c.hidden, c.hidden, c.filter_size)
                                   for i in range(c.layers))

    @classmethod
    def import_state_dict(cls, source: str, state: dict, config: RecurrentConfig) -> dict:
        """OpenSTL's ``PredRNN_Model`` keys as this model's."""
        if source != "openstl":
            raise ConfigError(f"predrnn imports openstl checkpoints, not {source!r}")
        return openstl_recurrent_keys(state, {}, config)

    def init_state(self, batch, height, width, like):
        zeros = like.new_zeros(batch, self.config.hidden, height, width)
        return [(zeros, zeros) for _ in self.cells], zeros

    def step(self, x, state):
        hc, m = state  # m: the spatiotemporal memory, from the top cell of the previous step
        new = []
        for cell, (h, c) in zip(self.cells, hc):
            h, c, m = cell(x, h, c, m)
            new.append((h, c))
            x = h
        return x, (new, m)
