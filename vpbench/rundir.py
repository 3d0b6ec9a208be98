"""Run directories: their identity, their default names, and the policy that keeps trained work.

A run's identity is its training key: the resolved config without what cannot change the trained
weights (the device, the evaluation settings, the model's prediction-only fields). Its hash names
the default directory ``runs/<model>-<dataset>-<preset>-<hash>``, so the same config finds the
same run again. A directory holding another config is never overwritten: only ``--fresh`` moves
it aside (renamed, never deleted); a directory of files that are not a run is never touched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator

from vpbench import io
from vpbench.errors import RunError
from vpbench.events import Events
from vpbench.protocols import member

RUNS_DIR = Path("runs")
NOT_TRAINING_KEYS = ("device", "eval")


def training_key(config: Any, model_cls: type | None = None) -> dict[str, Any]:
    """The parts of a config that determine the trained weights: all but the device, the
    evaluation settings and the model fields its plugin declares as prediction-only
    (``Model.predict_fields``: decoding options such as a sampling temperature)."""
    return training_key_of(config.to_dict(), model_cls)


def training_key_of(data: dict[str, Any], model_cls: type | None = None) -> dict[str, Any]:
    """:func:`training_key` of a saved config dict (``config.json``, the one in ``model.pt``)."""
    data = json.loads(json.dumps(data))  # a deep copy
    for key in NOT_TRAINING_KEYS:
        data.pop(key, None)
    model = data.get("model")
    if isinstance(model, dict):
        for key in member(model_cls, "predict_fields"):
            model.pop(key, None)
    return data


def config_hash(config: Any, model_cls: type | None = None) -> str:
    text = json.dumps(training_key(config, model_cls), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def default_run_dir(config: Any, model_cls: type | None = None) -> Path:
    return RUNS_DIR / f"{config.model_name}-{config.dataset_name}-{config.preset}-{config_hash(config, model_cls)}"


def timestamped_dir(prefix: str) -> Path:
    """``runs/<prefix>-<YYYYmmdd-HHMMSS>``: the default home of a compare or an ablation."""
    return RUNS_DIR / f"{prefix}-{_stamp()}"


def first_difference(a: Any, b: Any, prefix: str = "") -> str:
    """The first dotted key where two config dicts differ, as ``key: a -> b`` (``""`` if none)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return ""
    return "" if a == b else f"{prefix.rstrip('.')}: {a!r} -> {b!r}"


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def move_aside(run_dir: Path) -> Path:
    """Rename ``run_dir`` to ``<name>.old-<time>`` beside it; the new path."""
    target = run_dir.with_name(f"{run_dir.name}.old-{_stamp()}")
    run_dir.rename(target)
    return target


def prepare_dir(run_dir: Path, config: Any, model_cls: type, saved_config: Callable[[], Any], *, fresh: bool = False,
                events: Events | None = None) -> None:
    """Make ``run_dir`` the directory of ``config`` and write its ``config.json``. An existing run
    must have the same training key (``saved_config()`` reads its config); with ``fresh`` it is
    moved aside instead. A non-empty directory that is not a run is refused, ``fresh`` or not."""
    events = events or Events()
    saved = run_dir / "config.json"
    if run_dir.exists() and any(run_dir.iterdir()):
        if not saved.is_file():
            raise RunError(f"{run_dir} exists and is not a vpbench run (no config.json); choose another --out")
        if fresh:
            events.message(f"moved the previous run to {move_aside(run_dir)}")
        else:
            diff = first_difference(training_key(saved_config(), model_cls), training_key(config, model_cls))
            if diff:
                raise RunError(
                    f"{run_dir} holds a run with another config ({diff}); choose another --out, "
                    "or pass --fresh to move the old run aside"
                )
    run_dir.mkdir(parents=True, exist_ok=True)
    io.write_json(saved, config.to_dict())


def is_trained(run_dir: Path, until: str | None = None) -> bool:
    """Whether ``run_dir`` holds its final weights (or, with ``until``, the stages before that one)."""
    done = Path(run_dir) / (f"trained-until-{until}.txt" if until is not None else "model.pt")
    return done.is_file()


@contextlib.contextmanager
def locked(run_dir: Path, events: Events | None = None) -> Iterator[None]:
    """The exclusive lock of ``run_dir`` (:mod:`vpbench.lock`); half-written temporary files
    that a killed process left in it are removed once it is held."""
    from vpbench.lock import locked as hold

    with hold(run_dir, events.message if events is not None else None):
        if run_dir.is_dir():
            removed = io.remove_partials(run_dir)
            if removed and events is not None:
                events.message(f"removed {len(removed)} half-written temporary file(s) an interrupted write left in {run_dir}")
        yield
