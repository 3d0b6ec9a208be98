"""``vpbench import openstl FILE.pth --model simvp``: another toolkit's checkpoint as a vpbench run."""

from __future__ import annotations

from typing import Annotated

import typer

from vpbench.cli import common as c


def import_(
    source: Annotated[str, typer.Argument(help="Where the checkpoint comes from, e.g. openstl.")],
    file: Annotated[str, typer.Argument(help="The checkpoint file (.pth).")],
    model: Annotated[str, typer.Option("--model", "-m", help="The vpbench model computing the same network.")],
    dataset: c.Dataset = None,
    preset: Annotated[str, typer.Option("--preset", "-p", help="Model preset of the checkpoint's configuration.")] = "paper",
    set_: c.Sets = None,
    out: c.Out = None,
    data_dir: c.DataDir = None,
) -> None:
    """Map the checkpoint's keys onto MODEL (built from --preset and --set), check every key and
    shape, and write a run directory that eval, compare and report use."""
    from vpbench.importer import import_checkpoint
    from vpbench.plugins import get_harness

    with c.rich_events() as events:
        run = import_checkpoint(get_harness(), source, file, model, dataset=dataset, preset=preset, sets=set_,
                                out=out, data_dir=data_dir, events=events)
    c.console().print(f"run directory: {run.run_dir}; score it with `vpbench eval {run.run_dir}`", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
