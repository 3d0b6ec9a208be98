"""``vpbench new-plugin NAME``: write a working plugin package to start from."""

from __future__ import annotations

from typing import Annotated

import typer

from vpbench.cli import common as c


def new_plugin(
    name: Annotated[str, typer.Argument(help="Plugin and model name (a lower-case identifier).")],
    parent: Annotated[str, typer.Option("--dir", help="Where to create the NAME/ folder.")] = ".",
) -> None:
    """Write NAME/: a plugin package with a model, a metric, the entry point and tests, which installs
    and passes `vpbench check NAME` as generated."""
    from vpbench.scaffold import new_plugin as write

    target = write(name, parent)
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        c.console().print(f"wrote {path}", highlight=False, markup=False)
    c.console().print(f"next: pip install -e {target} && vpbench check {name}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("new-plugin")(new_plugin)
