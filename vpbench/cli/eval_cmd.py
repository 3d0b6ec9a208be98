"""``vpbench eval RUN_DIR``: score a trained run again (other split, metrics, clips or decoding)."""

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
    """Evaluate the trained model of RUN_DIR into a new result set (the run's other result sets
    are kept). Only eval.* keys and the model's prediction-only fields may be overridden."""
    from vpbench import config as cfgmod
    from vpbench import runs
    from vpbench.errors import ConfigError
    from vpbench.plugins import get_harness
    from vpbench.protocols import member

    harness = get_harness()
    run_ = runs.load_run(harness, run_dir, device=device, data_dir=data_dir)
    overrides = cfgmod.parse_sets(set_)
    predict_fields = tuple(member(run_.model_cls, "predict_fields"))
    model_over = overrides.pop("model", {}) or {}
    if set(overrides) - {"eval"} or set(model_over) - set(predict_fields):
        allowed = ", ".join(f"model.{f}" for f in predict_fields)
        raise ConfigError("vpbench eval accepts only eval.* overrides" + (f" and {allowed}" if allowed else "")
                          + " (training keys would need a new run)")
    eval_over = overrides.get("eval", {})
    if split:
        eval_over["split"] = split
    new_eval = cfgmod.build(cfgmod.EvalConfig, cfgmod.merge(cfgmod.to_dict(run_.config.eval), eval_over), "eval.")
    new_model = run_.config.model
    if model_over:
        new_model = cfgmod.build(run_.model_cls.Config, cfgmod.merge(cfgmod.to_dict(new_model), model_over), "model.")
    run_.config = dataclasses.replace(run_.config, eval=new_eval, model=new_model)
    for name in new_eval.metrics:
        harness.metrics.get(name)
    with c.rich_events() as events, runs.lock(run_, events):
        installed = str(getattr(run_.model_cls, "version", ""))
        if run_.config.model_version and run_.config.model_version != installed:
            events.message(f"{run_.config.model_name}: trained with version {run_.config.model_version}, the installed "
                           f"plugin is version {installed}; the results record both")
        data = runs.build_dataset(run_, events)
        model = runs.load_trained(run_, data)
        table = runs.evaluate(run_, model, data, events=events)
    cfg = run_.config
    c.print_results(table, title=f"{cfg.model_name} on {cfg.dataset_name} ({cfg.eval.split})")
    c.console().print(f"result set: {run_.eval_dir}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_)
