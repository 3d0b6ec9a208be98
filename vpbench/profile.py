"""Cost of a model: parameters, FLOPs / MACs, latency, throughput, peak memory.

FLOPs are counted with ``torch.utils.flop_counter`` for one full prediction (``n_in`` context
frames -> ``n_out`` frames, batch 1), on the meta device when the model can run there (no
memory, no time), else on the CPU. ``flop_counter`` counts a multiply-add as two FLOPs and has
formulas for matrix products, convolutions and attention; MACs = FLOPs / 2, which is the unit
OpenSTL (fvcore) calls "FLOPs". Every other executed op (element-wise arithmetic, pooling,
normalisation...) has no formula and is listed, with call counts, so the gap is visible.
A model needs no special code for any of this; an autoregressive one makes counting fast by
iterating its uniform generation loops with :func:`sampled_loop` (three counted steps stand
for all of them).

Latency is the median of synchronised timed calls at batch 1 after warm-up; throughput is the
best clips/s over batch sizes doubling up to the largest that fits (CUDA out-of-memory),
``max_batch``, or the largest whose call is expected to fit the time budget (a
model that needs seconds per clip is timed at batch 1 only); peak memory is CUDA's max allocated bytes, or on the CPU the process's peak
resident set (a high-water mark, labelled as such).
"""

from __future__ import annotations

import resource
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula, sdpa_flop_count

from vpbench import io
from vpbench.protocols import DataSpec

# ops that move or describe data without arithmetic: not worth listing as "uncounted"
FREE_OPS = {
    "view", "_unsafe_view", "reshape", "expand", "permute", "transpose", "t", "slice", "select", "unsqueeze",
    "squeeze", "detach", "alias", "empty", "empty_like", "zeros", "zeros_like", "ones", "ones_like", "full",
    "full_like", "new_empty", "new_zeros", "new_ones", "new_full", "clone", "copy_", "_to_copy", "contiguous",
    "as_strided", "split", "split_with_sizes", "chunk", "unbind", "cat", "stack", "lift_fresh", "arange",
    "_reshape_alias", "index_select", "embedding", "flatten", "narrow", "unfold", "fill_", "zero_", "repeat",
    "scalar_tensor", "resolve_conj", "resolve_neg", "_local_scalar_dense", "index", "gather", "scatter", "where",
    "masked_fill", "constant_pad_nd", "slice_scatter", "select_scatter", "index_put_", "index_put", "lift",
    "detach_", "set_", "squeeze_", "unsqueeze_", "t_", "expand_as", "view_as", "type_as", "to", "_has_compatible_shallow_copy_type",
}
_SDPA_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
if _SDPA_CPU is not None and _SDPA_CPU not in flop_registry:
    # CPU attention has its own kernel that torch's counter has no formula for; it does the
    # same arithmetic as the fused GPU kernels, so it gets their formula (causal masks ignored,
    # as there)
    @register_flop_formula(_SDPA_CPU)
    def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)


def op_name(op: Any) -> str:
    """``aten.convolution`` -> ``convolution`` (for op overloads and packets alike)."""
    packet = getattr(op, "overloadpacket", op)
    return str(packet).split(".", 1)[-1] if str(packet).startswith("aten.") else str(packet)


COUNTED = {op_name(k) for k in flop_registry}


class OpRecorder(TorchDispatchMode):
    """Counts every aten op executed (by name)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[op_name(func)] += 1
        return func(*args, **(kwargs or {}))


class _Counting:
    """The FLOP count in progress: the counter's total plus what sampled loops extrapolated."""

    def __init__(self, counter: FlopCounterMode, recorder: OpRecorder) -> None:
        self.counter, self.recorder = counter, recorder
        self.extra = 0
        self.extra_calls: Counter[str] = Counter()

    def snapshot(self) -> tuple[int, Counter[str]]:
        return int(self.counter.get_total_flops()) + self.extra, self.recorder.calls + self.extra_calls


_COUNTING: list[_Counting] = []  # the active count, while count_flops(sampled=True) runs
T = TypeVar("T")


