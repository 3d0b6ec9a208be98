"""Result sets: every evaluation of a run kept under the key of what defines it.

A run directory holds one result set per distinct evaluation, ``evals/<split>-<N>clips-<hash>/``,
where the hash covers the split, the clip count, the metrics and their versions, the samples
per clip and the model's prediction-only fields. A second evaluation with another definition
adds a set and never touches the others; the same definition again replaces its own set whole.

A set is written into a staging directory beside the sets and moved into place with renames
only when every file of it is written, so a crash or a full disk half-way leaves the previous
set whole and consistent (never results from one evaluation with a report from another). The
run's ``report.md`` is an index of its sets.

This module also reads and writes the files of a set (``results.csv``, ``results.json``,
``per_clip.npz``, ``horizon.png``, ``report.md``) and of a combined report.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from vpbench import io
from vpbench.errors import RunError, VPBenchError, one_line
from vpbench.protocols import member
from vpbench.rundir import RunDir

EVALS = RunDir.EVALS
_STAGING, _REPLACED = ".staging-", ".replaced-"


def eval_key(config: Any, model_cls: type, metrics: list, n_split: int, protocol: Any = None) -> dict[str, Any]:
    """What defines an evaluation (the name of its result set is derived from it). With a
    set-level metric (FVD), its resolved protocol (:class:`vpbench.evaluate.SetProtocol`) too,
    under ``sets``; keys without one are unchanged, so existing result sets keep their names."""
    from vpbench.config import to_dict
    from vpbench.evaluate import clips_scored

    predict = {f: to_dict(getattr(config.model, f)) for f in member(model_cls, "predict_fields")
               if hasattr(config.model, f)}
    return {"split": config.eval.split, "clips": clips_scored(n_split, config.eval.max_clips),
            "metrics": {m.name: str(getattr(m, "version", "")) for m in sorted(metrics, key=lambda m: m.name)},
            "samples": config.eval.samples, "predict": predict,
            **({"sets": protocol.describe()} if protocol is not None else {})}


def set_name(key: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{key['split']}-{key['clips']}clips-{digest}"


@contextlib.contextmanager
def staged(run_dir: Path, name: str) -> Iterator[Path]:
    """A staging directory for the files of result set ``name``; on success it becomes
    ``evals/<name>`` (replacing a set of the same name), on any error it is removed."""
    evals = RunDir(run_dir).evals
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
    evals = RunDir(run_dir).evals
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


def write_set(out_dir: Path, table: pd.DataFrame, per_clip: dict[str, np.ndarray], *, provenance: dict[str, Any],
              config: dict[str, Any], key: dict[str, Any], title: str, examples: int,
              features: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
    """The files of one result set in ``out_dir``: results.csv, results.json (provenance, config,
    evaluation key, rows), per_clip.npz, horizon.png and report.md (linking ``examples`` strips);
    with set-level metrics, features.npz (``NAME.pred`` / ``NAME.true``: ``(clips, D)`` float32,
    what a paired comparison of set scores needs)."""
    from vpbench.report.plots import horizon_plot

    io.write_text(out_dir / "results.csv", table.to_csv(index=False))
    io.write_json(out_dir / "results.json", {
        "provenance": provenance, "config": config, "evaluation": key,
        "rows": json.loads(table.to_json(orient="records")),
    })
    with io.atomic_path(out_dir / "per_clip.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **per_clip)
    if features:
        with io.atomic_path(out_dir / FEATURES) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{f"{name}.{part}": arr.astype(np.float32)
                                for name, pair in features.items() for part, arr in zip(("pred", "true"), pair)})
    horizon_plot(table, out_dir / "horizon.png", title=title)
    write_set_report(out_dir, table, provenance, config, examples, key)


FEATURES = "features.npz"


def write_set_report(out_dir: Path, table: pd.DataFrame, provenance: dict[str, Any], config: dict[str, Any] | None,
                     examples: int, key: dict[str, Any] | None = None) -> None:
    from vpbench.report.markdown import example_links, set_metric_section, write_report

    sections = [set_metric_section(key["sets"], provenance.get("set_metrics", {}))] if key and key.get("sets") else []
    write_report(out_dir / "report.md", "vpbench results", provenance, table=table, media=example_links(examples),
                 config=config, sections=sections)


def read_features(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The set-metric features of a result set (or of a run directory's latest set): ``{metric: (pred, true)}``;
    empty when it has none."""
    npz = find_set(Path(path)) / FEATURES
    if not npz.is_file():
        return {}
    with np.load(npz) as data:
        names = {k.rsplit(".", 1)[0] for k in data.files}
        return {n: (data[f"{n}.pred"].astype(np.float64), data[f"{n}.true"].astype(np.float64)) for n in names}


