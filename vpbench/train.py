"""Model-agnostic trainer: stages, optimisers, AMP on CUDA, checkpoints, exact resume.

Each stage a model declares (:class:`~vpbench.protocols.Stage`) is trained for its step
budget with AdamW and a warm-up + cosine (or constant) schedule over exactly the parameters
the stage names. The batch order is a pure function of ``(seed, stage, step)``, and the
checkpoint holds model, optimiser, scheduler, AMP scaler, RNG states and the step, so a run
stopped at any checkpoint and resumed ends with the same weights as one never stopped.

Model selection uses the validation split only (the mean validation loss of the stage, in
eval mode); the test split is never seen here. The best weights of a stage are restored at
its end when ``train.select_best`` is set.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from vpbench import io
from vpbench.config import RunConfig, TrainConfig
from vpbench.errors import DataError, PluginError, RunError, TrainingError, blamed, one_line
from vpbench.events import Events
from vpbench.protocols import Stage, enter_stage, member, train_mode
from vpbench.rundir import RunDir
from vpbench.runtime import amp_mode, legacy_rng_globals, rng_state, set_rng_state
from vpbench.safeload import load_pt

CHECKPOINT_FORMAT = 1


class IndexStream:
    """Endless batches of dataset indices, a pure function of ``(seed, stage, step)``.

    Each epoch is a fresh permutation seeded by ``(seed, stage, epoch)``; incomplete last
    batches are dropped. ``rank`` / ``world`` select this process's slice of the global
    batch (data-parallel training sees the same global batches as one process).
    """

    def __init__(self, n: int, batch_size: int, seed: int, stage: int, start_step: int = 0,
                 rank: int = 0, world: int = 1):
        if n <= 0:
            raise RunError("the training split is empty")
        self.n, self.batch_size, self.seed, self.stage = n, batch_size, seed, stage
        self.step, self.rank, self.world = start_step, rank, world
        self.per_epoch = max(1, n // batch_size)

    def permutation(self, epoch: int) -> np.ndarray:
        seed = np.random.SeedSequence([self.seed, self.stage, epoch]).generate_state(1)[0]
        return np.random.default_rng(seed).permutation(self.n)

    def __iter__(self) -> Iterator[list[int]]:
        cached_epoch, perm = -1, None
        while True:
            epoch, k = divmod(self.step, self.per_epoch)
            if epoch != cached_epoch:
                cached_epoch, perm = epoch, self.permutation(epoch)
            batch = perm[k * self.batch_size : (k + 1) * self.batch_size]
            yield batch[self.rank :: self.world].tolist()
            self.step += 1


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGTERM / SIGINT to the main process: a signal to the whole
    process group (``timeout``, a scheduler, systemd, Ctrl-C) then ends in the promised
    checkpoint and clean exit instead of a dead worker (the workers stop with the loader)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def lr_lambda(stage: Stage):
    total = stage.schedule_steps if stage.schedule_steps is not None else stage.steps

    def factor(step: int) -> float:
        if stage.warmup_steps and step < stage.warmup_steps:
            return (step + 1) / stage.warmup_steps
        if stage.scheduler == "constant" or total <= stage.warmup_steps:
            return 1.0
        progress = (step - stage.warmup_steps) / max(1, total - stage.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass
class Position:
    stage_index: int = 0
    step: int = 0


@dataclass(frozen=True)
class Job:
    """What the trainer needs besides the training config: the names its messages and errors
    give, the seed of the run's random streams, and the batch size of validation (the run's
    evaluation batch size)."""

    model_name: str
    dataset_name: str
    seed: int = 0
    val_batch_size: int = 16

    @classmethod
    def of(cls, config: RunConfig) -> Job:
        return cls(config.model_name, config.dataset_name, config.seed, config.eval.batch_size)


@dataclass
class StageOptim:
    """One stage's parameters, optimiser, schedule and AMP scaler, and its best validation so far."""

    params: list
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    best: dict = dataclasses.field(default_factory=lambda: {"loss": math.inf, "step": -1})


