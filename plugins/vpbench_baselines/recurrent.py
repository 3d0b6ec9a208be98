"""What ConvLSTM and PredRNN share: patching, the 20-step rollout, and (reverse) scheduled sampling.

Both follow the OpenSTL / PredRNN training recipe:

- frames are cut into ``patch_size x patch_size`` patches stacked as channels
  (``pixel_unshuffle``), so a 64x64 grey frame with patch 4 is a 16x16x16 tensor;
- the network is stepped ``n_in + n_out - 1`` times; at step ``t`` it reads frame ``t`` (or its
  own previous output) and predicts frame ``t + 1``; the loss is the MSE over all
  ``n_in + n_out - 1`` predicted frames (context frames included), as in OpenSTL;
- scheduled sampling (Bengio et al. 2015, as used by PredRNN): during training a future input is
  the true frame with probability ``eta`` and the model's own previous output otherwise, ``eta``
  falling linearly from ``sampling_start`` by ``sampling_rate`` per iteration to 0 at
  ``sampling_stop_iter``; at test time every future input is the model's own output;
- reverse scheduled sampling (PredRNN-V2, Wang et al. TPAMI 2022): context inputs after the first
  are true frames with probability ``r_eta`` rising from 0.5 to 1 (exponentially between
  ``r_sampling_step_1`` and ``r_sampling_step_2``) while future inputs are true frames with
  probability ``eta`` falling from 0.5 to 0 over the same interval;
- predictions are clamped to [0, 1] only at prediction time (the training loss sees raw outputs).

The iteration counter that drives the schedules is a buffer, so it is saved in checkpoints and a
resumed run continues the schedule exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

import vpbench
from vpbench import ConfigError, DataSpec, Stage


@dataclass(frozen=True)
class RecurrentConfig:
    layers: int = 4  # stacked recurrent cells
    hidden: int = 128  # channels of every cell's hidden state
    filter_size: int = 5  # convolution kernel inside the cells
    patch_size: int = 4  # frames are cut into patch x patch blocks stacked as channels (KTH: 2)
    sampling: Literal["scheduled", "reverse", "none"] = "scheduled"  # exposure to the model's own outputs
    sampling_start: float = 1.0  # scheduled: initial probability of feeding the true future frame
    sampling_rate: float = 2e-5  # scheduled: decrease of that probability per iteration
    sampling_stop_iter: int = 50000  # scheduled: from this iteration on, always the model's own output
    r_sampling_step_1: int = 25000  # reverse: the schedules start moving here
    r_sampling_step_2: int = 50000  # reverse: ... and stop here
    r_exp_alpha: float = 5000.0  # reverse: time constant of the context probability's rise
    steps: int = 125000  # optimiser steps (OpenSTL: 200 epochs x 10000 clips / batch 16)
    lr: float = 1e-3
    warmup_steps: int = 0
    batch: int = 0  # clips per step; 0 = train.batch_size

    def __post_init__(self) -> None:
        vpbench.positive(self, "layers", "hidden", "filter_size", "patch_size")
        if self.filter_size % 2 == 0:
            raise ConfigError(f"filter_size must be odd, got {self.filter_size}")
        if not 0 <= self.sampling_start <= 1 or self.sampling_rate < 0:
            raise ConfigError("sampling_start must be in [0, 1] and sampling_rate >= 0")
        if self.r_sampling_step_2 < self.r_sampling_step_1 or self.r_exp_alpha <= 0:
            raise ConfigError("need r_sampling_step_1 <= r_sampling_step_2 and r_exp_alpha > 0")
        if self.steps < 0 or self.lr <= 0:
            raise ConfigError("steps must be >= 0 and lr > 0")


def presets(smoke: dict, cpu: dict, paper_kth: dict, paper: dict | None = None) -> dict:
    """The smoke / cpu / paper presets of a recurrent baseline; the arguments add model fields."""
    return {
        "smoke": {"model": {"layers": 2, "hidden": 16, "filter_size": 3, "steps": 60, "lr": 3e-3,
                            "sampling_stop_iter": 40, "sampling_rate": 0.025, **smoke},
                  "data": {"n_train": 256, "n_val": 32, "n_test": 32},
                  "train": {"batch_size": 8, "val_clips": 16}, "eval": {"batch_size": 16, "examples": 2}},
        # Moving MNIST on 2 CPU cores, 2 layers, 3x3 kernels, batch 8 (~15 minutes; see the README)
        "cpu": {"dataset_name": "mmnist",
                "model": {"layers": 2, "filter_size": 3, "lr": 2e-3, "warmup_steps": 50, **cpu},
                "train": {"batch_size": 8, "val_clips": 32, "ckpt_every": 100},
                "eval": {"max_clips": 500, "batch_size": 100, "examples": 3}},
        "paper": {"model": dict(paper or {}),
                  "train": {"batch_size": 16, "amp": "auto", "val_every": 5000, "ckpt_every": 2000, "num_workers": 4}},
        "paper@kth": {"model": {"patch_size": 2, "steps": 100000, **paper_kth}},
    }


def openstl_recurrent_keys(state: dict, renames: dict[str, str], config: RecurrentConfig) -> dict:
    """OpenSTL's recurrent-model keys (``cell_list.i.conv_x.0.weight``, ``conv_last.weight``) as
    vpbench's (``cells.i.conv_x.weight``, ...), with ``renames`` of per-cell module names applied
    first; the frame-side channels of ``cells.0.conv_x`` (input) and ``conv_last`` (output) put in
    our patch order (``openstl_patch_order``); the iteration counter is set past every sampling
    schedule (a finished training)."""
    import re

    out = {}
    for key, value in state.items():
        m = re.match(r"cell_list\.(\d+)\.(.*)", key)
        if m:
            rest = m.group(2)
            for old, new in renames.items():
                if rest.startswith(old + "."):
                    rest = new + rest[len(old):]
                    break
            else:
                rest = re.sub(r"^(conv_\w+)\.0\.", r"\1.", rest)
            key = f"cells.{m.group(1)}.{rest}"
        out[key] = value
    # the frame-side channels: the first cell's input conv and the read-out's output (multi-channel
    # data puts them in another order than ours; see openstl_patch_order)
    for key, dim in (("cells.0.conv_x.weight", 1), ("conv_last.weight", 0)):
        if key in out:
            order = openstl_patch_order(out[key].shape[dim], config.patch_size)
            out[key] = out[key].index_select(dim, order)
    done = max(config.sampling_stop_iter, config.r_sampling_step_2, config.steps)
    out["iteration"] = torch.tensor(done, dtype=torch.long)
    return out


def openstl_patch_order(frame_channels: int, p: int) -> torch.Tensor:
    """For each patched channel of ours, the index of the same pixel among OpenSTL's.

    ``pixel_unshuffle`` puts pixel ``(i, j)`` of a ``p x p`` patch, channel ``c`` of ``C``, at
    ``c*p*p + i*p + j`` (``(C, p, p)`` order); OpenSTL's ``reshape_patch`` at ``(i*p + j)*C + c``
    (``(p, p, C)`` order). Weights read along this index (``index_select``) on their frame-side
    axis compute OpenSTL's network on our patches. The identity for one channel or ``p = 1``."""
    c, i, j = torch.meshgrid(torch.arange(frame_channels // (p * p)), torch.arange(p), torch.arange(p), indexing="ij")
    return ((i * p + j) * (frame_channels // (p * p)) + c).flatten()


def true_frame_probabilities(c: RecurrentConfig, iteration: int) -> tuple[float, float]:
    """``(p_context, p_future)``: the chance that a context input after the first / a future input
    is the true frame rather than the model's own output, at training ``iteration``."""
    if c.sampling == "none":
        return 1.0, 0.0
    if c.sampling == "scheduled":
        eta = max(0.0, c.sampling_start - c.sampling_rate * iteration) if iteration < c.sampling_stop_iter else 0.0
        return 1.0, eta
    s1, s2 = c.r_sampling_step_1, c.r_sampling_step_2
    if iteration < s1:
        return 0.5, 0.5
    if iteration < s2:
        r_eta = 1.0 - 0.5 * math.exp(-(iteration - s1) / c.r_exp_alpha)
        return r_eta, 0.5 - 0.5 * (iteration - s1) / (s2 - s1)
    return 1.0, 0.0


class RecurrentModel(nn.Module):
    """Base of the patch-wise recurrent baselines; subclasses build ``self.cells`` and ``step``."""

    version = "0.1.0"
    Config = RecurrentConfig
    aux_weight = 0.0  # weight of the terms a model's step appends to ``aux``

    def __init__(self, config: RecurrentConfig, spec: DataSpec):
        super().__init__()
        self.config, self.spec = config, spec
        p = config.patch_size
        if spec.height % p or spec.width % p:
            raise ConfigError(f"frames of {spec.height}x{spec.width} do not divide by patch_size={p}")
        self.frame_channels = spec.channels * p * p
        self.conv_last = nn.Conv2d(config.hidden, self.frame_channels, 1, bias=False)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    # -- subclass interface ----------------------------------------------------------------
    def init_state(self, batch: int, height: int, width: int, like: torch.Tensor):
        raise NotImplementedError

    def step(self, x: torch.Tensor, state, aux: list | None = None):
        """One time step through all layers: ``(top hidden state, new state)``. A model with an
        auxiliary loss appends its per-step terms to ``aux`` (given during training steps)."""
        raise NotImplementedError

    def trained_parameters(self):
        return self.parameters()

    def reconstruction_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss over the ``n_in + n_out - 1`` predicted (patched) frames; MSE as OpenSTL's."""
        return F.mse_loss(pred, target)

    # -- shared ----------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        c = self.config
        return [Stage("train", self.trained_parameters, c.steps, c.lr, warmup_steps=c.warmup_steps,
                      batch_size=c.batch or None)]

    def patch(self, frames: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(frames.flatten(0, 1), self.config.patch_size).unflatten(0, frames.shape[:2])

    def unpatch(self, patches: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(patches.flatten(0, 1), self.config.patch_size).unflatten(0, patches.shape[:2])

    def rollout(self, frames: torch.Tensor, n_in: int, n_total: int, use_true: torch.Tensor | None = None,
                aux: list | None = None) -> torch.Tensor:
        """Patched ``frames (B, T, C', h, w)`` (only the first ``n_in`` are read unless
        ``use_true`` says so) -> the ``n_total - 1`` predictions of frames ``1 .. n_total - 1``.
        ``use_true (B, n_total - 2)``: input ``t`` (1 <= t <= n_total - 2) is the true frame where
        true, the model's previous output where false; None: context true, future generated."""
        b, _, _, h, w = frames.shape
        state = self.init_state(b, h, w, frames)
        outputs, x_gen = [], None
        for t in range(n_total - 1):
            if use_true is None:
                x = frames[:, t] if t < n_in else x_gen
            elif t == 0:
                x = frames[:, 0]
            else:
                keep = use_true[:, t - 1, None, None, None].to(frames.dtype)
                x = keep * frames[:, t] + (1 - keep) * x_gen
            top, state = self.step(x, state, aux)
            x_gen = self.conv_last(top)
            outputs.append(x_gen)
        return torch.stack(outputs, 1)

    def sampling_mask(self, batch: int, n_in: int, n_total: int, device: torch.device,
                      probabilities: tuple[float, float] | None = None) -> torch.Tensor:
        """Which inputs are true frames; ``probabilities`` defaults to the schedule at the
        current iteration."""
        if probabilities is None:
            probabilities = true_frame_probabilities(self.config, int(self.iteration))
        p_context, p_future = probabilities
        probs = torch.full((batch, n_total - 2), p_future, device=device)
        probs[:, : n_in - 1] = p_context
        return torch.rand(batch, n_total - 2, device=device) < probs

    def training_step(self, batch, stage: str) -> dict:
        context, future = batch
        n_in, n_total = context.shape[1], context.shape[1] + future.shape[1]
        frames = self.patch(torch.cat([context, future], 1))
        if self.training:
            # one host read of the counter per step (a device sync on CUDA), one schedule lookup
            probabilities = true_frame_probabilities(self.config, int(self.iteration))
            use_true = self.sampling_mask(frames.shape[0], n_in, n_total, frames.device, probabilities)
            self.iteration += 1
        else:  # validation scores what the test scores: context true, future generated
            use_true = None
        aux: list = []
        pred = self.rollout(frames, n_in, n_total, use_true, aux)
        loss = self.reconstruction_loss(pred, frames[:, 1:])
        out = {"loss": loss}
        if aux:  # e.g. PredRNN.V2's decoupling loss, weighted by the model
            extra = torch.stack(aux).mean()
            out.update(loss=loss + self.aux_weight * extra, mse=loss.detach(), aux=extra.detach())
        if self.training:
            out["p_true_future"] = torch.tensor(probabilities[1])
        return out

    @torch.no_grad()
    def predict(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        n_in = context.shape[1]
        pred = self.rollout(self.patch(context), n_in, n_in + n_out)
        return self.unpatch(pred[:, n_in - 1:]).clamp(0, 1)
