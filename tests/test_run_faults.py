"""Faults with real processes: two commands on one run directory, killed holders, signals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.cli_helpers import invoke
from tests.conftest import ROOT
from vpbench.lock import lock_path

SMALL = ["--set", "data.n_train=16", "--set", "data.n_val=4", "--set", "data.n_test=4", "--set", "train.batch_size=4",
         "--set", "eval.bootstrap=20", "--set", "eval.examples=0", "--set", "eval.profile=false",
         "--set", "eval.metrics=mse"]


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'plugins'}", VPBENCH_DISABLE_PLUGIN_AUTOLOAD="1", COLUMNS="200")
    return env


def _cli(*args) -> list[str]:
    """The real CLI with the test models registered (tests/models.py), in a fresh process."""
    code = ("import sys; from tests import models; from vpbench.plugins import get_harness, PluginRecord; "
            "get_harness().add_plugin(models, PluginRecord('tests', 'vpbench-tests', '0')); "
            "from vpbench.cli import app; app(sys.argv[1:], prog_name='vpbench')")
    return [sys.executable, "-c", code, *args]


def _wait_for_holder(path: Path, timeout: float = 60) -> dict:
    start = time.time()
    while time.time() - start < timeout:
        if path.is_file() and path.read_text().strip():
            return json.loads(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"no holder in {path}")


def test_a_second_process_on_a_live_run_gets_one_line_naming_the_holder(tmp_path):
    slow = [*SMALL, "--set", "model.step_delay=0.2", "--set", "model.steps_a=100", "--out", "r"]
    first = subprocess.Popen(_cli("run", "twostage", *slow), cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        holder = _wait_for_holder(lock_path(tmp_path / "r"))
        assert holder["pid"] == first.pid and "run twostage" in holder["command"]
        for extra in ([], ["--fresh"], ["--resume"]):
            second = subprocess.run(_cli("run", "twostage", *slow, *extra), cwd=tmp_path, env=_env(),
                                    capture_output=True, text=True, timeout=120)
            assert second.returncode == 2, second.stdout + second.stderr
            assert f"r is in use by another vpbench process (pid {first.pid} on" in second.stderr
            assert "Traceback" not in second.stderr
        assert not [p for p in tmp_path.iterdir() if ".old-" in p.name]  # --fresh moved nothing aside
        out, _ = first.communicate(timeout=300)
        assert first.returncode == 0, out
    finally:
        first.kill()
    assert not lock_path(tmp_path / "r").exists()  # released
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["model"]["steps_a"] == 100 and torch.load(tmp_path / "r" / "model.pt", weights_only=True)["model"]


def test_a_killed_holder_leaves_a_stale_lock_that_is_reported_and_taken_over(tmp_path):
    slow = [*SMALL, "--set", "model.step_delay=0.2", "--set", "model.steps_a=60", "--set", "train.ckpt_every=2",
            "--out", "r"]
    first = subprocess.Popen(_cli("run", "twostage", *slow), cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    holder = _wait_for_holder(lock_path(tmp_path / "r"))
    start = time.time()
    while not (tmp_path / "r" / "checkpoints" / "last.pt").is_file() and time.time() - start < 120:
        time.sleep(0.05)
    first.kill()  # SIGKILL, mid-training: no cleanup runs
    first.wait()
    assert json.loads(lock_path(tmp_path / "r").read_text())["pid"] == holder["pid"]
    result = subprocess.run(_cli("run", "twostage", *slow, "--set", "model.step_delay=0", "--resume"),
                            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    # the stale lock is reported and taken over; then step_delay, a training field, differs from the killed run's
    said = " ".join(result.stdout.split())
    assert f"a previous vpbench process (pid {holder['pid']} on" in said and "ended without releasing its lock" in said
    assert result.returncode == 2 and "holds a run with another config" in result.stderr
    assert not lock_path(tmp_path / "r").exists()  # released again, after the error
    result = subprocess.run(_cli("run", "twostage", *slow, "--set", "model.step_delay=0.2", "--resume"), cwd=tmp_path,
                            env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming at stage 'a'" in result.stdout and "ended without releasing" not in result.stdout


def test_a_lock_held_on_another_host_is_refused_with_the_file_to_delete(in_tmp):
    path = lock_path(in_tmp / "r")
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "then", "command": "vpbench run x"}))
    result = invoke("run", "copylast", *SMALL, "--out", "r")
    assert result.exit_code == 2
    assert "r is locked by a vpbench process on another host (pid 1 on elsewhere" in result.output
    assert "delete .r.lock and rerun" in result.output
    assert not (in_tmp / "r").exists()


def test_sigterm_to_the_process_group_with_loader_workers_checkpoints_and_exits_cleanly(tmp_path):
    import signal

    slow = [*SMALL, "--set", "model.step_delay=0.1", "--set", "model.steps_a=400", "--set", "train.num_workers=2",
            "--out", "r"]
    first = subprocess.Popen(_cli("run", "twostage", *slow), cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log = tmp_path / "r" / "train_log.jsonl"
    start = time.time()
    while not (log.is_file() and log.read_text().count("\n") >= 1) and time.time() - start < 120:
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGTERM)  # what timeout, schedulers and systemd send: the workers get it too
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 2, out
    assert "training stopped by a signal; checkpoint written" in out and "--resume" in out
    assert "DataLoader worker" not in out and "Traceback" not in out
    ckpt = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["stage_index"] == 0 and ckpt["step"] > 0
