"""MIM, Memory In Memory (Wang et al., CVPR 2019, arXiv 1811.07490), as configured in the OpenSTL tables.

The first layer is PredRNN's ST-LSTM; every higher layer is a MIM block whose temporal memory
is replaced by two cascaded recurrent modules: a non-stationary module (MIM-N) per layer pair,
an LSTM over the *differences* of the hidden states below (``h_t - h_{t-1}`` for the first,
the MIM-N output of the layer below for the others), and a stationary module (MIM-S) inside
the block, an LSTM that reads that difference signal with the block's previous memory as its
hidden state and keeps its own cell state. MIM-N and MIM-S have per-position gate weights
(``ct_weight``, ``oc_weight``, "peepholes" of shape C x H x W) and a forget bias of 1; all convs
are bias-free. The spatiotemporal memory ``M`` zigzags as in PredRNN.

Departure from OpenSTL's code: OpenSTL keeps the MIM-S cell state on the module between calls
(detached each step and carried into the next sequence, which is why its config needs
``drop_last``); here it is part of the sequence's recurrent state, zero at the start of every
clip, as in the paper. On a freshly built module both give the same outputs (checked against
OpenSTL's MIM_Model on the same weights outside the tests). MIM-N also allocates a ``conv_last``
its forward never runs; allocated (never trained) so the count is OpenSTL's: 38,043,648 on
Moving MNIST (published 38.0M). MACs per 10 -> 10 prediction: 179.18G with torch's counter and
with fvcore 0.1.5 on this network alike (published 179.2G).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from vpbench import ConfigError, DataSpec
from vpbench_baselines.predrnn import STLSTMCell
from vpbench_baselines.recurrent import RecurrentConfig, RecurrentModel, openstl_recurrent_keys, presets


def conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)


class PeepholeLSTM(nn.Module):
    """MIM's LSTM with per-position peepholes: ``(h', c')`` from input ``x`` and state ``(h, c)``."""

    def __init__(self, cin: int, hidden: int, k: int, hw: tuple[int, int]):
        super().__init__()
        self.ct_weight = nn.Parameter(torch.zeros(2 * hidden, *hw))
        self.oc_weight = nn.Parameter(torch.zeros(hidden, *hw))
        self.conv_h_concat = conv(cin, 4 * hidden, k)
        self.conv_x_concat = conv(cin, 4 * hidden, k)

    def forward(self, x, h, c):
        i_h, g_h, f_h, o_h = self.conv_h_concat(h).chunk(4, 1)
        i_c, f_c = (c.repeat(1, 2, 1, 1) * self.ct_weight).chunk(2, 1)
        i_x, g_x, f_x, o_x = self.conv_x_concat(x).chunk(4, 1)
        c = torch.sigmoid(f_h + f_c + f_x + 1.0) * c + torch.sigmoid(i_h + i_c + i_x) * torch.tanh(g_h + g_x)
        return torch.sigmoid(o_h + o_x + c * self.oc_weight) * torch.tanh(c), c


class MIMN(PeepholeLSTM):
    def __init__(self, cin: int, hidden: int, k: int, hw: tuple[int, int]):
        super().__init__(cin, hidden, k, hw)
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1, bias=False)  # allocated by OpenSTL, unused


class MIMBlock(nn.Module):
    def __init__(self, hidden: int, k: int, hw: tuple[int, int]):
        super().__init__()
        self.mims = PeepholeLSTM(hidden, hidden, k, hw)
        self.conv_t_cc = conv(hidden, 3 * hidden, k)
        self.conv_s_cc = conv(hidden, 4 * hidden, k)
        self.conv_x_cc = conv(hidden, 4 * hidden, k)
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1, bias=False)

    def forward(self, x, diff, h, c, m, mims_c):
        """``diff``: the MIM-N signal of the layer below; returns ``(h, c, m, mims_c)``."""
        i_t, g_t, o_t = self.conv_t_cc(h).chunk(3, 1)
        i_s, g_s, f_s, o_s = self.conv_s_cc(m).chunk(4, 1)
        i_x, g_x, f_x, o_x = self.conv_x_cc(x).chunk(4, 1)
        m = torch.sigmoid(f_x + f_s + 1.0) * m + torch.sigmoid(i_x + i_s) * torch.tanh(g_x + g_s)
        stationary, mims_c = self.mims(diff, c, mims_c)
        c = stationary + torch.sigmoid(i_x + i_t) * torch.tanh(g_x + g_t)
        h = torch.sigmoid(o_x + o_t + o_s) * torch.tanh(self.conv_last(torch.cat([c, m], 1)))
        return h, c, m, mims_c


