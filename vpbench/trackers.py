"""Built-in trackers: TensorBoard, MLflow and W&B, each an optional extra; each takes one option
(``--track NAME=VALUE``).

- ``tensorboard``: event files in ``<run dir>/tensorboard``, or ``DIR/<run dir name>`` with
  ``tensorboard=DIR`` (``pip install vpbench[tensorboard]``).
- ``mlflow``: the tracking URI of ``mlflow=URI``, else ``$MLFLOW_TRACKING_URI``, else a local sqlite
  store ``sqlite:///<run dir's parent>/mlflow.db``; experiment ``$MLFLOW_EXPERIMENT_NAME`` or ``vpbench``.
- ``wandb``: online, or offline files with ``WANDB_MODE=offline``; project ``wandb=PROJECT``, else
  ``$WANDB_PROJECT``, else ``vpbench``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from vpbench.errors import ConfigError
from vpbench.hookspecs import hookimpl
from vpbench.tracking import Tracker


def _need(module: str, tracker: str) -> Any:
    """``import module``, or one line naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"tracker '{tracker}' needs `pip install vpbench[{tracker}]`") from None


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as ``{"train.lr": "0.001", ...}`` (values as text, as trackers store parameters)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


class TensorBoardTracker(Tracker):
    name = "tensorboard"
    version = "1"
    description = "TensorBoard event files in <run dir>/tensorboard (tensorboard=DIR: in DIR/<run dir name>)"

    def __init__(self, directory: str | None = None) -> None:
        _need("tensorboard", self.name)
        self.directory = Path(directory).resolve() if directory else None
        self.writer: Any = None

    def start(self, run_dir: Path, config: dict, provenance: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        where = self.directory / Path(run_dir).resolve().name if self.directory else Path(run_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(where))
        text = "\n".join(f"    {k} = {v}" for k, v in flatten(config).items())
        self.writer.add_text("config", text, 0)
        self.writer.add_text("provenance", "\n".join(f"    {k} = {v}" for k, v in flatten(provenance).items()), 0)
        self.writer.add_text("run_dir", str(Path(run_dir).resolve()), 0)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def log_media(self, name: str, path: Path, step: int) -> None:
        if path.suffix.lower() == ".png":
            import numpy as np
            from PIL import Image

            image = np.asarray(Image.open(path).convert("RGB"))
            self.writer.add_image(name, image, step, dataformats="HWC")
        # GIFs: TensorBoard's add_video needs moviepy; the PNG strip of the same clip is logged

    def finish(self, status: str) -> None:
        if self.writer is not None:
            self.writer.add_text("status", status, 0)
            self.writer.close()


class MLflowTracker(Tracker):
    name = "mlflow"
    version = "1"
    description = "MLflow: mlflow=URI, else $MLFLOW_TRACKING_URI, else sqlite:///<run dir's parent>/mlflow.db"

    def __init__(self, uri: str | None = None) -> None:
        _need("mlflow", self.name)
        _need("sqlalchemy", self.name)
        self.uri = uri
        self.client: Any = None
        self.run_id = ""

    def start(self, run_dir: Path, config: dict, provenance: dict) -> None:
        from mlflow.tracking import MlflowClient

        run_dir = Path(run_dir).resolve()
        uri = self.uri or os.environ.get("MLFLOW_TRACKING_URI")
        store = _sqlite_file(uri) if uri else run_dir.parent / "mlflow.db"
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "vpbench"
        with _setting_up(store):
            self.client = MlflowClient(tracking_uri=f"sqlite:///{store}" if store is not None else uri)
            found = self.client.get_experiment_by_name(experiment)
            artifacts = None if store is None else (store.parent / "mlruns").as_uri()  # next to the sqlite store, not in the cwd
            experiment_id = found.experiment_id if found is not None else self.client.create_experiment(experiment, artifacts)
            run = self.client.create_run(experiment_id, run_name=run_dir.name,
                                         tags={"vpbench.run_dir": str(run_dir), "vpbench.run_dir_url": run_dir.as_uri()})
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        params = [Param(k, v[:6000]) for k, v in flatten(config).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        self.client.set_tag(self.run_id, "vpbench.provenance", json.dumps(provenance, default=str)[:5000])

    def log(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(_mlflow_key(k), v, now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 500):
            self.client.log_batch(self.run_id, metrics=batch[i:i + 500])

    def log_media(self, name: str, path: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path=str(Path(name).parent))

    def finish(self, status: str) -> None:
        if self.client is not None:
            self.client.set_terminated(self.run_id, status="FINISHED" if status == "success" else "FAILED")


@contextlib.contextmanager
def _setting_up(store: Path | None) -> Iterator[None]:
    """Hold ``.<store>.lock`` beside a sqlite store while a run is opened in it: jobs starting at once
    (``compare --executor local``) would otherwise race on creating its tables and the experiment."""
    if store is None:
        yield
        return
    store.parent.mkdir(parents=True, exist_ok=True)
    with open(store.parent / f".{store.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` tracking URI, made absolute (None for any other URI,
    an in-memory store or one with query parameters, which are used as given)."""
    if not uri.startswith("sqlite:///") or "?" in uri or uri.endswith(":memory:"):
        return None
    return Path(uri.removeprefix("sqlite:///")).resolve()


def _mlflow_key(key: str) -> str:
    """MLflow metric names allow letters, digits, ``_-./`` and spaces: ``test/mse@h3`` becomes ``test/mse.h3``."""
    return key.replace("@", ".")


class WandbTracker(Tracker):
    name = "wandb"
    version = "1"
    description = "Weights & Biases (offline with WANDB_MODE=offline; wandb=PROJECT)"

    def __init__(self, project: str | None = None) -> None:
        _need("wandb", self.name)
        self.project = project
        self.run: Any = None

    def start(self, run_dir: Path, config: dict, provenance: dict) -> None:
        import wandb

        run_dir = Path(run_dir).resolve()
        project = self.project or os.environ.get("WANDB_PROJECT") or "vpbench"
        self.run = wandb.init(project=project, name=run_dir.name, dir=str(run_dir), config=config, notes=str(run_dir),
                              reinit="create_new")
        self.run.summary["run_dir"] = str(run_dir)
        self.run.summary["provenance"] = json.dumps(provenance, default=str)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def log_media(self, name: str, path: Path, step: int) -> None:
        import wandb

        media = wandb.Video(str(path)) if path.suffix.lower() == ".gif" else wandb.Image(str(path))
        self.run.log({name: media})

    def finish(self, status: str) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if status == "success" else 1)


@hookimpl
def vpbench_register_trackers(register) -> None:
    for cls in (TensorBoardTracker, MLflowTracker, WandbTracker):
        register(cls)
