"""Behaviour unchanged, shown: every registered model's smoke run, before and after a change.

    python tools/smoke_parity.py run OUT [--source DIR] [--models a,b]   # train + evaluate each model
    python tools/smoke_parity.py diff BEFORE AFTER                        # compare the results.csv values

``run`` calls ``vpbench run MODEL --preset smoke --seed 0`` for every registered model (speed
timing off, so every column is deterministic) into ``OUT/MODEL``. ``--source DIR`` runs the
vpbench of another checkout (e.g. ``git worktree add /tmp/base fd408e1``) by putting it and
its ``plugins/`` first on ``PYTHONPATH``. ``diff`` compares every (model, metric, horizon)
value, CI bound and count of the two trees' latest result sets exactly (measured times aside) and prints a table;
its exit status is 1 when anything differs or is missing.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

KEY = ("model", "dataset", "split", "metric", "horizon", "seed")
TIMED = {"train_time", "latency", "throughput"}  # measured wall time: differs from run to run, never compared
VALUES = ("value", "ci_low", "ci_high", "n_clips")


def registered_models(source: Path | None) -> list[str]:
    code = "from vpbench.plugins import get_harness; print(','.join(get_harness().models.names()))"
    out = subprocess.run([sys.executable, "-c", code], env=_env(source), check=True, capture_output=True, text=True)
    return out.stdout.strip().split(",")


def _env(source: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if source is not None:
        paths = [str(source.resolve()), str((source / "plugins").resolve())]
        env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run(out: Path, source: Path | None, models: list[str]) -> int:
    failed = 0
    for name in models:
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "vpbench", "run", name, "--preset", "smoke", "--seed", "0",
               "--set", "eval.speed=false", "--out", str(out / name)]
        proc = subprocess.run(cmd, env=_env(source), capture_output=True, text=True)
        status = "ok" if proc.returncode == 0 else f"FAILED ({proc.returncode}): {proc.stderr.strip()[-300:]}"
        failed += proc.returncode != 0
        print(f"{name:12s} {time.perf_counter() - start:7.1f} s  {status}", flush=True)
    return 1 if failed else 0


def latest_results(run_dir: Path) -> dict[tuple, tuple]:
    sets = sorted(run_dir.glob("evals/*/results.csv"), key=lambda p: p.stat().st_mtime)
    if not sets:
        return {}
    with sets[-1].open(newline="") as fh:
        return {tuple(row[k] for k in KEY): tuple(row[k] for k in VALUES) for row in csv.DictReader(fh)
                if row["metric"] not in TIMED}


def diff(before: Path, after: Path) -> int:
    models = sorted({p.name for p in before.iterdir() if p.is_dir()} | {p.name for p in after.iterdir() if p.is_dir()})
    bad = 0
    for name in models:
        a, b = latest_results(before / name), latest_results(after / name)
        if not a or not b:
            print(f"{name:12s} missing in {'before' if not a else 'after'}")
            bad += 1
            continue
        changed = [k for k in a.keys() | b.keys() if a.get(k) != b.get(k)]
        print(f"{name:12s} {len(a):4d} rows  " + ("identical" if not changed else f"{len(changed)} differ, e.g. "
                                                   f"{sorted(changed)[0]}: {a.get(sorted(changed)[0])} -> {b.get(sorted(changed)[0])}"))
        bad += bool(changed)
    print(f"{len(models) - bad} of {len(models)} models give identical results")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--source", type=Path, default=None)
    r.add_argument("--models", default=None, help="comma-separated (default: every registered model)")
    d = sub.add_parser("diff")
    d.add_argument("before", type=Path)
    d.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.cmd == "diff":
        return diff(args.before, args.after)
    models = args.models.split(",") if args.models else registered_models(args.source)
    return run(args.out, args.source, models)


if __name__ == "__main__":
    sys.exit(main())