def sampled_loop(items: Iterable[T]) -> Iterable[T]:
    """``items``, unchanged, except while a FLOP count runs: then the items after the first are
    taken to cost an affine function of their index (the same each, or growing by the same
    amount: attention over a growing cache), and only items 0, 1, 2 and the last run; the count
    stands for all ``n``. If the last one's cost is not in line with items 1 and 2, the items
    in between run too (after it), so the count stays exact; it is fast only where the loop is
    affine.

    Declare it only on loops whose skipped items change no later item's shapes (state in
    preallocated tensors, not in lists that grow); a model's tests compare the sampled count
    with the full one (``count_flops(..., sampled=False)``).
    """
    items = list(items)
    if not _COUNTING or len(items) <= 4:
        yield from items
        return
    state = _COUNTING[-1]
    costs = []
    for item in (items[0], items[1], items[2], items[-1]):
        before, calls_before = state.snapshot()
        yield item
        after, calls_after = state.snapshot()
        costs.append((after - before, calls_after - calls_before))
    n = len(items)
    (_, _), (f1, c1), (f2, c2), (fl, cl) = costs
    ops = set(c1) | set(c2) | set(cl)
    if fl - f1 != (n - 2) * (f2 - f1) or any(cl[op] - c1[op] != (n - 2) * (c2[op] - c1[op]) for op in ops):
        yield from items[3:-1]  # not affine: count the rest one by one
        return
    state.extra += (n - 1) * (f1 + fl) // 2 - f1 - f2 - fl
    for op in ops:
        state.extra_calls[op] += (n - 1) * (c1[op] + cl[op]) // 2 - c1[op] - c2[op] - cl[op]


@dataclass
class FlopCount:
    flops: int
    counted_on: str  # "meta" or "cpu"
    uncounted: dict[str, int] = field(default_factory=dict)  # op -> calls, ops without a FLOP formula

    @property
    def macs(self) -> float:
        return self.flops / 2


def count_flops(run: Callable[[torch.Tensor], Any], make_input: Callable[[torch.device], torch.Tensor],
                build_meta: Callable[[], Callable[[torch.Tensor], Any]] | None = None,
                sampled: bool = True) -> FlopCount:
    """FLOPs of ``run(x)``; tries ``build_meta()`` (a function on the meta device) first.
    ``sampled``: loops iterated with :func:`sampled_loop` run three steps (else all)."""
    attempts = []
    if build_meta is not None:
        attempts.append(("meta", build_meta, torch.device("meta")))
    attempts.append(("cpu", lambda: run, torch.device("cpu")))
    last_error: Exception | None = None
    for where, build, device in attempts:
        try:
            fn = build()
            x = make_input(device)
            counter, recorder = FlopCounterMode(display=False), OpRecorder()
            state = _Counting(counter, recorder)
            if sampled:
                _COUNTING.append(state)
            try:
                with torch.no_grad(), counter, recorder:
                    fn(x)
            finally:
                if sampled:
                    _COUNTING.pop()
        except Exception as exc:  # data-dependent code cannot run on meta: fall back to the CPU
            last_error = exc
            continue
        total, calls = state.snapshot()
        uncounted = {op: n for op, n in sorted(calls.items()) if op not in COUNTED and op not in FREE_OPS}
        return FlopCount(total, where, uncounted)
    raise RuntimeError(f"could not count FLOPs: {last_error}")


def model_flops(model_cls: type, config: Any, spec: DataSpec, model: torch.nn.Module | None = None,
                sampled: bool = True) -> FlopCount:
    """FLOPs of one prediction (n_in -> n_out, batch 1) of a model plugin."""

    def build_meta():
        with torch.device("meta"):
            m = model_cls(config, spec)
        m.eval()
        return lambda x: m.predict(x, spec.n_out)

    cpu_model = model if model is not None else model_cls(config, spec)
    cpu_model = cpu_model.to("cpu").eval()

    def make_input(device):
        return torch.rand((1, spec.n_in, *spec.frame_shape), device="cpu").to(device)

    return count_flops(lambda x: cpu_model.predict(x, spec.n_out), make_input, build_meta, sampled)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], device: torch.device, warmup: int = 2, repeats: int = 5,
               seconds: float = 10.0) -> list[float]:
    """Seconds per call (synchronised), after ``warmup`` calls; stops early past ``seconds``.
    Warm-up ends after one call that took over a tenth of ``seconds`` (a call that slow is
    dominated by its arithmetic, not by one-time costs), and a warm-up call over all of it
    is the measurement; otherwise at least one call is timed."""
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        took = time.perf_counter() - t0
        if took > seconds:
            return [took]
        if took > seconds / 10:
            break
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - start < seconds):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


