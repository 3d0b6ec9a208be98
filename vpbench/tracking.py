"""Experiment trackers: the :class:`Tracker` contract and the fan-out the harness calls.

A tracker plugin registers a class through ``vpbench_register_trackers``; the harness builds one
instance per run (rank 0 only; ``cls(VALUE)`` for ``--track NAME=VALUE``) and calls ``start`` →
``log`` / ``log_media`` → ``finish`` through :class:`Tracking`, which turns a tracker's exception
into one warning line and drops that tracker for the rest of the run: a tracker never costs a run
or its results.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from pathlib import Path
from typing import Any, Iterator

from vpbench.errors import ConfigError, RegistryError, one_line
from vpbench.events import Events

METHODS = ("start", "log", "log_media", "finish")


class Tracker:
    """Base class of a tracker (optional: any class with these members works).

    ``start(run_dir, config, provenance)`` opens a run with the resolved config as parameters;
    ``log(metrics, step)`` records scalars at a step; ``log_media(name, path, step)`` an image or GIF;
    ``finish(status)`` closes it (``"success"`` or ``"failed"``). A tracker taking an option
    (``--track NAME=VALUE``) accepts it as its constructor's one argument."""

    name: str = ""
    version: str = ""
    description: str = ""

    def start(self, run_dir: Path, config: dict, provenance: dict) -> None:
        """Open the tracked run."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record scalar ``metrics`` at ``step``."""

    def log_media(self, name: str, path: Path, step: int) -> None:
        """Record the image or GIF file ``path`` under ``name``."""

    def finish(self, status: str) -> None:
        """Close the tracked run with ``status`` (``success`` or ``failed``)."""


def validate_tracker(cls: Any) -> str:
    """Check a tracker class: a name, a version and the four methods."""
    if not isinstance(cls, type):
        raise RegistryError(f"trackers are registered as classes, got {type(cls).__name__}")
    missing = [a for a in ("name", "version", *METHODS) if not hasattr(cls, a)]
    if missing:
        raise RegistryError(f"tracker {cls.__name__} lacks {', '.join(missing)}")
    for method in METHODS:
        if not callable(getattr(cls, method)):
            raise RegistryError(f"tracker {cls.__name__}: {method} must be callable")
    return cls.name


def parse_track(track: str | list[str] | tuple[str, ...] | None) -> list[tuple[str, str | None]]:
    """``"tensorboard=tb,mlflow"`` (or a list of such) as ``[("tensorboard", "tb"), ("mlflow", None)]``:
    each tracker once, with the option after its ``=`` (None without one)."""
    if not track:
        return []
    parts = [track] if isinstance(track, str) else list(track)
    out: dict[str, str | None] = {}
    for part in parts:
        for item in str(part).split(","):
            name, sep, option = item.partition("=")
            name, option = name.strip(), option.strip() if sep else None
            if not name:
                continue
            if sep and not option:
                raise ConfigError(f"--track {item.strip()}: give the tracker's option after '=' "
                                  f"(e.g. {name}=VALUE) or leave out the '='")
            if name in out and out[name] != option:
                raise ConfigError(f"--track names tracker '{name}' twice with different options; give it once")
            out[name] = option
    return list(out.items())


