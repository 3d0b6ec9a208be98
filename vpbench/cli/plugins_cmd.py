"""``vpbench plugins``: every loaded plugin, what it registered, and what failed."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from vpbench.cli import common as c


def plugins() -> None:
    """List loaded plugins (name, distribution, version, registrations) and failures."""
    from vpbench.plugins import get_harness

    harness = get_harness()
    table = Table(title="vpbench plugins")
    for col in ("plugin", "distribution", "version", "models", "datasets", "metrics", "status"):
        table.add_column(col)
    for r in harness.records:
        reg = r.registered
        status = "[red]failed[/]" if r.error else "[green]ok[/]"
        table.add_row(r.name, r.distribution, r.version, ", ".join(reg.models), ", ".join(reg.datasets),
                      ", ".join(reg.metrics), status)
    c.console().print(table)
    for r in harness.failures:
        c.console().print(f"[red]failed:[/] {escape(f'{r.name} ({r.distribution} {r.version}): {r.error}')}",
                          highlight=False, soft_wrap=True)
    if harness.failures:
        c.console().print(f"{len(harness.failures)} plugin(s) failed to load; the others work.", style="yellow")


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)
