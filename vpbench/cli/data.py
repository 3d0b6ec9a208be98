"""``vpbench data info|download NAME``: what a dataset is, and getting it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from vpbench.cli import common as c

data_app = typer.Typer(help="Dataset information and downloads.", no_args_is_help=True)


@data_app.command("info")
def info(
    name: Annotated[str, typer.Argument(help="Dataset plugin name.")],
    data_dir: c.DataDir = None,
) -> None:
    """Show a dataset's protocol, provenance, licence, citation and what is on disk."""
    from vpbench.plugins import get_harness
    from vpbench.runs import open_dataset

    harness = get_harness()
    dataset = open_dataset(harness, name, root=data_dir, prepare=False)
    version = harness.datasets.get(name).version
    table = Table(title=f"dataset {name} (version {version}, {harness.source_of('dataset', name)})", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    spec = dataset.spec
    table.add_row("frames", f"{spec.channels}x{spec.height}x{spec.width}, {spec.n_in} -> {spec.n_out}")
    for key, value in dataset.info().items():
        table.add_row(escape(str(key)), escape(str(value)))
    c.console().print(table)


@data_app.command("download")
def download(
    name: Annotated[str, typer.Argument(help="Dataset plugin name.")],
    data_dir: c.DataDir = None,
    optional: Annotated[bool, typer.Option("--optional", help="Also fetch optional files (Moving MNIST's official test set).")] = False,
) -> None:
    """Download (resumable, sha256-checked) the files of a dataset into the data root."""
    from vpbench.plugins import get_harness
    from vpbench.protocols import implements, member
    from vpbench.runs import open_dataset

    dataset = open_dataset(get_harness(), name, root=data_dir, prepare=False)
    if not implements(dataset, "download", "dataset"):
        c.console().print(f"{name} needs no download ({dataset.info().get('status', 'embedded')})", markup=False)
        return
    with c.rich_events() as events:
        paths = member(dataset, "download", "dataset")(events, optional=optional)
    for path in paths or []:
        c.console().print(f"ok: {path}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
