"""Shared CLI pieces: consoles, option types, rich progress events."""

from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from vpbench.events import Events

_CONSOLE = Console()
_ERR = Console(stderr=True)


def console() -> Console:
    return _CONSOLE


def err_console() -> Console:
    return _ERR


Dataset = Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset plugin name (default: digits, embedded).")]
Preset = Annotated[Optional[str], typer.Option("--preset", "-p", help="Model preset: smoke, cpu or paper (see the model's presets).")]
ConfigFile = Annotated[Optional[str], typer.Option("--config", help="YAML, TOML or JSON file of config overrides.")]
Sets = Annotated[Optional[list[str]], typer.Option("--set", help="Override one config key, e.g. --set train.batch_size=8 (repeatable).")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Random seed of the run (default 0).")]
Device = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N (default auto).")]
Out = Annotated[Optional[str], typer.Option("--out", "-o", help="Output directory (default: runs/<model>-<dataset>-<preset>-<hash>).")]
Budget = Annotated[Optional[str], typer.Option("--budget", help="Training budget per model: FLOPs (2e15) or wall-clock "
                                                               "time (30m); every stage's steps are scaled to spend it "
                                                               "(compare: a comma-separated list runs a ladder).")]
DataDir = Annotated[Optional[str], typer.Option("--data-dir", help="Data root (default: $VPBENCH_DATA or datasets/).")]

# `run` only so far (compare and ablate: issue #37 part 1, left); kept out of the config and the run's identity
Track = Annotated[Optional[str], typer.Option("--track", help="Experiment trackers, e.g. tensorboard,mlflow (or wandb, or a "
                                                             "tracker plugin); never part of the run's identity.")]

PROTOCOL_OPTIONS = {"dataset": Dataset, "preset": Preset, "config": ConfigFile, "set_": Sets, "seed": Seed,
                    "device": Device, "budget": Budget, "data_dir": DataDir}


@dataclass(frozen=True)
class Protocol:
    """The options ``run``, ``compare`` and ``ablate`` share: what to train on, and how."""

    dataset: str | None = None
    preset: str | None = None
    config: str | None = None
    set_: list[str] | None = None
    seed: int | None = None
    device: str | None = None
    budget: str | None = None
    data_dir: str | None = None

    @property
    def sets(self) -> list[str] | None:
        """The ``--set`` overrides, with ``--budget`` as ``train.budget``."""
        from vpbench.config import cli_sets

        return cli_sets(self.set_, budget=self.budget)


def protocol_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with the shared options (:data:`PROTOCOL_OPTIONS`) in place of its
    ``protocol: Protocol`` parameter, which receives them."""
    signature = inspect.signature(command, eval_str=True)
    params = []
    for param in signature.parameters.values():
        params += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=annotation)
                   for name, annotation in PROTOCOL_OPTIONS.items()] if param.name == "protocol" else [param]

    @functools.wraps(command)
    def with_protocol(*args, **kwargs):
        return command(*args, protocol=Protocol(**{name: kwargs.pop(name) for name in PROTOCOL_OPTIONS}), **kwargs)

    with_protocol.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    with_protocol.__annotations__ = {p.name: p.annotation for p in params}
    return with_protocol


class RichEvents(Events):
    """Progress bars and messages on the console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def task_start(self, key, description, total, completed=0):
        self.tasks[key] = self.progress.add_task(escape(description), total=total, completed=completed, info="")

    def task_advance(self, key, advance=1, **fields):
        info = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        self.progress.update(self.tasks[key], advance=advance, info=escape(info))

    def task_end(self, key):
        task = self.tasks.pop(key, None)
        if task is not None:
            self.progress.update(task, visible=True)

    def message(self, text):
        self.progress.console.print(Text.assemble(("·", "dim"), " ", text), highlight=False)


@contextlib.contextmanager
def rich_events(enabled: bool = True) -> Iterator[Events]:
    """Rich progress on the console; silent where ``enabled`` is false (ranks other than 0)."""
    if not enabled:
        yield Events()
        return
    events = RichEvents(console())
    with events.progress:
        yield events


def print_results(table, title: str, horizon: str = "all") -> None:
    """The quality table, then the cost table when the results have cost rows."""
    from vpbench.report.tables import COST_METRICS, rich_table

    title = escape(title)  # names and paths, never markup
    console().print(rich_table(table, title=title, horizon=horizon, kind="quality"))
    if table["metric"].isin(COST_METRICS).any():
        console().print(rich_table(table, title=title, kind="cost"))
