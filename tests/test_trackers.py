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
from vpbench.tracking import Tracking, open_tracking, parse_names, parse_track, results_metrics

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


def _wandb_run(run_dir: Path) -> tuple[Path, list]:
    """The offline run directory of ``run_dir``'s W&B run and the records of its ``run-*.wandb`` log,
    read after ``wandb.teardown()``: ``run.finish()`` can return while W&B's core still writes the log's
    last block (seen on a loaded machine: the file cut inside a record, or short of its last records)."""
    import wandb

    from tests import wandb_log

    wandb.teardown()
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (log,) = offline.glob("run-*.wandb")
    return offline, wandb_log.read_records(log)


def test_wandb_offline_log_holds_the_run_equal_to_results_csv(in_tmp, monkeypatch):
    """W&B offline keeps a binary ``run-*.wandb`` log, read back with our own reader (tests/wandb_log.py:
    header, blocks, record framing, every CRC; the records parsed with wandb's protobuf schema). Checked:
    the run record (name, project, notes = run dir), the config equal to config.json, the final metrics
    equal to results.csv both in a history row and in the summary, the example PNG / GIF history entries
    and their files, a clean exit; and that damage to the file (any byte flipped, a cut) makes the reader
    raise. Not checked: the console, system-stats and telemetry records (runs only when wandb is installed)."""
    pytest.importorskip("wandb")
    from tests import wandb_log

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = invoke("run", "copylast", "--preset", "smoke", "--track", "wandb", *FAST, "--out", "r")
    assert result.exit_code == 0, result.output
    assert "tracker 'wandb' failed" not in result.output
    run_dir = (in_tmp / "r").resolve()
    offline, records = _wandb_run(run_dir)
    expected = results_metrics(_results(run_dir))
    assert "test/mse" in expected and "test/mse@h1" in expected and "cost/params" in expected

    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.display_name, run.project, run.notes) == ("r", "vpbench", str(run_dir))
    config = wandb_log.config(records)
    config.pop("_wandb", None)  # W&B's own entry
    assert config == json.loads((run_dir / "config.json").read_text())

    rows = wandb_log.history(records)
    (final,) = [row for row in rows if "test/mse" in row]
    summary = wandb_log.summary(records)
    for key, value in expected.items():
        assert final[key] == pytest.approx(value, rel=1e-12), key  # JSON keeps the float; the CSV reader may be an ulp off
        assert summary[key] == pytest.approx(value, rel=1e-12), key
    assert summary["run_dir"] == str(run_dir) and isinstance(json.loads(summary["provenance"]), dict)

    media = {key[0]: value for row in rows for key, value in row.items() if isinstance(key, tuple) and key[1] == "_type"}
    examples = sorted(p.name for p in next(run_dir.glob("evals/*/examples")).iterdir())
    assert {name.removeprefix("examples/") for name in media} == set(examples)
    assert media == {f"examples/{n}": "image-file" if n.endswith(".png") else "video-file" for n in examples}
    paths = [value for row in rows for key, value in row.items() if isinstance(key, tuple) and key[1] == "path"]
    assert len(paths) == len(examples) and all((offline / "files" / path).is_file() for path in paths)
    (done,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert done.exit_code == 0

    data = next(offline.glob("run-*.wandb")).read_bytes()
    damaged = in_tmp / "damaged.wandb"
    at = data.index(b'"copylast"') + 1  # a byte of a record's data that still parses as protobuf: only the CRC sees it
    damaged.write_bytes(data[:at] + b"C" + data[at + 1:])
    with pytest.raises(wandb_log.CorruptLog, match="CRC mismatch"):
        wandb_log.read_records(damaged)
    for at in [*range(0, 20), *range(20, len(data), 97)]:  # the header, the first record's header, then everywhere
        damaged.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
        with pytest.raises(wandb_log.CorruptLog):
            wandb_log.read_records(damaged)
    damaged.write_bytes(data[:-1])
    with pytest.raises(wandb_log.CorruptLog):
        wandb_log.read_records(damaged)


def test_wandb_offline_log_holds_a_trained_models_steps(in_tmp, with_test_models, monkeypatch):
    """A trained model's W&B log, read back: one history row per logged training step with the loss of
    train_log.jsonl at the tracker's step; then the final metrics equal to results.csv (logged at the last
    training step: W&B ignores a step that goes back, which dropped them while they were logged at step 0)."""
    pytest.importorskip("wandb")
    from tests import wandb_log

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = invoke("run", "twostage", "--track", "wandb", *FAST, "--set", "data.n_train=16", "--set", "data.n_val=4",
                    "--set", "train.log_every=2", "--out", "r")
    assert result.exit_code == 0, result.output
    assert "tracker 'wandb' failed" not in result.output
    _, records = _wandb_run(in_tmp / "r")
    assert wandb_log.config(records)["model_name"] == "twostage"
    lines = [json.loads(line) for line in (in_tmp / "r" / "train_log.jsonl").read_text().splitlines()]
    train_lines = [line for line in lines if "loss" in line]
    train_rows = [row for row in wandb_log.history(records) if "train/loss" in row]
    assert len(train_rows) == len(train_lines) >= 4
    assert [row["train/loss"] for row in train_rows] == pytest.approx([line["loss"] for line in train_lines])
    assert all("train/lr" in row for row in train_rows)
    steps = [row["_step"] for row in train_rows]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    summary = wandb_log.summary(records)
    assert summary["train/loss"] == pytest.approx(train_lines[-1]["loss"])
    expected = results_metrics(_results(in_tmp / "r"))  # logged at the last training step, so W&B keeps them
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value, rel=1e-12), key


