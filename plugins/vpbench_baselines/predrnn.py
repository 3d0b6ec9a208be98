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

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vpbench import ConfigError, DataSpec
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

    def forward(self, x, h, c, m, deltas: bool = False):
        """``(h, c, m)``, and with ``deltas`` also the increments ``i * g`` of ``c`` and ``m``
        (PredRNN.V2's decoupling loss reads them)."""
        i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = self.conv_x(x).chunk(7, 1)
        i_h, f_h, g_h, o_h = self.conv_h(h).chunk(4, 1)
        i_m, f_m, g_m = self.conv_m(m).chunk(3, 1)
        delta_c = torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h)
        delta_m = torch.sigmoid(i_xm + i_m) * torch.tanh(g_xm + g_m)
        c = torch.sigmoid(f_x + f_h + 1.0) * c + delta_c
        m = torch.sigmoid(f_xm + f_m + 1.0) * m + delta_m
        mem = torch.cat([c, m], 1)
        h = torch.sigmoid(o_x + o_h + self.conv_o(mem)) * torch.tanh(self.conv_last(mem))
        return (h, c, m, delta_c, delta_m) if deltas else (h, c, m)


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

    import_sources = ("openstl",)

    @classmethod
    def import_state_dict(cls, source: str, state: dict, config: RecurrentConfig) -> dict:
        """OpenSTL's ``PredRNN_Model`` keys as this model's."""
        return openstl_recurrent_keys(state, {}, config)

    def init_state(self, batch, height, width, like):
        zeros = like.new_zeros(batch, self.config.hidden, height, width)
        return [(zeros, zeros) for _ in self.cells], zeros

    def step(self, x, state, aux=None):
        hc, m = state  # m: the spatiotemporal memory, from the top cell of the previous step
        new = []
        for cell, (h, c) in zip(self.cells, hc):
            h, c, m = cell(x, h, c, m)
            new.append((h, c))
            x = h
        return x, (new, m)


@dataclass(frozen=True)
class PredRNNv2Config(RecurrentConfig):
    sampling: Literal["scheduled", "reverse", "none"] = "reverse"
    decouple_beta: float = 0.1  # weight of the decoupling loss

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decouple_beta < 0:
            raise ConfigError(f"decouple_beta must be >= 0, got {self.decouple_beta}")


class PredRNNv2(PredRNN):
    """PredRNN.V2 (Wang et al., TPAMI 2022, arXiv 2103.09504): PredRNN's ST-LSTM cells plus a
    decoupling loss that pushes apart the increments of the temporal memory ``c`` and the
    spatiotemporal memory ``m``: a shared 1x1 adapter (bias-free) maps both increments of every
    layer, each channel's map is L2-normalised over positions, and the loss is the mean
    ``|cos|`` between them over channels, layers and steps, weighted by ``decouple_beta`` (0.1);
    trained with reverse scheduled sampling (``recurrent.py``). OpenSTL's Moving MNIST
    configuration: 23,855,104 parameters (23.9M published; PredRNN's + the 128 x 128 adapter)."""

    name = "predrnnv2"
    description = "PredRNN.V2 (Wang et al. 2022): decoupling loss + reverse scheduled sampling"
    Config = PredRNNv2Config
    presets = presets({"sampling": "reverse", "r_sampling_step_1": 10, "r_sampling_step_2": 40, "r_exp_alpha": 10.0},
                      {"hidden": 32, "steps": 1200, "r_sampling_step_1": 300, "r_sampling_step_2": 800,
                       "r_exp_alpha": 100.0},
                      {"lr": 1e-3}, paper={"lr": 5e-4})

    def __init__(self, config: PredRNNv2Config, spec: DataSpec):
        super().__init__(config, spec)
        self.adapter = nn.Conv2d(config.hidden, config.hidden, 1, bias=False)
        self.aux_weight = config.decouple_beta

    def step(self, x, state, aux=None):
        hc, m = state
        new = []
        for cell, (h, c) in zip(self.cells, hc):
            h, c, m, delta_c, delta_m = cell(x, h, c, m, deltas=True)
            if aux is not None:
                a = F.normalize(self.adapter(delta_c).flatten(2), dim=2)
                b = F.normalize(self.adapter(delta_m).flatten(2), dim=2)
                aux.append(torch.cosine_similarity(a, b, dim=2).abs().mean())
            new.append((h, c))
            x = h
        return x, (new, m)
