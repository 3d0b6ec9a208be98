"""FLOPs equal hand formulas; profiling works for any model plugin without special code."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vpbench.profile import count_flops, measure_speed, model_flops
from vpbench.protocols import DataSpec


def test_conv_flops_by_hand():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    got = count_flops(conv, lambda d: torch.rand(2, 3, 16, 16, device=d))
    assert got.flops == 2 * 2 * (3 * 8 * 3 * 3) * (16 * 16) and got.macs == got.flops / 2


def test_linear_flops_by_hand():
    lin = nn.Linear(20, 30)
    got = count_flops(lin, lambda d: torch.rand(5, 20, device=d))
    assert got.flops == 2 * 5 * 20 * 30


def test_attention_block_flops_by_hand():
    b, n, d, heads = 2, 10, 16, 4
    att = nn.MultiheadAttention(d, heads, batch_first=True)
    got = count_flops(lambda x: att(x, x, x), lambda dev: torch.rand(b, n, d, device=dev))
    projections = 2 * b * n * d * (3 * d) + 2 * b * n * d * d
    scores_and_mix = 2 * (2 * b * heads * n * n * (d // heads))
    assert got.flops == projections + scores_and_mix
    assert "_softmax" in got.uncounted  # ops without a formula are listed, not hidden


def test_sdpa_on_cpu_is_counted():
    f = torch.nn.functional.scaled_dot_product_attention
    got = count_flops(lambda x: f(x, x, x), lambda d: torch.rand(2, 4, 10, 8, device=d))
    assert got.flops == 2 * (2 * 2 * 4 * 10 * 10 * 8)


@dataclass(frozen=True)
class NetConfig:
    hidden: int = 4


class ConvNet(nn.Module):
    name = "convnet"

    def __init__(self, config, spec):
        super().__init__()
        self.spec = spec
        self.conv = nn.Conv2d(spec.channels, config.hidden, 3, padding=1)
        self.out = nn.Conv2d(config.hidden, spec.channels, 1)

    def predict(self, context, n_out):
        frames = []
        x = context[:, -1]
        for _ in range(n_out):
            x = torch.sigmoid(self.out(torch.relu(self.conv(x))))
            frames.append(x)
        return torch.stack(frames, 1)


class DataDependent(ConvNet):
    name = "datadependent"

    def predict(self, context, n_out):
        if context.mean().item() > 2:  # .item() cannot run on the meta device
            raise AssertionError
        return super().predict(context, n_out)


def test_model_plugin_flops_on_meta_and_cpu_fallback():
    spec = DataSpec(3, 5, 1, 8, 8)
    per_frame = 2 * (1 * 4 * 9 * 64) + 2 * (4 * 1 * 64)
    got = model_flops(ConvNet, NetConfig(), spec)
    assert got.counted_on == "meta" and got.flops == 5 * per_frame
    assert {"relu", "sigmoid"} <= set(got.uncounted)
    fallback = model_flops(DataDependent, NetConfig(), spec)
    assert fallback.counted_on == "cpu" and fallback.flops == 5 * per_frame


def test_speed_measurement_is_sane():
    spec = DataSpec(3, 2, 1, 8, 8)
    speed = measure_speed(ConvNet(NetConfig(), spec), spec, torch.device("cpu"), max_batch=8, budget_s=0.5)
    assert speed.latency_ms > 0 and speed.throughput > 0 and 1 <= speed.throughput_batch <= 8
    assert speed.peak_memory_mb > 0 and speed.memory_kind == "process peak RSS" and speed.dtype == "float32"