def test_wandb_log_reader_follows_records_across_blocks(tmp_path, monkeypatch):
    """A run log of several 32 KiB blocks, with records split into FIRST / MIDDLE / LAST pieces (a config
    value and a logged text longer than a block), reads back whole."""
    pytest.importorskip("wandb")
    from tests import wandb_log

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tracker,) = open_tracking(get_harness(), "wandb").trackers
    (tmp_path / "r").mkdir()
    tracker.start(tmp_path / "r", {"model_name": "x", "notes": "n" * 70_000}, {})
    for step in range(200):
        tracker.log({"train/loss": 1 / (step + 1)}, step)
    tracker.run.summary["long"] = "s" * 100_000
    tracker.finish("success")
    offline, records = _wandb_run(tmp_path / "r")
    assert next(offline.glob("run-*.wandb")).stat().st_size > 3 * wandb_log.BLOCK
    assert wandb_log.config(records)["notes"] == "n" * 70_000
    assert [row["train/loss"] for row in wandb_log.history(records)] == [1 / (step + 1) for step in range(200)]
    assert wandb_log.summary(records)["long"] == "s" * 100_000


def test_wandb_option_names_the_project(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    (tracker,) = open_tracking(get_harness(), "wandb=from-option").trackers
    (tmp_path / "r").mkdir()
    tracker.start(tmp_path / "r", {"model_name": "x"}, {})
    try:
        assert tracker.run.project == "from-option"
    finally:
        tracker.finish("success")


def _tensorboard_scalars(log_dir: Path) -> dict[str, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0, "images": 0})
    acc.Reload()
    return {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}


def _mlflow_runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return client.search_runs([client.get_experiment_by_name("vpbench").experiment_id])


def test_compare_tracks_one_run_per_model_equal_to_its_rows(in_tmp):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    result = invoke("compare", "copylast", "blank", "--preset", "smoke", "--track", "tensorboard,mlflow", *FAST,
                    "--out", "cmp")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(in_tmp / "cmp" / "results.csv", dtype={"horizon": str})
    run_dirs = json.loads((in_tmp / "cmp" / "results.json").read_text())["runs"]
    assert set(run_dirs) == {"copylast", "blank"}
    mlflow_runs = {r.info.run_name: r for r in _mlflow_runs(f"sqlite:///{in_tmp / 'runs' / 'mlflow.db'}")}
    assert set(mlflow_runs) == {Path(d).name for d in run_dirs.values()}, "one MLflow run per model"
    for model, run_dir in run_dirs.items():
        expected = results_metrics(table[table["model"] == model])
        assert "test/mse" in expected and "test/mse@h1" in expected
        scalars = _tensorboard_scalars(in_tmp / run_dir / "tensorboard")
        for key, value in expected.items():
            assert math.isclose(scalars[key], value, rel_tol=1e-6), (model, key)
        tracked = mlflow_runs[Path(run_dir).name]
        assert tracked.info.status == "FINISHED" and tracked.data.params["model_name"] == model
        assert tracked.data.tags["vpbench.run_dir"] == str((in_tmp / run_dir).resolve())
        for key, value in expected.items():
            assert tracked.data.metrics[key.replace("@", ".")] == pytest.approx(value, rel=1e-12), (model, key)


