"""Progress and messages from library code, without printing.

The trainer and evaluator report through an :class:`Events` object; the CLI passes one that
draws rich progress bars, tests pass the silent default or a recorder.
"""

from __future__ import annotations

from typing import Any


class Events:
    """Silent by default; subclass and override what you want to see."""

    def task_start(self, key: str, description: str, total: int, completed: int = 0) -> None:
        """A long loop begins (``key`` identifies it in later calls)."""

    def task_advance(self, key: str, advance: int = 1, **fields: Any) -> None:
        """``advance`` more units of task ``key`` are done; ``fields`` are live numbers."""

    def task_end(self, key: str) -> None:
        """Task ``key`` is finished."""

    def message(self, text: str) -> None:
        """A line worth telling the user (stage summaries, resume points, warnings)."""

    def jobs(self, records: list[Any]) -> None:
        """The submitted jobs' states changed (:class:`vpbench.executor.JobRecord` each)."""


class Recorder(Events):
    """Keeps every message and task (handy in tests)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        self.job_states: list[list[tuple[str, str]]] = []

    def task_start(self, key, description, total, completed=0):
        self.tasks[key] = {"description": description, "total": total, "completed": completed}

    def task_advance(self, key, advance=1, **fields):
        self.tasks[key]["completed"] += advance
        self.tasks[key].update(fields)

    def message(self, text):
        self.messages.append(text)

    def jobs(self, records):
        self.job_states.append([(r.label, r.state) for r in records])
