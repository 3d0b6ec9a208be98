"""Small trainable models for trainer tests, registered as a test plugin."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import vpbench
from vpbench import DataSpec, Stage


@dataclass(frozen=True)
class TwoStageConfig:
    steps_a: int = 6
    steps_b: int = 6
    hidden: int = 8
    dropout: float = 0.2
    fail_at: int = -1  # return a NaN loss at this stage-b step (tests non-finite handling)
    step_delay: float = 0.0  # seconds each training step sleeps (so a test can kill it mid-run)
    delay_from: int = 0  # ... from this training call of the instance on (a model that slows down)


class TwoStage(nn.Module):
    """Stage ``a`` trains an encoder-ish conv, stage ``b`` a head; dropout uses the RNG."""

    name = "twostage"
    version = "0"
    Config = TwoStageConfig
    presets = {"smoke": {}}

    def __init__(self, config: TwoStageConfig, spec: DataSpec):
        super().__init__()
        self.config, self.spec = config, spec
        c = spec.channels
        self.body = nn.Conv2d(c, config.hidden, 3, padding=1)
        self.head = nn.Conv2d(config.hidden, c, 3, padding=1)
        self.calls = 0
        self.steps_run = 0

    def stages(self):
        return [
            Stage("a", self.body.parameters, steps=self.config.steps_a, lr=1e-2, warmup_steps=2),
            Stage("b", self.head.parameters, steps=self.config.steps_b, lr=1e-2, scheduler="constant"),
        ]

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        y = F.dropout(torch.relu(self.body(x.reshape(b * t, c, h, w))), self.config.dropout, self.training)
        return torch.sigmoid(self.head(y)).reshape(b, t, c, h, w)

    def training_step(self, batch, stage):
        if self.training:
            self.steps_run += 1
        if self.config.step_delay and self.training and self.steps_run > self.config.delay_from:
            import time

            time.sleep(self.config.step_delay)
        context, future = batch
        pred = self.forward_frames(context[:, -1:].expand_as(future))
        loss = F.mse_loss(pred, future)
        if stage == "b" and self.training:
            self.calls += 1
            if self.calls == self.config.fail_at:
                loss = loss * float("nan")
        return {"loss": loss}

    @torch.no_grad()
    def predict(self, context, n_out):
        return self.forward_frames(context[:, -1:].expand(-1, n_out, -1, -1, -1).contiguous())


@dataclass(frozen=True)
class OneConvConfig:
    hidden: int = 4
    steps: int = 10


class OneConv(nn.Module):
    """One stage, one 3x3 convolution (1 -> hidden channels) and a channel mean: its training
    FLOPs per step can be counted by hand."""

    name = "oneconv"
    version = "1"
    Config = OneConvConfig
    presets = {"smoke": {}}

    def __init__(self, config: OneConvConfig, spec: DataSpec):
        super().__init__()
        self.config, self.spec = config, spec
        self.conv = nn.Conv2d(spec.channels, config.hidden, 3, padding=1, bias=False)

    def stages(self):
        return [Stage("train", self.parameters, steps=self.config.steps, lr=1e-2)]

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        return torch.sigmoid(self.conv(x.reshape(b * t, c, h, w)).mean(1, keepdim=True)).reshape(b, t, c, h, w)

    def training_step(self, batch, stage):
        context, future = batch
        return {"loss": F.mse_loss(self.frames(context[:, -1:].expand_as(future)), future)}

    @torch.no_grad()
    def predict(self, context, n_out):
        return self.frames(context[:, -1:].expand(-1, n_out, -1, -1, -1).contiguous())


@dataclass(frozen=True)
class WideConvConfig(OneConvConfig):
    hidden: int = 64


class WideConv(OneConv):
    """OneConv with 16x the channels: 16x the FLOPs per step."""

    name = "wideconv"
    Config = WideConvConfig


@vpbench.hookimpl
def vpbench_register_models(register):
    register(TwoStage)
    register(OneConv)
    register(WideConv)