class StageClock:
    """The wall-clock side of one stage: what it has cost, written into the run's record
    (``training.json``), and whether its share of a wall-clock budget's deadline is spent."""

    def __init__(self, record: Any, index: int, stage: str, start: int, dist: Any = None):
        self.rec = record.stage(stage) if record is not None else None
        self.spent_before = sum(r.seconds for r in record.stages[:index]) if self.rec is not None else 0.0
        self.carried = self.rec.seconds if self.rec is not None and start > 0 else 0.0  # before a resume
        self.started = time.perf_counter()
        self.dist = dist

    def elapsed(self) -> float:
        """Seconds since this process started the stage."""
        return time.perf_counter() - self.started

    def account(self, step: int) -> None:
        if self.rec is not None:
            self.rec.steps_taken, self.rec.seconds = step, self.carried + self.elapsed()

    def late(self) -> bool:
        """Whether the stage's deadline has passed (every rank agrees: rank 0's clock is as good as any)."""
        timed = self.rec is not None and self.rec.deadline_s is not None
        late = timed and self.spent_before + self.rec.seconds >= self.rec.deadline_s
        if timed and self.dist is not None:
            late = self.dist.any_true(late)
        return late


class Trainer:
    """Trains ``model`` on ``dataset`` with the training config ``train`` into ``run_dir``."""

    def __init__(self, model: torch.nn.Module, dataset: Any, train: TrainConfig, job: Job, run_dir: Path,
                 device: torch.device, events: Events | None = None, dist: Any = None, record: Any = None,
                 blame: str | None = None, tracking: Any = None):
        self.model, self.dataset, self.train, self.job = model, dataset, train, job
        self.tracking = tracking  # a vpbench.tracking.Tracking (rank 0): the log lines also go to the trackers
        # who is named when the model's own code raises: "model 'x' from plugin 'p' (dist 1.0)"
        self.blame = blame or f"model '{job.model_name}'"
        # a vpbench.budget.Record: planned steps per stage (a budget or train.steps), wall-clock
        # deadlines, and what each stage cost; saved as training.json (None: the stages' own steps)
        self.record = record
        self.run_dir, self.device = Path(run_dir), device
        self.events = events or Events()
        self.dist = dist  # a vpbench.distributed.Context when data-parallel, else None
        self.layout = RunDir(self.run_dir)
        self.ckpt_dir = self.layout.checkpoints
        self.use_amp, self.amp_dtype = amp_mode(device, train.amp)
        if train.amp == "on" and device.type == "cpu" and not self.use_amp:
            self.events.message("train.amp=on: this CPU has no native bf16 (AMX / AVX512-BF16), so training "
                                "stays in float32 (emulated bf16 is ~30x slower)")
        self.stop_requested: int | bool = False  # a signal's number (stop_on_signals): checkpoint and stop
        self.skipped = 0  # steps of the current stage skipped for a non-finite loss or gradient

    # -- public ----------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.dist is None or self.dist.rank == 0

    def fit(self, resume: bool = False, until: str | None = None) -> bool:
        """Train every stage (or the stages before ``until``); ``True`` when finished,
        ``False`` when stopped early by a signal. The checkpoint then sits at the boundary."""
        stages = [self._planned(s) for s in self._model_code("listing its stages", self.model.stages)]
        if until is not None:
            names = [s.name for s in stages]
            if until not in names:
                raise RunError(f"{self.job.model_name} has no stage '{until}' (stages: {', '.join(names)})")
            stages = stages[: names.index(until)]
        self.offsets = [sum(s.steps for s in stages[:i]) for i in range(len(stages))]  # trackers' step: over all stages
        self.run_dir.mkdir(parents=True, exist_ok=True)
        position = Position()
        ckpt = self._load_checkpoint() if resume else None
        if ckpt is not None:
            position = Position(ckpt["stage_index"], ckpt["step"])
            try:
                self.model.load_state_dict(ckpt["model"])
            except (RuntimeError, KeyError) as exc:
                raise RunError(f"checkpoint {self.layout.last} does not fit this model ({one_line(exc)[:300]}); "
                               "it was written by another model or version: pass --fresh to move the run aside") from None
            if self.record is not None:
                for name, taken, seconds in ckpt.get("record", []):
                    rec = self.record.stage(name)
                    if rec is not None:
                        rec.steps_taken, rec.seconds = taken, seconds
            stage_name = stages[position.stage_index].name if position.stage_index < len(stages) else "done"
            self.events.message(f"resuming at stage '{stage_name}', step {position.step}")
            self._trim_log([s.name for s in stages], position)
        for index, stage in enumerate(stages):
            if index < position.stage_index:
                continue
            done = self._fit_stage(index, stage, position.step if index == position.stage_index else 0,
                                   ckpt if index == position.stage_index else None)
            if not done:
                return False
            ckpt = None
        for p in self.model.parameters():
            p.requires_grad_(True)
        return True

    def job_step(self, index: int, step: int) -> int:
        """Step ``step`` of stage ``index`` counted over all stages (the step trackers are given)."""
        return getattr(self, "offsets", [0] * (index + 1))[index] + step

    def _model_code(self, what: str, fn, *args, **kwargs):
        """Call the model's own code: what it raises is the model's (named)."""
        return blamed(lambda exc: PluginError(f"{self.blame} raised {what}: {one_line(exc)}"), fn, *args, **kwargs)

    def _next_batch(self, batches):
        name = self.job.dataset_name
        return blamed(lambda exc: DataError(f"dataset '{name}' failed to load a training batch: {one_line(exc)}; "
                                            f"check its files (`vpbench data info {name}`)"), next, batches)

    def _planned(self, stage: Stage) -> Stage:
        """``stage`` with the steps and schedule length of the run's plan; a warm-up keeps its
        share of the schedule."""
        rec = self.record.stage(stage.name) if self.record is not None else None
        if rec is None or (rec.steps == stage.steps and rec.schedule_steps == stage.steps):
            return stage
        warmup = round(stage.warmup_steps * rec.schedule_steps / stage.steps) if stage.steps else 0
        return dataclasses.replace(stage, steps=rec.steps, schedule_steps=rec.schedule_steps,
                                   warmup_steps=min(warmup, rec.schedule_steps))

    def _trim_log(self, names: list[str], position: Position) -> None:
        """Drop the log lines written after the checkpoint being resumed: the resumed run
        writes them again (no duplicates)."""
        path = self.layout.train_log
        if not self.is_main or not path.is_file():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
                index = names.index(entry.get("stage"))
            except (ValueError, AttributeError):
                continue  # a torn last line of a killed process, or a stage this model no longer has
            if (index, int(entry.get("step", 0))) <= (position.stage_index, position.step):
                kept.append(line)
        io.write_text(path, "".join(k + "\n" for k in kept))

    def _save_record(self) -> None:
        if self.record is not None and self.is_main:
            self.record.save(self.run_dir)

    # -- one stage -------------------------------------------------------------------------
    def _fit_stage(self, index: int, stage: Stage, start: int, ckpt: dict | None) -> bool:
        """Train ``stage`` from step ``start`` (``ckpt``: the checkpoint being resumed); False when
        a signal stopped it (the checkpoint is then written)."""
        opt = self._open_stage(stage, ckpt)
        forward_model = self.dist.wrap(self.model) if self.dist is not None else self.model
        batches = self._batches(index, stage, start)
        clock = StageClock(self.record, index, stage.name, start, self.dist)
        key, step, self.skipped = f"train:{stage.name}", start, 0
        self.events.task_start(key, f"{self.job.model_name} · {stage.name}", stage.steps, start)
        while step < stage.steps:
            clock.account(step)
            if clock.late():  # a wall-clock budget: this stage's share of the deadline is spent
                self.events.message(f"stage '{stage.name}': wall-clock budget reached after {step} of {stage.steps} steps")
                break
            if self.stop_requested if self.dist is None else self.dist.any_true(self.stop_requested):
                self._save_checkpoint(index, step, self.model, opt.optimizer, opt.scheduler, opt.scaler, opt.best)
                self._save_record()  # every rank stops at the same step
                self.events.message(f"stopped at stage '{stage.name}' step {step}; checkpoint written")
                return False
            batch = [t.to(self.device, non_blocking=True) for t in self._next_batch(batches)]
            logs = self._step(forward_model, stage, batch, opt.params, opt.optimizer, opt.scheduler, opt.scaler, step)
            step += 1
            self.events.task_advance(key, 1, loss=logs.get("loss", float("nan")))
            self._after_step(index, stage, step, logs, opt, clock)
        self.events.task_end(key)
        self._close_stage(index, stage, start, step, opt.best, clock)
        return True

    def _open_stage(self, stage: Stage, ckpt: dict | None) -> StageOptim:
        """Enter ``stage`` and build its optimiser, schedule and scaler, restored from ``ckpt``."""
        params = self._model_code(f"entering stage '{stage.name}'", enter_stage, self.model, stage)
        if stage.steps > 0 and not params:
            raise RunError(f"stage '{stage.name}' of {self.job.model_name} has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=stage.lr, betas=stage.betas, weight_decay=stage.weight_decay)
        opt = StageOptim(params, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(stage)),
                         torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16))
        if ckpt is not None:
            if ckpt["optimizer"] is not None:  # None: saved at a stage boundary
                opt.optimizer.load_state_dict(ckpt["optimizer"])
                opt.scheduler.load_state_dict(ckpt["scheduler"])
                opt.scaler.load_state_dict(ckpt["scaler"])
            set_rng_state(ckpt["rng"])
            opt.best = ckpt["best"]
        return opt

    def _batches(self, index: int, stage: Stage, start: int) -> Iterator:
        """Training batches of stage ``index`` from step ``start`` (this rank's slice)."""
        batch_size = stage.batch_size or self.train.batch_size
        if self.dist is not None:
            from vpbench.distributed import check_batch

            check_batch(batch_size, self.dist, f"stage '{stage.name}' batch size")
        train_split = self.dataset.split("train")
        rank, world = (self.dist.rank, self.dist.world) if self.dist is not None else (0, 1)
        stream = IndexStream(len(train_split), batch_size, self.job.seed, index, start, rank, world)
        # the loader gets its own generator: creating its iterator must not draw from the
        # global RNG, or a resumed run would see a shifted random stream
        loader_rng = torch.Generator().manual_seed(self.job.seed * 1000 + index)
        return iter(torch.utils.data.DataLoader(
            train_split, batch_sampler=stream, num_workers=self.train.num_workers,
            pin_memory=self.device.type == "cuda", generator=loader_rng, worker_init_fn=ignore_stop_signals,
        ))

    def _after_step(self, index: int, stage: Stage, step: int, logs: dict, opt: StageOptim, clock: StageClock) -> None:
        """The log line, validation and checkpoint that fall due after optimiser step ``step``."""
        train = self.train
        if self.is_main and (step % train.log_every == 0 or step == stage.steps):
            logs.update(stage=stage.name, step=step, lr=opt.scheduler.get_last_lr()[0], seconds=round(clock.elapsed(), 3))
            io.append_text(self.layout.train_log, json.dumps(logs) + "\n")
            if self.tracking:
                self.tracking.log({f"train/{k}": v for k, v in logs.items() if k not in ("stage", "step")}, self.job_step(index, step))
        if train.val_every and step % train.val_every == 0 and step < stage.steps:
            self._validate_and_select(index, stage, step, opt.best)
        if step % train.ckpt_every == 0 and step < stage.steps:
            clock.account(step)
            self._save_checkpoint(index, step, self.model, opt.optimizer, opt.scheduler, opt.scaler, opt.best)
            self._save_record()

    def _close_stage(self, index: int, stage: Stage, start: int, step: int, best: dict, clock: StageClock) -> None:
        """After the last step: the skipped-steps verdict, the final validation and best weights,
        ``on_stage_end``, and the checkpoint at the stage boundary."""
        if self.skipped:
            share = self.skipped / max(1, step - start)
            self.events.message(f"stage '{stage.name}': skipped {self.skipped} of {step - start} steps with a non-finite loss or gradient")
            if share > self.train.max_skipped:
                raise TrainingError(f"stage '{stage.name}' skipped {self.skipped} of {step - start} steps ({share:.0%}) with a "
                                    f"non-finite loss or gradient, more than train.max_skipped={self.train.max_skipped:g}: lower the "
                                    "learning rate (or raise train.max_skipped)")
        if stage.steps > 0:
            self._validate_and_select(index, stage, step, best)
            if self.train.select_best and best["step"] not in (-1, step):
                self.model.load_state_dict(load_pt(self._best_path(index), "delete it and resume, or train again with --fresh"))
                self.events.message(f"stage '{stage.name}': restored best weights from step {best['step']}")
        self._model_code(f"ending stage '{stage.name}'", member(self.model, "on_stage_end"), stage.name)
        clock.account(step)
        self._save_checkpoint(index + 1, 0, self.model, None, None, None, {"loss": math.inf, "step": -1})
        self._save_record()

    def _step(self, forward_model, stage, batch, params, optimizer, scheduler, scaler, step) -> dict:
        train_mode(self.model, stage)
        step_fn = (lambda: forward_model(tuple(batch), stage.name)) if self.dist is not None else \
            (lambda: self.model.training_step(tuple(batch), stage.name))
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            losses = self._model_code(f"in a training step of stage '{stage.name}'", step_fn)
        loss = losses["loss"]
        if not self._finite(loss):
            optimizer.zero_grad(set_to_none=True)
            return self._nonfinite(stage, step, f"loss became {loss.item()}", scheduler)
        optimizer.zero_grad(set_to_none=True)
        self._model_code(f"in the backward pass of stage '{stage.name}'", lambda: scaler.scale(loss).backward())
        scaler.unscale_(optimizer)
        max_norm = self.train.grad_clip if self.train.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        # fp16's GradScaler skips steps with inf gradients itself (that is how it finds its scale);
        # without it (fp32, bf16) such a step would write NaN into every weight it touches
        if not scaler.is_enabled() and not self._finite(grad_norm):
            optimizer.zero_grad(set_to_none=True)
            return self._nonfinite(stage, step, f"the gradient norm became {float(grad_norm)}", scheduler)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        out = {k: float(v.detach().float().mean()) for k, v in losses.items() if torch.is_tensor(v)}
        out.update({k: v for k, v in losses.items() if isinstance(v, (int, float))})
        out["grad_norm"] = float(grad_norm)
        return out

    def _finite(self, value: torch.Tensor) -> bool:
        finite = bool(torch.isfinite(value.detach()).all())
        return self.dist.all_true(finite) if self.dist is not None else finite

    def _nonfinite(self, stage: Stage, step: int, what: str, scheduler) -> dict:
        """A step with a NaN/Inf loss or gradient changes no weight: with ``train.nonfinite=skip``
        it is skipped (the schedule moves on), otherwise the stage stops with one line."""
        if self.train.nonfinite == "skip":
            scheduler.step()
            self.skipped += 1
            return {"loss": float("nan"), "skipped": True}
        kept = (f"the last good checkpoint is kept in {self.ckpt_dir}" if self.layout.last.is_file()
                else "no checkpoint had been written yet")
        amp = " or train training in fp32 (train.amp=off)" if self.use_amp else ""
        raise TrainingError(f"stage '{stage.name}': {what} at step {step + 1}; {kept}. Lower the learning rate{amp}, "
                            "or set train.nonfinite=skip to skip such steps")

    # -- validation and model selection ---------------------------------------------------
    @torch.no_grad()
    def validation_loss(self, stage: Stage) -> float:
        """Mean stage loss over the first ``train.val_clips`` validation clips (eval mode)."""
        split = self.dataset.split("val")
        n = min(len(split), self.train.val_clips)
        if n == 0:
            return math.nan
        subset = torch.utils.data.Subset(split, range(n))
        loader = torch.utils.data.DataLoader(subset, batch_size=self.job.val_batch_size)
        self.model.eval()
        total, count = 0.0, 0
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # validation never shifts the training RNG
            torch.manual_seed(self.job.seed)
            for context, future in loader:
                batch = (context.to(self.device), future.to(self.device))
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                    loss = self._model_code(f"in a validation step of stage '{stage.name}'",
                                            self.model.training_step, batch, stage.name)["loss"]
                total += float(loss) * len(context)
                count += len(context)
        train_mode(self.model, stage)
        return total / count

    def _validate_and_select(self, index: int, stage: Stage, step: int, best: dict) -> None:
        if self.train.val_clips == 0:
            return
        val = self.validation_loss(stage)
        if self.is_main:
            io.append_text(self.layout.train_log, json.dumps({"stage": stage.name, "step": step, "val_loss": val}) + "\n")
            if self.tracking:
                self.tracking.log({"val/loss": val}, self.job_step(index, step))
        self.events.message(f"stage '{stage.name}' step {step}: validation loss {val:.5g}")
        if math.isfinite(val) and val < best["loss"]:
            best.update(loss=val, step=step)
            if self.is_main:
                io.torch_save(self.model.state_dict(), self._best_path(index))

    # -- checkpoints ----------------------------------------------------------------------
    def _best_path(self, index: int) -> Path:
        return self.layout.best(index)

    def _save_checkpoint(self, index, step, model, optimizer, scheduler, scaler, best) -> None:
        if not self.is_main:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "stage_index": index,
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer else None,
            "scheduler": scheduler.state_dict() if scheduler else None,
            "scaler": scaler.state_dict() if scaler else None,
            "rng": rng_state(),
            "best": copy.deepcopy(best),
            "record": [(r.name, r.steps_taken, r.seconds) for r in self.record.stages] if self.record else [],
        }
        io.torch_save(state, self.layout.last)

    def _load_checkpoint(self) -> dict | None:
        path = self.layout.last
        if not path.exists():
            self.events.message("no checkpoint to resume from; starting from scratch")
            return None
        return load_checkpoint(path)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by :class:`Trainer`, or a clear error if it is unreadable."""
    try:
        ckpt = load_pt(path, "train again with --fresh", allow=legacy_rng_globals())
    except RunError:
        raise
    except Exception as exc:
        raise RunError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}); it may be truncated. "
            "Delete it to restart the run, or restore it from a backup"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"checkpoint {path} is not a vpbench checkpoint of format {CHECKPOINT_FORMAT}")
    return ckpt


@contextlib.contextmanager
def stop_on_signals(trainer: Trainer):
    """SIGTERM / SIGINT / SIGUSR2 (SLURM's warning before a time limit or preemption) ask the
    trainer to write a checkpoint and stop after the current step; ``trainer.stop_requested``
    holds the signal's number."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum, frame):
        trainer.stop_requested = signum

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
