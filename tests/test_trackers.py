"""Experiment trackers: TensorBoard and MLflow read back, a failing tracker costs one warning, ``vpbench check``."""

from __future__ import annotations

import json
import math
import types
from pathlib import Path

import pandas as pd
import pytest

import vpbench
from tests.cli_helpers import invoke
from vpbench import testing
from vpbench.plugins import PluginRecord, get_harness
from vpbench.tracking import Tracking, parse_names, results_metrics

FAST = ["--set", "eval.speed=false", "--set", "eval.bootstrap=10", "--set", "eval.max_clips=8", "--set", "eval.metrics=mse,mae"]


class Recorder(vpbench.Tracker):
    """A third-party tracker that keeps what it was given (class-level, so a test can read it)."""

    name = "recorder"
    version = "1"
    calls: list = []

    def start(self, run_dir, config, provenance):
        Recorder.calls.append(("start", Path(run_dir), config))

    def log(self, metrics, step):
        Recorder.calls.append(("log", dict(metrics), step))

    def log_media(self, name, path, step):
        Recorder.calls.append(("media", name, Path(path)))

    def finish(self, status):
        Recorder.calls.append(("finish", status))


class Broken(Recorder):
    name = "broken"

    def log(self, metrics, step):
        raise OSError("disk full")


def _plugin(*trackers):
    @vpbench.hookimpl
    def vpbench_register_trackers(register):
        for cls in trackers:
            register(cls)

    return types.SimpleNamespace(vpbench_register_trackers=vpbench_register_trackers)


@pytest.fixture
def with_trackers():
    h = get_harness()
    if "recorder" not in h.trackers:
        record = h.add_plugin(_plugin(Recorder, Broken), PluginRecord("trackertest", "vpbench-trackertest", "0"))
        assert record.error is None, record.error
    Recorder.calls.clear()
    yield h


def _results(run_dir: Path) -> pd.DataFrame:
    (results,) = run_dir.glob("evals/*/results.csv")
    return pd.read_csv(results)


def test_run_writes_tensorboard_and_mlflow_equal_to_results_csv(in_tmp):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    result = invoke("run", "copylast", "--preset", "smoke", "--track", "tensorboard,mlflow", *FAST, "--out", "r")
    assert result.exit_code == 0, result.output
    expected = results_metrics(_results(in_tmp / "r"))
    assert "test/mse" in expected and "test/mse@h1" in expected and "cost/params" in expected

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(in_tmp / "r" / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0, "images": 0})
    acc.Reload()
    scalars = {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}
    assert set(expected) <= set(scalars)
    for key, value in expected.items():
        assert math.isclose(scalars[key], value, rel_tol=1e-6), key  # TensorBoard stores float32
    assert acc.Tags()["images"], "the example strips are logged"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{in_tmp / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("vpbench").experiment_id])
    assert run.info.status == "FINISHED"
    for key, value in expected.items():
        assert run.data.metrics[key.replace("@", ".")] == pytest.approx(value, rel=1e-12), key
    assert run.data.params["model_name"] == "copylast" and run.data.params["preset"] == "smoke"
    assert run.data.tags["vpbench.run_dir"] == str((in_tmp / "r").resolve())
    config = json.loads((in_tmp / "r" / "config.json").read_text())
    assert run.data.params["seed"] == json.dumps(config["seed"])
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "examples")]
    assert any(a.endswith(".gif") for a in artifacts) and any(a.endswith(".png") for a in artifacts)


def test_tracking_does_not_change_the_run_dir(in_tmp, with_trackers):
    assert invoke("run", "copylast", "--preset", "smoke", *FAST).exit_code == 0
    first = sorted(p.name for p in (in_tmp / "runs").iterdir())
    assert invoke("run", "copylast", "--preset", "smoke", "--track", "recorder", *FAST).exit_code == 0
    assert sorted(p.name for p in (in_tmp / "runs").iterdir()) == first


