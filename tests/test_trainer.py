"""Trainer: exact resume, stage handling, model selection on validation only, bad losses."""

from __future__ import annotations

import json

import pytest
import torch

from tests.models import TwoStage
from vpbench import config as C
from vpbench.builtin.digits import Digits
from vpbench.errors import RunError, TrainingError
from vpbench.events import Events
from vpbench.runtime import amp_mode, native_bf16_cpu, seed_everything
from vpbench.train import IndexStream, Job, Trainer, load_checkpoint

DATA = ["data.n_train=24", "data.n_val=8", "data.n_test=8", "data.n_in=2", "data.n_out=2", "data.size=16",
        "data.glyph_size=8", "data.glyph_bank=16"]


def make(tmp_path, name, sets=(), **kw):
    cfg = C.resolve("twostage", TwoStage, lambda n: Digits, sets=DATA + ["train.batch_size=4", "train.ckpt_every=3",
                                                                       "train.log_every=1", "train.val_clips=8",
                                                                       *sets], **kw)
    data = Digits(cfg.data)
    seed_everything(cfg.seed)
    model = TwoStage(cfg.model, data.spec)
    return Trainer(model, data, cfg.train, Job.of(cfg), tmp_path / name, torch.device("cpu")), model


class StopAfter(Events):
    """Ask the trainer to stop (as on SIGTERM) after ``n`` steps in total."""

    def __init__(self, n, crash=False):
        self.n, self.count, self.crash, self.trainer = n, 0, crash, None

    def task_advance(self, key, advance=1, **fields):
        self.count += advance
        if self.count == self.n:
            if self.crash:
                raise KeyboardInterrupt  # dies without writing a checkpoint, like SIGKILL
            self.trainer.stop_requested = True


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def interrupt(trainer, stop_at, crash):
    """Run ``trainer`` until a clean stop after ``stop_at`` steps (checkpoint written) or a
    crash there (no checkpoint, like SIGKILL)."""
    trainer.events = StopAfter(stop_at, crash)
    trainer.events.trainer = trainer
    if crash:
        with pytest.raises(KeyboardInterrupt):
            trainer.fit()
    else:
        assert trainer.fit() is False


def train_interrupted(tmp_path, name, stop_at, crash, sets=()):
    trainer, model = make(tmp_path, name, sets)
    interrupt(trainer, stop_at, crash)
    resumed, model2 = make(tmp_path, name, sets)  # a new process: fresh objects, same dir
    assert resumed.fit(resume=True) is True
    return model2


@pytest.mark.parametrize("stop_at, crash", [(4, False), (6, False), (9, False), (5, True), (10, True)])
def test_resume_gives_identical_weights(tmp_path, stop_at, crash):
    """N steps == N/2 + resume + N/2: clean stops, stage boundaries and hard crashes."""
    full_trainer, full = make(tmp_path, "full")
    assert full_trainer.fit() is True
    resumed = train_interrupted(tmp_path, f"stop{stop_at}{crash}", stop_at, crash)
    assert_same_weights(full, resumed)
    before = make(tmp_path, "untrained")[1]
    assert not torch.equal(before.body.weight, full.body.weight)  # training did something


def test_amp_mode_per_device_and_setting():
    cpu = torch.device("cpu")
    assert amp_mode(cpu, "auto") == (False, torch.float32)  # auto: CUDA only
    assert amp_mode(cpu, "off") == (False, torch.float32)
    native = native_bf16_cpu()
    assert amp_mode(cpu, "on") == ((True, torch.bfloat16) if native else (False, torch.float32))


def test_amp_on_without_native_bf16_stays_float32_and_says_so(tmp_path, monkeypatch):
    """On a CPU without AMX / AVX512-BF16 (emulated bf16 is ~30x slower) train.amp=on trains in
    float32 and tells the user once. This CPU may have native bf16, so the probe is replaced."""
    import vpbench.runtime as T
    from vpbench.events import Recorder

    monkeypatch.setattr(T, "native_bf16_cpu", lambda: False)
    assert T.amp_mode(torch.device("cpu"), "on") == (False, torch.float32)
    cfg = C.resolve("twostage", TwoStage, lambda n: Digits, sets=DATA + ["train.amp=on"])
    events, data = Recorder(), Digits(cfg.data)
    trainer = Trainer(TwoStage(cfg.model, data.spec), data, cfg.train, Job.of(cfg), tmp_path / "r", torch.device("cpu"), events)
    assert (trainer.use_amp, trainer.amp_dtype) == (False, torch.float32)
    assert [m for m in events.messages if "no native bf16" in m and "float32" in m]
    monkeypatch.setattr(T, "native_bf16_cpu", lambda: True)
    assert T.amp_mode(torch.device("cpu"), "on") == (True, torch.bfloat16)


