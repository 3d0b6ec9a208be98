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

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from vpbench import io
from vpbench.config import RunConfig
from vpbench.errors import DataError, PluginError, RunError, TrainingError, blamed, one_line
from vpbench.events import Events
from vpbench.protocols import Stage, member, train_mode
from vpbench.runtime import legacy_rng_globals, native_bf16_cpu, rng_state, set_rng_state
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


def amp_mode(device: torch.device, amp: str) -> tuple[bool, torch.dtype]:
    """``(enabled, dtype)`` of autocast for ``train.amp`` on ``device``. ``auto``: CUDA only
    (bf16 where supported, else fp16 with a gradient scaler). ``on``: CUDA, and bf16 on CPUs
    with native bf16 (2.5x faster S-HR-VQVAE prior steps on 2 AMX cores); float32 elsewhere."""
    if amp == "off":
        return False, torch.float32
    if device.type == "cuda":
        return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and amp == "on" and native_bf16_cpu():
        return True, torch.bfloat16
    return False, torch.float32


class Trainer:
    """Trains ``model`` on ``dataset`` under ``config`` into ``run_dir``."""

    def __init__(self, model: torch.nn.Module, dataset: Any, config: RunConfig, run_dir: Path,
                 device: torch.device, events: Events | None = None, dist: Any = None, record: Any = None,
                 blame: str | None = None, tracking: Any = None):
        self.model, self.dataset, self.cfg = model, dataset, config
        self.tracking = tracking  # a vpbench.tracking.Tracking (rank 0): the log lines also go to the trackers
        # who is named when the model's own code raises: "model 'x' from plugin 'p' (dist 1.0)"
        self.blame = blame or f"model '{config.model_name}'"
        # a vpbench.budget.Record: planned steps per stage (a budget or train.steps), wall-clock
        # deadlines, and what each stage cost; saved as training.json (None: the stages' own steps)
        self.record = record
        self.run_dir, self.device = Path(run_dir), device
        self.events = events or Events()
        self.dist = dist  # a vpbench.distributed.Context when data-parallel, else None
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.use_amp, self.amp_dtype = amp_mode(device, config.train.amp)
        if config.train.amp == "on" and device.type == "cpu" and not self.use_amp:
            self.events.message("train.amp=on: this CPU has no native bf16 (AMX / AVX512-BF16), so training "
                                "stays in float32 (emulated bf16 is ~30x slower)")
        self.stop_requested = False  # set by a signal handler: checkpoint and stop
        self.skipped = 0  # steps of the current stage skipped for a non-finite loss

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
                raise RunError(f"{self.cfg.model_name} has no stage '{until}' (stages: {', '.join(names)})")
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
                raise RunError(f"checkpoint {self.ckpt_dir / 'last.pt'} does not fit this model ({one_line(exc)[:300]}); "
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
        name = self.cfg.dataset_name
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
        path = self.run_dir / "train_log.jsonl"
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
        model, cfg = self.model, self.cfg
        self._model_code(f"starting stage '{stage.name}'", member(model, "on_stage_start"), stage.name)
        params = list(self._model_code(f"listing the parameters of stage '{stage.name}'", lambda: list(stage.params())))
        chosen = {id(p) for p in params}
        for p in model.parameters():  # exactly the stage's parameters get gradients
            p.requires_grad_(id(p) in chosen)
        if stage.steps > 0 and not params:
            raise RunError(f"stage '{stage.name}' of {cfg.model_name} has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=stage.lr, betas=stage.betas, weight_decay=stage.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(stage))
        scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        best = {"loss": math.inf, "step": -1}
        if ckpt is not None:
            if ckpt["optimizer"] is not None:  # None: saved at a stage boundary
                optimizer.load_state_dict(ckpt["optimizer"])
                scheduler.load_state_dict(ckpt["scheduler"])
                scaler.load_state_dict(ckpt["scaler"])
            set_rng_state(ckpt["rng"])
            best = ckpt["best"]
        forward_model = self.dist.wrap(model) if self.dist is not None else model
        batch_size = stage.batch_size or cfg.train.batch_size
        if self.dist is not None:
            from vpbench.distributed import check_batch

            check_batch(batch_size, self.dist, f"stage '{stage.name}' batch size")
        train_split = self.dataset.split("train")
        rank, world = (self.dist.rank, self.dist.world) if self.dist is not None else (0, 1)
        stream = IndexStream(len(train_split), batch_size, cfg.seed, index, start, rank, world)
        # the loader gets its own generator: creating its iterator must not draw from the
        # global RNG, or a resumed run would see a shifted random stream
        loader_rng = torch.Generator().manual_seed(cfg.seed * 1000 + index)
        loader = torch.utils.data.DataLoader(
            train_split, batch_sampler=stream, num_workers=cfg.train.num_workers,
            pin_memory=self.device.type == "cuda", generator=loader_rng, worker_init_fn=ignore_stop_signals,
        )
        key = f"train:{stage.name}"
        self.events.task_start(key, f"{cfg.model_name} · {stage.name}", stage.steps, start)
        log_path = self.run_dir / "train_log.jsonl"
        batches = iter(loader)
        step = start
        self.skipped = 0
        started = time.perf_counter()
        rec = self.record.stage(stage.name) if self.record is not None else None
        spent_before = sum(r.seconds for r in self.record.stages[:index]) if rec is not None else 0.0
        stage_seconds = rec.seconds if rec is not None and start > 0 else 0.0

        def account() -> None:  # what this stage has cost so far, into the run's record
            if rec is not None:
                rec.steps_taken, rec.seconds = step, stage_seconds + time.perf_counter() - started

        while step < stage.steps:
            account()
            timed = rec is not None and rec.deadline_s is not None
            late = timed and spent_before + rec.seconds >= rec.deadline_s
            if timed and self.dist is not None:  # rank 0's clock is as good as any: all stop together
                late = self.dist.any_true(late)
            if late:  # a wall-clock budget: this stage's share of the deadline is spent
                self.events.message(f"stage '{stage.name}': wall-clock budget reached after {step} of {stage.steps} steps")
                break
            stop = self.stop_requested if self.dist is None else self.dist.any_true(self.stop_requested)
            if stop:  # every rank stops at the same step
                self._save_checkpoint(index, step, model, optimizer, scheduler, scaler, best)
                self._save_record()
                self.events.message(f"stopped at stage '{stage.name}' step {step}; checkpoint written")
                return False
            batch = [t.to(self.device, non_blocking=True) for t in self._next_batch(batches)]
            logs = self._step(forward_model, stage, batch, params, optimizer, scheduler, scaler, step)
            step += 1
            self.events.task_advance(key, 1, loss=logs.get("loss", float("nan")))
            if self.is_main and (step % cfg.train.log_every == 0 or step == stage.steps):
                logs.update(stage=stage.name, step=step, lr=scheduler.get_last_lr()[0],
                            seconds=round(time.perf_counter() - started, 3))
                io.append_text(log_path, json.dumps(logs) + "\n")
                if self.tracking:
                    self.tracking.log({f"train/{k}": v for k, v in logs.items() if k not in ("stage", "step")},
                                      self.job_step(index, step))
            if cfg.train.val_every and step % cfg.train.val_every == 0 and step < stage.steps:
                self._validate_and_select(index, stage, step, best)
            if step % cfg.train.ckpt_every == 0 and step < stage.steps:
                account()
                self._save_checkpoint(index, step, model, optimizer, scheduler, scaler, best)
                self._save_record()
        self.events.task_end(key)
        if self.skipped:
            share = self.skipped / max(1, step - start)
            self.events.message(f"stage '{stage.name}': skipped {self.skipped} of {step - start} steps with a non-finite loss")
            if share > cfg.train.max_skipped:
                raise TrainingError(f"stage '{stage.name}' skipped {self.skipped} of {step - start} steps ({share:.0%}) with a "
                                    f"non-finite loss, more than train.max_skipped={cfg.train.max_skipped:g}: lower the "
                                    "learning rate (or raise train.max_skipped)")
        if stage.steps > 0:
            self._validate_and_select(index, stage, step, best)
            if cfg.train.select_best and best["step"] not in (-1, step):
                model.load_state_dict(load_pt(self._best_path(index), "delete it and resume, or train again with --fresh"))
                self.events.message(f"stage '{stage.name}': restored best weights from step {best['step']}")
        self._model_code(f"ending stage '{stage.name}'", member(model, "on_stage_end"), stage.name)
        account()
        self._save_checkpoint(index + 1, 0, model, None, None, None, {"loss": math.inf, "step": -1})
        self._save_record()
        return True

    def _step(self, forward_model, stage, batch, params, optimizer, scheduler, scaler, step) -> dict:
        train_mode(self.model, stage)
        step_fn = (lambda: forward_model(tuple(batch), stage.name)) if self.dist is not None else \
            (lambda: self.model.training_step(tuple(batch), stage.name))
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            losses = self._model_code(f"in a training step of stage '{stage.name}'", step_fn)
        loss = losses["loss"]
        finite = bool(torch.isfinite(loss.detach()).all())
        if self.dist is not None:
            finite = self.dist.all_true(finite)
        if not finite:
            if self.cfg.train.nonfinite == "skip":
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                self.skipped += 1
                return {"loss": float("nan"), "skipped": True}
            kept = (f"the last good checkpoint is kept in {self.ckpt_dir}" if (self.ckpt_dir / "last.pt").is_file()
                    else "no checkpoint had been written yet")
            raise TrainingError(
                f"stage '{stage.name}': loss became {loss.item()} at step {step + 1}; {kept}. Lower the learning "
                "rate, or set train.nonfinite=skip to skip such steps"
            )
        optimizer.zero_grad(set_to_none=True)
        self._model_code(f"in the backward pass of stage '{stage.name}'", lambda: scaler.scale(loss).backward())
        scaler.unscale_(optimizer)
        max_norm = self.cfg.train.grad_clip if self.cfg.train.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        out = {k: float(v.detach().float().mean()) for k, v in losses.items() if torch.is_tensor(v)}
        out.update({k: v for k, v in losses.items() if isinstance(v, (int, float))})
        out["grad_norm"] = float(grad_norm)
        return out

    # -- validation and model selection ---------------------------------------------------
    @torch.no_grad()
    def validation_loss(self, stage: Stage) -> float:
        """Mean stage loss over the first ``train.val_clips`` validation clips (eval mode)."""
        split = self.dataset.split("val")
        n = min(len(split), self.cfg.train.val_clips)
        if n == 0:
            return math.nan
        subset = torch.utils.data.Subset(split, range(n))
        loader = torch.utils.data.DataLoader(subset, batch_size=self.cfg.eval.batch_size)
        self.model.eval()
        total, count = 0.0, 0
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # validation never shifts the training RNG
            torch.manual_seed(self.cfg.seed)
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
        if self.cfg.train.val_clips == 0:
            return
        val = self.validation_loss(stage)
        if self.is_main:
            io.append_text(self.run_dir / "train_log.jsonl", json.dumps({"stage": stage.name, "step": step, "val_loss": val}) + "\n")
            if self.tracking:
                self.tracking.log({"val/loss": val}, self.job_step(index, step))
        self.events.message(f"stage '{stage.name}' step {step}: validation loss {val:.5g}")
        if math.isfinite(val) and val < best["loss"]:
            best.update(loss=val, step=step)
            if self.is_main:
                io.torch_save(self.model.state_dict(), self._best_path(index))

    # -- checkpoints ----------------------------------------------------------------------
    def _best_path(self, index: int) -> Path:
        return self.ckpt_dir / f"best-stage{index}.pt"

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
        io.torch_save(state, self.ckpt_dir / "last.pt")

    def _load_checkpoint(self) -> dict | None:
        path = self.ckpt_dir / "last.pt"
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

