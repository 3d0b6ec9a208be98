"""``vpbench plugins``: every loaded plugin, what it registered, and what failed."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from vpbench.cli import common as c


def plugins() -> None:
    """List loaded plugins, every model, dataset and metric they registered (with its
    description), and plugins that failed."""
    from vpbench.plugins import get_harness
    from vpbench.protocols import member

    harness = get_harness()
    table = Table(title="vpbench plugins")
    table.add_column("plugin", no_wrap=True)
    table.add_column("distribution", overflow="fold")
    table.add_column("registered", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for r in harness.records:
        reg = r.registered
        count = len(reg.models) + len(reg.datasets) + len(reg.metrics) + len(reg.trackers)
        table.add_row(r.name, f"{r.distribution} {r.version}", str(count), "[red]failed[/]" if r.error else "[green]ok[/]")
    c.console().print(table)
    parts = Table(title="registered models, datasets and metrics")
    parts.add_column("name", no_wrap=True)
    parts.add_column("kind", no_wrap=True)
    parts.add_column("plugin", overflow="fold")
    parts.add_column("description", ratio=1, overflow="fold")
    for kind, registry, attr in (("model", harness.models, "models"), ("dataset", harness.datasets, "datasets"),
                                 ("metric", harness.metrics, "metrics"), ("tracker", harness.trackers, "trackers")):
        for r in harness.records:
            for name in getattr(r.registered, attr):
                obj = registry.get(name)
                about = _tracker_description(obj) if kind == "tracker" else member(obj, "description", kind)
                parts.add_row(name, kind, r.name, escape(str(about or "")))
    c.console().print(parts)
    for r in harness.failures:
        c.console().print(f"[red]failed:[/] {escape(f'{r.name} ({r.distribution} {r.version}): {r.error}')}",
                          highlight=False, soft_wrap=True)
    if harness.failures:
        c.console().print(f"{len(harness.failures)} plugin(s) failed to load; the others work.", style="yellow")


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)


def _tracker_description(cls: type) -> str:
    """A tracker's ``description`` (trackers need not subclass :class:`vpbench.Tracker`, which declares it)."""
    try:
        return str(cls.description)
    except AttributeError:
        return ""
