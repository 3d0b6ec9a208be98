"""Trivial baselines: the floors every results table needs.

- ``copylast``: repeat the last context frame (persistence).
- ``blank``: a constant frame (default 0, the background of Moving MNIST). On Moving-MNIST-like
  data a blank frame beats copy-last-frame on MSE and SSIM (two moving digits land in the
  wrong place, costing twice), so a model must beat both to show it learned motion.
- ``meanframe``: the per-pixel mean of the context frames (a motion-blurred average).

None of them trains; each is still an ordinary model plugin with a config and presets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vpbench.errors import ConfigError
from vpbench.hookspecs import hookimpl
from vpbench.protocols import DataSpec, Stage


@dataclass(frozen=True)
class NoConfig:
    """No options."""


class _Untrained(nn.Module):
    version = "1"
    Config = NoConfig
    presets = {"smoke": {}, "cpu": {}, "paper": {}}

    def __init__(self, config=None, spec: DataSpec | None = None):
        super().__init__()
        self.config = config if config is not None else self.Config()
        self.spec = spec

    def stages(self) -> list[Stage]:
        return []

    def training_step(self, batch, stage: str) -> dict:
        raise NotImplementedError(f"{self.name} has no training stages")


class CopyLast(_Untrained):
    name = "copylast"
    description = "repeat the last context frame"

    def predict(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        return context[:, -1:].expand(-1, n_out, -1, -1, -1).clone()


@dataclass(frozen=True)
class BlankConfig:
    value: float = 0.0  # the constant predicted for every pixel, in [0, 1]

    def __post_init__(self) -> None:
        if not 0.0 <= self.value <= 1.0:
            raise ConfigError(f"value must be in [0, 1], got {self.value}")


class Blank(_Untrained):
    name = "blank"
    description = "a constant (blank) frame"
    Config = BlankConfig

    def predict(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        b, _, c, h, w = context.shape
        return context.new_full((b, n_out, c, h, w), self.config.value)


class MeanFrame(_Untrained):
    name = "meanframe"
    description = "per-pixel mean of the context frames"

    def predict(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        return context.mean(dim=1, keepdim=True).expand(-1, n_out, -1, -1, -1).clone()


@hookimpl
def vpbench_register_models(register):
    register(CopyLast)
    register(Blank)
    register(MeanFrame)
