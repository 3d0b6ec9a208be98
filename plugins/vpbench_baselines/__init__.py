"""Baseline model plugins for vpbench: ConvLSTM (``convlstm``), PredRNN (``predrnn``), PredRNN-V2
(``predrnnv2``), PredRNN++ (``predrnnpp``), MAU (``mau``), MIM (``mim``), E3D-LSTM (``e3dlstm``),
PhyDNet (``phydnet``), SimVP with the IncepU translator (``simvp``), SimVP.V2 with gSTA (``gsta``),
TAU (``tau``) and PredFormer (``predformer``).

Each is a port of the network behind the OpenSTL benchmark tables (Tan et al., NeurIPS 2023
Datasets and Benchmarks, arXiv 2306.11249), written from the papers and the published
configurations, trained by vpbench's trainer and measured by the same metrics and counters as
every other model. They register through the ``vpbench`` entry-point group like any
third-party plugin (``pyproject.toml``: ``baselines = "vpbench_baselines"``).
"""

import vpbench
from vpbench_baselines.convlstm import ConvLSTM
from vpbench_baselines.e3dlstm import E3DLSTM
from vpbench_baselines.mau import MAU
from vpbench_baselines.mim import MIM
from vpbench_baselines.phydnet import PhyDNet
from vpbench_baselines.predformer import PredFormer
from vpbench_baselines.predrnn import PredRNN, PredRNNv2
from vpbench_baselines.predrnnpp import PredRNNpp
from vpbench_baselines.simvp import GSTA, TAU, SimVP

__all__ = ["E3DLSTM", "MAU", "MIM", "PhyDNet", "ConvLSTM", "GSTA", "PredFormer", "PredRNN", "PredRNNpp", "PredRNNv2", "SimVP", "TAU"]


@vpbench.hookimpl
def vpbench_register_models(register):
    register(ConvLSTM)
    register(PredRNN)
    register(PredRNNv2)
    register(PredRNNpp)
    register(MAU)
    register(MIM)
    register(E3DLSTM)
    register(PhyDNet)
    register(SimVP)
    register(GSTA)
    register(TAU)
    register(PredFormer)