def test_trainable_model_logs_loss_and_lr_per_logged_step(in_tmp, with_test_models, with_trackers):
    result = invoke("run", "twostage", "--track", "recorder", *FAST, "--set", "data.n_train=16", "--set", "data.n_val=4",
                    "--set", "train.log_every=2", "--out", "r")
    assert result.exit_code == 0, result.output
    logged = [(c[1], c[2]) for c in Recorder.calls if c[0] == "log"]
    lines = [json.loads(line) for line in (in_tmp / "r" / "train_log.jsonl").read_text().splitlines()]
    train_lines = [line for line in lines if "loss" in line]
    train = [(m, step) for m, step in logged if "train/loss" in m]
    assert len(train) == len(train_lines) >= 4
    assert [m["train/loss"] for m, _ in train] == pytest.approx([line["loss"] for line in train_lines])
    assert all("train/lr" in m and "train/seconds" in m for m, _ in train)
    steps = [step for _, step in train]
    assert steps == sorted(steps) and len(set(steps)) == len(steps), "steps count over both stages"
    assert any("val/loss" in m for m, _ in logged)
    assert Recorder.calls[0][0] == "start" and Recorder.calls[-1] == ("finish", "success")
    assert Recorder.calls[0][2]["model_name"] == "twostage"


def test_a_failing_tracker_costs_one_warning_not_the_run(in_tmp, with_trackers):
    result = invoke("run", "copylast", "--preset", "smoke", "--track", "broken,recorder", *FAST, "--out", "r")
    assert result.exit_code == 0, result.output
    assert result.output.count("tracker 'broken' failed") == 1 and "disk full" in result.output
    assert len(_results(in_tmp / "r")) > 0
    logged = {k: v for c in Recorder.calls if c[0] == "log" for k, v in c[1].items()}
    assert logged == pytest.approx(results_metrics(_results(in_tmp / "r")))
    assert ("finish", "success") in Recorder.calls


def test_unknown_tracker_is_one_line(in_tmp):
    result = invoke("run", "copylast", "--preset", "smoke", "--track", "tensorbord", *FAST)
    assert result.exit_code != 0
    assert "unknown tracker 'tensorbord'" in result.output and "did you mean tensorboard" in result.output
    assert "Traceback" not in result.output and not (in_tmp / "runs").exists()


def test_missing_package_names_its_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name.split(".")[0] == "mlflow":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    monkeypatch.delitem(__import__("sys").modules, "mlflow", raising=False)
    with pytest.raises(vpbench.ConfigError, match=r"tracker 'mlflow' needs `pip install vpbench\[mlflow\]`"):
        get_harness().trackers.get("mlflow")()


def test_tracking_fan_out_drops_a_failing_tracker():
    messages = []
    events = vpbench.Events()
    events.message = messages.append
    Recorder.calls.clear()
    tracking = Tracking([Broken(), Recorder()], events)
    tracking.start(Path("x"), {}, {})
    assert Recorder.calls == []  # opened when something is logged
    tracking.log({"a": 1.0, "b": float("nan"), "c": "text"}, 3)
    tracking.log({"a": 2.0}, 4)
    tracking.finish("success")
    assert len(messages) == 1 and "tracker 'broken' failed in log" in messages[0]
    assert [c[0] for c in Recorder.calls] == ["start", "start", "log", "log", "finish"]  # Broken records its start too
    assert Recorder.calls[2] == ("log", {"a": 1.0}, 3)
    assert parse_names(["tensorboard,mlflow", "mlflow"]) == ["tensorboard", "mlflow"]


def test_check_covers_a_third_party_tracker(with_trackers):
    outcomes = {str(o.case): o for o in map(testing.outcome, testing.cases("trackertest", harness=with_trackers))}
    assert outcomes["tracker:recorder:starts, logs and finishes"].status == "passed"
    assert outcomes["tracker:broken:starts, logs and finishes"].status == "failed"
    assert "disk full" in outcomes["tracker:broken:starts, logs and finishes"].message


@pytest.mark.parametrize("name", ["tensorboard", "mlflow"])
def test_check_passes_the_builtin_trackers(name):
    pytest.importorskip(name)
    (case,) = testing.cases(name, harness=get_harness())
    assert testing.outcome(case).status == "passed", testing.outcome(case).message


def test_wandb_offline_writes_its_run_files(in_tmp, monkeypatch):
    """W&B offline keeps a binary ``run-*.wandb`` log (a private protobuf format): checked as far as
    that file's existence and no tracker warning; its values are not read back (runs only when wandb is installed)."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = invoke("run", "copylast", "--preset", "smoke", "--track", "wandb", *FAST, "--out", "r")
    assert result.exit_code == 0, result.output
    assert "tracker 'wandb' failed" not in result.output
    (offline,) = (in_tmp / "r" / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb")) and (offline / "files").is_dir()
