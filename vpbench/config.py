"""Run configuration: frozen dataclasses built from layers of overrides.

Layers, later wins: the dataclass defaults, the model's preset (``--preset smoke``; a
``smoke@kth`` entry adds dataset-specific values on top), ``--config FILE`` (YAML, TOML or
JSON), ``--set key=value`` (dotted keys, e.g. ``train.batch_size=8`` or ``model.levels=2``),
then explicit CLI options such as ``--seed``. Unknown keys, wrong types and bad values are
:class:`~vpbench.errors.ConfigError` with the offending key named and near misses suggested.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Literal, Mapping

from vpbench.errors import ConfigError, short
from vpbench.protocols import member
from vpbench.registry import suggest
from vpbench.validate import at_most, non_negative, positive

# -- the training budget's grammar ------------------------------------------------------
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?(?:(\d+(?:\.\d+)?)s)?$")


@dataclass(frozen=True)
class Budget:
    """A training budget: ``kind`` is ``flops`` or ``seconds``."""

    kind: str
    value: float
    text: str

    def describe(self) -> str:
        if self.kind == "flops":
            return f"{self.value:.3g} training FLOPs"
        return f"{format_seconds(self.value)} of training wall-clock time"


def format_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def parse_budget(text: str) -> Budget | None:
    """``""`` -> None; ``2e15`` -> FLOPs; ``30m`` / ``1h30m`` / ``90s`` -> seconds."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text.lower().removesuffix("flops").removesuffix("flop"))
    except ValueError:
        value = None
    if value is not None:
        if not (math.isfinite(value) and value >= 1):
            raise ConfigError(f"train.budget: {short(text)} must be a positive, finite number of FLOPs (e.g. 2e15)")
        return Budget("flops", value, text)
    match = _DURATION.match(text.lower())
    if match and any(match.groups()):
        h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = 3600 * h + 60 * m + s
        if seconds > 0:
            return Budget("seconds", seconds, text)
    raise ConfigError(f"train.budget: {short(text)} is neither a number of training FLOPs (2e15) nor a duration "
                      "(30m, 1h30m, 90s)")


def parse_stage_steps(entries: Iterable[str]) -> dict[str, tuple[int, int]]:
    """``("prior:2000", "joint:150/200")`` -> ``{stage: (steps, schedule_steps)}``."""
    out: dict[str, tuple[int, int]] = {}
    for entry in entries:
        name, sep, value = str(entry).partition(":")
        steps, _, schedule = value.partition("/")
        try:
            n = int(steps)
            m = int(schedule) if schedule else n
        except ValueError:
            n = m = -1
        if not sep or not name.strip() or n < 0 or m < n:
            raise ConfigError(f"train.steps: {short(entry)} is not STAGE:STEPS or STAGE:STEPS/SCHEDULE_STEPS "
                              "(e.g. prior:2000 or prior:1800/2000)")
        out[name.strip()] = (n, m)
    return out


