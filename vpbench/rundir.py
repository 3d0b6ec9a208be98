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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

from vpbench import io
from vpbench.errors import RunError
from vpbench.events import Events
from vpbench.protocols import member

RUNS_DIR = Path("runs")
NOT_TRAINING_KEYS = ("device", "track", "eval")


@dataclass(frozen=True)
class RunDir:
    """The layout of a run directory: the one place that names each file and folder a run writes."""

    path: Path

    CONFIG: ClassVar[str] = "config.json"
    CHECKPOINTS: ClassVar[str] = "checkpoints"
    EVALS: ClassVar[str] = "evals"
    PREDICTIONS: ClassVar[str] = "predictions"
    SUBDIRS: ClassVar[tuple[str, ...]] = (CHECKPOINTS, EVALS, PREDICTIONS)  # where a run's own atomic writes happen

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        """The resolved config (``config.json``)."""
        return self.path / self.CONFIG

    @property
    def model(self) -> Path:
        """The final weights with the config they were trained with (``model.pt``)."""
        return self.path / "model.pt"

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def last(self) -> Path:
        """The resumable checkpoint (``checkpoints/last.pt``)."""
        return self.checkpoints / "last.pt"

    def best(self, stage: int) -> Path:
        """The best weights of stage number ``stage`` (``checkpoints/best-stage{i}.pt``)."""
        return self.checkpoints / f"best-stage{stage}.pt"

    @property
    def train_log(self) -> Path:
        return self.path / "train_log.jsonl"

    @property
    def training(self) -> Path:
        """The plan and cost of training (``training.json``)."""
        return self.path / "training.json"

    def until_marker(self, stage: str) -> Path:
        """What a run trained only up to ``stage`` holds instead of ``model.pt``."""
        return self.path / f"trained-until-{stage}.txt"

    def trained(self, until: str | None = None) -> Path:
        """The file whose presence means the run is trained (up to ``until``)."""
        return self.until_marker(until) if until is not None else self.model

    @property
    def evals(self) -> Path:
        """The result sets, one folder each (their files are :mod:`vpbench.results`')."""
        return self.path / self.EVALS

    def eval_set(self, name: str) -> Path:
        return self.evals / name

    @property
    def report(self) -> Path:
        """The index of the result sets (``report.md``)."""
        return self.path / "report.md"

    @property
    def predictions(self) -> Path:
        """Where ``vpbench predict`` writes by default."""
        return self.path / self.PREDICTIONS

    @property
    def imported(self) -> Path:
        """The record of an imported checkpoint (``vpbench import``)."""
        return self.path / "imported.json"


def training_key(config: Any, model_cls: type | None = None) -> dict[str, Any]:
    """The parts of a config that determine the trained weights: all but the device, the
    experiment trackers, the evaluation settings and the model fields its plugin declares as
    prediction-only (``Model.predict_fields``: decoding options such as a sampling temperature)."""
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
    saved = RunDir(run_dir).config
    if run_dir.exists() and any(run_dir.iterdir()) and not _only_a_torn_config(run_dir):
        if not saved.is_file():
            raise RunError(f"{run_dir} exists and is not a vpbench run (no config.json); choose another --out")
        if _foreign_config(saved):
            raise RunError(f"{run_dir} exists and is not a vpbench run (its config.json has no model_name and "
                           "dataset_name: another tool's?); choose another --out")
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


def is_run_config(data: Any) -> bool:
    """Whether ``data`` (a parsed ``config.json``) is a vpbench run's config."""
    return (isinstance(data, dict) and all(isinstance(data.get(k), str) for k in ("model_name", "dataset_name"))
            and isinstance(data.get("model"), dict))


def read_config(run_dir: Path) -> dict[str, Any]:
    """The saved config of the run in ``run_dir`` (its ``config.json``, parsed), or a one-line :class:`RunError`."""
    path = RunDir(run_dir).config
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run directory (no config.json); create one with `vpbench run`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not is_run_config(data):
        raise RunError(f"{run_dir} is not a vpbench run (its config.json has no model_name and dataset_name: "
                       "another tool's?)")
    return data


def is_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a vpbench run: a ``config.json`` with vpbench's keys."""
    path = RunDir(run_dir).config
    try:
        return path.is_file() and not path.is_symlink() and is_run_config(json.loads(path.read_text()))
    except (OSError, ValueError):
        return False


def _foreign_config(path: Path) -> bool:
    """A ``config.json`` that parses but is not vpbench's (one that does not parse is reported by its reader)."""
    try:
        return not is_run_config(json.loads(path.read_text()))
    except (OSError, ValueError):
        return False