@pytest.mark.parametrize("amp", ["auto", "on"])
def test_training_steps_run_under_the_resolved_autocast(tmp_path, amp):
    """amp=on trains in bf16 autocast on a CPU with native bf16 (weights stay float32);
    amp=auto never autocasts on a CPU."""
    if amp == "on" and not native_bf16_cpu():
        pytest.skip("this CPU has no native bf16 (AMX / AVX512-BF16): amp=on stays float32 here")
    trainer, model = make(tmp_path, amp, sets=[f"train.amp={amp}"])
    seen, step = [], model.training_step

    def spy(batch, stage):
        out = step(batch, stage)
        if model.training:
            seen.append((torch.is_autocast_enabled("cpu"), model.body(batch[0][:, 0]).dtype))
        return out

    model.training_step = spy
    before = model.body.weight.detach().clone()
    assert trainer.fit() is True
    expected = (True, torch.bfloat16) if amp == "on" else (False, torch.float32)
    assert seen and set(seen) == {expected}
    assert model.body.weight.dtype == torch.float32 and not torch.equal(model.body.weight, before)


def test_stages_train_only_their_parameters(tmp_path):
    trainer, model = make(tmp_path, "r", sets=["model.steps_b=0"])
    head_before = model.head.weight.detach().clone()
    body_before = model.body.weight.detach().clone()
    trainer.fit()
    assert torch.equal(model.head.weight, head_before)
    assert not torch.equal(model.body.weight, body_before)


