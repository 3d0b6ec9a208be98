"""A run's final weights (``model.pt``): written with the config they were trained with, read back
only through :mod:`vpbench.safeload` and checked against the run's config."""

from __future__ import annotations

from typing import Any

import torch

from vpbench import io, rundir
from vpbench.errors import RunError, one_line
from vpbench.safeload import load_pt


def save_weights(model: torch.nn.Module, run: Any) -> None:
    """Write ``model``'s weights and ``run``'s config to the run's ``model.pt``."""
    io.torch_save({"model": model.state_dict(), "config": run.config.to_dict()}, run.layout.model)


def load_weights(model: torch.nn.Module, run: Any) -> None:
    """Load ``run``'s ``model.pt`` into ``model``; refused when the run's config.json was edited since."""
    path = run.layout.model
    try:
        state = load_pt(path, "train the run again with --fresh")
        model.load_state_dict(state["model"])
    except RunError:
        raise
    except Exception as exc:
        raise RunError(f"{path} cannot be loaded ({one_line(exc)}); rerun `vpbench run` with --fresh") from None
    trained = state.get("config")
    if isinstance(trained, dict):  # model.pt keeps the config it was trained with
        diff = rundir.first_difference(rundir.training_key_of(trained, run.model_cls),
                                       rundir.training_key(run.config, run.model_cls))
        if diff:
            raise RunError(f"{run.layout.config} does not match the config model.pt was trained with ({diff}); "
                           "config.json was edited: restore it, or train again with --fresh")