def _only_a_torn_config(run_dir: Path) -> bool:
    """Whether all ``run_dir`` holds is the temporary file of a ``config.json`` write that a kill interrupted
    (the directory was being made a run); those are removed."""
    entries = list(run_dir.iterdir())
    torn = [p for p in entries if p.name.startswith(f".{RunDir.CONFIG}.") and p.name.endswith(".partial")
            and p.is_file() and not p.is_symlink()]
    if not entries or len(torn) != len(entries):
        return False
    for path in torn:
        path.unlink(missing_ok=True)
    return True


MARKER = "vpbench-dir.json"  # what a comparison, ablation or combined-report directory is
WRITERS = {"comparison": "vpbench compare", "ablation": "vpbench ablate", "report": "vpbench report --out",
           "site": "vpbench site", "ladder": "vpbench compare --budget B1,B2,..."}


def output_kind(path: Path) -> str | None:
    """What vpbench made ``path``: ``"run"``, ``"comparison"``, ``"ablation"``, ``"report"`` (from its
    marker file, or the files an earlier version wrote there), or None."""
    path = Path(path)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        kind = json.loads((path / MARKER).read_text()).get("kind")
        if kind in WRITERS:
            return kind
    if is_run(path):
        return "run"
    if (path / "paired.csv").is_file():
        return "comparison"
    if (path / "differences.csv").is_file():
        return "ablation"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        title = (path / "report.md").read_text().partition("\n")[0]
        if title == "# vpbench combined report" and not (path / "results.json").exists():
            return "report"
    entries = [p for p in path.iterdir() if not (p.name.startswith(".") and p.name.endswith(".lock"))]
    if entries and all(p.is_dir() and not p.is_symlink() and is_run(p) for p in entries):
        return "ablation"  # an unfinished one: its variants' runs only
    return None


def check_output_dir(path: Path, kind: str) -> None:
    """The policy of ``run`` for the directory of a comparison, an ablation or a combined report:
    refuse ``path`` unless it is new, empty or already a ``kind`` directory."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} exists and is not a directory; choose another --out")
    if not path.is_dir() or not any(path.iterdir()):
        return
    found = output_kind(path)
    if found != kind:
        what = f"a vpbench {found} directory" if found else f"not a vpbench {kind} directory"
        raise RunError(f"{path} exists and is {what}; {WRITERS[kind]} writes only into a new or empty directory or "
                       f"one of its own: choose another --out")


@contextlib.contextmanager
def claimed(path: Path, kind: str) -> Iterator[Path]:
    """Check ``path`` (:func:`check_output_dir`) and mark it a ``kind`` directory for the block that writes
    into it; a block that fails before writing anything leaves no marker (and no new directory) behind."""
    path = Path(path)
    check_output_dir(path, kind)
    made = not path.exists()
    marker = path / MARKER
    marked = not marker.is_file()
    if marked:
        io.write_json(marker, {"kind": kind, "written_by": WRITERS[kind]})
    try:
        yield path
    except BaseException:
        if marked and [p.name for p in path.iterdir()] == [MARKER]:
            marker.unlink(missing_ok=True)
            if made:
                path.rmdir()
        raise


def is_trained(run_dir: Path, until: str | None = None) -> bool:
    """Whether ``run_dir`` holds its final weights (or, with ``until``, the stages before that one)."""
    return RunDir(run_dir).trained(until).is_file()


def run_partials(run_dir: Path) -> list[Path]:
    """Remove the half-written temporary files a killed process left in a vpbench run: at its top level,
    in its known subfolders and in each result set (and its examples/); nothing deeper, nothing followed
    through a link, nothing in a directory that is not a run."""
    run_dir = Path(run_dir)
    if not is_run(run_dir):
        return []
    places = [run_dir, *(run_dir / name for name in RunDir.SUBDIRS)]
    evals = RunDir(run_dir).evals
    if evals.is_dir() and not evals.is_symlink():
        for entry in sorted(evals.iterdir()):
            places += [entry, entry / "examples"]
    removed = []
    for place in places:
        if place.is_dir() and not place.is_symlink():
            removed += io.remove_partials(place)
    return removed


def out_path(out: str | Path) -> Path:
    """``--out`` as a path with a name: ``.`` or ``..`` (from inside a run directory) is resolved, so the lock
    beside it and ``--fresh``'s move aside name the directory itself."""
    path = Path(out)
    return path.resolve() if path.name in ("", "..") else path


@contextlib.contextmanager
def locked(run_dir: Path, events: Events | None = None) -> Iterator[None]:
    """The exclusive lock of ``run_dir`` (:mod:`vpbench.lock`); once it is held, half-written temporary
    files that a killed process left in it are removed if it is a vpbench run (:func:`run_partials`)."""
    from vpbench.lock import locked as hold

    with hold(run_dir, events.message if events is not None else None):
        if run_dir.is_dir():
            removed = run_partials(run_dir)
            if removed and events is not None:
                events.message(f"removed {len(removed)} half-written temporary file(s) an interrupted write left in {run_dir}")
        yield