@dataclass
class Speed:
    latency_ms: float
    latency_ms_iqr: float
    throughput: float  # clips per second
    throughput_batch: int
    peak_memory_mb: float
    memory_kind: str
    device: str
    dtype: str


def measure_speed(model: torch.nn.Module, spec: DataSpec, device: torch.device, *, max_batch: int = 64,
                  warmup: int = 2, repeats: int = 5, seconds: float = 10.0) -> Speed:
    model = model.to(device).eval()
    dtype = next((p.dtype for p in model.parameters()), torch.float32)

    def call(batch: int) -> Callable[[], Any]:
        x = torch.rand((batch, spec.n_in, *spec.frame_shape), device=device)

        def fn():
            with torch.no_grad():
                return model.predict(x, spec.n_out)

        return fn

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    lat = time_calls(call(1), device, warmup, repeats, seconds)
    best, best_batch, batch = 1 / statistics.median(lat), 1, 2
    # larger batches are tried while one of their calls is expected to fit the budget
    while batch <= max_batch and batch * statistics.median(lat) <= seconds:
        try:
            times = time_calls(call(batch), device, 1, 3, seconds)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
        rate = batch / statistics.median(times)
        if rate > best:
            best, best_batch = rate, batch
        if sum(times) > seconds:
            break
        batch *= 2
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "CUDA max allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"
    q = statistics.quantiles(lat, n=4) if len(lat) >= 2 else [lat[0]] * 3
    return Speed(1000 * statistics.median(lat), 1000 * (q[2] - q[0]), best, best_batch, peak, kind,
                 str(device), str(dtype).replace("torch.", ""))


@dataclass
class Profile:
    model: str
    params: int
    params_trainable: int
    flops: FlopCount
    speed: Speed | None

    def rows(self) -> list[tuple[str, float, str, bool]]:
        """(metric, value, unit, higher_is_better) for the tidy results table."""
        out = [("params", self.params, "count", False), ("params_trainable", self.params_trainable, "count", False),
               ("gflops", self.flops.flops / 1e9, "G", False), ("gmacs", self.flops.macs / 1e9, "G", False)]
        if self.speed is not None:
            out += [("latency", self.speed.latency_ms, "ms", False),
                    ("throughput", self.speed.throughput, "clips/s", True)]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "params": self.params, "params_trainable": self.params_trainable,
                "flops": asdict(self.flops), "macs": self.flops.macs, "speed": asdict(self.speed) if self.speed else None}


def profile_model(model: torch.nn.Module, model_cls: type, config: Any, spec: DataSpec, device: torch.device, *,
                  speed: bool = True, max_batch: int = 64, seconds: float = 10.0) -> Profile:
    from vpbench.evaluate import count_parameters

    total, trainable = count_parameters(model)
    flops = model_flops(model_cls, config, spec, model=None if device.type == "meta" else _cpu_copy(model))
    measured = measure_speed(model, spec, device, max_batch=max_batch, seconds=seconds) if speed else None
    return Profile(model_cls.name, total, trainable, flops, measured)


def _cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).to("cpu")


def measure_costs(model: torch.nn.Module, model_cls: type, config: Any, spec: DataSpec, device: torch.device,
                  out_dir: Path, meta: dict[str, Any], *, events: Any = None, guard: Callable[..., Any] | None = None) -> Any:
    """The cost rows (tidy, with ``meta``) of a run's evaluation (``config``: its RunConfig): parameters always;
    FLOPs / MACs and speed as ``eval.profile`` / ``eval.speed`` say. The full profile (ops without a FLOP formula,
    memory, device) goes to ``out_dir``/profile.json. ``guard(fn, *args)`` runs the profiling (to name a failing plugin)."""
    from vpbench.evaluate import cost_rows, count_parameters

    total, trainable = count_parameters(model)
    rows = [("params", total, "count", False), ("params_trainable", trainable, "count", False)]
    if not config.eval.profile:
        return cost_rows(rows, meta)
    if events is not None:
        events.message("profiling: FLOPs on the meta device" + (", then latency and throughput" if config.eval.speed else ""))
    prof = (guard or (lambda fn, *a, **k: fn(*a, **k)))(
        profile_model, model, model_cls, config.model, spec, device, speed=config.eval.speed,
        max_batch=config.eval.max_batch, seconds=config.eval.speed_seconds)
    model.eval()
    io.write_json(Path(out_dir) / "profile.json", prof.to_dict())
    return cost_rows(prof.rows(), meta)