def parse_names(track: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"tensorboard,mlflow"`` (or a list of such) as a list of names, without duplicates."""
    return [name for name, _ in parse_track(track)]


def chosen(track: Any, config: Any) -> Any:
    """The trackers of a run: ``track`` (``--track``) when given, else its config's ``track`` field."""
    return track if track is not None else getattr(config, "track", ())


class Tracking:
    """The trackers of one run: each call goes to every tracker still working."""

    def __init__(self, trackers: list[Any] | None = None, events: Events | None = None) -> None:
        self.trackers = list(trackers or [])
        self.events = events or Events()
        self.warnings: list[str] = []
        self.opening: tuple | None = None  # start's arguments until the first call that logs
        self.last_step = 0  # the largest step logged: results come at it (W&B drops steps that go back)

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def _each(self, method: str, *args: Any) -> None:
        if self.opening is not None and method != "start":
            opening, self.opening = self.opening, None
            self._each("start", *opening)
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # a tracker never costs the run
                self.trackers.remove(tracker)
                line = (f"tracker '{getattr(tracker, 'name', type(tracker).__name__)}' failed in {method} and is off "
                        f"for the rest of this run: {one_line(exc)}")
                self.warnings.append(line)
                self.events.message(line)

    def start(self, run_dir: Path, config: dict, provenance: dict) -> None:
        """Open the trackers' runs when the first thing is logged (the run directory then exists)."""
        self.opening = (Path(run_dir), config, provenance)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        values = {k: float(v) for k, v in metrics.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
        if values:
            self.last_step = max(self.last_step, int(step))
            self._each("log", values, int(step))

    def log_media(self, name: str, path: Path, step: int = 0) -> None:
        self.last_step = max(self.last_step, int(step))
        self._each("log_media", name, Path(path), int(step))

    def finish(self, status: str) -> None:
        """Close the trackers' runs (``success`` or ``failed``); a run that logged nothing was never opened."""
        if self.opening is None:
            self._each("finish", status)
        self.trackers, self.opening = [], None

    def results(self, table: Any, eval_dir: Path | None, step: int | None = None) -> None:
        """The metrics of a results table (``test/mse`` overall, ``test/mse@h3`` per horizon, the
        cost rows as ``cost/<metric>``), then the example PNG / GIF files of ``eval_dir``, at
        ``step`` (default: the last step logged, i.e. the end of training)."""
        if not self.trackers:
            return
        step = self.last_step if step is None else step
        self.log(results_metrics(table), step)
        examples = Path(eval_dir) / "examples" if eval_dir is not None else None
        if examples is not None and examples.is_dir():
            for path in sorted(examples.iterdir()):
                if path.suffix.lower() in (".png", ".gif"):
                    self.log_media(f"examples/{path.name}", path, step)


def results_metrics(table: Any) -> dict[str, float]:
    """The scalars of a results table as tracker metric names: ``test/mse``, ``test/mse@h3``, ``cost/params``."""
    from vpbench.report.tables import COST_METRICS

    out: dict[str, float] = {}
    for row in table.itertuples(index=False):
        metric, horizon, value = str(row.metric), str(row.horizon), row.value
        if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            continue
        prefix = "cost" if metric in COST_METRICS else str(row.split)
        out[f"{prefix}/{metric}" if horizon in ("all", "nan", "") else f"{prefix}/{metric}@h{horizon}"] = float(value)
    return out


def open_tracking(harness: Any, track: Any, events: Events | None = None, enabled: bool = True) -> Tracking:
    """The :class:`Tracking` of the trackers named in ``track`` (``"tensorboard,mlflow=URI"``; a
    tracker given ``NAME=VALUE`` is built as ``cls(VALUE)``); unknown names, and options a tracker
    does not take, raise one line; none on ranks other than 0 (``enabled`` false)."""
    items = parse_track(track)
    for name, _ in items:
        if name not in harness.trackers:
            harness.trackers.entry(name)  # raises "unknown tracker 'x' (did you mean ...)"
    for name, option in items:
        if option is not None and not _takes_option(harness.trackers.get(name)):
            raise ConfigError(f"tracker '{name}' takes no option: give --track {name} without '={option}'")
    if not enabled:
        return Tracking([], events)
    trackers = []
    for name, option in items:
        cls = harness.trackers.get(name)
        try:
            trackers.append(cls() if option is None else cls(option))
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"tracker '{name}' from {harness.trackers.entry(name).source} could not be built: "
                              f"{one_line(exc)}") from None
    return Tracking(trackers, events)


def _takes_option(cls: type) -> bool:
    """Whether ``cls(option)`` is a valid call (its ``__init__`` takes one argument)."""
    try:
        inspect.signature(cls).bind("option")
    except TypeError:
        return False
    except ValueError:  # no signature to read: let the call decide
        return True
    return True


def check_tracking(harness: Any, track: Any, runs: Any) -> None:
    """Build the trackers of every run in ``runs`` once (``track``, else each run's config's), so
    an unknown name, a bad option or a missing package is one line before anything trains."""
    checked: list = []
    for run in runs:
        if parse_track(chosen(track, run.config)) not in checked:
            checked.append(parse_track(chosen(track, run.config)))
            open_tracking(harness, chosen(track, run.config))


@contextlib.contextmanager
def tracked(run: Any, track: Any, events: Events | None = None, provenance: dict | None = None) -> Iterator[Tracking]:
    """``run`` (a :class:`vpbench.runs.Run`) tracked while the block runs by the trackers named in
    ``track``, or when ``track`` is None in the run config's ``track``: ``run.tracking`` is set, and
    the trackers finish with ``success`` or ``failed``. ``provenance`` defaults to the run's."""
    tracking = open_tracking(run.harness, chosen(track, run.config), events, enabled=run.is_main)
    if tracking:
        if provenance is None:
            provenance = run.provenance() if hasattr(run, "provenance") else {}
        tracking.start(run.run_dir, run.config.to_dict(), provenance)
    run.tracking, status = tracking, "failed"
    try:
        yield tracking
        status = "success"
    finally:
        tracking.finish(status)
        run.tracking = None