@dataclass(frozen=True)
class TrainConfig:
    """How the trainer runs every stage of every model."""

    batch_size: int = 16  # clips per optimiser step (global, over all processes)
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    amp: Literal["auto", "on", "off"] = "auto"  # mixed precision; auto = on for CUDA only; on = also bf16 on
    # CPUs with native bf16 (AMX / AVX512-BF16), float32 on other CPUs (see runtime.amp_mode)
    val_every: int = 0  # validate every N steps; 0 = only at the end of each stage
    val_clips: int = 64  # validation clips used for model selection (never the test split)
    select_best: bool = True  # restore the weights with the best validation loss per stage
    ckpt_every: int = 200  # write the resumable checkpoint every N steps
    log_every: int = 10  # append a line to train_log.jsonl every N steps
    num_workers: int = 0  # DataLoader worker processes
    nonfinite: Literal["stop", "skip"] = "stop"  # on a NaN/Inf loss or gradient: stop the stage or skip the step
    max_skipped: float = 0.1  # nonfinite=skip: a stage that skips more than this share of its steps fails
    budget: str = ""  # training FLOPs (2e15) or wall-clock time (30m): every stage's steps scaled to spend it
    steps: tuple[str, ...] = ()  # optimiser steps per stage instead of the model's, e.g. prior:2000,joint:150/200

    def __post_init__(self) -> None:
        positive(self, "batch_size", "ckpt_every", "log_every")
        non_negative(self, "grad_clip", "val_every", "val_clips", "num_workers")
        at_most(self, MAX_WORKERS, "num_workers")
        if not 0 <= self.max_skipped <= 1:
            raise ConfigError(f"train.max_skipped must be in [0, 1], got {self.max_skipped}")
        parsed, steps = parse_budget(self.budget), parse_stage_steps(self.steps)
        if parsed is not None and steps:
            raise ConfigError("give train.budget or train.steps, not both")
        object.__setattr__(self, "_parsed", (parsed, steps))

    @property
    def parsed_budget(self) -> Budget | None:
        """``budget`` parsed: training FLOPs or seconds, None for the stages' own steps."""
        return self._parsed[0]

    @property
    def stage_steps(self) -> dict[str, tuple[int, int]]:
        """``steps`` parsed: ``{stage: (steps, schedule_steps)}`` for the stages it names."""
        return dict(self._parsed[1])


@dataclass(frozen=True)
class EvalConfig:
    """How a trained model is scored."""

    split: Literal["val", "test"] = "test"  # which split to score
    batch_size: int = 16  # clips per prediction batch
    max_clips: int = 0  # score only the first N clips; 0 = the whole split
    metrics: tuple[str, ...] = ("mse", "mae", "psnr", "ssim", "lpips")  # metric plugin names
    bootstrap: int = 1000  # bootstrap resamples for the 95% confidence intervals
    examples: int = 4  # test clips drawn into the report's GIF / PNG strip
    samples: int = 1  # predictions per clip (stochastic models): adds best-of-K and mean-of-K metrics
    profile: bool = True  # count FLOPs / MACs and add them to the results
    speed: bool = True  # time latency (batch 1) and throughput (largest batch) on the run's device
    speed_seconds: float = 5.0  # seconds the speed measurement may take per batch size
    max_batch: int = 64  # largest batch tried for throughput
    # set-level metrics (FVD): how the two sets of clips are formed (README "Metric conventions")
    fvd_include_context: bool | None = None  # prepend the n_in context frames; None: the dataset's published convention
    fvd_frames: int = 0  # clip length: the first N frames of each clip; 0 = all of them (never padded)
    fvd_resize: int = 224  # frames resized to N x N (bilinear) before the features; 0 = native size
    fvd_clips: int = 0  # clips per draw (BAIR's protocol: 256); 0 = every scored clip
    fvd_repeats: int = 1  # draws of fvd_clips clips (without replacement): mean and standard deviation

    # keys renamed since: saved config.json files and --set still accept the old name
    renamed: ClassVar[dict[str, str]] = {"speed_budget": "speed_seconds"}

    def __post_init__(self) -> None:
        positive(self, "batch_size")
        non_negative(self, "max_clips", "bootstrap", "examples", "fvd_frames", "fvd_resize", "fvd_clips")
        positive(self, "speed_seconds", "max_batch", "samples", "fvd_repeats")
        at_most(self, 100_000, "bootstrap")
        at_most(self, 10_000, "fvd_repeats", "fvd_resize")
        at_most(self, 1_000, "samples")
        if not self.metrics:
            raise ConfigError("eval.metrics must name at least one metric")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run. ``model`` and ``data`` hold the plugins' configs."""

    model_name: str
    model_version: str = ""  # the model plugin's version: part of the run's identity (a new version retrains)
    dataset_name: str = "digits"
    dataset_version: str = ""  # the dataset plugin's version (a new version means other clips)
    preset: str = "none"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    track: tuple[str, ...] = ()  # experiment trackers (NAME or NAME=OPTION) when --track is not given; not the run's identity
    model: Any = None
    data: Any = None
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


