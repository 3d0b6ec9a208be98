"""Training budgets: what one optimiser step of each stage costs, plans that spend a budget,
and the record of what a training actually cost.

Before anything trains, :func:`probe` runs one real training step of every stage on a
throwaway copy of the model (forward and backward, counted with ``torch.utils.flop_counter``,
the counter the inference FLOPs use) and one ``predict`` on a real batch, checked against the
prediction contract. So a model that returns a wrong shape or a bad loss fails in seconds, and
the training FLOPs of a run are counted, not estimated. The probe draws no random numbers from
the run's stream and leaves the model untouched.

A budget (``train.budget``, ``--budget``) is training FLOPs (``2e15``) or wall-clock time
(``30m``, ``1h30m``, ``90s``). :func:`plan_steps` scales every stage's optimiser steps by one
factor so that the model spends the budget, keeping the ratio between a multi-stage model's
stages: it never spends more than the budget and leaves less than one step of the costliest
stage unspent. A FLOP plan is a pure function of the counted costs. A wall-clock plan uses
step times measured in the probe, and the trainer also stops each stage at its share of the
deadline (within one step); the steps taken are recorded, and ``train.steps`` replays them
exactly (``prior:1800/2000``: 1800 steps of a 2000-step learning-rate schedule).
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from vpbench import io
from vpbench.config import Budget, parse_budget
from vpbench.errors import ConfigError, DataError, PluginError, RunError, blamed, one_line
from vpbench.protocols import enter_stage, member
from vpbench.rundir import RunDir
from vpbench.runtime import amp_mode

RECORD_FORMAT = 1
# -- the probe ---------------------------------------------------------------------------
@dataclass
class StageProbe:
    name: str
    batch_size: int
    flops_per_step: int  # forward + backward of one optimiser step, counted
    seconds_per_step: float | None = None  # median of timed steps (only for wall-clock budgets)


@dataclass
class Probe:
    stages: list[StageProbe]
    seconds: float  # how long the probe took


def probe(model: torch.nn.Module, dataset: Any, config: Any, device: torch.device, model_name: str, *,
          time_steps: int = 0) -> Probe:
    """One counted training step of every stage with steps, and one checked ``predict``,
    on a copy of ``model``; ``time_steps`` more (timed, with an optimiser) per stage when
    a wall-clock plan needs step times. Raises a one-line :class:`PluginError` naming the
    model and the stage when a step or the prediction breaks the contract."""
    from vpbench.evaluate import open_split, predict

    started = time.perf_counter()
    use_amp, amp_dtype = amp_mode(device, config.train.amp)
    work = copy.deepcopy(model)
    split = open_split(dataset, "train", config.dataset_name)
    if len(split) == 0:
        raise RunError("the training split is empty")
    overrides = config.train.stage_steps
    out: list[StageProbe] = []
    batch = None
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the run's random stream is not touched
        torch.manual_seed(config.seed)
        for stage in work.stages():
            steps = overrides.get(stage.name, (stage.steps,))[0]
            bs = min(stage.batch_size or config.train.batch_size, len(split))
            if steps == 0:
                out.append(StageProbe(stage.name, bs, 0))
                continue
            params = enter_stage(work, stage)
            batch = tuple(t.to(device) for t in _first_clips(split, bs, config.dataset_name))
            amp = (device.type, amp_dtype, use_amp)
            try:
                flops = _step(work, batch, stage.name, model_name, amp, count=True)
                seconds = None
                if time_steps > 0:
                    optimizer = torch.optim.AdamW(params, lr=stage.lr)
                    times = []
                    for _ in range(time_steps + 1):  # the first is a warm-up
                        t0 = time.perf_counter()
                        optimizer.zero_grad(set_to_none=True)
                        _step(work, batch, stage.name, model_name, amp)
                        optimizer.step()
                        if device.type == "cuda":
                            torch.cuda.synchronize(device)
                        times.append(time.perf_counter() - t0)
                    seconds = statistics.median(times[1:])
            except (PluginError, ConfigError, RunError):
                raise
            except Exception as exc:
                raise PluginError(f"model '{model_name}' raised in a training step of stage '{stage.name}' "
                                  f"(checked before training): {one_line(exc)}") from exc
            for p in work.parameters():
                p.grad = None
            member(work, "on_stage_end")(stage.name)
            out.append(StageProbe(stage.name, bs, flops, seconds))
        if batch is None:
            batch = _first_clips(split, min(2, len(split)), config.dataset_name)
        for p in work.parameters():
            p.requires_grad_(True)
        work.eval()
        with torch.no_grad():
            predict(work, batch[0][:2].to(device), dataset.spec, model_name)
    unknown = set(overrides) - {s.name for s in out}
    if unknown:
        raise ConfigError(f"train.steps names stage '{sorted(unknown)[0]}'; the stages of {model_name} are "
                          f"{', '.join(s.name for s in out) or 'none'}")
    return Probe(out, time.perf_counter() - started)


def _first_clips(split: Any, n: int, dataset_name: str) -> tuple:
    return tuple(blamed(lambda exc: DataError(f"dataset '{dataset_name}' failed to load its first training clips: "
                                              f"{one_line(exc)}"),
                        lambda: torch.utils.data.default_collate([split[i] for i in range(n)])))


def _step(work: torch.nn.Module, batch: tuple, stage: str, model_name: str, amp: tuple, count: bool = False) -> int:
    """Forward and backward of one training step; its FLOPs when ``count``."""
    from torch.utils.flop_counter import FlopCounterMode

    device_type, dtype, enabled = amp
    counter = FlopCounterMode(display=False)
    with counter if count else contextlib.nullcontext():
        with torch.autocast(device_type, dtype=dtype, enabled=enabled):
            losses = work.training_step(batch, stage)
        loss = _check_loss(losses, model_name, stage)
        loss.backward()
    return int(counter.get_total_flops()) if count else 0


def _check_loss(losses: Any, model_name: str, stage: str) -> torch.Tensor:
    what = f"model '{model_name}': training_step of stage '{stage}'"
    if not isinstance(losses, dict) or "loss" not in losses:
        raise PluginError(f"{what} returned {type(losses).__name__}; it must return a dict with the key 'loss'")
    loss = losses["loss"]
    if not torch.is_tensor(loss) or loss.numel() != 1:
        shape = tuple(loss.shape) if torch.is_tensor(loss) else type(loss).__name__
        raise PluginError(f"{what} returned a loss of {shape}; it must be a scalar tensor")
    if not loss.requires_grad:
        raise PluginError(f"{what} returned a loss that depends on none of the stage's parameters")
    if not bool(torch.isfinite(loss.detach())):
        raise PluginError(f"{what} returned a non-finite loss ({loss.item()}) on the first batch")
    return loss


# -- plans -------------------------------------------------------------------------------
def plan_steps(base: dict[str, int], cost: dict[str, float], budget: float) -> dict[str, int]:
    """Steps per stage: ``base`` scaled by one factor so that ``sum(steps * cost) <= budget``
    with less than one step of the costliest stage left unspent (stages with 0 base steps
    stay at 0)."""
    total = sum(base[s] * cost[s] for s in base)
    if total <= 0:
        raise ConfigError("train.budget: this model's training steps cost nothing that can be counted "
                          "(no FLOPs); give its steps instead (train.steps)")
    k = budget / total
    steps = {s: math.floor(k * base[s]) if cost[s] > 0 else base[s] for s in base}
    spent = sum(steps[s] * cost[s] for s in base)
    while spent > budget:  # float rounding of floor(k * base)
        s = max((s for s in base if steps[s] > 0 and cost[s] > 0), key=lambda s: cost[s])
        steps[s] -= 1
        spent -= cost[s]
    # one more step for each stage short of its share, largest shortfall first, while it fits
    for s in sorted(base, key=lambda s: steps[s] - k * base[s]):
        if base[s] > 0 and cost[s] > 0 and k * base[s] - steps[s] > 0 and spent + cost[s] <= budget:
            steps[s] += 1
            spent += cost[s]
    return steps


@dataclass
class StageRecord:
    name: str
    steps: int  # optimiser steps planned
    schedule_steps: int  # length of the learning-rate schedule (>= steps)
    batch_size: int
    flops_per_step: int
    seconds_per_step_probe: float | None = None
    deadline_s: float | None = None  # cumulative training seconds at which this stage stops
    steps_taken: int = 0
    seconds: float = 0.0  # measured wall time of this stage's training (validation included)


@dataclass
class Record:
    """What a run's training was planned to cost and what it cost (``training.json``)."""

    budget: str
    budget_kind: str  # flops | seconds | none (the stages' own steps)
    device: str
    stages: list[StageRecord] = field(default_factory=list)
    probe_seconds: float = 0.0
    format: int = RECORD_FORMAT

    @property
    def steps_taken(self) -> int:
        return sum(s.steps_taken for s in self.stages)

    @property
    def flops(self) -> int:
        return sum(s.steps_taken * s.flops_per_step for s in self.stages)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    def stage(self, name: str) -> StageRecord | None:
        return next((s for s in self.stages if s.name == name), None)

    @property
    def parsed_budget(self) -> Budget | None:
        """The budget this run's plan spent (the config's grammar), None for the stages' own steps."""
        return parse_budget(self.budget)

    def replay(self) -> str:
        """The ``train.steps`` value that trains exactly these steps again."""
        parts = []
        for s in self.stages:
            parts.append(f"{s.name}:{s.steps_taken}" + (f"/{s.schedule_steps}" if s.schedule_steps != s.steps_taken else ""))
        return ",".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(steps_taken=self.steps_taken, flops=self.flops, seconds=self.seconds, replay=self.replay())
        return out

    def save(self, run_dir: Path) -> None:
        io.write_json(RunDir(run_dir).training, self.to_dict())


