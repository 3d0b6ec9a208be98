"""vpbench: a plugin-based benchmarking harness for video prediction.

Everything a plugin touches is importable from here (the bases, :class:`DataSpec`,
:class:`Stage`, the errors, :class:`Events`, :func:`sampled_loop`, the config validators); a
plugin imports only ``vpbench``, the reusable blocks of ``vpbench.layers`` and, in its tests,
``vpbench.testing``.
"""

from __future__ import annotations

from pathlib import Path

from vpbench.errors import (
    ConfigError,
    DataError,
    MetricUnavailable,
    PluginError,
    RegistryError,
    RunError,
    TrainingError,
    VPBenchError,
)
from vpbench.events import Events
from vpbench.hookspecs import hookimpl
from vpbench.metrics.basic import expected_ssim
from vpbench.profile import sampled_loop
from vpbench.protocols import Dataset, DataSpec, Metric, Model, SetMetric, Stage
from vpbench.runtime import autocast_off
from vpbench.tracking import Tracker
from vpbench.validate import at_most, in_range, non_negative, positive
from vpbench.version import __version__


def build_config(cls: type, fields: dict | None = None):
    """Config dataclass ``cls`` from ``fields``, every key and value checked as ``vpbench run`` does."""
    from vpbench.config import build

    return build(cls, fields)


def load_trained(run_dir: str | Path, data_dir: str | Path | None = None) -> tuple[Model, Dataset]:
    """The trained model of run directory ``run_dir`` (in eval mode) and the dataset it was trained on."""
    from vpbench import runs
    from vpbench.plugins import get_harness

    run = runs.load_run(get_harness(), run_dir, data_dir=data_dir)
    data = runs.build_dataset(run)
    return runs.load_trained(run, data).eval(), data


__all__ = [
    "ConfigError", "DataError", "DataSpec", "Dataset", "Events", "Metric", "MetricUnavailable", "Model", "PluginError",
    "RegistryError", "RunError", "SetMetric", "Stage", "Tracker", "TrainingError", "VPBenchError", "__version__", "at_most",
    "autocast_off", "build_config", "expected_ssim", "hookimpl", "in_range", "load_trained", "non_negative", "positive",
    "sampled_loop",
]
