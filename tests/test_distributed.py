"""Multi-process training (torchrun, gloo on CPU) and surviving SIGKILL: real processes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import ROOT

WORKER = str(ROOT / "tests" / "dist_worker.py")
SLOW = ["model.steps_a=10", "model.steps_b=10", "model.step_delay=0.08"]
pytestmark = pytest.mark.slow


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT)
    e["OMP_NUM_THREADS"] = "1"
    return e


def torchrun(n: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}"]


def run(cmd, timeout=300):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "model.pt", weights_only=True)["model"]


def metrics(run_dir: Path) -> pd.DataFrame:
    from vpbench.results import find_set

    table = pd.read_csv(find_set(run_dir) / "results.csv", dtype={"horizon": str})
    return table[table["metric"].isin(["mse", "ssim"])].reset_index(drop=True)


def assert_close(a: Path, b: Path, exact: bool):
    wa, wb = weights(a), weights(b)
    for k in wa:
        if exact:
            assert torch.equal(wa[k], wb[k]), k
        else:
            assert torch.allclose(wa[k], wb[k], atol=1e-6, rtol=1e-5), k
    ma, mb = metrics(a), metrics(b)
    assert list(ma["metric"] + ma["horizon"]) == list(mb["metric"] + mb["horizon"])
    if exact:
        assert list(ma["value"]) == list(mb["value"])
    else:
        assert ((ma["value"] - mb["value"]).abs() <= 1e-5 * (1 + ma["value"].abs())).all()


def kill_at_step(cmd, run_dir: Path, step: int) -> int:
    """Start ``cmd`` in its own process group, SIGKILL the group once ``step`` steps are logged."""
    proc = subprocess.Popen(cmd, env=env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = run_dir / "train_log.jsonl"
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if log.is_file():
            rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip().endswith("}")]
            done = sum(1 for r in rows if "loss" in r and "val_loss" not in r)
            if done >= step:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return done
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"the run ended or hung before step {step}: {proc.stderr.read().decode()[-2000:]}")


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    run([sys.executable, WORKER, str(tmp_path / "one")])
    run(torchrun(2) + [WORKER, str(tmp_path / "two")])
    assert_close(tmp_path / "one", tmp_path / "two", exact=False)
    assert not (tmp_path / "two" / "checkpoints" / "last.pt.partial").exists()


def test_sigkill_at_a_random_step_then_resume_is_exact(tmp_path):
    run([sys.executable, WORKER, str(tmp_path / "full"), *SLOW])
    step = random.Random(os.getpid()).randrange(3, 18)
    killed = kill_at_step([sys.executable, WORKER, str(tmp_path / "killed"), *SLOW], tmp_path / "killed", step)
    assert not (tmp_path / "killed" / "model.pt").exists()
    run([sys.executable, WORKER, str(tmp_path / "killed"), "--resume", *SLOW])
    assert_close(tmp_path / "full", tmp_path / "killed", exact=True), f"killed after {killed} steps"


def test_killed_two_process_run_resumes_on_one_process(tmp_path):
    run([sys.executable, WORKER, str(tmp_path / "single"), *SLOW])
    kill_at_step(torchrun(2) + [WORKER, str(tmp_path / "multi"), *SLOW], tmp_path / "multi", 7)
    run([sys.executable, WORKER, str(tmp_path / "multi"), "--resume", *SLOW])
    assert_close(tmp_path / "single", tmp_path / "multi", exact=False)


def test_batch_sizes_must_split_evenly_over_processes():
    import torch

    from vpbench.distributed import Context, check_batch
    from vpbench.errors import ConfigError

    three = Context(rank=0, world=3, local_rank=0, device=torch.device("cpu"))
    check_batch(9, three)
    check_batch(7, None)  # one process: any batch
    with pytest.raises(ConfigError, match=r"train.batch_size \(8\) must be divisible by the number of processes \(3\)"):
        check_batch(8, three)
    with pytest.raises(ConfigError, match=r"stage 'prior' batch size \(16\) must be divisible"):
        check_batch(16, three, "stage 'prior' batch size")