def rerender(path: Path, name: str | None = None) -> tuple[Path, pd.DataFrame]:
    """Draw the plot and write the report.md of a result set again from its results.csv/json
    (``path`` and ``name`` as for :func:`find_set`; a run directory's index too); the set and its table."""
    from vpbench.report.plots import horizon_plot

    where = find_set(Path(path), name)
    table, meta = read_results(where)
    if composite(where):  # its report has paired differences only its own command can recompute
        return where, table
    horizon_plot(table, where / "horizon.png")
    examples = len(list((where / "examples").glob("clip*.png")))
    write_set_report(where, table, meta.get("provenance", {}), meta.get("config"), examples, meta.get("evaluation"))
    if where != Path(path):
        write_index(Path(path))
    return where, table


def composite(where: Path) -> str | None:
    """``"comparison"`` or ``"ablation"`` for a directory written by ``compare`` or ``ablate``, else None."""
    if (Path(where) / "paired.csv").is_file():
        return "comparison"
    if (Path(where) / "differences.csv").is_file():
        return "ablation"
    return None


def _distinct_rows(tables: list[pd.DataFrame], found: list[Path]) -> list[pd.DataFrame]:
    """The tables of several result sets, with ``variant`` naming the source where the same
    model and variant appear in more than one (so each row of the combined table stays one row)."""
    keys = ["model", "variant", "dataset", "split", "metric", "horizon"]
    seen: dict[tuple, int] = {}
    clash: set[int] = set()
    for i, table in enumerate(tables):
        for key in set(map(tuple, table[keys].astype(str).itertuples(index=False))):
            if key in seen and seen[key] != i:
                clash |= {i, seen[key]}
            seen.setdefault(key, i)
    out = []
    for i, (table, where) in enumerate(zip(tables, found)):
        if i in clash:
            table = table.assign(variant=table["variant"].astype(str) + f" ({where.name})")
        out.append(table)
    return out


def write_combined(out_dir: Path, paths: list[Path], name: str | None = None) -> list[tuple[Path, pd.DataFrame]]:
    """One results.csv, horizon.png and report.md in ``out_dir`` over the result sets of ``paths``;
    each set with its table."""
    from vpbench.report.markdown import HORIZON_SECTION, section, write_report
    from vpbench.report.plots import horizon_plot

    found = [find_set(Path(p), name) for p in paths]
    tables, metas = zip(*(read_results(where) for where in found))
    tables = _distinct_rows(list(tables), found)
    combined = pd.concat(tables, ignore_index=True)
    io.write_text(out_dir / "results.csv", combined.to_csv(index=False))
    horizon_plot(combined, out_dir / "horizon.png")
    sources = section("Sources", f"Combined from {len(found)} result set(s); how this was made is the first one's.",
                      "\n".join(f"- `{where}`: `{meta.get('provenance', {}).get('command', '?')}`"
                                for where, meta in zip(found, metas)))
    write_report(out_dir / "report.md", "vpbench combined report", metas[0].get("provenance", {}), table=combined,
                 sections=[sources], media=HORIZON_SECTION)
    return list(zip(found, tables))


