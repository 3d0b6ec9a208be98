"""PredRNN++ (Wang et al., ICML 2018, arXiv 1804.06300), as configured in the OpenSTL tables.

Causal LSTM cells stacked as PredRNN's (the spatiotemporal memory ``M`` zigzags through the stack
and on to the next step) with a gradient highway unit (GHU) between the first and second cell.

Causal LSTM (the paper's Eq. 1, OpenSTL's layout; bias-free convs): the temporal memory first,
``c' = f * c + i * g`` with gates from convs of ``x``, ``h`` and ``c`` (forget bias 1); then the
spatiotemporal memory from a conv of ``c'``: ``m' = f' * tanh(W_mm * m) + i' * g'``; the output
gate is a ``tanh`` of convs of ``x``, ``h``, ``c'`` and ``m'``, and ``h' = o * tanh(conv1x1([c',
m']))``. GHU: ``z' = u * tanh(p) + (1 - u) * z`` with ``[p, u]`` from convs of the first cell's
output and ``z`` (weights initialised uniform in +-0.001). OpenSTL's cell also allocates a 5x5
``conv_o`` (2h -> h) its forward never runs; it is allocated here too (and never trained), so the
count is OpenSTL's: 38,584,320 on Moving MNIST (published 38.6M).
"""

from __future__ import annotations

import torch
from torch import nn

from vpbench import ConfigError, DataSpec
from vpbench_baselines.recurrent import RecurrentConfig, RecurrentModel, openstl_recurrent_keys, presets


class CausalLSTMCell(nn.Module):
    def __init__(self, cin: int, hidden: int, k: int):
        super().__init__()
        p = k // 2
        self.conv_x = nn.Conv2d(cin, 7 * hidden, k, padding=p, bias=False)
        self.conv_h = nn.Conv2d(hidden, 4 * hidden, k, padding=p, bias=False)
        self.conv_c = nn.Conv2d(hidden, 3 * hidden, k, padding=p, bias=False)
        self.conv_m = nn.Conv2d(hidden, 3 * hidden, k, padding=p, bias=False)
        self.conv_o = nn.Conv2d(2 * hidden, hidden, k, padding=p, bias=False)  # allocated by OpenSTL, unused
        self.conv_c2m = nn.Conv2d(hidden, 4 * hidden, k, padding=p, bias=False)
        self.conv_om = nn.Conv2d(hidden, hidden, k, padding=p, bias=False)
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1, bias=False)

    def forward(self, x, h, c, m):
        i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = self.conv_x(x).chunk(7, 1)
        i_h, f_h, g_h, o_h = self.conv_h(h).chunk(4, 1)
        i_m, f_m, m_m = self.conv_m(m).chunk(3, 1)
        i_c, f_c, g_c = self.conv_c(c).chunk(3, 1)
        c = torch.sigmoid(f_x + f_h + f_c + 1.0) * c + torch.sigmoid(i_x + i_h + i_c) * torch.tanh(g_x + g_h + g_c)
        i_cm, g_cm, f_cm, o_c = self.conv_c2m(c).chunk(4, 1)
        m = torch.sigmoid(f_xm + f_m + f_cm + 1.0) * torch.tanh(m_m) + torch.sigmoid(i_xm + i_m + i_cm) * torch.tanh(
            g_xm + g_cm)
        o = torch.tanh(o_x + o_h + o_c + self.conv_om(m))
        return o * torch.tanh(self.conv_last(torch.cat([c, m], 1))), c, m


class GHU(nn.Module):
    """Gradient highway unit: ``z' = u * tanh(p) + (1 - u) * z``."""

    def __init__(self, hidden: int, k: int, init: float = 1e-3):
        super().__init__()
        self.z_concat = nn.Conv2d(hidden, 2 * hidden, k, padding=k // 2, bias=False)
        self.x_concat = nn.Conv2d(hidden, 2 * hidden, k, padding=k // 2, bias=False)
        for conv in (self.z_concat, self.x_concat):
            nn.init.uniform_(conv.weight, -init, init)

    def forward(self, x, z):
        p, u = (self.x_concat(x) + self.z_concat(z)).chunk(2, 1)
        u = torch.sigmoid(u)
        return u * torch.tanh(p) + (1 - u) * z


class PredRNNpp(RecurrentModel):
    name = "predrnnpp"
    description = "PredRNN++ (Wang et al. 2018): causal LSTM + gradient highway, OpenSTL configuration"
    Config = RecurrentConfig
    presets = presets({}, {"hidden": 32, "steps": 1200, "sampling_stop_iter": 800, "sampling_rate": 1.25e-3},
                      {"lr": 1e-3}, paper={"lr": 1e-4})

    def __init__(self, config: RecurrentConfig, spec: DataSpec):
        super().__init__(config, spec)
        c = config
        if c.layers < 2:
            raise ConfigError(f"predrnnpp needs layers >= 2 (the gradient highway sits between the first two), got {c.layers}")
        self.gradient_highway = GHU(c.hidden, c.filter_size)
        self.cells = nn.ModuleList(CausalLSTMCell(self.frame_channels if i == 0 else c.hidden, c.hidden, c.filter_size)
                                   for i in range(c.layers))

    import_sources = ("openstl",)

    @classmethod
    def import_state_dict(cls, source: str, state: dict, config: RecurrentConfig) -> dict:
        """OpenSTL's ``PredRNNpp_Model`` keys as this model's."""
        out = openstl_recurrent_keys(state, {}, config)
        return {k.replace("gradient_highway.z_concat.0.", "gradient_highway.z_concat.")
                .replace("gradient_highway.x_concat.0.", "gradient_highway.x_concat."): v for k, v in out.items()}

    def trained_parameters(self):
        unused = {id(cell.conv_o.weight) for cell in self.cells}
        return [p for p in self.parameters() if id(p) not in unused]

    def init_state(self, batch, height, width, like):
        zeros = like.new_zeros(batch, self.config.hidden, height, width)
        return [(zeros, zeros) for _ in self.cells], zeros, zeros

    def step(self, x, state, aux=None):
        hc, m, z = state
        new = []
        for i, (cell, (h, c)) in enumerate(zip(self.cells, hc)):
            h, c, m = cell(x, h, c, m)
            new.append((h, c))
            x = h
            if i == 0:
                z = x = self.gradient_highway(h, z)
        return x, (new, m, z)