def load_record(run_dir: Path) -> Record | None:
    path = RunDir(run_dir).training
    if not path.is_file():
        return None
    import json

    try:
        data = json.loads(path.read_text())
        stages = [StageRecord(**{k: v for k, v in s.items() if k in StageRecord.__dataclass_fields__})
                  for s in data["stages"]]
        return Record(data["budget"], data["budget_kind"], data["device"], stages, data.get("probe_seconds", 0.0))
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{path} is not a valid training record ({one_line(exc)}); move the run aside with --fresh") from None


def make_record(model: torch.nn.Module, config: Any, found: Probe, device: str) -> Record:
    """The plan of a run: the stages' own steps, ``train.steps``, or ``train.budget`` spent."""
    overrides, budget = config.train.stage_steps, config.train.parsed_budget
    stages = model.stages()
    base = {s.name: s.steps for s in stages}
    schedule = {s.name: s.steps for s in stages}
    for name, (n, m) in overrides.items():
        base[name], schedule[name] = n, m
    probes = {p.name: p for p in found.stages}
    deadlines: dict[str, float | None] = {s.name: None for s in stages}
    if budget is not None and not any(base.values()):
        budget = None  # nothing trains (a floor): there is nothing to spend the budget on
    kind = "none" if budget is None else budget.kind
    if budget is not None:
        if budget.kind == "flops":
            cost = {s: float(probes[s].flops_per_step) for s in base}
        else:
            cost = {s: float(probes[s].seconds_per_step or 0.0) for s in base}
        base = plan_steps(base, cost, budget.value)
        schedule = dict(base)
        if budget.kind == "seconds":
            planned = sum(base[s] * cost[s] for s in base)
            elapsed = 0.0
            for s in base:
                elapsed += base[s] * cost[s]
                deadlines[s] = budget.value * elapsed / planned if planned > 0 else budget.value
            last = [s for s in base if base[s] > 0]
            if last:
                deadlines[last[-1]] = budget.value
    records = [StageRecord(s.name, base[s.name], schedule[s.name], probes[s.name].batch_size, probes[s.name].flops_per_step,
                           probes[s.name].seconds_per_step, deadlines[s.name]) for s in stages]
    return Record(config.train.budget, kind, device, records, round(found.seconds, 3))


def budget_statement(budgets: list[Budget | None], each: str = "model") -> str:
    """The report's budget line: the training budget every ``each`` (model, variant) shared, if any."""
    shared = budgets[0] if budgets and len(set(budgets)) == 1 else None
    if shared is None:
        return (f"none shared: each {each} trained for its preset's steps; read quality differences together with "
                "the training FLOPs and time in the cost table")
    return (f"{shared.describe()} for every learned {each} (--budget {shared.text}): each {each}'s stage steps were "
            "scaled by one factor to spend it (steps, counted FLOPs and measured time in the cost table)")