def test_tracker_options_choose_where_tensorboard_and_mlflow_write(in_tmp):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    (in_tmp / "store").mkdir()
    uri = f"sqlite:///{in_tmp / 'store' / 'other.db'}"
    result = invoke("run", "copylast", "--preset", "smoke", "--track", f"tensorboard=tb,mlflow={uri}", *FAST, "--out", "r")
    assert result.exit_code == 0, result.output
    expected = results_metrics(_results(in_tmp / "r"))
    scalars = _tensorboard_scalars(in_tmp / "tb" / "r")
    assert all(math.isclose(scalars[k], v, rel_tol=1e-6) for k, v in expected.items())
    assert not (in_tmp / "r" / "tensorboard").exists()
    (tracked,) = _mlflow_runs(uri)
    assert tracked.info.run_name == "r" and tracked.data.metrics["test/mse"] == pytest.approx(expected["test/mse"])
    assert not (in_tmp / "mlflow.db").exists()
    assert list((in_tmp / "store" / "mlruns").rglob("*.png")), "artifacts beside the sqlite store"


def test_config_track_field_tracks_and_keeps_the_run_dir(in_tmp, with_trackers):
    pytest.importorskip("tensorboard")
    assert invoke("run", "copylast", "--preset", "smoke", *FAST).exit_code == 0
    (run_dir,) = (in_tmp / "runs").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["track"] == []
    del config["track"]  # a run directory made before the field existed
    (run_dir / "config.json").write_text(json.dumps(config))
    result = invoke("run", "copylast", "--preset", "smoke", "--set", "track=tensorboard", *FAST)
    assert result.exit_code == 0, result.output
    assert list((in_tmp / "runs").iterdir()) == [run_dir], "the config's track is not the run's identity"
    assert _tensorboard_scalars(run_dir / "tensorboard")["test/mse"] == pytest.approx(
        results_metrics(_results(run_dir))["test/mse"], rel=1e-6)
    # --track wins over the config's track
    result = invoke("run", "copylast", "--preset", "smoke", "--set", "track=broken", "--track", "recorder", *FAST)
    assert result.exit_code == 0, result.output
    assert "tracker 'broken'" not in result.output
    assert Recorder.calls[0][0] == "start" and Recorder.calls[-1] == ("finish", "success")
    assert list((in_tmp / "runs").iterdir()) == [run_dir]
    result = invoke("run", "copylast", "--preset", "smoke", "--set", "track=broken", "--track", "", *FAST)
    assert result.exit_code == 0 and "tracker 'broken'" not in result.output, result.output


def test_track_field_loads_old_configs_and_is_not_in_the_hash(harness):
    import dataclasses

    from vpbench import config as cfgmod
    from vpbench.rundir import config_hash

    model_cls, dataset_cls = harness.models.get("copylast"), harness.datasets.get("digits")
    cfg = cfgmod.resolve("copylast", model_cls, harness.datasets.get, preset="smoke")
    old = cfg.to_dict()
    del old["track"]
    assert cfgmod.from_dict(old, model_cls, dataset_cls) == cfg
    tracked = cfgmod.resolve("copylast", model_cls, harness.datasets.get, preset="smoke",
                             sets=["track=tensorboard,mlflow=sqlite:///x.db"])
    assert tracked.track == ("tensorboard", "mlflow=sqlite:///x.db")
    assert cfgmod.from_dict(tracked.to_dict(), model_cls, dataset_cls) == tracked
    assert config_hash(tracked, model_cls) == config_hash(cfg, model_cls)
    assert config_hash(dataclasses.replace(cfg, track=("wandb=p",)), model_cls) == config_hash(cfg, model_cls)


def test_tracker_names_and_options_are_checked_before_anything_trains(in_tmp, with_trackers):
    result = invoke("compare", "copylast", "blank", "--preset", "smoke", "--track", "tensorbord", *FAST, "--out", "cmp")
    assert result.exit_code != 0 and "unknown tracker 'tensorbord'" in result.output
    assert "Traceback" not in result.output and not (in_tmp / "cmp").exists()
    result = invoke("compare", "copylast", "blank", "--preset", "smoke", "--set", "track=recorder=x", *FAST)
    assert result.exit_code != 0 and "tracker 'recorder' takes no option" in result.output
    assert Recorder.calls == [] and not (in_tmp / "runs").exists()
    assert parse_track("tensorboard=a/b, mlflow=sqlite:///c=d.db,tensorboard=a/b") == [
        ("tensorboard", "a/b"), ("mlflow", "sqlite:///c=d.db")]
    with pytest.raises(vpbench.ConfigError, match="twice"):
        parse_track("tensorboard=a,tensorboard=b")


