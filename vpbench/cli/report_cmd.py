"""``vpbench report RUN_DIR...``: re-render results tables and report.md from results.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vpbench.cli import common as c


def report(
    run_dirs: Annotated[list[str], typer.Argument(help="Run directories, result sets (RUN/evals/NAME) or compare directories.")],
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Write one combined report.md/results.csv here.")] = None,
    horizon: Annotated[str, typer.Option("--horizon", help="'all' or a predicted frame index.")] = "all",
    eval_set: Annotated[Optional[str], typer.Option("--eval", help="Result set of each run to use (default: its latest).")] = None,
) -> None:
    """Print the results table of each run; rewrite its report.md (or one combined report)."""
    from vpbench import results, rundir

    if out:
        with rundir.claimed(Path(out), "report"):
            combined = results.write_combined(Path(out), [Path(p) for p in run_dirs], eval_set)
        for where, table in combined:
            c.print_results(table, title=str(where), horizon=horizon)
        c.console().print(f"wrote {Path(out) / 'report.md'}", highlight=False, markup=False)
        return
    for run_dir in run_dirs:
        where, table = results.rerender(Path(run_dir), eval_set)
        c.print_results(table, title=str(where), horizon=horizon)
        kind = results.composite(where)
        if kind:
            c.console().print(f"{where}/report.md kept: a {kind}'s report is written by the command at its top "
                              "(rerun it: trained runs are reused), or combine with --out DIR", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
