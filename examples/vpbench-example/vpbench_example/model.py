"""The tinyconv model: the last context frame plus a learned convolutional correction, rolled
forward one frame at a time."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import vpbench
from vpbench import ConfigError, DataSpec, Stage


@dataclass(frozen=True)
class Config:
    window: int = 2  # context frames the network sees
    hidden: int = 32  # channels of the hidden layers
    steps: int = 300  # optimiser steps
    lr: float = 2e-3  # learning rate


class Model(vpbench.Model, nn.Module):
    name = "tinyconv"
    version = "0.1.0"
    description = "last frame + learned convolutional correction, rolled forward"
    Config = Config
    presets = {
        "smoke": {"model": {"steps": 30, "hidden": 16}, "train": {"batch_size": 8},
                  "data": {"n_train": 64, "n_val": 16, "n_test": 32}},
        "cpu": {"model": {"steps": 2000}},
        "paper": {"model": {"steps": 20000, "hidden": 64}},
    }
    ablation_shortcuts = {"hidden": "hidden"}  # vpbench ablate -m tinyconv --hidden 16,32

    def __init__(self, config: Config, spec: DataSpec):
        super().__init__()
        if config.window > spec.n_in:
            raise ConfigError(f"tinyconv: window {config.window} > the {spec.n_in} context frames")
        self.config, self.spec = config, spec
        c = spec.channels
        self.net = nn.Sequential(
            nn.Conv2d(c * config.window, config.hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(config.hidden, config.hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(config.hidden, c, 3, padding=1),
        )

    def stages(self) -> list[Stage]:
        return [Stage("train", self.parameters, steps=self.config.steps, lr=self.config.lr)]

    def rollout(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        frames = list(context[:, -self.config.window :].unbind(1))
        for _ in range(n_out):
            window = torch.cat(frames[-self.config.window :], 1)  # (B, window * C, H, W)
            frames.append((frames[-1] + self.net(window)).clamp(0, 1))
        return torch.stack(frames[self.config.window :], 1)

    def training_step(self, batch, stage: str) -> dict:
        context, future = batch
        return {"loss": F.mse_loss(self.rollout(context, future.shape[1]), future)}

    @torch.no_grad()
    def predict(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        return self.rollout(context, n_out)