MAX_WORKERS = max(64, 4 * (os.cpu_count() or 1))  # DataLoader processes: more only load the machine


def _name(key: str, value: Any, example: str) -> str:
    """``value`` of ``key`` checked to be a name (a short non-empty string)."""
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        raise ConfigError(f"{key}: expected a name such as {example}, got {short(value)}")
    return value


def _section(key: str, value: Any) -> Mapping[str, Any]:
    """``value`` of ``key`` checked to be a section of keys (``None`` reads as an empty one)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a section of keys, got {short(value)}")
    return value


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain JSON-able dicts / lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


# -- parsing values ----------------------------------------------------------------------
MAX_INT = 2**63 - 1  # integers of a config fit 64 bits (sizes and counts past it overflow an index)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` (a string from the CLI or a typed value from a file) as type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {short(value)}")
    if origin is Literal:
        choices = list(args)
        for choice in choices:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ConfigError(
            f"{key}: {short(value)} is not one of {', '.join(map(str, choices))}"
            f"{suggest(value, [str(c) for c in choices]) if isinstance(value, str) and len(value) <= 100 else ''}"
        )
    if origin in (tuple, list):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {short(value)}")
        items = [i.strip() if isinstance(i, str) else i for i in items]
        items = [i for i in items if i != ""]
        item_type = args[0] if args else Any
        out = [coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(items)]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{key}: expected true or false, got {short(value)}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {short(value)}")
        number = value if isinstance(value, int) else None
        if isinstance(value, str):
            try:
                number = int(value.replace("_", ""))
            except ValueError:
                if value.strip().lstrip("+-").replace("_", "").isdigit():  # past int()'s 4300 digits
                    number = MAX_INT + 1
        if number is None:
            raise ConfigError(f"{key}: expected an integer, got {short(value)}")
        if abs(number) > MAX_INT:
            raise ConfigError(f"{key}: {short(value)} is out of range (config integers are at most 2**63 - 1 in magnitude)")
        return number
    if tp is float:
        number = None
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                number = float(value)
            except ValueError:
                pass
            except OverflowError:  # an integer past float's range
                number = math.inf
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {short(value)}")
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {short(value)}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {short(value)}")
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


def build(cls: type, overrides: Mapping[str, Any] | None, prefix: str = "", **fixed: Any) -> Any:
    """Instantiate dataclass ``cls`` from ``overrides``, validating every key and value."""
    overrides = dict(overrides or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = dict(fixed)
    renamed = getattr(cls, "renamed", {})
    for old, new in renamed.items():
        if old in overrides:
            if new in overrides:
                raise ConfigError(f"{prefix}{old} is the old name of {prefix}{new}; give one of them, not both")
            overrides[new] = overrides.pop(old)
    for key, value in overrides.items():
        if key not in names and not (isinstance(key, str) and len(key) <= 100):
            raise ConfigError(f"unknown config key {short(key)} in {prefix.rstrip('.') or 'the config'}; valid keys: "
                              f"{', '.join(prefix + n for n in names) or 'none (this section takes no options)'}")
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(
                f"unknown config key '{path}'{suggest(key, names)}; valid keys: "
                f"{', '.join(prefix + n for n in names) or 'none (this section takes no options)'}"
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path}: expected a section of keys, got {short(value)}")
            kwargs[key] = build(tp, value, prefix=f"{path}.")
        else:
            kwargs[key] = coerce(value, tp, path)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc}" if prefix and not str(exc).startswith(prefix) else str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {exc}") from None


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of nested override dicts (``update`` wins)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_sets(pairs: list[str] | None) -> dict[str, Any]:
    """``["train.batch_size=8", "model.levels=2"]`` -> nested dict of strings."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {short(pair)}")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{part}' is a value, not a section")
        node[parts[-1]] = value.strip()
    return out


