"""``vpbench eval RUN_DIR``: score a trained run again (other split, metrics or clips)."""

from __future__ import annotations

import dataclasses
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
    """Evaluate the trained model of RUN_DIR; only eval.* keys may be overridden."""
    from vpbench import config as cfgmod
    from vpbench import runs
    from vpbench.errors import ConfigError
    from vpbench.plugins import get_harness

    harness = get_harness()
    run_ = runs.load_run(harness, run_dir, device=device, data_dir=data_dir)
    overrides = cfgmod.parse_sets(set_)
    if set(overrides) - {"eval"}:
        raise ConfigError("vpbench eval accepts only eval.* overrides (training keys would need a new run)")
    eval_over = overrides.get("eval", {})
    if split:
        eval_over["split"] = split
    new_eval = cfgmod.build(cfgmod.EvalConfig, cfgmod.merge(cfgmod.to_dict(run_.config.eval), eval_over), "eval.")
    run_.config = dataclasses.replace(run_.config, eval=new_eval)
    for name in new_eval.metrics:
        harness.metrics.get(name)
    with c.rich_events() as events:
        data = runs.build_dataset(run_, events)
        model = runs.load_trained(run_, data)
        table = runs.evaluate(run_, model, data, events=events)
    from vpbench import io

    io.write_json(run_.run_dir / "config.json", run_.config.to_dict())
    cfg = run_.config
    c.print_results(table, title=f"{cfg.model_name} on {cfg.dataset_name} ({cfg.eval.split})")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_)
