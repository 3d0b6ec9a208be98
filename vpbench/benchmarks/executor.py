"""What running a comparison as jobs costs over running it inline.

    python -m vpbench.benchmarks.executor [--repeats 3] [--models convlstm,copylast] [--budget 5e10]

Runs the same ``vpbench compare`` (``--preset smoke``, a small training budget) with
``--executor inline``, ``local`` and, when a SLURM answers (``tools/slurm-local.sh start``),
``slurm``, each time in a fresh directory, so every run trains from scratch. Prints the median
wall time of each and its ratio to inline: the fixed cost of a job (a Python and torch start-up
per job, the scheduler's latency, the state polls), which a real training of minutes or hours
makes small, and the gain of running the models side by side where cores are free.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def timed(kind: str, models: list[str], budget: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vpbench.toml").write_text('[executor]\npoll = 0.5\ntime = "20m"\n')
        cmd = [sys.executable, "-m", "vpbench", "compare", *models, "--preset", "smoke", "--budget", budget,
               "--executor", kind, "--out", "cmp"]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        took = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"{kind}: {' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return took


def slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return state.returncode == 0 and bool(state.stdout.strip()) and "down" not in state.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="convlstm,copylast")
    parser.add_argument("--budget", default="5e10")
    args = parser.parse_args()
    models = args.models.split(",")
    kinds = ["inline", "local"] + (["slurm"] if slurm_up() else [])
    times = {k: [] for k in kinds}
    for _ in range(args.repeats):  # interleaved, so drift in the machine's load hits every kind alike
        for kind in kinds:
            times[kind].append(timed(kind, models, args.budget))
    table = Table(title=f"vpbench compare {' '.join(models)} --preset smoke --budget {args.budget} "
                        f"(median of {args.repeats})")
    for col in ("executor", "wall time [s]", "ratio to inline", "runs [s]"):
        table.add_column(col)
    base = statistics.median(times["inline"])
    for kind in kinds:
        med = statistics.median(times[kind])
        table.add_row(kind, f"{med:.1f}", f"{med / base:.2f}", ", ".join(f"{t:.1f}" for t in times[kind]))
    Console().print(table)
    if "slurm" not in kinds:
        Console().print("slurm: no cluster answers here (tools/slurm-local.sh start)")


if __name__ == "__main__":
    main()
