"""``vpbench eval``: what it may change in a trained run's config (the evaluation, never the
weights), and scoring the trained model again under those changes."""

from __future__ import annotations

import dataclasses

import pandas as pd

from vpbench import config as cfgmod
from vpbench import runs
from vpbench.errors import ConfigError
from vpbench.events import Events
from vpbench.protocols import member


def eval_overrides(config: cfgmod.RunConfig, model_cls: type, sets: list[str] | None = None,
                   split: str | None = None) -> cfgmod.RunConfig:
    """``config`` with the overrides ``vpbench eval`` accepts: ``eval.*`` keys (``split`` is
    ``eval.split``) and the model's prediction-only fields (``Model.predict_fields``). Any other
    key would change the trained weights, so it is refused: that needs a new run."""
    overrides = cfgmod.parse_sets(sets)
    predict_fields = tuple(member(model_cls, "predict_fields"))
    model_over = overrides.pop("model", {}) or {}
    refused = [f"model.{key}" for key in model_over if key not in predict_fields]
    for section, value in overrides.items():
        if section != "eval":
            refused += [f"{section}.{key}" for key in value] if isinstance(value, dict) else [section]
    if refused:
        allowed = ", ".join(f"model.{f}" for f in predict_fields)
        raise ConfigError(f"vpbench eval cannot change {refused[0]}: it accepts only eval.* overrides"
                          + (f" and {allowed}" if allowed else "") + " (training keys would need a new run)")
    eval_over = dict(overrides.get("eval", {}))
    if split:
        eval_over["split"] = split
    new_eval = cfgmod.build(cfgmod.EvalConfig, cfgmod.merge(cfgmod.to_dict(config.eval), eval_over), "eval.")
    new_model = config.model
    if model_over:
        new_model = cfgmod.build(model_cls.Config, cfgmod.merge(cfgmod.to_dict(new_model), model_over), "model.")
    return dataclasses.replace(config, eval=new_eval, model=new_model)


def reevaluate(run: runs.Run, sets: list[str] | None = None, split: str | None = None,
               events: Events | None = None) -> pd.DataFrame:
    """Score the trained model of a saved run again (with :func:`eval_overrides`) into a result
    set of its own; the run's other result sets are kept."""
    events = events or Events()
    run.config = eval_overrides(run.config, run.model_cls, sets, split)
    for name in run.config.eval.metrics:
        run.harness.metrics.get(name)
    with runs.lock(run, events):
        installed = str(getattr(run.model_cls, "version", ""))
        if run.config.model_version and run.config.model_version != installed:
            events.message(f"{run.config.model_name}: trained with version {run.config.model_version}, the installed "
                           f"plugin is version {installed}; the results record both")
        data = runs.build_dataset(run, events)
        return runs.evaluate(run, runs.load_trained(run, data), data, events=events)
