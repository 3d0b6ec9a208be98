"""Contracts between the harness and its plugins.

Frames are float tensors shaped ``(B, T, C, H, W)`` with values in ``[0, 1]``. A dataset
yields ``(context, future)`` pairs shaped ``(n_in, C, H, W)`` and ``(n_out, C, H, W)``; the
loader adds the batch dimension. A model predicts ``future = model.predict(context, n_out)``
from the context alone. A metric scores every predicted frame, ``(B, T)``, so the evaluator can
report per-horizon values and confidence intervals over clips; a set-level metric (FVD) embeds
whole clips and scores the predicted set against the true one (:class:`VideoSetMetric`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Protocol, runtime_checkable

import torch

from vpbench.errors import ConfigError, RegistryError
from vpbench.events import Events


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


def enter_stage(model: torch.nn.Module, stage: Stage) -> list[torch.nn.Parameter]:
    """Enter training ``stage`` as the trainer, the budget probe and ``vpbench check`` all do:
    the model's ``on_stage_start``, gradients for exactly the stage's parameters (returned) and
    none of the others, and training mode except the stage's ``frozen`` modules."""
    member(model, "on_stage_start")(stage.name)
    params = list(stage.params())
    chosen = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    train_mode(model, stage)
    return params


@runtime_checkable
class VideoModel(Protocol):
    """The members every model class must have (it is usually a ``torch.nn.Module`` subclass).

    ``Config`` is a frozen dataclass with a default for every field; ``presets`` maps
    ``smoke``/``cpu``/``paper`` (and ``paper@kth`` for one dataset) to nested overrides of the
    run config. The optional members are those of :class:`Model`.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any, spec: DataSpec) -> None:
        """Build the network for one data protocol (``spec``) from the model's ``Config``."""

    def stages(self) -> list[Stage]:
        """Training stages in order; ``[]`` for a model that needs no training."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> dict:
        """Losses for one batch of ``(context, future)``; the key ``loss`` is optimised."""

    def predict(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        """``(B, n_in, C, H, W)`` -> ``(B, n_out, C, H, W)`` in ``[0, 1]``; never sees targets."""


@runtime_checkable
class VideoDataset(Protocol):
    """The members every dataset class must have; the optional ones are those of :class:`Dataset`.

    ``split(name)`` for ``train``, ``val`` and ``test`` returns a map-style
    ``torch.utils.data.Dataset`` of ``(context, future)`` pairs; ``info()`` gives provenance,
    licence, citation and protocol as a dict of strings.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any, root: Path) -> None:
        """Open the dataset under the data directory ``root`` (cheap: heavy work goes in ``prepare``)."""

    @property
    def spec(self) -> DataSpec: ...

    def split(self, name: str) -> Any: ...

    def info(self) -> dict[str, str]: ...