def read_results(path: str | Path, name: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The tidy table and provenance/config (``results.json``) of a result set: ``path`` is the
    set itself, a compare or ablation directory, or a run directory (then its set ``name``,
    else the latest)."""
    where = find_set(Path(path), name)
    try:
        table = pd.read_csv(where / "results.csv", dtype={k: str for k in ("horizon", "model_version", "dataset_version",
                                                                          "metric_version")})
        if not {"model", "metric", "value", "horizon"} <= set(table.columns):
            raise ValueError("columns model, metric, horizon, value are missing")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RunError(f"{where / 'results.csv'} is corrupt ({one_line(exc)}); re-evaluate the run with `vpbench eval`") from None
    return table, _read_meta(where / "results.json")


def _read_meta(path: Path) -> dict[str, Any]:
    """A results.json, checked to have the shape that the reports read (one clear line where it has not)."""
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is corrupt ({one_line(exc)}); re-evaluate the run with `vpbench eval`") from None

    def need(ok: bool, where: str, value: Any, kind: str = "an object") -> None:
        if not ok:
            what = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean",
                    type(None): "null"}.get(type(value), type(value).__name__)
            raise RunError(f"{path} is not a vpbench results file ({where} is {what}, not {kind}); "
                           "re-evaluate the run with `vpbench eval`")

    need(isinstance(meta, dict), "its top level", meta)
    for part, inner in (("provenance", ("versions", "plugins", "dataset", "set_metrics")), ("evaluation", ("predict", "sets")),
                        ("config", ())):
        value = meta.get(part)
        if part not in meta or (part == "config" and value is None):
            continue
        need(isinstance(value, dict), f"'{part}'", value)
        for key in inner:
            need(isinstance(value.get(key, {}), dict), f"'{part}.{key}'", value.get(key))
    for name, info in meta.get("provenance", {}).get("set_metrics", {}).items():
        need(isinstance(info, dict), f"'provenance.set_metrics.{name}'", info)
    metrics = meta.get("evaluation", {}).get("metrics", [])
    need(isinstance(metrics, (list, dict)) and all(isinstance(m, str) for m in metrics), "'evaluation.metrics'", metrics,
         "a list of names")
    return meta


def read_per_clip(path: str | Path) -> dict[str, np.ndarray]:
    """Per-clip scores of a result set (or of a run directory's latest set)."""
    where = find_set(Path(path))
    npz = where / "per_clip.npz"
    if not npz.is_file():
        raise RunError(f"{where} has no per_clip.npz; re-evaluate it with `vpbench eval`")
    with np.load(npz) as data:
        return {k: data[k] for k in data.files}


def write_index(run_dir: Path) -> None:
    """The run's report.md: what it is, what training cost, and every result set with a link,
    the latest one's main table inline."""
    from vpbench.report.markdown import section, write_report
    from vpbench.report.tables import markdown_table, summary

    found = sets(run_dir)
    rows = []
    latest = None
    for p in found:
        meta = _read_meta(p / "results.json")
        key = meta.get("evaluation", {})
        rows.append([f"[{p.name}]({EVALS}/{p.name}/report.md)", str(key.get("split", "?")), str(key.get("clips", "?")),
                     ", ".join(key.get("metrics", {})), str(key.get("samples", "?")),
                     ", ".join(f"{k}={v}" for k, v in key.get("predict", {}).items()) or "-",
                     str(meta.get("provenance", {}).get("created", "?"))])
        latest = (p, meta)
    blocks = [section("Result sets", "Each evaluation of this run, kept under the key of what defines it (split, clips, "
                      "metrics, samples, prediction-only fields); the newest is last.",
                      markdown_table(["result set", "split", "clips", "metrics", "samples", "prediction fields",
                                      "created"], rows))]
    if latest is not None:
        table = pd.read_csv(latest[0] / "results.csv", dtype={"horizon": str})
        headers, body = summary(table, kind="quality")
        blocks.append(section(f"Latest results ({latest[0].name})", markdown_table(headers, body)))
    write_report(RunDir(run_dir).report, f"vpbench run {Path(run_dir).name}",
                 latest[1].get("provenance", {}) if latest is not None else None, sections=blocks)


def made_with(run_dir: Path, kind: str) -> str:
    """The distribution of a run's ``kind`` plugin (``model`` or ``dataset``) as its latest result set
    recorded it; ``""`` when there is no readable record."""
    try:
        prov = json.loads((find_set(run_dir) / "results.json").read_text()).get("provenance", {})
        return prov.get("plugins", {}).get(f"{kind}_distribution", "")
    except (VPBenchError, OSError, ValueError):
        return ""
