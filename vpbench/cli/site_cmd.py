"""``vpbench site REPORTS_OR_RUNS... --out DIR``: a static leaderboard site."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vpbench.cli import common as c


def site(
    paths: Annotated[list[str], typer.Argument(help="Comparison, ablation or run directories, or folders of them (reports/).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Folder of the site (index.html and one page per protocol).")] = "site",
) -> None:
    """Write a static leaderboard: one sortable, filterable table per protocol, with plots, examples and provenance."""
    from vpbench import rundir
    from vpbench.site import build_site

    with rundir.claimed(Path(out), "site"):
        protocols = build_site([Path(p) for p in paths], Path(out))
    rows = sum(len(r) for r in protocols.values())
    c.console().print(f"wrote {Path(out) / 'index.html'}: {len(protocols)} protocol(s), {rows} row(s)",
                      highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("site")(site)
