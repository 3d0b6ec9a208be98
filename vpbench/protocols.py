"""Contracts between the harness and its plugins.

Frames are float tensors shaped ``(B, T, C, H, W)`` with values in ``[0, 1]``. A dataset
yields ``(context, future)`` pairs shaped ``(n_in, C, H, W)`` and ``(n_out, C, H, W)``; the
loader adds the batch dimension. A model predicts ``future = model.predict(context, n_out)``
from the context alone. A metric scores every predicted frame, ``(B, T)``, so the evaluator can
report per-horizon values and confidence intervals over clips.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping, Protocol, runtime_checkable

import torch

from vpbench.errors import RegistryError


@dataclass(frozen=True)
class DataSpec:
    """The shape of one dataset protocol: ``n_in`` context frames -> ``n_out`` future frames."""

    n_in: int
    n_out: int
    channels: int
    height: int
    width: int

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


@dataclass(frozen=True)
class Stage:
    """One training stage of a model (most models have one; S-HR-VQVAE has three).

    ``params`` returns the parameters this stage optimises (others are left alone);
    ``steps`` is the budget in optimiser steps; ``frozen`` returns sub-modules the trainer
    keeps in eval mode during the stage (their buffers, e.g. EMA codebooks or batch-norm
    statistics, stay fixed; see :func:`train_mode`).
    """

    name: str
    params: Callable[[], Iterable[torch.nn.Parameter]]
    steps: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: str = "cosine"  # cosine | constant
    warmup_steps: int = 0
    batch_size: int | None = None  # None: the run's train.batch_size
    schedule_steps: int | None = None  # length of the learning-rate schedule; None: ``steps``
    frozen: Callable[[], Iterable[torch.nn.Module]] | None = None  # sub-modules held in eval mode in this stage

    def __post_init__(self) -> None:
        from vpbench.errors import ConfigError

        what = f"stage '{self.name}'"
        if self.steps < 0:
            raise ConfigError(f"{what}: steps must be >= 0, got {self.steps}")
        if self.schedule_steps is not None and self.schedule_steps < self.steps:
            raise ConfigError(f"{what}: schedule_steps must be >= steps")
        if self.scheduler not in ("cosine", "constant"):
            raise ConfigError(f"{what}: scheduler must be cosine or constant")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"{what}: the learning rate must be a positive, finite number, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0) or self.warmup_steps < 0:
            raise ConfigError(f"{what}: weight_decay and warmup_steps must be >= 0")
        if self.batch_size is not None and self.batch_size <= 0:
            raise ConfigError(f"{what}: batch_size must be > 0 (or None for train.batch_size), got {self.batch_size}")


def train_mode(model: torch.nn.Module, stage: Stage) -> None:
    """Training mode for ``stage``: the whole model, except the stage's ``frozen`` modules."""
    model.train()
    for module in stage.frozen() if stage.frozen is not None else ():
        module.eval()


@runtime_checkable
class VideoModel(Protocol):
    """What a model class provides (it is usually a ``torch.nn.Module`` subclass).

    Class attributes: ``name``, ``version``, ``description``, ``Config`` (a frozen dataclass
    with defaults for every field) and ``presets`` (``{"smoke": {...}, "cpu": {...},
    "paper": {...}, "paper@kth": {...}}``: nested overrides of the run config, the
    ``@dataset`` form applying on top for one dataset).
    """

    name: ClassVar[str]
    version: ClassVar[str]
    Config: ClassVar[type]
    presets: ClassVar[Mapping[str, Mapping[str, Any]]]

    def stages(self) -> list[Stage]:
        """Training stages in order; ``[]`` for a model that needs no training."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> dict:
        """Losses for one batch of ``(context, future)``; the key ``loss`` is optimised."""

    def predict(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        """``(B, n_in, C, H, W)`` -> ``(B, n_out, C, H, W)`` in ``[0, 1]``; never sees targets."""


@runtime_checkable
class VideoDataset(Protocol):
    """What a dataset class provides.

    Class attributes ``name``, ``version``, ``description`` and ``Config`` (a frozen
    dataclass); ``__init__(config, root)`` where ``root`` is the data directory;
    ``spec`` (a :class:`DataSpec`), ``split(name)`` for ``train``, ``val`` and ``test``
    returning a map-style ``torch.utils.data.Dataset`` of ``(context, future)`` pairs, and
    ``info()``: provenance, licence, citation and protocol as a dict of strings.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    Config: ClassVar[type]

    @property
    def spec(self) -> DataSpec: ...

    def split(self, name: str) -> Any: ...

    def info(self) -> dict[str, str]: ...


@runtime_checkable
class Metric(Protocol):
    """A per-frame video metric.

    ``per_frame(pred, target)`` takes ``(B, T, C, H, W)`` tensors and returns ``(B, T)``
    scores; aggregates are means over clips and frames. ``higher_is_better`` gives the
    direction, ``unit`` labels tables, ``version`` changes whenever values would change.
    """

    name: str
    version: str
    higher_is_better: bool
    unit: str

    def per_frame(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...


SPLITS = ("train", "val", "test")


def _require(obj: Any, attrs: Iterable[str], kind: str) -> None:
    missing = [a for a in attrs if not hasattr(obj, a)]
    if missing:
        raise RegistryError(f"{kind} {obj!r} lacks {', '.join(missing)}")


def _require_config(cls: Any) -> None:
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise RegistryError(f"{cls.__name__}.Config must be a dataclass")
    try:
        config()
    except TypeError as exc:
        raise RegistryError(f"{cls.__name__}.Config needs a default for every field ({exc})") from None


def validate_model(cls: Any) -> str:
    if not isinstance(cls, type):
        raise RegistryError(f"models are registered as classes, got {type(cls).__name__}")
    _require(cls, ("name", "version", "Config", "stages", "training_step", "predict"), "model")
    _require_config(cls)
    presets = getattr(cls, "presets", {})
    if not isinstance(presets, Mapping):
        raise RegistryError(f"{cls.__name__}.presets must be a mapping")
    return cls.name


def validate_dataset(cls: Any) -> str:
    if not isinstance(cls, type):
        raise RegistryError(f"datasets are registered as classes, got {type(cls).__name__}")
    _require(cls, ("name", "version", "Config", "spec", "split", "info"), "dataset")
    _require_config(cls)
    return cls.name


def validate_metric(obj: Any) -> str:
    _require(obj, ("name", "version", "higher_is_better", "unit", "per_frame"), "metric")
    if not callable(obj.per_frame):
        raise RegistryError(f"metric {obj.name}: per_frame must be callable")
    return obj.name


@dataclass
class Registered:
    """What one plugin registered, for ``vpbench plugins``."""

    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
