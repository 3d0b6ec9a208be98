"""FLOPs equal hand formulas; profiling works for any model plugin without special code."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vpbench.profile import count_flops, measure_speed, model_flops, sampled_loop
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
    speed = measure_speed(ConvNet(NetConfig(), spec), spec, torch.device("cpu"), max_batch=8, seconds=0.5)
    assert speed.latency_ms > 0 and speed.throughput > 0 and 1 <= speed.throughput_batch <= 8
    assert speed.peak_memory_mb > 0 and speed.memory_kind == "process peak RSS" and speed.dtype == "float32"


def growing_attention(x: torch.Tensor, steps: int, loop) -> torch.Tensor:
    """A query per step against a preallocated cache of the steps before: cost affine in the step."""
    cache = torch.zeros(x.shape[0], steps, x.shape[1], device=x.device)
    for t in loop(range(steps)):
        q = torch.relu(x)
        if t:  # the first step has no keys: it costs less than the affine rule says
            w = torch.softmax(torch.einsum("bd,bsd->bs", q, cache[:, :t]), -1)
            q = q + torch.einsum("bs,bsd->bd", w, cache[:, :t])
        cache[:, t] = q
    return cache


def test_a_sampled_loop_counts_what_the_whole_loop_counts_and_only_while_counting():
    make = lambda d: torch.rand(2, 6, device=d)  # noqa: E731
    full = count_flops(lambda x: growing_attention(x, 9, sampled_loop), make, sampled=False)
    sampled = count_flops(lambda x: growing_attention(x, 9, sampled_loop), make)
    plain = count_flops(lambda x: growing_attention(x, 9, iter), make)
    # two contractions of 2 x t x 6 per step; at t = 1 torch does the second (one key) as a
    # product, which has no FLOP formula: item 1 is off the line, so the sampled loop counts all
    assert full.flops == plain.flops == sampled.flops == 2 * 2 * (2 * 6) * sum(range(9)) - 2 * 2 * 6
    assert sampled.uncounted == full.uncounted and full.uncounted["_softmax"] == 8 and full.uncounted["relu"] == 9
    assert list(sampled_loop(range(5))) == [0, 1, 2, 3, 4]  # outside a count: the plain loop
    x = torch.rand(2, 6)
    assert torch.equal(growing_attention(x, 9, sampled_loop), growing_attention(x, 9, iter))


def test_an_affine_loop_runs_four_items_while_counting_and_a_quadratic_one_runs_all_exactly():
    def loop(x, cost, ran):
        for t in sampled_loop(range(10)):
            ran.append(t)
            for _ in range(cost(t)):
                x = x @ torch.eye(3, device=x.device)
        return x

    make = lambda d: torch.rand(1, 3, device=d)  # noqa: E731
    for cost, runs in ((lambda t: 2 * t + 1, [0, 1, 2, 9]), (lambda t: t * t, list(range(10)))):
        ran, full = [], []
        got = count_flops(lambda x, c=cost, r=ran: loop(x, c, r), make)
        assert sorted(ran) == runs
        assert got.flops == count_flops(lambda x, c=cost, r=full: loop(x, c, r), make, sampled=False).flops
        assert got.flops == 2 * 3 * 3 * sum(cost(t) for t in range(10)) and len(full) == 10


def test_a_slow_call_is_timed_once_and_a_fast_one_after_warm_up():
    import time

    from vpbench.profile import time_calls

    calls = []
    slow = time_calls(lambda: (calls.append(1), time.sleep(0.06)), torch.device("cpu"), warmup=2, repeats=5, seconds=0.05)
    assert len(slow) == 1 and slow[0] >= 0.06 and len(calls) == 1  # the warm-up call over the budget is the measurement
    calls.clear()
    fast = time_calls(lambda: calls.append(1), torch.device("cpu"), warmup=2, repeats=5, seconds=0.05)
    assert len(fast) == 5 and len(calls) == 7  # two warm-up calls, five timed


def test_throughput_tries_only_batches_whose_call_fits_the_budget():
    import time

    class Sleepy(nn.Module):
        def __init__(self, seconds):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))
            self.seconds, self.batches = seconds, []

        def predict(self, context, n_out):
            self.batches.append(context.shape[0])
            time.sleep(self.seconds)
            return context[:, -1:].expand(-1, n_out, -1, -1, -1)

    spec = DataSpec(3, 2, 1, 8, 8)
    slow, fast = Sleepy(0.03), Sleepy(0.0)
    speed = measure_speed(slow, spec, torch.device("cpu"), max_batch=8, seconds=0.05)
    assert set(slow.batches) == {1} and speed.throughput_batch == 1 and speed.latency_ms >= 30  # batch 2: ~0.06 s
    measure_speed(fast, spec, torch.device("cpu"), max_batch=8, seconds=0.05)
    assert set(fast.batches) == {1, 2, 4, 8}
