"""Result sets: every evaluation of a run kept under the key of what defines it.

A run directory holds one result set per distinct evaluation, ``evals/<split>-<N>clips-<hash>/``,
where the hash covers the split, the clip count, the metrics and their versions, the samples
per clip and the model's prediction-only fields. A second evaluation with another definition
adds a set and never touches the others; the same definition again replaces its own set whole.

A set is written into a staging directory beside the sets and moved into place with renames
only when every file of it is written, so a crash or a full disk half-way leaves the previous
set whole and consistent (never results from one evaluation with a report from another). The
run's ``report.md`` is an index of its sets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from vpbench import io
from vpbench.errors import RunError
from vpbench.protocols import member

EVALS = "evals"
_STAGING, _REPLACED = ".staging-", ".replaced-"


def eval_key(config: Any, model_cls: type, metrics: list, n_split: int) -> dict[str, Any]:
    """What defines an evaluation (the name of its result set is derived from it)."""
    from vpbench.config import to_dict
    from vpbench.evaluate import clips_scored

    predict = {f: to_dict(getattr(config.model, f)) for f in member(model_cls, "predict_fields")
               if hasattr(config.model, f)}
    return {"split": config.eval.split, "clips": clips_scored(n_split, config.eval.max_clips),
            "metrics": {m.name: str(getattr(m, "version", "")) for m in sorted(metrics, key=lambda m: m.name)},
            "samples": config.eval.samples, "predict": predict}


def set_name(key: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{key['split']}-{key['clips']}clips-{digest}"


@contextlib.contextmanager
def staged(run_dir: Path, name: str) -> Iterator[Path]:
    """A staging directory for the files of result set ``name``; on success it becomes
    ``evals/<name>`` (replacing a set of the same name), on any error it is removed."""
    evals = Path(run_dir) / EVALS
    recover(evals)
    staging = evals / f"{_STAGING}{name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    target = evals / name
    replaced = evals / f"{_REPLACED}{name}"
    if target.exists():
        os.replace(target, replaced)
    os.replace(staging, target)
    io._fsync_dir(evals)
    shutil.rmtree(replaced, ignore_errors=True)


def recover(evals: Path) -> None:
    """Finish what a crash between the two renames of :func:`staged` left: a replaced set
    whose new version never arrived is put back; stale staging directories are removed."""
    if not evals.is_dir():
        return
    for path in evals.iterdir():
        if path.name.startswith(_REPLACED):
            target = evals / path.name[len(_REPLACED):]
            if target.exists():
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.replace(path, target)
        elif path.name.startswith(_STAGING):
            pid = path.name.rsplit("-", 1)[-1]
            if not (pid.isdigit() and _alive(int(pid))):
                shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sets(run_dir: Path) -> list[Path]:
    """The complete result sets of a run, oldest first."""
    evals = Path(run_dir) / EVALS
    recover(evals)
    if not evals.is_dir():
        return []
    found = [p for p in evals.iterdir() if not p.name.startswith(".") and (p / "results.json").is_file()]
    return sorted(found, key=lambda p: ((p / "results.json").stat().st_mtime_ns, p.name))


def find_set(path: Path, name: str | None = None) -> Path:
    """The directory holding ``results.csv``: ``path`` itself (a result set, a compare or an
    ablation directory), or a result set of the run directory ``path`` (``name``, else the latest)."""
    path = Path(path)
    if name is None and (path / "results.csv").is_file():
        return path
    found = sets(path)
    if name is not None:
        for p in found:
            if p.name == name:
                return p
        raise RunError(f"{path} has no result set '{name}'" + (f"; it has {', '.join(p.name for p in found)}"
                                                                 if found else ""))
    if not found:
        raise RunError(f"{path} has no results yet; run `vpbench eval {path}` first")
    return found[-1]


def write_index(run_dir: Path) -> None:
    """The run's report.md: what it is, what training cost, and every result set with a link,
    the latest one's main table inline."""
    import pandas as pd

    from vpbench.report.markdown import provenance_block
    from vpbench.report.tables import markdown_table, summary

    found = sets(run_dir)
    lines = [f"# vpbench run {Path(run_dir).name}", ""]
    rows = []
    latest = None
    for p in found:
        meta = json.loads((p / "results.json").read_text())
        key = meta.get("evaluation", {})
        rows.append([f"[{p.name}]({EVALS}/{p.name}/report.md)", str(key.get("split", "?")), str(key.get("clips", "?")),
                     ", ".join(key.get("metrics", {})), str(key.get("samples", "?")),
                     ", ".join(f"{k}={v}" for k, v in key.get("predict", {}).items()) or "-",
                     str(meta.get("provenance", {}).get("created", "?"))])
        latest = (p, meta)
    if latest is not None:
        lines += ["## How this was made", provenance_block(latest[1].get("provenance", {})), ""]
    lines += ["## Result sets", "", "Each evaluation of this run, kept under the key of what defines it "
              "(split, clips, metrics, samples, prediction-only fields); the newest is last.", "",
              markdown_table(["result set", "split", "clips", "metrics", "samples", "prediction fields", "created"], rows),
              ""]
    if latest is not None:
        table = pd.read_csv(latest[0] / "results.csv", dtype={"horizon": str})
        headers, body = summary(table, kind="quality")
        lines += [f"## Latest results ({latest[0].name})", "", markdown_table(headers, body), ""]
    io.write_text(Path(run_dir) / "report.md", "\n".join(lines))
