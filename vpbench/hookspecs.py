"""The whole vpbench plugin API on one page.

A plugin is a module (or any object) with functions marked ``@vpbench.hookimpl`` whose names
match the specifications below. Third-party plugins are found through the entry-point group
``vpbench`` (``[project.entry-points.vpbench]`` in their ``pyproject.toml``); vpbench's own
datasets, metrics and trivial baselines are registered through exactly the same hooks.

Each ``register`` callback validates the object at once and raises an error naming the
plugin and its distribution when the object is malformed; a plugin that raises is reported
by ``vpbench plugins`` and skipped, never taking the rest of the harness down.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "vpbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def vpbench_register_models(register: Callable[[type], None]) -> None:
    """Register model classes: call ``register(ModelClass)`` once per model.

    A model class satisfies :class:`vpbench.protocols.VideoModel`: class attributes ``name``,
    ``version``, ``Config`` (a dataclass) and ``presets``; ``__init__(config, spec)``;
    ``stages()``, ``training_step(batch, stage)`` and ``predict(context, n_out)``.
    """


@hookspec
def vpbench_register_datasets(register: Callable[[type], None]) -> None:
    """Register dataset classes: call ``register(DatasetClass)`` once per dataset.

    A dataset class satisfies :class:`vpbench.protocols.VideoDataset`: class attributes
    ``name``, ``version``, ``Config``; ``__init__(config, root)``; ``spec`` and
    ``split(name)`` returning a map-style dataset of ``(context, future)`` pairs.
    """


@hookspec
def vpbench_register_metrics(register: Callable[[Any], None]) -> None:
    """Register metric objects: call ``register(metric)`` once per metric.

    A per-frame metric satisfies :class:`vpbench.protocols.VideoMetric`: ``name``, ``version``,
    ``higher_is_better``, ``unit`` and ``per_frame(pred, target) -> (B, T)`` scores; a set-level
    metric (FVD) :class:`vpbench.protocols.VideoSetMetric`: ``features(clips) -> (B, D)`` and
    ``score(pred_feats, true_feats) -> float`` instead of ``per_frame``.
    """


@hookspec
def vpbench_register_trackers(register: Callable[[type], None]) -> None:
    """Register experiment tracker classes: call ``register(TrackerClass)`` once per tracker.

    A tracker class (:class:`vpbench.Tracker`) has ``name`` and ``version`` and, on an instance
    built with no arguments (``cls(VALUE)`` for ``--track NAME=VALUE``), ``start(run_dir, config,
    provenance)``, ``log(metrics, step)``, ``log_media(name, path, step)`` and ``finish(status)``.
    The harness calls it on rank 0 only, and a tracker that raises is switched off for the run
    with one warning line.
    """


@hookspec
def vpbench_register_commands(app: Any) -> None:
    """Add CLI commands to the Typer application ``app`` (e.g. ``app.command()(fn)``)."""
