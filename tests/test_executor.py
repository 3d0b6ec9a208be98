"""Executors (``--executor local``, submitit's LocalExecutor: real subprocesses through the same
pickled-callable path as SLURM): settings, results equal to inline, failures that lose nothing,
resubmission of only what failed, preemption with a bit-exact resume, DDP in a job, an
ablation's bases before its variants. The same against a real SLURM: tests/test_slurm.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.cli_helpers import invoke
from vpbench import executor as ex
from vpbench.errors import ConfigError

SMOKE = ["--preset", "smoke", "--budget", "5e10"]
QUALITY = ["mse", "mae", "psnr", "ssim"]


def quality(path: Path) -> pd.Series:
    table = pd.read_csv(path)
    table = table[table.metric.isin(QUALITY)].sort_values(["model", "metric", "horizon"])
    return table.set_index(["model", "metric", "horizon"])["value"]


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "model.pt", weights_only=True)["model"]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def task_pids(folder: Path) -> list[int]:
    """Processes running a submitit task of jobs folder ``folder`` (its command line names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in cmd and str(folder).encode() in cmd:
            found.append(int(entry.name))
    return found


def signal_tasks(folder: Path, sig: int) -> list[int]:
    """Send ``sig`` to every running task of jobs folder ``folder``; the pids it reached."""
    reached = []
    for pid in task_pids(folder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
            reached.append(pid)
    return reached


@contextlib.contextmanager
def mid_training(log: Path, act, lines: int = 2, timeout: float = 400):
    """While the block runs, once ``log`` (a run's train_log.jsonl) has ``lines`` lines, call ``act``
    until it returns something true; the block gets the list that then holds it."""
    done: list = []

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done:
            if log.is_file() and len(log.read_text().splitlines()) >= lines:
                result = act()
                if result:
                    done.append(result)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield done
    finally:
        watcher.join(timeout=1)


# -- settings -------------------------------------------------------------------------------

def test_settings_layer_options_over_project_over_user_file(tmp_path, monkeypatch):
    user, project = tmp_path / "xdg", tmp_path / "proj"
    (user / "vpbench").mkdir(parents=True)
    project.mkdir()
    (user / "vpbench" / "vpbench.toml").write_text('[executor]\nkind = "slurm"\npartition = "gpu"\ntime = "2h"\n'
                                                   'mem = "16G"\n')
    (project / "vpbench.toml").write_text('[executor]\ntime = "30m"\nsbatch = ["qos=high", "account=vp"]\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user))
    cfg = ex.load_config({"kind": None, "nodes": 2, "time": None}, cwd=project)
    assert (cfg.kind, cfg.partition, cfg.time, cfg.mem, cfg.nodes) == ("slurm", "gpu", "30m", "16G", 2)
    assert cfg.sbatch == ("qos=high", "account=vp")
    assert ex.load_config({"time": "5"}, cwd=project).time == "5"  # the command line wins
    assert ex.load_config({}, cwd=tmp_path).kind == "slurm"  # no project file: the user's
    (project / "vpbench.toml").write_text('[executor]\ntime = "soon"\n')
    with pytest.raises(ConfigError, match=r"proj/vpbench.toml: executor.time: expected minutes .* got 'soon'"):
        ex.load_config({}, cwd=project)
    (project / "vpbench.toml").write_text('[executor]\npartiton = "a100"\n')
    with pytest.raises(ConfigError, match="unknown config key 'executor.partiton'.*partition"):
        ex.load_config({}, cwd=project)
    with pytest.raises(ConfigError, match="executor.kind"):
        ex.load_config({"kind": "ray"}, cwd=tmp_path)


def test_time_memory_and_sbatch_grammar():
    assert ex.minutes("90") == 90 and ex.minutes("1.5h") == 90 and ex.minutes("30s") == 0.5 and ex.minutes("2d") == 2880
    assert ex.minutes("1-02:03:04") == pytest.approx(1440 + 123 + 4 / 60) and ex.minutes("00:45") == 45
    assert ex.mem_gb("500M") == pytest.approx(500 / 1024) and ex.mem_gb("2T") == 2048 and ex.mem_gb("") is None
    assert ex.sbatch_parameters(["qos=high", "--constraint=a100"]) == {"qos": "high", "constraint": "a100"}
    for bad, fn in (("0", ex.minutes), ("4 hours", ex.minutes), ("lots", ex.mem_gb), (["qos"], ex.sbatch_parameters)):
        with pytest.raises(ConfigError):
            fn(bad)


def test_slurm_settings_become_the_sbatch_script(tmp_path):
    """What a cluster user types ends up in the script sbatch reads (no cluster needed to check)."""
    cfg = ex.ExecutorConfig(kind="slurm", partition="gpu", time="90m", gpus_per_task=1,
                            cpus_per_task=8, mem="32G", array_parallelism=4, nodes=2, tasks_per_node=4,
                            sbatch=("qos=high", "account=vp"), signal_delay=120)
    script = ex._executor(cfg, tmp_path)._make_submission_file_text("python -m x", "%j")
    for line in ("--partition=gpu", "--time=90", "--gpus-per-node=4", "--cpus-per-task=8", "--mem=32768M",
                 "--nodes=2", "--ntasks-per-node=4", "--qos=high", "--account=vp", "--signal=USR2@120"):
        assert f"#SBATCH {line}" in script, line
    assert "2 node(s) x 4 task(s) per training (DDP)" in cfg.describe()


def test_detach_and_gather_refuse_what_they_cannot_do(in_tmp):
    result = invoke("compare", "copylast", "blank", "--preset", "smoke", "--executor", "local", "--detach")
    assert result.exit_code == 2 and "--detach needs --out" in result.output
    result = invoke("compare", "copylast", "blank", "--preset", "smoke", "--executor", "local", "--detach", "--out", "c")
    assert result.exit_code == 2 and "--detach needs a scheduler that outlives this command" in result.output
    result = invoke("gather", "c")
    assert result.exit_code == 2 and "c holds no command.json" in result.output and "Traceback" not in result.output


# -- local jobs -----------------------------------------------------------------------------

@pytest.mark.slow
def test_local_jobs_equal_inline_a_failed_job_loses_nothing_and_only_it_is_resubmitted(tmp_path, monkeypatch):
    from vpbench import runs
    from vpbench.lock import locked
    from vpbench.plugins import get_harness

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    inline = invoke("compare", "convlstm", "copylast", *SMOKE, "--out", "cmp")
    assert inline.exit_code == 0, inline.output
    monkeypatch.chdir(tmp_path / "b")
    args = ["compare", "convlstm", "copylast", *SMOKE, "--executor", "local", "--out", "cmp"]
    held = runs.prepare(get_harness(), "convlstm", preset="smoke", sets=["train.budget=5e10"]).run_dir
    with locked(held):  # a second process holds convlstm's run: its job fails, copylast's does not
        first = invoke(*args)
    assert first.exit_code == 2, first.output
    assert "1 of 2 models not done" in first.output and "convlstm" in first.output
    assert "in use by another vpbench process" in first.output and "_log.out" in first.output
    records = json.loads((tmp_path / "b" / "cmp" / "jobs.json").read_text())["jobs"]
    assert sorted((r["label"], r["state"]) for r in records) == [("convlstm", "FAILED"), ("copylast", "DONE")]
    assert list((tmp_path / "b" / "runs").glob("copylast-*/evals/*/results.csv"))  # kept
    second = invoke(*args)
    assert second.exit_code == 0, second.output
    assert "convlstm: submitted" in second.output and "copylast: submitted" not in second.output
    records = json.loads((tmp_path / "b" / "cmp" / "jobs.json").read_text())["jobs"]
    assert [r["label"] for r in records].count("convlstm") == 2 and [r["label"] for r in records].count("copylast") == 1
    pd.testing.assert_series_equal(quality(tmp_path / "a" / "cmp" / "results.csv"),
                                   quality(tmp_path / "b" / "cmp" / "results.csv"))
    report = (tmp_path / "b" / "cmp" / "report.md").read_text()
    assert "runs not yet scored were trained and scored as jobs (records in jobs.json)" in report
    third = invoke(*args)  # everything scored: nothing is submitted, the table is written again
    assert third.exit_code == 0 and "submitted" not in third.output
    gathered = invoke("gather", "cmp")
    assert gathered.exit_code == 0, gathered.output
    pd.testing.assert_series_equal(quality(tmp_path / "a" / "cmp" / "results.csv"),
                                   quality(tmp_path / "b" / "cmp" / "results.csv"))


@pytest.mark.slow
def test_a_preempted_job_checkpoints_requeues_and_resumes_bit_exactly(tmp_path, monkeypatch):
    """USR2 (what SLURM sends before a time limit or a preemption) in the middle of training: the
    trainer writes a checkpoint at the end of its step, the job requeues itself, the restarted job
    resumes, and the weights equal those of an uninterrupted training."""
    monkeypatch.chdir(tmp_path)
    budget = ["--preset", "smoke", "--budget", "1e12", "--seed", "5"]
    reference = invoke("run", "convlstm", *budget, "--out", "ref")
    assert reference.exit_code == 0, reference.output
    folder = tmp_path / "job.jobs" / "jobs"
    # once 20 of its 116 steps are trained
    with mid_training(tmp_path / "job" / "train_log.jsonl", lambda: signal_tasks(folder, signal.SIGUSR2)) as sent:
        result = invoke("run", "convlstm", *budget, "--executor", "local", "--out", "job")
    assert result.exit_code == 0, result.output
    assert sent, "the training ended before it could be preempted"
    out = next(folder.glob("*_0_log.out")).read_text()
    assert out.count("Starting with JobEnvironment") == 2  # started, requeued, started again
    assert "checkpoint written" in out and "resuming at stage 'train', step" in out
    assert same_weights(tmp_path / "ref", tmp_path / "job")


@pytest.mark.slow
def test_a_job_of_two_tasks_trains_with_ddp(tmp_path, monkeypatch):
    """--tasks-per-node 2: submitit's variables become torchrun's, vpbench.distributed joins a
    gloo group, rank 0 writes the results and rank 1 only trains and scores its shard."""
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "convlstm", *SMOKE, "--executor", "local", "--tasks-per-node", "2", "--out", "ddp")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "ddp.jobs" / "jobs"
    logs = sorted(folder.glob("*_log.out"))
    assert len(logs) == 2
    assert "global_rank=0(2)" in logs[0].read_text() and "global_rank=1(2)" in logs[1].read_text()
    import pickle

    results = [pickle.loads(p.read_bytes()) for p in sorted(folder.glob("*_result.pkl"))]
    assert [r[0] for r in results] == ["success", "success"]
    assert results[0][1]["eval_dir"] != "None" and results[1][1]["eval_dir"] == "None"  # rank 0 writes
    record = json.loads((tmp_path / "ddp" / "training.json").read_text())
    assert record["steps_taken"] == 5  # 5e10 FLOPs: the same plan as one process


@pytest.mark.slow
def test_ablation_jobs_train_the_shared_base_first_and_equal_inline(tmp_path, monkeypatch):
    from tests.test_ablate import FAST

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    inline = invoke("ablate", "-m", "shrvqvae", "--lambda", "0,1", *FAST, "--out", "abl")
    assert inline.exit_code == 0, inline.output
    monkeypatch.chdir(tmp_path / "b")
    jobs = invoke("ablate", "-m", "shrvqvae", "--lambda", "0,1", *FAST, "--executor", "local", "--out", "abl")
    assert jobs.exit_code == 0, jobs.output
    records = json.loads((tmp_path / "b" / "abl" / "jobs.json").read_text())["jobs"]
    assert [(r["label"], r["wave"]) for r in records] == [("base base-until-joint", 0), ("lam=0", 1), ("lam=1", 1)]
    base_done = (tmp_path / "b" / "abl" / "jobs" / f"{records[0]['job_id']}_0_result.pkl").stat().st_mtime
    started = [(tmp_path / "b" / "abl" / "jobs" / f"{r['job_id']}_submitted.pkl").stat().st_mtime for r in records[1:]]
    assert all(t >= base_done for t in started)  # the variants were submitted after the base finished
    for variant in ("lam-0", "lam-1"):
        assert same_weights(tmp_path / "a" / "abl" / variant, tmp_path / "b" / "abl" / variant), variant
    a, b = (pd.read_csv(tmp_path / d / "abl" / "differences.csv") for d in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
def test_a_ladder_as_jobs_submits_every_model_and_budget_at_once_and_equals_inline(tmp_path, monkeypatch):
    from tests.test_ladder import FAST

    ladder = ["compare", "convlstm", "copylast", *FAST, "--budget", "2e10,5e10", "--out", "lad"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert invoke(*ladder).exit_code == 0
    monkeypatch.chdir(tmp_path / "b")
    result = invoke(*ladder, "--executor", "local")
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "b" / "lad" / "jobs.json").read_text())["jobs"]
    assert sorted(r["label"] for r in records) == ["2e10 convlstm", "2e10 copylast", "5e10 convlstm", "5e10 copylast"]
    assert len({r["job_id"] for r in records}) == 4 and all(r["state"] == "DONE" for r in records)
    a, b = (pd.read_csv(tmp_path / d / "lad" / "scaling.csv", dtype={"budget": str}) for d in ("a", "b"))
    keys = ["model", "budget", "metric"]
    a, b = a.sort_values(keys).reset_index(drop=True), b.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[keys + ["value", "train_flops", "n_clips"]], b[keys + ["value", "train_flops", "n_clips"]])


def test_local_array_parallelism_caps_the_jobs_running_at_once(in_tmp):
    """The local executor has no array cap of its own: with --array-parallelism 1 the next job is
    submitted only when the running one has ended (its log ends before the next one starts)."""
    from vpbench.benchmarks.executor import job_spans

    result = invoke("compare", "copylast", "blank", "meanframe", "--preset", "smoke", "--set", "data.n_test=8",
                    "--set", "eval.speed=false", "--executor", "local", "--array-parallelism", "1", "--cpus", "1",
                    "--out", "cmp")
    assert result.exit_code == 0, result.output
    spans = sorted(job_spans(in_tmp / "cmp"))
    assert len(spans) == 3
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))
