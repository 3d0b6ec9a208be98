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
    import pandas as pd

    from vpbench import io, results
    from vpbench.report.markdown import HORIZON_SECTION, run_report
    from vpbench.report.plots import horizon_plot
    from vpbench.runs import media_links, read_results

    tables = []
    for run_dir in run_dirs:
        where = results.find_set(Path(run_dir), eval_set)
        table, meta = read_results(where)
        tables.append(table)
        prov, config = meta.get("provenance", {}), meta.get("config")
        if not out:
            horizon_plot(table, where / "horizon.png")
            examples = len(list((where / "examples").glob("clip*.png")))
            io.write_text(where / "report.md", run_report(table, prov, config, media=media_links(examples)))
            if where != Path(run_dir):
                results.write_index(Path(run_dir))
        c.print_results(table, title=str(where), horizon=horizon)
    if out:
        combined = pd.concat(tables, ignore_index=True)
        out_dir = Path(out)
        io.write_text(out_dir / "results.csv", combined.to_csv(index=False))
        prov = read_results(results.find_set(Path(run_dirs[0]), eval_set))[1].get("provenance", {})
        horizon_plot(combined, out_dir / "horizon.png")
        io.write_text(out_dir / "report.md", run_report(combined, prov, None, title="vpbench combined report",
                                                        media=HORIZON_SECTION))
        c.console().print(f"wrote {out_dir / 'report.md'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
