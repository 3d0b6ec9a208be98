"""A minimal vpbench model plugin: a tiny convolutional next-frame predictor.

``tinyconv`` looks at the last ``window`` context frames, predicts the next frame as the last
frame plus a learned correction (a small CNN), and rolls forward one frame at a time. It is
the tutorial model of vpbench's README: one class, one config dataclass, presets, one hook.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import vpbench
from vpbench import DataSpec, Stage


@dataclass(frozen=True)
class TinyConvConfig:
    window: int = 2  # context frames the network sees
    hidden: int = 32  # channels of the hidden layers
    steps: int = 300  # optimiser steps
    lr: float = 2e-3  # learning rate


class TinyConv(nn.Module):
    name = "tinyconv"
    version = "0.1.0"
    description = "last frame + learned convolutional correction, rolled forward"
    Config = TinyConvConfig
    presets = {
        "smoke": {"model": {"steps": 30, "hidden": 16}, "train": {"batch_size": 8},
                  "data": {"n_train": 64, "n_val": 16, "n_test": 32}},
        "cpu": {"model": {"steps": 2000}},
        "paper": {"model": {"steps": 20000, "hidden": 64}},
    }

    def __init__(self, config: TinyConvConfig, spec: DataSpec):
        super().__init__()
        self.config, self.spec = config, spec
        c = spec.channels
        self.net = nn.Sequential(
            nn.Conv2d(c * config.window, config.hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(config.hidden, config.hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(config.hidden, c, 3, padding=1),
        )

    def stages(self) -> list[Stage]:
        return [Stage("train", self.parameters, steps=self.config.steps, lr=self.config.lr)]

    def step(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, window, C, H, W) -> next frame (B, C, H, W)."""
        b, w, c, h, wd = frames.shape
        delta = self.net(frames.reshape(b, w * c, h, wd))
        return (frames[:, -1] + delta).clamp(0, 1)

    def rollout(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        frames = list(context[:, -self.config.window :].unbind(1))
        out = []
        for _ in range(n_out):
            nxt = self.step(torch.stack(frames[-self.config.window :], 1))
            out.append(nxt)
            frames.append(nxt)
        return torch.stack(out, 1)

    def training_step(self, batch, stage: str) -> dict:
        context, future = batch
        pred = self.rollout(context, future.shape[1])
        return {"loss": F.mse_loss(pred, future)}

    @torch.no_grad()
    def predict(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        return self.rollout(context, n_out)


@vpbench.hookimpl
def vpbench_register_models(register):
    register(TinyConv)