class MIM(RecurrentModel):
    name = "mim"
    description = "MIM: memory in memory, stationary / non-stationary modules (Wang et al. 2019), OpenSTL configuration"
    Config = RecurrentConfig
    presets = presets({}, {"hidden": 32, "steps": 1200, "sampling_stop_iter": 800, "sampling_rate": 1.25e-3},
                      {"patch_size": 4, "lr": 1e-4}, paper={"lr": 5e-4})

    def __init__(self, config: RecurrentConfig, spec: DataSpec):
        super().__init__(config, spec)
        c, h, k = config, config.hidden, config.filter_size
        if c.layers < 2:
            raise ConfigError(f"mim needs layers >= 2 (an ST-LSTM below MIM blocks), got {c.layers}")
        hw = (spec.height // c.patch_size, spec.width // c.patch_size)
        self.cells = nn.ModuleList([STLSTMCell(self.frame_channels, h, k)] + [MIMBlock(h, k, hw) for _ in range(c.layers - 1)])
        self.diffs = nn.ModuleList(MIMN(h, h, k, hw) for _ in range(c.layers - 1))

    import_sources = ("openstl",)

    @classmethod
    def import_state_dict(cls, source: str, state: dict, config: RecurrentConfig) -> dict:
        """OpenSTL's ``MIM_Model`` keys as this model's."""
        renamed = {}
        for key, value in state.items():
            key = re.sub(r"^stlstm_layer\.", "cell_list.", key)
            key = re.sub(r"^stlstm_layer_diff\.", "diffs.", key)
            m = re.match(r"cell_list\.(\d+)\.(ct_weight|oc_weight|conv_h_concat|conv_x_concat)(.*)", key)
            if m and m.group(1) != "0":  # MIM-S lives in the block's own module
                key = f"cell_list.{m.group(1)}.mims.{m.group(2)}{m.group(3)}"
            key = re.sub(r"^(diffs\.\d+\.conv_\w+)\.0\.", r"\1.", key)
            key = re.sub(r"^(cell_list\.\d+\.mims\.conv_\w+)\.0\.", r"\1.", key)
            renamed[key] = value
        return openstl_recurrent_keys(renamed, {}, config)

    def trained_parameters(self):
        unused = {id(d.conv_last.weight) for d in self.diffs}
        return [p for p in self.parameters() if id(p) not in unused]

    def init_state(self, batch, height, width, like):
        z = like.new_zeros(batch, self.config.hidden, height, width)
        n = len(self.cells)
        # step counter, (h, c) per layer, M, MIM-N (h, c) per layer pair, MIM-S cell per block
        return 0, [(z, z)] * n, z, [(z, z)] * (n - 1), [z] * (n - 1)

    def step(self, x, state, aux=None):
        t, hc, m, diffs, mims = state
        h0, c0 = hc[0]
        h, c, m = self.cells[0](x, h0, c0, m)
        new_hc, new_diffs, new_mims = [(h, c)], [], []
        below_prev, below = h0, h
        for i in range(1, len(self.cells)):
            dh, dc = diffs[i - 1]
            if t > 0:  # the non-stationary signal starts at the second step
                signal = below - below_prev if i == 1 else new_diffs[i - 2][0]
                dh, dc = self.diffs[i - 1](signal, dh, dc)
            new_diffs.append((dh, dc))
            hi, ci = hc[i]
            hi, ci, m, mc = self.cells[i](h, dh, hi, ci, m, mims[i - 1])
            new_hc.append((hi, ci))
            new_mims.append(mc)
            h = hi
        return h, (t + 1, new_hc, m, new_diffs, new_mims)
