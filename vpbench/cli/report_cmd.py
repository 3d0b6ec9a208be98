"""``vpbench report RUN_DIR...``: re-render results tables and report.md from results.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vpbench.cli import common as c


def report(
    run_dirs: Annotated[list[str], typer.Argument(help="Run directories (or compare directories).")],
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Write one combined report.md/results.csv here.")] = None,
    horizon: Annotated[str, typer.Option("--horizon", help="'all' or a predicted frame index.")] = "all",
) -> None:
    """Print the results table of each run; rewrite its report.md (or one combined report)."""
    import pandas as pd

    from vpbench import io
    from vpbench.report.markdown import HORIZON_SECTION, run_report
    from vpbench.report.plots import horizon_plot
    from vpbench.runs import media_links, read_results

    tables = []
    for run_dir in run_dirs:
        table, meta = read_results(run_dir)
        tables.append(table)
        prov, config = meta.get("provenance", {}), meta.get("config")
        if not out:
            horizon_plot(table, Path(run_dir) / "horizon.png")
            examples = len(list((Path(run_dir) / "examples").glob("clip*.png")))
            io.write_text(Path(run_dir) / "report.md", run_report(table, prov, config, media=media_links(examples)))
        c.print_results(table, title=str(run_dir), horizon=horizon)
    if out:
        combined = pd.concat(tables, ignore_index=True)
        out_dir = Path(out)
        io.write_text(out_dir / "results.csv", combined.to_csv(index=False))
        prov = read_results(run_dirs[0])[1].get("provenance", {})
        horizon_plot(combined, out_dir / "horizon.png")
        io.write_text(out_dir / "report.md", run_report(combined, prov, None, title="vpbench combined report",
                                                        media=HORIZON_SECTION))
        c.console().print(f"wrote {out_dir / 'report.md'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