MAX_YAML_NODES = 100_000  # values of a YAML config once its aliases are expanded


def _load_yaml(text: str, path: Path) -> Any:
    """Safe YAML, refused where aliases (``&a`` / ``*a``) would expand it past :data:`MAX_YAML_NODES` values."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}

        def size(n: Any) -> int:
            if sizes.get(id(n)) == 0:
                raise ConfigError(f"config file {path} holds an alias inside its own anchor (a value that contains itself)")
            if id(n) not in sizes:
                sizes[id(n)] = 0  # being counted
                children = [c for pair in n.value for c in pair] if isinstance(n, yaml.MappingNode) else (
                    n.value if isinstance(n, yaml.SequenceNode) else [])
                sizes[id(n)] = 1 + sum(size(c) for c in children)
            return sizes[id(n)]

        if size(node) > MAX_YAML_NODES:
            raise ConfigError(f"config file {path} expands to {size(node):,} values through its aliases (at most "
                              f"{MAX_YAML_NODES:,}); write the values out instead of nesting aliases")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def cli_sets(sets: list[str] | None, *, budget: str | None = None, samples: int | None = None) -> list[str]:
    """``--set`` pairs with the command line's shortcuts folded in: ``--budget B`` is
    ``train.budget=B`` and ``--samples K`` is ``eval.samples=K`` (later than ``--set``, so they win)."""
    out = list(sets or [])
    if budget is not None:
        out.append(f"train.budget={budget}")
    if samples is not None:
        out.append(f"eval.samples={samples}")
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    """A YAML, TOML or JSON config file as a nested dict."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; give a .yaml, .toml or .json file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not text (binary?); give a .yaml, .toml or .json file") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            data = _load_yaml(text, path) or {}
        elif path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path}: use .yaml, .yml, .toml or .json")
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"config file {path} does not parse: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys at the top")
    return data


def preset_overrides(
    presets: Mapping[str, Mapping[str, Any]], preset: str, dataset: str | None, model: str
) -> dict[str, Any]:
    """The nested overrides of ``preset`` (plus ``preset@dataset`` when present)."""
    if preset == "none":
        return {}
    base_names = sorted({k.split("@")[0] for k in presets})
    if preset not in base_names:
        raise ConfigError(
            f"model '{model}' has no preset '{preset}'{suggest(preset, base_names)}; "
            f"available: {', '.join(base_names) or 'none'}"
        )
    out = dict(presets.get(preset, {}))
    if dataset and f"{preset}@{dataset}" in presets:
        out = merge(out, presets[f"{preset}@{dataset}"])
    return out


@dataclass(frozen=True)
class Protocol:
    """The data side of a comparison, resolved once and applied to every model in it: the
    dataset and its config (splits, ``n_in`` / ``n_out``, sizes), the scored split and the
    clip count. A model's preset may still set its model, train and eval fields."""

    dataset_name: str
    data: Mapping[str, Any]  # the dataset's resolved config, as a dict
    split: str
    max_clips: int

    @classmethod
    def of(cls, config: RunConfig) -> Protocol:
        return cls(config.dataset_name, to_dict(config.data), config.eval.split, config.eval.max_clips)


def model_sets(sets: list[str] | None, model: str, models: list[str] | None = None) -> list[str]:
    """The ``--set`` pairs that apply to ``model``: unprefixed ones and ``MODEL:key=value``
    with its own name (the prefix dropped). ``models`` are the other models of the command,
    whose pairs are skipped; a prefix naming none of them is an error."""
    models = list(models or [model])
    out = []
    for pair in sets or []:
        head, sep, rest = pair.partition(":")
        key = pair.partition("=")[0]
        if not sep or "=" in head or "." in head or ":" not in key:
            out.append(pair)
            continue
        if head not in models:
            raise ConfigError(f"--set {pair}: '{head}' is not a model of this command "
                              f"({', '.join(models)}){suggest(head, models)}")
        if head == model:
            out.append(rest)
    return out


