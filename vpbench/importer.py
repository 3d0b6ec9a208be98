"""Checkpoints of other toolkits as vpbench runs: ``vpbench import openstl FILE.pth --model simvp``.

A model that computes the same network as another toolkit's declares how that toolkit's
state-dict keys map onto its own: ``import_state_dict(source, state_dict, config) -> dict``, a
classmethod returning the renamed tensors (``source`` is e.g. ``"openstl"``; raise
``ConfigError`` for a source it does not know). The importer reads the file (a bare state dict
or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``, keys optionally prefixed
``module.`` or ``model.``), checks every key and shape against the vpbench model built from the
resolved config, refuses with one line naming the first key that does not fit, and writes an
ordinary run directory (``config.json``, ``model.pt``, ``imported.json`` with the file's sha256)
that ``eval``, ``compare`` and ``report`` use like a trained run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from vpbench import io
from vpbench.errors import ConfigError, DataError, PluginError, RunError, one_line
from vpbench.events import Events
from vpbench.protocols import implements, member
from vpbench.safeload import load_pt
from vpbench.weights import save_weights

PREFIXES = ("module.", "model.")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped and without a data-parallel prefix."""
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        state = load_pt(path, "import a checkpoint that holds only a state dict of tensors", error=DataError)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path} is not a readable PyTorch checkpoint ({one_line(exc)})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise DataError(f"{path} holds no state dict of tensors")
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fit(model: torch.nn.Module, mapped: dict[str, torch.Tensor], source: str) -> None:
    """Load ``mapped`` into ``model`` after checking that keys and shapes agree exactly."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in mapped:
            raise RunError(f"the {source} checkpoint has no tensor for '{key}' of the vpbench model: it was saved "
                           "from another model or configuration (check --model, --preset and --set)")
        if tuple(mapped[key].shape) != tuple(tensor.shape):
            raise RunError(f"the {source} checkpoint's tensor for '{key}' has shape {tuple(mapped[key].shape)}, the "
                           f"model's is {tuple(tensor.shape)}: another configuration (check --preset and --set)")
    extra = sorted(set(mapped) - set(expected))
    if extra:
        raise RunError(f"the {source} checkpoint has {len(extra)} tensor(s) the vpbench model lacks, e.g. '{extra[0]}': "
                       "it was saved from a larger configuration (check --preset and --set)")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in mapped.items()})


def import_checkpoint(harness: Any, source: str, path: str | Path, model: str, *, dataset: str | None = None,
                      preset: str | None = "paper", sets: list[str] | None = None, out: str | Path | None = None,
                      data_dir: str | Path | None = None, events: Events | None = None):
    """Write a run directory holding the weights of ``path`` for ``model``; returns the run."""
    from vpbench import runs

    events = events or Events()
    path = Path(path)
    run = runs.prepare(harness, model, dataset=dataset, preset=preset, sets=sets, out=out, data_dir=data_dir)
    if not implements(run.model_cls, "import_state_dict"):
        raise ConfigError(f"model '{model}' cannot import checkpoints (it has no import_state_dict)")
    sources = tuple(member(run.model_cls, "import_sources") or ())
    if sources and source not in sources:
        raise ConfigError(f"model '{model}' imports checkpoints from {' or '.join(sources)}, not {source!r}; "
                          f"run `vpbench import {sources[0]} FILE --model {model}`")
    convert = member(run.model_cls, "import_state_dict")
    state = read_state_dict(path)
    data = runs.build_dataset(run, events)
    net = runs.build_model(run, data)
    try:
        mapped = convert(source, state, run.config.model)
    except (ConfigError, RunError):
        raise
    except Exception as exc:
        raise PluginError(f"model '{model}' raised while mapping the {source} checkpoint: {one_line(exc)}") from exc
    fit(net, mapped, source)
    with runs.lock(run, events):
        if run.layout.model.is_file():
            raise RunError(f"{run.run_dir} already holds a trained model; choose another --out")
        runs.prepare_run_dir(run, events=events)
        save_weights(net, run)
        io.write_json(run.layout.imported, {"source": source, "file": str(path), "sha256": sha256(path),
                                                      "tensors": len(state)})
    events.message(f"{model}: {len(state)} tensors from {path} ({source}) -> {run.run_dir}")
    return run