@runtime_checkable
class VideoMetric(Protocol):
    """The members every metric object must have; the optional ones are those of :class:`Metric`.

    ``per_frame(pred, target)`` takes ``(B, T, C, H, W)`` tensors and returns ``(B, T)``
    scores; aggregates are means over clips and frames. ``higher_is_better`` gives the
    direction, ``unit`` labels tables, ``version`` changes whenever values would change.
    """

    name: str
    version: str
    higher_is_better: bool
    unit: str

    def per_frame(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class VideoSetMetric(Protocol):
    """The members every set-level metric must have (FVD); the optional ones are those of :class:`SetMetric`.

    A set metric scores two *sets* of clips, not frames: ``features(clips)`` embeds a batch of
    ``(B, T, C, H, W)`` clips as ``(B, D)`` features (the evaluator streams batches through it
    and keeps only the features), ``score(pred_feats, true_feats)`` gives one number for the
    predicted set against the true set. It has no per-frame or per-clip values.
    """

    name: str
    version: str
    higher_is_better: bool
    unit: str

    def features(self, clips: torch.Tensor) -> torch.Tensor: ...

    def score(self, pred_feats: torch.Tensor, true_feats: torch.Tensor) -> float: ...


class Model:
    """Optional base class of a model: the optional members with their defaults.

    A model need not subclass it (``class MyModel(vpbench.Model, torch.nn.Module)`` or a plain
    ``torch.nn.Module`` both work): the harness reads every optional member through
    :func:`member`, which falls back to these defaults.
    """

    description: ClassVar[str] = ""
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    late_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    predict_fields: ClassVar[tuple[str, ...]] = ()
    ablation_shortcuts: ClassVar[Mapping[str, str]] = {}
    import_sources: ClassVar[tuple[str, ...]] = ()  # the sources import_state_dict maps (checked before it is called)

    def on_stage_start(self, stage: str) -> None:
        """Before stage ``stage`` trains (again on resume): freeze, unfreeze, switch modes; never change weights."""

    def on_stage_end(self, stage: str) -> None:
        """After stage ``stage`` trained (or was skipped on resume); never change weights."""

    @classmethod
    def import_state_dict(cls, source: str, state_dict: dict, config: Any) -> dict:
        """Another toolkit's state dict (``source``, e.g. ``openstl``) renamed to this model's keys."""
        raise ConfigError(f"model '{getattr(cls, 'name', cls.__name__)}' cannot import weights from {source}: "
                          "it defines no import_state_dict")


class Dataset:
    """Optional base class of a dataset: the optional members with their defaults (see :class:`Model`)."""

    description: ClassVar[str] = ""
    fvd_includes_context: ClassVar[bool] = False  # FVD's published protocol scores the context frames with the predictions

    def prepare(self, events: Events | None = None) -> None:
        """One-off work before the splits are read (decoding, caching, cutting windows), with progress."""

    def download(self, events: Events | None = None, optional: bool = False) -> list[Path]:
        """Fetch the dataset's files into the data root (resumable, sha256-checked); the paths written."""
        return []


class Metric:
    """Optional base class of a metric: the optional members with their defaults (see :class:`Model`)."""

    description: str = ""


class SetMetric:
    """Optional base class of a set-level metric: the optional members with their defaults."""

    description: str = ""
    min_frames: int = 1  # the shortest clip ``features`` takes; a shorter protocol is a ConfigError before scoring

    def details(self) -> dict[str, str]:
        """What the scores depend on beyond ``version`` (e.g. the weight file's sha256), recorded with the results."""
        return {}


BASES: dict[str, type] = {"model": Model, "dataset": Dataset, "metric": Metric, "set_metric": SetMetric}
REQUIRED: dict[str, type] = {"model": VideoModel, "dataset": VideoDataset, "metric": VideoMetric,
                             "set_metric": VideoSetMetric}


def is_set_metric(obj: Any) -> bool:
    """Whether a registered metric is set-level (``features`` + ``score``) rather than per-frame."""
    return not hasattr(obj, "per_frame") and hasattr(obj, "features") and hasattr(obj, "score")


def _declared(kind: str, name: str) -> Any:
    try:
        return BASES[kind].__dict__[name]
    except KeyError:
        raise AttributeError(f"'{name}' is not an optional {kind} member declared in vpbench.protocols") from None


def member(obj: Any, name: str, kind: str = "model") -> Any:
    """``obj.name`` (``obj`` an instance or a class), or the declared default of that optional member."""
    default = _declared(kind, name)
    if hasattr(obj, name):
        return getattr(obj, name)
    owner = obj if isinstance(obj, type) else type(obj)
    if isinstance(default, classmethod):
        return default.__get__(None, owner)
    if callable(default) and not isinstance(obj, type):  # a method: the no-op bound to ``obj``
        return default.__get__(obj, owner)
    return default


def implements(obj: Any, name: str, kind: str = "model") -> bool:
    """Whether ``obj`` defines the optional member ``name`` itself (not the base class's default)."""
    default = _declared(kind, name)
    owner = obj if isinstance(obj, type) else type(obj)
    for klass in owner.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name] is not default
    return not isinstance(obj, type) and name in getattr(obj, "__dict__", {})


SPLITS = ("train", "val", "test")
OPTION_RE = re.compile(r"^[a-z][a-z0-9-]*$")


def _require(obj: Any, attrs: Iterable[str], kind: str) -> None:
    missing = [a for a in attrs if not hasattr(obj, a)]
    if missing:
        raise RegistryError(f"{kind} {obj!r} lacks {', '.join(missing)}")