def resolve(
    model_name: str,
    model_cls: type,
    dataset_for: Any,
    *,
    dataset: str | None = None,
    preset: str | None = None,
    config_file: str | Path | None = None,
    sets: list[str] | None = None,
    seed: int | None = None,
    device: str | None = None,
    models: list[str] | None = None,
    protocol: Protocol | None = None,
) -> RunConfig:
    """The full :class:`RunConfig` for one run.

    ``dataset_for(name)`` returns the dataset class for a dataset name (the registry lookup).
    ``models`` are all models of the command (``--set MODEL:key=value`` picks one of them).
    With a ``protocol`` the dataset, its config and the scored clips are the protocol's, and
    every ``data.*`` entry of the preset, the file and ``--set`` is left out (the protocol
    was resolved from them once).
    """
    layers: dict[str, Any] = {}
    file_layer = load_file(config_file) if config_file else {}
    set_layer = parse_sets(model_sets(sets, model_name, models))
    preset = _name("preset", preset or file_layer.get("preset") or "none", "smoke")
    presets = member(model_cls, "presets")
    # the dataset decides which preset@dataset entry applies, so find it first
    dataset_name = (
        (protocol.dataset_name if protocol is not None else None)
        or dataset
        or set_layer.get("dataset_name")
        or file_layer.get("dataset_name")
        or presets.get(preset, {}).get("dataset_name")
        or "digits"
    )
    dataset_name = _name("dataset_name", dataset_name, "digits")
    dataset_cls = dataset_for(dataset_name)
    preset_layer = preset_overrides(presets, preset, dataset_name, model_name)
    if isinstance(preset_layer.get("data"), Mapping):
        # a preset's data fields apply where the chosen dataset has them (a smoke preset's
        # data.n_train means nothing to a folder of videos); fields typed by the user are checked
        fields = {f.name for f in dataclasses.fields(dataset_cls.Config)}
        preset_layer["data"] = {k: v for k, v in preset_layer["data"].items() if k in fields}
    for layer in (preset_layer, file_layer, set_layer):
        layers = merge(layers, layer)
    explicit = {"dataset_name": dataset_name, "preset": preset, "model_name": model_name,
                "model_version": str(getattr(model_cls, "version", "")),
                "dataset_version": str(getattr(dataset_cls, "version", ""))}
    if seed is not None:
        explicit["seed"] = seed
    if device is not None:
        explicit["device"] = device
    layers = merge(layers, explicit)
    if layers.get("model_name") != model_name:
        raise ConfigError(f"model_name in the config ({layers['model_name']}) differs from {model_name}")
    model_section = _section("model", layers.pop("model", None))
    data_section = _section("data", layers.pop("data", None))
    if protocol is not None:
        data_section = dict(protocol.data)
        eval_section = _section("eval", layers.get("eval"))
        layers["eval"] = merge(eval_section, {"split": protocol.split, "max_clips": protocol.max_clips})
    model_cfg = build(model_cls.Config, model_section, prefix="model.")
    data_cfg = build(dataset_cls.Config, data_section, prefix="data.")
    return build(RunConfig, layers, model=model_cfg, data=data_cfg)


def from_dict(data: Mapping[str, Any], model_cls: type, dataset_cls: type) -> RunConfig:
    """Rebuild a saved :class:`RunConfig` (``config.json`` of a run directory)."""
    data = dict(data)
    model_cfg = build(model_cls.Config, _section("model", data.pop("model", None)), prefix="model.")
    data_cfg = build(dataset_cls.Config, _section("data", data.pop("data", None)), prefix="data.")
    return build(RunConfig, data, model=model_cfg, data=data_cfg)
