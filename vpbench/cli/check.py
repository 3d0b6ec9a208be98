"""``vpbench check NAME``: the conformance suite (:mod:`vpbench.testing`) for one plugin."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from vpbench.cli import common as c

STYLE = {"passed": "green", "failed": "bold red", "skipped": "yellow"}


def check(
    name: Annotated[str, typer.Argument(help="A plugin (entry-point or distribution name), or one model, dataset "
                                             "or metric.")],
    data_dir: c.DataDir = None,
    all_rows: Annotated[bool, typer.Option("--all", help="List passed checks too (default: failures and skips).")] = False,
) -> None:
    """Check a plugin against vpbench's contracts: models on digits, on the plugin's own datasets and on
    three-channel frames; datasets' clips and provenance; metrics' shape, direction and determinism."""
    from vpbench import testing

    selected = testing.cases(name, data_dir=data_dir)
    outcomes = []
    with c.rich_events() as events:
        events.task_start("check", f"checking {name}", len(selected))
        for case in selected:
            outcomes.append(testing.outcome(case))
            events.task_advance("check")
        events.task_end("check")
    table = Table(title=f"vpbench check {name}")
    for col in ("object", "check", "on", "result"):
        table.add_column(col, no_wrap=col != "check")
    table.add_column("why", ratio=1, overflow="fold")
    for o in outcomes:
        if o.status == "passed" and not all_rows:
            continue
        table.add_row(f"{o.case.kind} {o.case.name}", o.case.check, o.case.on, f"[{STYLE[o.status]}]{o.status}[/]",
                      escape(o.message))
    counts = testing.summary(outcomes)
    if table.row_count:
        c.console().print(table)
    c.console().print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped "
                      f"({len({(o.case.kind, o.case.name) for o in outcomes})} objects)", highlight=False, markup=False)
    if counts["failed"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("check")(check)
