"""``--executor slurm`` against a real one-node SLURM with accounting (tools/slurm-local.sh, which
.ci/run starts before the suite): a comparison as one job array equal to inline, a failed job
that loses nothing and is the only one resubmitted, a preempted training requeued and resumed
bit-exactly, a job killed hard reported instead of waited on, and a 2-task gloo DDP training."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli_helpers import invoke
from tests.test_executor import SMOKE, mid_training, quality, same_weights, signal_tasks

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _cluster_up() -> str:
    """Why the cluster cannot be used, or "" when it can."""
    try:
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
        acct = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"SLURM does not answer ({exc})"
    if state.returncode or not state.stdout.strip() or "down" in state.stdout:
        return f"no SLURM node is up ({(state.stderr or state.stdout).strip()[:120]}); tools/slurm-local.sh start"
    if acct.returncode:
        return f"SLURM has no accounting, so a job killed hard could not be seen to end ({acct.stderr.strip()[:120]})"
    return ""


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    """A working directory whose vpbench.toml sends jobs to the local cluster, polled each second.
    Skipped only where SLURM is not installed (no ``sbatch``); installed but not answering is a
    failure, so CI (which starts it in .ci/run) cannot skip these silently."""
    if not shutil.which("sbatch") or not shutil.which("sacct"):
        pytest.skip("no SLURM client here (install and start one with: sudo tools/slurm-local.sh start)")
    why = _cluster_up()
    if why:
        pytest.fail(f"SLURM is installed but cannot run the tests: {why}")
    (tmp_path / "vpbench.toml").write_text('[executor]\nkind = "slurm"\ntime = "20m"\npoll = 1\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _in(where: Path, monkeypatch) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(where.parent / "vpbench.toml", where / "vpbench.toml")
    monkeypatch.chdir(where)
    return where


def test_a_comparison_runs_as_one_array_equal_to_inline_and_a_failed_job_is_the_only_one_resubmitted(slurm, monkeypatch):
    from vpbench import runs
    from vpbench.lock import locked
    from vpbench.plugins import get_harness

    _in(slurm / "a", monkeypatch)
    inline = invoke("compare", "convlstm", "copylast", *SMOKE, "--executor", "inline", "--out", "cmp")
    assert inline.exit_code == 0, inline.output
    _in(slurm / "b", monkeypatch)
    held = runs.prepare(get_harness(), "convlstm", preset="smoke", sets=["train.budget=5e10"]).run_dir
    args = ["compare", "convlstm", "copylast", *SMOKE, "--out", "cmp"]
    with locked(held):  # another process holds convlstm's run: its job fails, copylast's does not
        first = invoke(*args)
    assert first.exit_code == 2 and "in use by another vpbench process" in first.output, first.output
    records = json.loads((slurm / "b" / "cmp" / "jobs.json").read_text())["jobs"]
    arrays = {r["job_id"].split("_")[0] for r in records}
    assert len(arrays) == 1 and sorted(r["job_id"].split("_")[1] for r in records) == ["0", "1"]  # one array
    assert sorted((r["label"], r["state"]) for r in records) == [("convlstm", "FAILED"), ("copylast", "DONE")]
    second = invoke(*args)
    assert second.exit_code == 0, second.output
    assert "convlstm: submitted as slurm job" in second.output and "copylast: submitted" not in second.output
    assert quality(slurm / "a" / "cmp" / "results.csv").equals(quality(slurm / "b" / "cmp" / "results.csv"))
    sacct = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(arrays)],
                           capture_output=True, text=True).stdout
    assert "COMPLETED" in sacct


def test_a_preempted_training_is_requeued_and_resumes_bit_exactly(slurm, monkeypatch):
    budget = ["--preset", "smoke", "--budget", "1e12", "--seed", "5"]
    reference = invoke("run", "convlstm", *budget, "--executor", "inline", "--out", "ref")
    assert reference.exit_code == 0, reference.output

    def preempt():  # what SLURM does before a time limit or a preemption: USR2 to the job's steps
        job = json.loads((slurm / "job.jobs" / "jobs.json").read_text())["jobs"][-1]["job_id"]
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
        return job

    with mid_training(slurm / "job" / "train_log.jsonl", preempt) as sent:
        result = invoke("run", "convlstm", *budget, "--out", "job")
    assert result.exit_code == 0, result.output
    assert sent, "the training ended before it could be preempted"
    out = "".join(p.read_text() for p in (slurm / "job.jobs" / "jobs").glob("*_log.out"))
    assert out.count("Starting with JobEnvironment") >= 2 and "resuming at stage 'train', step" in out
    restarts = subprocess.run(["sacct", "-n", "-X", "-P", "-D", "-o", "JobID,State", "-j", sent[0]],
                              capture_output=True, text=True).stdout
    assert "REQUEUED" in restarts  # SLURM's accounting saw the requeue
    assert same_weights(slurm / "ref", slurm / "job")


def test_a_job_killed_hard_is_reported_failed_not_waited_on(slurm):
    folder = slurm / "hard.jobs" / "jobs"
    started = time.monotonic()
    # SIGKILL once training has begun: no checkpoint, no result file, only sacct can tell
    with mid_training(slurm / "hard" / "train_log.jsonl", lambda: signal_tasks(folder, signal.SIGKILL), lines=0) as killed:
        result = invoke("run", "convlstm", "--preset", "smoke", "--budget", "1e12", "--seed", "6", "--out", "hard")
    assert killed, "the job ended before it could be killed"
    assert result.exit_code == 2, result.output
    assert "convlstm:" in result.output and "_log.out" in result.output and "rerun the command" in result.output
    assert time.monotonic() - started < 300
    record = json.loads((slurm / "hard.jobs" / "jobs.json").read_text())["jobs"][-1]
    assert record["state"] == "FAILED" and record["reason"]
    assert not (slurm / "hard" / "model.pt").exists()


def test_a_two_task_job_trains_with_gloo_ddp(slurm):
    result = invoke("run", "convlstm", *SMOKE, "--tasks-per-node", "2", "--out", "ddp")
    assert result.exit_code == 0, result.output
    logs = sorted((slurm / "ddp.jobs" / "jobs").glob("*_log.out"))
    text = [p.read_text() for p in logs]
    assert len(logs) == 2 and "global_rank=0(2)" in text[0] and "global_rank=1(2)" in text[1]
    assert json.loads((slurm / "ddp" / "training.json").read_text())["steps_taken"] == 5
    assert list((slurm / "ddp" / "evals").glob("*/results.csv"))


def test_a_detached_run_is_gathered_later(slurm):
    """`vpbench run ... --detach` submits and returns at once, naming the folder to gather; `vpbench
    gather` then says the job is not done (exit 2, its state and log) until it is, and afterwards
    prints the run's table from the result set the job wrote."""
    result = invoke("run", "copylast", "--preset", "smoke", "--set", "data.n_test=8", "--out", "det", "--detach")
    assert result.exit_code == 0, result.output
    assert "job submitted; gather with `vpbench gather det.jobs`" in result.output
    assert not list((slurm / "det").glob("evals/*/results.csv"))  # nothing waited on
    deadline = time.monotonic() + 300
    while True:
        gathered = invoke("gather", "det.jobs")
        if gathered.exit_code == 0 or time.monotonic() > deadline:
            break
        assert gathered.exit_code == 2 and "copylast:" in gathered.output and "_log.out" in gathered.output
        time.sleep(2)
    assert gathered.exit_code == 0, gathered.output
    assert "copylast on digits" in gathered.output and list((slurm / "det").glob("evals/*/results.csv"))
