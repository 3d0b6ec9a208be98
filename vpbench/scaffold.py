"""``vpbench new-plugin NAME``: a working plugin package to start from.

The package has a model (the last frame plus a learned convolutional correction, rolled
forward), a metric (gradient difference, after Mathieu et al., ICLR 2016), the entry point, a
README and tests that run :mod:`vpbench.testing`; it installs and passes ``vpbench check NAME``
as generated. :data:`MODEL` is also the example plugin's model
(``examples/vpbench-example/vpbench_example/model.py`` is ``MODEL`` for ``tinyconv``; a test keeps
them equal).
"""

from __future__ import annotations

from pathlib import Path
from string import Template

from vpbench.errors import ConfigError
from vpbench.registry import NAME_RE

PYPROJECT = '''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "vpbench-$name"
version = "0.1.0"
description = "A vpbench plugin: the $name model and the ${name}_gdl metric"
requires-python = ">=3.10"
dependencies = ["vpbench", "torch>=2.2"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points.vpbench]
$name = "vpbench_$name"

[tool.setuptools]
packages = ["vpbench_$name"]
'''

README = '''# vpbench-$name

A [vpbench](https://github.com/vpbench/vpbench) plugin.

```bash
pip install -e .            # registers the plugin through the `vpbench` entry point
vpbench plugins             # lists $name (model) and ${name}_gdl (metric)
vpbench check $name         # vpbench's conformance suite
vpbench run $name --preset smoke
python -m pytest tests      # the same checks plus this plugin's own tests
```

`vpbench_$name/model.py` holds the model, `vpbench_$name/metric.py` the metric and
`vpbench_$name/__init__.py` the hooks that register them. The whole plugin API is documented
in vpbench's `plugins/README.md`.
'''

INIT = '''"""vpbench plugin $name: registers the $name model and the ${name}_gdl metric."""

import vpbench

from vpbench_$name.metric import GradientDifference
from vpbench_$name.model import Model


@vpbench.hookimpl
def vpbench_register_models(register):
    register(Model)


@vpbench.hookimpl
def vpbench_register_metrics(register):
    register(GradientDifference())
'''

MODEL = '''"""The $name model: the last context frame plus a learned convolutional correction, rolled
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
    name = "$name"
    version = "0.1.0"
    description = "last frame + learned convolutional correction, rolled forward"
    Config = Config
    presets = {
        "smoke": {"model": {"steps": 30, "hidden": 16}, "train": {"batch_size": 8},
                  "data": {"n_train": 64, "n_val": 16, "n_test": 32}},
        "cpu": {"model": {"steps": 2000}},
        "paper": {"model": {"steps": 20000, "hidden": 64}},
    }
    ablation_shortcuts = {"hidden": "hidden"}  # vpbench ablate -m $name --hidden 16,32

    def __init__(self, config: Config, spec: DataSpec):
        super().__init__()
        if config.window > spec.n_in:
            raise ConfigError(f"$name: window {config.window} > the {spec.n_in} context frames")
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
'''

METRIC = '''"""${name}_gdl: the mean absolute difference of image gradients (Mathieu et al., ICLR 2016),
per frame; 0 for identical frames, lower is better."""

from __future__ import annotations

import torch

import vpbench


def gradients(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical finite differences of ``(..., H, W)`` frames."""
    return frames[..., :, 1:] - frames[..., :, :-1], frames[..., 1:, :] - frames[..., :-1, :]


class GradientDifference(vpbench.Metric):
    name = "${name}_gdl"
    version = "1"
    higher_is_better = False
    unit = ""
    description = "mean |grad pred - grad target| over both axes (gradient difference)"

    def per_frame(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        (px, py), (tx, ty) = gradients(pred.float().clamp(0, 1)), gradients(target.float())
        return 0.5 * ((px - tx).abs().flatten(2).mean(-1) + (py - ty).abs().flatten(2).mean(-1))
'''

TESTS = '''"""vpbench's conformance suite for this plugin, and the plugin's own tests."""

import pytest
import torch

from vpbench import DataSpec, testing
from vpbench_$name.metric import GradientDifference
from vpbench_$name.model import Config, Model


@pytest.mark.parametrize("case", testing.cases("$name"), ids=str)
def test_vpbench_contract(case):
    testing.run(case)


def test_gradient_difference_of_a_hand_made_pair():
    target = torch.zeros(1, 1, 1, 2, 3)
    pred = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]).view(1, 1, 1, 2, 3)
    # horizontal differences 1 and 0 in each row (mean 0.5), vertical ones 0: (0.5 + 0) / 2
    assert GradientDifference().per_frame(pred, target).tolist() == [[0.25]]


def test_a_zero_correction_copies_the_last_frame():
    model = Model(Config(), DataSpec(n_in=3, n_out=2, channels=1, height=8, width=8))
    torch.nn.init.zeros_(model.net[-1].weight)
    torch.nn.init.zeros_(model.net[-1].bias)
    context = torch.rand(2, 3, 1, 8, 8)
    pred = model.predict(context, 2)
    assert torch.equal(pred, context[:, -1:].expand(-1, 2, -1, -1, -1))
'''

FILES = {
    "pyproject.toml": PYPROJECT,
    "README.md": README,
    "vpbench_$name/__init__.py": INIT,
    "vpbench_$name/model.py": MODEL,
    "vpbench_$name/metric.py": METRIC,
    "tests/test_$name.py": TESTS,
}


def new_plugin(name: str, parent: str | Path = ".") -> Path:
    """Write the plugin package ``vpbench-NAME`` into ``parent/NAME``; never overwrites."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(f"plugin name {name!r}: use a lower-case identifier ({NAME_RE.pattern}), e.g. mymodel; "
                          "it names the model, the entry point and the package vpbench_NAME")
    target = Path(parent) / name
    if target.exists():
        raise ConfigError(f"{target} already exists: choose another name or remove it (nothing was written)")
    files = {Template(path).substitute(name=name): Template(text).substitute(name=name) for path, text in FILES.items()}
    for path, text in files.items():
        out = target / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return target