def test_validation_selection_never_reads_the_test_split(tmp_path):
    trainer, model = make(tmp_path, "r", sets=["train.val_every=2"])
    real_split = trainer.dataset.split

    def guarded(name):
        assert name != "test", "the trainer must not touch the test split"
        return real_split(name)

    trainer.dataset.split = guarded
    trainer.fit()
    log = [json.loads(line) for line in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    vals = [row for row in log if "val_loss" in row]
    assert [(v["stage"], v["step"]) for v in vals] == [("a", 2), ("a", 4), ("a", 6), ("b", 2), ("b", 4), ("b", 6)]
    best_b = min(vals[3:], key=lambda v: v["val_loss"])
    # the weights kept are the best ones: re-validating them reproduces the best loss
    stage_b = model.stages()[1]
    assert trainer.validation_loss(stage_b) == pytest.approx(best_b["val_loss"], rel=1e-6)
    losses = [row for row in log if "loss" in row and "val_loss" not in row]
    assert all("grad_norm" in row and "lr" in row for row in losses)


def test_nonfinite_loss_stops_naming_the_step_and_keeps_the_checkpoint(tmp_path):
    trainer, _ = make(tmp_path, "r", sets=["model.fail_at=5"])
    with pytest.raises(TrainingError, match="stage 'b': loss became nan at step 5"):
        trainer.fit()
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    assert (ckpt["stage_index"], ckpt["step"]) == (1, 3)  # the last good checkpoint survives


def test_nonfinite_loss_can_be_skipped(tmp_path):
    from vpbench.events import Recorder

    events = Recorder()
    trainer, model = make(tmp_path, "r", sets=["model.fail_at=5", "train.nonfinite=skip", "train.max_skipped=0.2"])
    trainer.events = events
    assert trainer.fit() is True
    log = [json.loads(x) for x in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    assert any(row.get("skipped") for row in log)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert "stage 'b': skipped 1 of 6 steps with a non-finite loss or gradient" in events.messages
    # one skipped step of six is more than the default limit of 10%: the stage fails and says why
    trainer, _ = make(tmp_path, "s", sets=["model.fail_at=5", "train.nonfinite=skip"])
    with pytest.raises(TrainingError, match=r"stage 'b' skipped 1 of 6 steps \(17%\).*train.max_skipped=0.1"):
        trainer.fit()


class NanFirst(TwoStage):
    def training_step(self, batch, stage):
        return {"loss": super().training_step(batch, stage)["loss"] * float("nan")}


def test_nonfinite_loss_before_any_checkpoint_says_there_is_none(tmp_path):
    trainer, _ = make(tmp_path, "r")
    trainer.model = NanFirst(TwoStage.Config(), trainer.dataset.spec)
    with pytest.raises(TrainingError, match="stage 'a': loss became nan at step 1; no checkpoint had been written yet"):
        trainer.fit()


class _InfGrad(torch.autograd.Function):
    """The identity whose gradient is infinite: a finite loss with an overflowing backward pass."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


class InfGradAt5(TwoStage):
    def training_step(self, batch, stage):
        loss = super().training_step(batch, stage)["loss"]
        return {"loss": _InfGrad.apply(loss) if stage == "b" and self.training and self.calls == 5 else loss}


@pytest.mark.parametrize("clip", ["1.0", "0"])
def test_an_infinite_gradient_never_reaches_the_weights(tmp_path, clip):
    """A finite loss whose gradient overflows (bf16 training did this) is a non-finite step: it
    stops the stage, or is skipped, and no weight turns NaN (clipping an inf norm gives NaN)."""
    trainer, _ = make(tmp_path, "r", sets=[f"train.grad_clip={clip}"])
    trainer.model = InfGradAt5(TwoStage.Config(), trainer.dataset.spec)
    with pytest.raises(TrainingError, match=r"stage 'b': the gradient norm became (inf|nan) at step 5; the last good checkpoint"):
        trainer.fit()
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    from vpbench.events import Recorder

    trainer, _ = make(tmp_path, "s", sets=[f"train.grad_clip={clip}", "train.nonfinite=skip", "train.max_skipped=0.2"])
    trainer.model = model = InfGradAt5(TwoStage.Config(), trainer.dataset.spec)
    trainer.events = events = Recorder()
    assert trainer.fit() is True
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert "stage 'b': skipped 1 of 6 steps with a non-finite loss or gradient" in events.messages


def test_resume_leaves_no_duplicate_log_lines(tmp_path):
    trainer, _ = make(tmp_path, "r", sets=["train.val_clips=0"])
    trainer.events = StopAfter(8)
    trainer.events.trainer = trainer
    assert trainer.fit() is False  # stopped at stage b, step 2: its checkpoint is at step 2
    log = tmp_path / "r" / "train_log.jsonl"
    with open(log, "a") as fh:  # what a kill after the checkpoint leaves: lines past it, one torn
        fh.write(json.dumps({"stage": "b", "step": 3, "loss": 1.0}) + "\n" + '{"stage": "b", "st')
    again, _ = make(tmp_path, "r", sets=["train.val_clips=0"])
    assert again.fit(resume=True) is True
    steps = [(r["stage"], r["step"]) for r in map(json.loads, log.read_text().splitlines())]
    assert steps == [("a", i) for i in range(1, 7)] + [("b", i) for i in range(1, 7)]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    trainer, _ = make(tmp_path, "r")
    trainer.fit()
    path = tmp_path / "r" / "checkpoints" / "last.pt"
    path.write_bytes(path.read_bytes()[:100])
    again, _ = make(tmp_path, "r")
    with pytest.raises(RunError, match="unreadable .* truncated"):
        again.fit(resume=True)


def test_index_stream_is_a_function_of_seed_stage_and_step():
    full = IndexStream(10, 3, seed=1, stage=0)
    it = iter(full)
    batches = [next(it) for _ in range(7)]
    late = iter(IndexStream(10, 3, seed=1, stage=0, start_step=4))
    assert [next(late) for _ in range(3)] == batches[4:]
    epoch0 = sorted(sum(batches[:3], []))
    assert len(set(epoch0)) == 9  # no repeats inside an epoch (one clip dropped)
    other_stage = iter(IndexStream(10, 3, seed=1, stage=1))
    assert [next(other_stage) for _ in range(3)] != batches[:3]
    ranks = [iter(IndexStream(10, 4, seed=1, stage=0, rank=r, world=2)) for r in range(2)]
    whole = next(iter(IndexStream(10, 4, seed=1, stage=0)))
    assert sorted(next(ranks[0]) + next(ranks[1])) == sorted(whole)


def test_sigterm_writes_a_checkpoint_and_stops_cleanly(tmp_path):
    """A real SIGTERM to the training process: checkpoint, clean stop, exact resume."""
    import os
    import signal

    from vpbench.train import stop_on_signals

    full_trainer, full = make(tmp_path, "full")
    full_trainer.fit()

    class Kill(Events):
        count = 0

        def task_advance(self, key, advance=1, **fields):
            Kill.count += 1
            if Kill.count == 4:
                os.kill(os.getpid(), signal.SIGTERM)

    trainer, _ = make(tmp_path, "sig")
    trainer.events = Kill()
    with stop_on_signals(trainer):
        assert trainer.fit() is False
    ckpt = load_checkpoint(tmp_path / "sig" / "checkpoints" / "last.pt")
    assert (ckpt["stage_index"], ckpt["step"]) == (0, 4)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    resumed, model = make(tmp_path, "sig")
    assert resumed.fit(resume=True) is True
    assert_same_weights(full, model)
