"""vpbench: a plugin-based benchmarking harness for video prediction."""

from vpbench.hookspecs import hookimpl
from vpbench.protocols import Dataset, DataSpec, Metric, Model, SetMetric, Stage

__version__ = "0.1.0"
__all__ = ["DataSpec", "Dataset", "Metric", "Model", "SetMetric", "Stage", "__version__", "hookimpl"]
