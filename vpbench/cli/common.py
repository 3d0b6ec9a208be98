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
from rich.table import Table
from rich.text import Text

from vpbench.events import Events

_CONSOLE = Console()
INVOKED: list[str] = []  # the arguments of the command being run (after ``vpbench``)
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

# over the config's `track` field when given; never part of the run's identity
Track = Annotated[Optional[str], typer.Option("--track", help="Experiment trackers, e.g. tensorboard,mlflow (or wandb, or a "
                                                             "tracker plugin), each with an option as NAME=VALUE (tensorboard=DIR, "
                                                             "mlflow=URI, wandb=PROJECT); default: the config's track; never "
                                                             "part of the run's identity.")]

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


EXECUTOR_OPTIONS = {
    "executor": Annotated[Optional[str], typer.Option("--executor", help="Where trainings run: inline (here, one after "
                                                      "another; default), local (submitit subprocesses) or slurm.",
                                                      rich_help_panel="Executor")],
    "partition": Annotated[Optional[str], typer.Option("--partition", help="SLURM partition.", rich_help_panel="Executor")],
    "time": Annotated[Optional[str], typer.Option("--time", help="Time limit per job: 90, 90m, 4h, 1d or [D-]HH:MM:SS.",
                                                  rich_help_panel="Executor")],
    "gpus_per_task": Annotated[Optional[int], typer.Option("--gpus", help="GPUs per task.", rich_help_panel="Executor")],
    "cpus_per_task": Annotated[Optional[int], typer.Option("--cpus", help="CPUs per task.", rich_help_panel="Executor")],
    "mem": Annotated[Optional[str], typer.Option("--mem", help="Memory per node, e.g. 32G.", rich_help_panel="Executor")],
    "array_parallelism": Annotated[Optional[int], typer.Option("--array-parallelism", help="At most this many jobs at once.",
                                                               rich_help_panel="Executor")],
    "nodes": Annotated[Optional[int], typer.Option("--nodes", help="Nodes per training (DDP).", rich_help_panel="Executor")],
    "tasks_per_node": Annotated[Optional[int], typer.Option("--tasks-per-node", help="Processes per node (DDP).",
                                                            rich_help_panel="Executor")],
    "sbatch": Annotated[Optional[list[str]], typer.Option("--sbatch", help="Extra sbatch parameter key=value, e.g. "
                                                          "account=abc (repeatable).", rich_help_panel="Executor")],
    "folder": Annotated[Optional[str], typer.Option("--jobs-dir", help="Job scripts and logs (default OUT/jobs).",
                                                    rich_help_panel="Executor")],
    "detach": Annotated[bool, typer.Option("--detach", help="Submit the jobs and return; rerun the command or "
                                           "`vpbench gather OUT` to gather.", rich_help_panel="Executor")],
    "gather_only": Annotated[bool, typer.Option("--gather", hidden=True)],
}


@dataclass(frozen=True)
class Execution:
    """The executor options of ``run``, ``compare`` and ``ablate`` (over ``vpbench.toml``'s ``[executor]``)."""

    options: dict
    detach: bool = False
    gather_only: bool = False

    def config(self, *, has_out: bool = True):
        """The executor settings; ``--detach`` needs ``--out`` (``has_out``), the folder ``vpbench
        gather`` reads later (``run`` has it always: its jobs folder sits beside the run directory)."""
        from vpbench.errors import ConfigError
        from vpbench.executor import load_config

        if self.detach and not has_out:
            raise ConfigError("--detach needs --out: the folder that `vpbench gather` reads later")
        return load_config(self.options)


def executor_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with the executor options in place of its ``execution: Execution`` parameter."""
    signature = inspect.signature(command, eval_str=True)
    params = []
    for param in signature.parameters.values():
        params += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                     default=False if name in ("detach", "gather_only") else None, annotation=annotation)
                   for name, annotation in EXECUTOR_OPTIONS.items()] if param.name == "execution" else [param]

    @functools.wraps(command)
    def with_executor(*args, **kwargs):
        values = {name: kwargs.pop(name) for name in EXECUTOR_OPTIONS}
        detach, gather_only = values.pop("detach"), values.pop("gather_only")
        values["kind"] = values.pop("executor")
        return command(*args, execution=Execution(values, detach, gather_only), **kwargs)

    with_executor.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    with_executor.__annotations__ = {p.name: p.annotation for p in params}
    return with_executor


class RichEvents(Events):
    """Progress bars and messages on the console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = LiveProgress(
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

    def jobs(self, records):
        """The submitted jobs, redrawn in place above the progress bars while they run."""
        self.progress.jobs = jobs_table(records)
        self.progress.refresh()


class LiveProgress(Progress):
    """Progress bars with the jobs table (when there is one) above them."""

    jobs = None

    def get_renderables(self):
        if self.jobs is not None:
            yield self.jobs
        yield self.make_tasks_table(self.tasks)


STATE_STYLE = {"PENDING": "dim", "RUNNING": "cyan", "REQUEUED": "yellow", "DONE": "green", "FAILED": "bold red"}


def jobs_table(records) -> Table:
    table = Table(title="jobs", title_justify="left")
    for column in ("job", "state", "run", "job id", "log / reason"):
        table.add_column(column, overflow="fold")
    latest = {r.run_dir: r for r in records}  # a resubmitted run: its newest job only
    for r in latest.values():
        detail = f"{r.reason} ({r.log})" if r.state == "FAILED" else r.log
        table.add_row(escape(r.label), Text(r.state, style=STATE_STYLE.get(r.state, "")), escape(r.run_dir),
                      escape(r.job_id), escape(detail))
    return table


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