def test_compare_job_carries_track_and_the_job_tracks(in_tmp, with_trackers):
    from vpbench.compare import job_tasks, plan_comparison, train_and_score

    plan = plan_comparison(with_trackers, ["copylast", "blank"], preset="smoke", sets=FAST[1::2])
    tasks = job_tasks(plan, track="recorder")
    assert [t.payload["track"] for t in tasks] == ["recorder", "recorder"]
    assert all(t.fn == "vpbench.compare:train_and_score" for t in tasks)
    train_and_score(**tasks[0].payload)
    starts = [c for c in Recorder.calls if c[0] == "start"]
    assert [s[1] for s in starts] == [Path(tasks[0].run_dir)]
    logged = {k: v for c in Recorder.calls if c[0] == "log" for k, v in c[1].items()}
    assert logged == pytest.approx(results_metrics(_results(Path(tasks[0].run_dir))))
    assert Recorder.calls[-1] == ("finish", "success")


def test_ablation_tracks_each_variant_inline_and_in_its_job(in_tmp, with_test_models, with_trackers):
    from vpbench import runs
    from vpbench.ablate import Variant, _tasks, variant_job

    small = [*FAST, "--set", "data.n_train=16", "--set", "data.n_val=4", "--set", "train.log_every=2"]
    result = invoke("ablate", "-m", "oneconv", "--grid", "steps=2,3", "--track", "recorder", *small, "--out", "abl")
    assert result.exit_code == 0, result.output
    starts = [c for c in Recorder.calls if c[0] == "start"]
    assert [s[1].name for s in starts] == ["steps-2", "steps-3"]
    assert [s[2]["model"]["steps"] for s in starts] == [2, 3]
    assert [c for c in Recorder.calls if c[0] == "finish"] == [("finish", "success")] * 2
    table = pd.read_csv(in_tmp / "abl" / "results.csv", dtype={"horizon": str})
    at = [i for i, c in enumerate(Recorder.calls) if c[0] == "start"] + [len(Recorder.calls)]
    for variant, (a, b) in zip(["steps=2", "steps=3"], zip(at, at[1:])):
        logged = {k: v for c in Recorder.calls[a:b] if c[0] == "log" for k, v in c[1].items()}
        assert "train/loss" in logged
        expected = results_metrics(table[table["variant"] == variant])
        assert {k: logged[k] for k in expected} == pytest.approx(expected), variant
    # the ablation's job payload carries the trackers, and the job tracks its variant
    Recorder.calls.clear()
    run = runs.prepare(with_trackers, "oneconv", sets=small[1::2] + ["model.steps=4"], out=in_tmp / "job")
    (task,) = _tasks([Variant("steps=4", {"steps": "4"}, run)], runs.build_dataset(run), None, False, None, "recorder")
    assert task.fn == "vpbench.ablate:variant_job" and task.payload["track"] == "recorder"
    variant_job(**task.payload)
    assert Recorder.calls[0][:2] == ("start", Path(task.run_dir)) and Recorder.calls[-1] == ("finish", "success")


def _open_mlflow_run(run_dir: str, barrier) -> str:
    """A job's MLflow tracker on the shared store: built, then started when every job is ready."""
    tracker = get_harness().trackers.get("mlflow")()
    barrier.wait()
    tracker.start(Path(run_dir), {"model_name": "x"}, {})
    tracker.log({"test/mse": 1.0}, 0)
    tracker.finish("success")
    return tracker.run_id


def test_mlflow_jobs_starting_together_share_a_fresh_store(tmp_path, monkeypatch):
    """Jobs of one comparison open their runs in one new sqlite store at once; its tables and the
    experiment are created once, not raced."""
    pytest.importorskip("mlflow")
    import multiprocessing

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(3) as pool:
        barrier = manager.Barrier(3)
        ids = pool.starmap(_open_mlflow_run, [(str(tmp_path / "runs" / f"m{i}"), barrier) for i in range(3)])
    runs = _mlflow_runs(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    assert sorted(r.info.run_id for r in runs) == sorted(ids)
    assert all(r.info.status == "FINISHED" and r.data.metrics["test/mse"] == 1.0 for r in runs)
