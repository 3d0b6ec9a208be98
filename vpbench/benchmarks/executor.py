"""What running a comparison as jobs costs, against inline and against the ideal.

    python -m vpbench.benchmarks.executor [--models convlstm,predrnn,simvp,tau] [--budget 2e11]

1. ``vpbench compare MODELS --preset smoke --budget B`` inline (one process, torch's default
   threads) against ``--executor local --array-parallelism 2 --cpus 1`` (two jobs at a time, one
   thread each), each in a fresh directory so every model trains. Printed: both wall times, their
   ratio, and the ideal ratio for this machine: the jobs' own single-thread durations (from their
   logs) scheduled on ``--array-parallelism`` slots, longest first, against the inline time. The
   gap between the measured and the ideal ratio is the executor's own cost.
2. When a SLURM answers (``tools/slurm-local.sh start``): the same comparison with ``--executor
   slurm``, and per job the scheduler's latency (submission to start, from ``sacct``) and the
   time from the job's end to the command seeing it (``jobs.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

STAMP = re.compile(r"submitit \w+ \((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\) - (Starting with|Job completed)")


def compare(where: Path, models: list[str], budget: str, *extra: str) -> float:
    (where / "vpbench.toml").write_text('[executor]\npoll = 0.5\ntime = "30m"\n')
    cmd = [sys.executable, "-m", "vpbench", "compare", *models, "--preset", "smoke", "--budget", budget,
           "--out", "cmp", *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=where, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return took


def job_spans(out: Path) -> list[tuple[float, float]]:
    """(start, end) of every job of ``out/jobs.json``, from the submitit lines of its log."""
    spans = []
    for record in json.loads((out / "jobs.json").read_text())["jobs"]:
        text = Path(record["log"]).read_text(errors="replace")
        stamps = {kind: dt.datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f").timestamp() for t, kind in STAMP.findall(text)}
        if {"Starting with", "Job completed"} <= set(stamps):
            spans.append((stamps["Starting with"], stamps["Job completed"]))
    return spans


def makespan(durations: list[float], slots: int) -> float:
    """Longest-processing-time-first scheduling of ``durations`` on ``slots`` workers."""
    loads = [0.0] * slots
    for d in sorted(durations, reverse=True):
        loads[loads.index(min(loads))] += d
    return max(loads)


def slurm_latency(out: Path) -> tuple[list[float], list[float]]:
    records = json.loads((out / "jobs.json").read_text())["jobs"]
    ids = ",".join(r["job_id"] for r in records)
    rows = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,Submit,Start,End", "-j", ids],
                          capture_output=True, text=True).stdout.split()
    when = {}
    for row in rows:
        job, *times = row.split("|")
        when[job] = [dt.datetime.fromisoformat(t).timestamp() for t in times]
    to_start = [when[r["job_id"]][1] - when[r["job_id"]][0] for r in records if r["job_id"] in when]
    to_seen = [r["seen"] - when[r["job_id"]][2] for r in records if r["job_id"] in when and r.get("seen")]
    return to_start, to_seen


def slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return state.returncode == 0 and bool(state.stdout.strip()) and "down" not in state.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="convlstm,predrnn,simvp,tau")
    parser.add_argument("--budget", default="2e11")
    parser.add_argument("--parallelism", type=int, default=2)
    args = parser.parse_args()
    models = args.models.split(",")
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("inline", "local", "slurm"):
            (root / name).mkdir()
        inline = compare(root / "inline", models, args.budget)
        local = compare(root / "local", models, args.budget, "--executor", "local", "--array-parallelism",
                        str(args.parallelism), "--cpus", "1")
        spans = job_spans(root / "local" / "cmp")
        ideal = makespan([b - a for a, b in spans], args.parallelism)
        table = Table(title=f"vpbench compare {' '.join(models)} --preset smoke --budget {args.budget}")
        for col in ("executor", "wall time [s]", "ratio to inline"):
            table.add_column(col)
        table.add_row("inline (one process)", f"{inline:.1f}", "1.00")
        table.add_row(f"local, {args.parallelism} jobs at a time, 1 thread each", f"{local:.1f}", f"{local / inline:.2f}")
        table.add_row("ideal: the jobs' own times on the slots, longest first", f"{ideal:.1f}", f"{ideal / inline:.2f}")
        console.print(table)
        console.print(f"local against ideal: {local / ideal:.2f}x (aim: within 1.10x); "
                      f"jobs ran {', '.join(f'{b - a:.1f}' for a, b in spans)} s each")
        if slurm_up():
            took = compare(root / "slurm", models, args.budget, "--executor", "slurm", "--cpus", "1")
            to_start, to_seen = slurm_latency(root / "slurm" / "cmp")
            console.print(f"slurm: {took:.1f} s ({took / inline:.2f}x inline); per job, submission to start "
                          f"median {statistics.median(to_start):.1f} s (max {max(to_start):.1f}), end to seen by the "
                          f"command median {statistics.median(to_seen):.1f} s (max {max(to_seen):.1f}); aim under 5 s")
        else:
            console.print("slurm: no cluster answers here (tools/slurm-local.sh start)")


if __name__ == "__main__":
    main()