def _require_config(cls: Any) -> set[str]:
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise RegistryError(f"{cls.__name__}.Config must be a dataclass")
    try:
        config()
    except TypeError as exc:
        raise RegistryError(f"{cls.__name__}.Config needs a default for every field ({exc})") from None
    return {f.name for f in dataclasses.fields(config)}


def _field_names(cls: Any, what: str, names: Any, fields: set[str]) -> None:
    if isinstance(names, str) or not isinstance(names, Iterable) or not all(isinstance(n, str) for n in names):
        raise RegistryError(f"{cls.__name__}.{what} must list config field names, got {names!r}")
    unknown = sorted(set(names) - fields)
    if unknown:
        raise RegistryError(f"{cls.__name__}.{what} names {', '.join(unknown)}, not a field of "
                            f"{cls.__name__}.Config (fields: {', '.join(sorted(fields))})")


def validate_model(cls: Any) -> str:
    """Check a model class: its required members and that its optional ones are well formed."""
    if not isinstance(cls, type):
        raise RegistryError(f"models are registered as classes, got {type(cls).__name__}")
    _require(cls, ("name", "version", "Config", "stages", "training_step", "predict"), "model")
    fields = _require_config(cls)
    if not isinstance(member(cls, "presets"), Mapping):
        raise RegistryError(f"{cls.__name__}.presets must be a mapping")
    late = member(cls, "late_fields")
    if not isinstance(late, Mapping):
        raise RegistryError(f"{cls.__name__}.late_fields must map stage names to config fields")
    for stage, names in late.items():
        _field_names(cls, f"late_fields[{stage!r}]", names, fields)
    _field_names(cls, "predict_fields", member(cls, "predict_fields"), fields)
    shortcuts = member(cls, "ablation_shortcuts")
    if not isinstance(shortcuts, Mapping) or not all(isinstance(k, str) and OPTION_RE.match(k) for k in shortcuts):
        raise RegistryError(f"{cls.__name__}.ablation_shortcuts must map option names (like 'lambda') to config fields")
    _field_names(cls, "ablation_shortcuts", list(shortcuts.values()), fields)
    for name in ("on_stage_start", "on_stage_end", "import_state_dict"):
        if not callable(member(cls, name)):
            raise RegistryError(f"{cls.__name__}.{name} must be callable")
    return cls.name


def validate_dataset(cls: Any) -> str:
    """Check a dataset class: its required members and that its optional ones are methods."""
    if not isinstance(cls, type):
        raise RegistryError(f"datasets are registered as classes, got {type(cls).__name__}")
    _require(cls, ("name", "version", "Config", "spec", "split", "info"), "dataset")
    _require_config(cls)
    for name in ("prepare", "download"):
        if not callable(member(cls, name, "dataset")):
            raise RegistryError(f"{cls.__name__}.{name} must be a method")
    return cls.name


def validate_metric(obj: Any) -> str:
    """Check a metric object's members: a per-frame metric, or a set-level one (``features`` + ``score``)."""
    if is_set_metric(obj):
        _require(obj, ("name", "version", "higher_is_better", "unit"), "set metric")
        for name, fn in (("features", obj.features), ("score", obj.score), ("details", member(obj, "details", "set_metric"))):
            if not callable(fn):
                raise RegistryError(f"metric {obj.name}: {name} must be callable")
        if not isinstance(member(obj, "description", "set_metric"), str):
            raise RegistryError(f"metric {obj.name}: description must be a string")
        min_frames = member(obj, "min_frames", "set_metric")
        if not isinstance(min_frames, int) or isinstance(min_frames, bool) or min_frames < 1:
            raise RegistryError(f"metric {obj.name}: min_frames must be an integer >= 1, got {min_frames!r}")
        return obj.name
    _require(obj, ("name", "version", "higher_is_better", "unit", "per_frame"), "metric")
    if not callable(obj.per_frame):
        raise RegistryError(f"metric {obj.name}: per_frame must be callable")
    if not isinstance(member(obj, "description", "metric"), str):
        raise RegistryError(f"metric {obj.name}: description must be a string")
    return obj.name


@dataclass
class Registered:
    """What one plugin registered, for ``vpbench plugins``."""

    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    trackers: list[str] = field(default_factory=list)
