"""``vpbench eval RUN_DIR``: score a trained run again (other split, metrics, clips or decoding)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from vpbench.cli import common as c


def eval_(
    run_dir: Annotated[str, typer.Argument(help="A run directory written by `vpbench run`.")],
    split: Annotated[Optional[str], typer.Option("--split", help="val or test (default: the run's eval.split).")] = None,
    set_: c.Sets = None,
    device: c.Device = None,
    data_dir: c.DataDir = None,
) -> None:
    """Evaluate the trained model of RUN_DIR into a new result set (the run's other result sets
    are kept). Only eval.* keys and the model's prediction-only fields may be overridden."""
    from vpbench import runs
    from vpbench.overrides import reevaluate
    from vpbench.plugins import get_harness

    run_ = runs.load_run(get_harness(), run_dir, device=device, data_dir=data_dir)
    with c.rich_events() as events:
        table = reevaluate(run_, set_, split, events)
    cfg = run_.config
    c.print_results(table, title=f"{cfg.model_name} on {cfg.dataset_name} ({cfg.eval.split})")
    c.console().print(f"result set: {run_.eval_dir}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_)
