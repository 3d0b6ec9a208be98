"""A static leaderboard site from comparisons, ablations and runs (``vpbench site``).

The site is plain files: ``index.html`` lists the protocols found (dataset, frames, resolution,
split, scored clips), and each protocol has a page with one row per model of every source
measured under it, a table that sorts by any column and filters by model and budget, the
per-horizon plots, paired-difference tables, example strips and GIFs, scaling curves where a
source has them, and each source's provenance with a link to its report. A protocol is the
dataset, its whole data config, the split and the number of clips scored, so rows measured on
different clips never share a table. It opens from ``file://`` and from any static host: no
server, no network, the script inline.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vpbench.errors import RunError, one_line
from vpbench.report.tables import fmt_cell, fmt_value
from vpbench.rundir import RunDir

COST_METRICS = ("params", "params_trainable", "gflops", "gmacs", "latency", "throughput", "train_steps", "train_flops",
                "train_time")
_PROVENANCE = re.compile(r"^- ([^:]+): (.*)$")


@dataclass
class Source:
    """One comparison, ablation or run directory, read back from its files."""

    path: Path
    kind: str  # comparison | ablation | run
    table: pd.DataFrame
    provenance: dict[str, str]
    configs: dict[str, dict]  # by model (comparison, run) or variant (ablation)
    paired: pd.DataFrame | None = None
    images: list[Path] = field(default_factory=list)  # horizon and scaling plots
    examples: list[Path] = field(default_factory=list)
    report: Path | None = None

    @property
    def slug(self) -> str:
        digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:6]
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '-', self.path.resolve().name)}-{digest}"


def read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"horizon": str, "variant": str})
    except (ValueError, OSError) as exc:
        raise RunError(f"{path} cannot be read as a results table ({one_line(exc)}); regenerate it with the command "
                       "at the top of its report.md") from None


def report_provenance(report: Path) -> dict[str, str]:
    """The ``- key: value`` lines of a report's "How this was made" section."""
    out: dict[str, str] = {}
    if not report.is_file():
        return out
    inside = False
    for line in report.read_text(errors="replace").splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## How this was made"
            continue
        match = _PROVENANCE.match(line) if inside else None
        if match:
            out[match.group(1).strip()] = match.group(2).strip().strip("`")
    return out


def report_configs(report: Path) -> dict[str, dict]:
    """The JSON block of a report's Config section (every variant's resolved config)."""
    if not report.is_file():
        return {}
    text = report.read_text(errors="replace")
    match = re.search(r"^## Config\s*```json\n(.*?)\n```", text, re.S | re.M)
    try:
        data = json.loads(match.group(1)) if match else {}
    except ValueError:
        return {}
    if isinstance(data, dict) and "model_name" in data:  # one run's config
        return {str(data.get("model_name")): data}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def load_source(path: Path) -> Source:
    """The source in directory ``path``: a comparison (``results.json`` with its runs), an
    ablation (``differences.csv``) or a run directory (``config.json`` and result sets)."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path} is not a directory; give comparison, ablation or run directories (or a folder of them)")
    report = path / "report.md"
    plots = sorted(path.glob("horizon*.png")) + sorted(path.glob("scaling*.png"))
    examples = sorted((path / "examples").glob("*.png")) + sorted((path / "examples").glob("*.gif"))
    if RunDir(path).config.is_file() and RunDir(path).evals.is_dir():
        from vpbench import results

        where = results.find_set(path)
        config = _json(RunDir(path).config)
        model = str(config.get("model_name", "?"))
        set_examples = sorted((where / "examples").glob("*.png")) + sorted((where / "examples").glob("*.gif"))
        return Source(path, "run", read_csv(where / "results.csv"), report_provenance(where / "report.md"),
                      {model: config}, None, sorted(where.glob("horizon*.png")), set_examples, where / "report.md")
    if not (path / "results.csv").is_file():
        raise RunError(f"{path} holds no results.csv: not a comparison, ablation or run directory of vpbench")
    table = read_csv(path / "results.csv")
    if (path / "differences.csv").is_file():
        return Source(path, "ablation", table, report_provenance(report), report_configs(report),
                      read_csv(path / "differences.csv"), plots, examples, report)
    data = _json(path / "results.json") if (path / "results.json").is_file() else {}
    configs = data.get("configs") if isinstance(data.get("configs"), dict) else report_configs(report)
    paired = read_csv(path / "paired.csv") if (path / "paired.csv").is_file() else None
    return Source(path, "comparison", table, report_provenance(report), configs, paired, plots, examples, report)


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise RunError(f"{path} is not valid JSON ({one_line(exc)})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} holds a {type(data).__name__}, not a mapping; it is not a vpbench file")
    return data


def _is_source(path: Path) -> bool:
    return (path / "results.csv").is_file() or RunDir(path).config.is_file()


def _inner(path: Path, depth: int = 2) -> list[Path]:
    """The sources inside folder ``path`` down to ``depth`` levels: ``reports/`` holds comparisons
    and ladders, and a ladder holds one comparison or ablation per budget (``budget-<B>/``)."""
    found = []
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        if _is_source(child):
            found.append(child)
        elif depth > 1:
            found += _inner(child, depth - 1)
    return found


def find_sources(paths: list[Path]) -> list[Source]:
    """Every source named; a folder of sources (``reports/``, a ladder) expanded to the sources in it."""
    out: list[Source] = []
    for path in paths:
        path = Path(path)
        if path.is_dir() and not _is_source(path):
            inner = _inner(path)
            if inner:
                out += [load_source(p) for p in inner]
                continue
        out.append(load_source(path))
    if not out:
        raise RunError("no comparison, ablation or run directories given")
    return out


# -- protocols and rows ------------------------------------------------------------------
@dataclass(frozen=True)
class Protocol:
    """What makes two rows comparable: the dataset, its data config (canonical JSON), the split
    and the clips scored. Frames and resolution are shown, not compared (they follow from the
    config; older reports do not state the resolution)."""

    dataset: str
    data: str
    split: str
    clips: int
    frames: str = field(default="?", compare=False)
    resolution: str = field(default="?", compare=False)

    @property
    def slug(self) -> str:
        digest = hashlib.sha256(json.dumps([self.dataset, self.data, self.split, self.clips]).encode()).hexdigest()[:8]
        return f"{re.sub(r'[^A-Za-z0-9_-]+', '-', self.dataset)}-{self.split}-{self.clips}-{digest}"


def _config_for(source: Source, model: str, variant: str) -> dict:
    return source.configs.get(variant) or source.configs.get(model) or next(iter(source.configs.values()), {})


def _resolution(source: Source) -> str:
    for key in ("protocol", "dataset protocol"):
        found = re.search(r"(\d+x\d+x\d+|\d+x\d+)", source.provenance.get(key, ""))
        if found:
            return found.group(1)
    return "?"


def protocol_of(source: Source, model: str, variant: str, rows: pd.DataFrame) -> Protocol:
    config = _config_for(source, model, variant)
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    frames = f"{data['n_in']} -> {data['n_out']}" if "n_in" in data and "n_out" in data else "?"
    clips = int(pd.to_numeric(rows["n_clips"], errors="coerce").max()) if "n_clips" in rows else 0
    return Protocol(str(rows["dataset"].iloc[0]), json.dumps(data, sort_keys=True), str(rows["split"].iloc[0]), clips,
                    frames, _resolution(source))


def budget_label(config: dict, costs: dict[str, float]) -> str:
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    if "train_flops" not in costs:
        return "not recorded"
    if costs["train_flops"] == 0:
        return "no training"
    if train.get("budget"):
        return f"budget {train['budget']}"
    if train.get("steps"):
        return "steps " + ",".join(map(str, train["steps"]))
    return "preset steps"


@dataclass
class Row:
    model: str
    variant: str
    source: Source
    metrics: dict[str, tuple[float, float, float, bool, str]]  # name -> value, lo, hi, higher_is_better, unit
    costs: dict[str, float]
    budget: str


def rows_by_protocol(sources: list[Source]) -> dict[Protocol, list[Row]]:
    out: dict[Protocol, list[Row]] = {}
    for source in sources:
        table = source.table
        if table.empty:
            continue
        overall = table[table["horizon"].astype(str) == "all"]
        for (model, variant), rows in overall.groupby(["model", "variant"], sort=False):
            quality = rows[~rows["metric"].isin(COST_METRICS)]
            if quality.empty:
                continue
            metrics = {r.metric: (float(r.value), float(r.ci_low), float(r.ci_high), str(r.higher_is_better) == "True",
                                  str(r.unit) if pd.notna(r.unit) else "") for r in quality.itertuples()}
            costs = {r.metric: float(r.value) for r in rows[rows["metric"].isin(COST_METRICS)].itertuples()
                     if pd.notna(r.value)}
            key = protocol_of(source, str(model), str(variant), quality)
            known = next((k for k in out if k == key), None)
            if known is not None and key.resolution.count("x") > known.resolution.replace("?", "").count("x"):
                out[key] = out.pop(known)  # the same protocol, now with its resolution stated
            budget = budget_label(_config_for(source, str(model), str(variant)), costs)
            out.setdefault(key, []).append(Row(str(model), str(variant), source, metrics, costs, budget))
    return out


# -- html --------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3;cursor:pointer;user-select:none}td:first-child,th:first-child{text-align:left}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.t{text-align:left}td.t a{white-space:nowrap}
img{max-width:100%;border:1px solid #ddd;margin:4px}.note{color:#555}details{margin:0.5em 0}"""

_SCRIPT = """
function cellValue(row, i) {
  const cell = row.cells[i];
  const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
  const number = parseFloat(raw);
  return isNaN(number) ? raw.toLowerCase() : number;
}
function sortBy(th) {
  const table = th.closest('table'), body = table.tBodies[0];
  const index = Array.from(th.parentNode.children).indexOf(th);
  const ascending = th.getAttribute('aria-sort') !== 'ascending';
  for (const other of th.parentNode.children) other.removeAttribute('aria-sort');
  th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = cellValue(a, index), y = cellValue(b, index);
    const missingX = x === 'n/a', missingY = y === 'n/a';
    if (missingX !== missingY) return missingX ? 1 : -1;
    if (x < y) return ascending ? -1 : 1;
    if (x > y) return ascending ? 1 : -1;
    return 0;
  });
  for (const row of rows) body.appendChild(row);
}
function applyFilters() {
  const model = document.getElementById('filter-model').value;
  const budget = document.getElementById('filter-budget').value;
  for (const row of document.querySelectorAll('#leaderboard tbody tr')) {
    const show = (!model || row.dataset.model === model) && (!budget || row.dataset.budget === budget);
    row.hidden = !show;
  }
}
document.addEventListener('DOMContentLoaded', () => {
  for (const th of document.querySelectorAll('table.sortable th')) th.addEventListener('click', () => sortBy(th));
  for (const id of ['filter-model', 'filter-budget']) {
    const select = document.getElementById(id);
    if (select) select.addEventListener('change', applyFilters);
  }
});
"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<link rel=\"icon\" href=\"data:,\"><style>{_STYLE}</style><script>{_SCRIPT}</script></head>"
            f"<body>{body}</body></html>\n")


def _select(id_: str, label: str, values: list[str]) -> str:
    options = "".join(f"<option value=\"{_e(v)}\">{_e(v)}</option>" for v in values)
    return f"<label>{_e(label)} <select id=\"{id_}\"><option value=\"\">all</option>{options}</select></label> "


def _leaderboard(rows: list[Row]) -> str:
    metrics: list[str] = []
    for row in rows:
        metrics += [m for m in row.metrics if m not in metrics]
    heads = ["model", "variant", "source"]
    for m in metrics:
        higher = next(r.metrics[m][3] for r in rows if m in r.metrics)
        heads.append(f"{m} {'↑' if higher else '↓'}")
    heads += ["budget", "train FLOPs", "train time [s]", "params", "GMACs", "device", "revision", "report"]
    out = ["<table id=\"leaderboard\" class=\"sortable\"><thead><tr>"
           + "".join(f"<th>{_e(h)}</th>" for h in heads) + "</tr></thead><tbody>"]
    for row in rows:
        prov = row.source.provenance
        cells = [f"<td>{_e(row.model)}</td>", f"<td class=\"t\">{_e(row.variant)}</td>",
                 f"<td class=\"t\"><a href=\"#src-{row.source.slug}\">{_e(row.source.path.name)}</a></td>"]
        for m in metrics:
            if m not in row.metrics:
                cells.append("<td data-sort=\"n/a\">n/a</td>")
                continue
            value, lo, hi, _, unit = row.metrics[m]
            text = fmt_cell(value, lo, hi, unit)
            cells.append(f"<td data-sort=\"{value if value == value else 'n/a'}\">{_e(text)}</td>")
        cells.append(f"<td class=\"t\">{_e(row.budget)}</td>")
        for name, unit in (("train_flops", "FLOPs"), ("train_time", ""), ("params", "count"), ("gmacs", "")):
            value = row.costs.get(name)
            cells.append(f"<td data-sort=\"{value if value is not None else 'n/a'}\">{_e(fmt_value(value, unit))}</td>")
        cells += [f"<td class=\"t\">{_e(prov.get('device', '?').split(',')[0])}</td>",
                  f"<td class=\"t\"><code>{_e(prov.get('git revision', '?')[:7])}</code></td>",
                  f"<td><a href=\"{row.source.slug}/report.html\">report</a></td>"]
        out.append(f"<tr data-model=\"{_e(row.model)}\" data-budget=\"{_e(row.budget)}\">{''.join(cells)}</tr>")
    return "".join(out) + "</tbody></table>"


def _frame_table(frame: pd.DataFrame) -> str:
    heads = list(frame.columns)
    body = "".join("<tr>" + "".join(f"<td data-sort=\"{_e(v)}\">{_e(fmt_value(v) if isinstance(v, float) else v)}</td>"
                                    for v in rec) + "</tr>" for rec in frame.itertuples(index=False))
    return (f"<table class=\"sortable\"><thead><tr>{''.join(f'<th>{_e(h)}</th>' for h in heads)}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _copy(src: Path, out: Path, slug: str) -> str:
    target = out / slug / src.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    return f"{slug}/{src.name}"


def _source_section(source: Source, out: Path) -> str:
    slug = source.slug
    parts = [f"<section id=\"src-{slug}\"><h2>{_e(source.kind)}: {_e(source.path.name)}</h2>"]
    parts.append("<details open><summary>How this was made</summary><ul>" + "".join(
        f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in source.provenance.items()) + "</ul></details>")
    if source.report is not None and source.report.is_file():
        (out / slug).mkdir(parents=True, exist_ok=True)
        (out / slug / "report.html").write_text(_page(f"{source.path.name}: report", f"<pre>{_e(source.report.read_text())}</pre>"))
        parts.append(f"<p><a href=\"{slug}/report.html\">the full report</a></p>")
    for image in source.images:
        parts.append(f"<figure><img src=\"{_e(_copy(image, out, slug))}\" alt=\"{_e(image.stem)}\"></figure>")
    if source.paired is not None and not source.paired.empty:
        parts.append("<h3>Paired differences (same clips, 95% bootstrap CI)</h3>" + _frame_table(source.paired))
    if source.examples:
        parts.append("<h3>Predictions on the same clips</h3>" + "".join(
            f"<img src=\"{_e(_copy(p, out, slug))}\" alt=\"{_e(p.name)}\">" for p in source.examples))
    return "".join(parts) + "</section>"


def build_site(paths: list[Path], out: Path) -> dict[Protocol, list[Row]]:
    """Write the site for ``paths`` into ``out`` (its own files replaced, nothing else touched)."""
    sources = find_sources(paths)
    protocols = rows_by_protocol(sources)
    if not protocols:
        raise RunError("the sources hold no scored rows (results.csv without quality metrics)")
    out.mkdir(parents=True, exist_ok=True)
    index = ["<h1>vpbench leaderboard</h1><p class=\"note\">One table per protocol: the dataset, its data config, the "
             "split and the clips scored. Rows of different protocols are never compared.</p>",
             "<table id=\"protocols\" class=\"sortable\"><thead><tr><th>dataset</th><th>frames</th><th>resolution</th>"
             "<th>split</th><th>clips</th><th>models</th><th>sources</th></tr></thead><tbody>"]
    for protocol, rows in sorted(protocols.items(), key=lambda kv: (kv[0].dataset, kv[0].clips)):
        page = f"{protocol.slug}.html"
        names = sorted({r.source.path.name for r in rows})
        index.append(f"<tr><td><a href=\"{page}\">{_e(protocol.dataset)}</a></td><td>{_e(protocol.frames)}</td>"
                     f"<td>{_e(protocol.resolution)}</td><td>{_e(protocol.split)}</td><td>{protocol.clips}</td>"
                     f"<td>{len({r.model for r in rows})}</td><td>{_e(', '.join(names))}</td></tr>")
        seen: list[Source] = []
        for r in rows:
            if r.source not in seen:
                seen.append(r.source)
        body = [f"<p><a href=\"index.html\">all protocols</a></p><h1>{_e(protocol.dataset)}: {_e(protocol.frames)} frames, "
                f"{_e(protocol.resolution)}, {_e(protocol.split)} split, {protocol.clips} clips</h1>",
                "<p>", _select("filter-model", "model", sorted({r.model for r in rows})),
                _select("filter-budget", "budget", sorted({r.budget for r in rows})), "</p>",
                _leaderboard(rows), "<p class=\"note\">± is the half-width of the 95% bootstrap CI over clips. "
                "Click a column to sort.</p>"]
        body += [_source_section(s, out) for s in seen]
        (out / page).write_text(_page(f"vpbench: {protocol.dataset}", "".join(body)))
    index.append("</tbody></table>")
    (out / "index.html").write_text(_page("vpbench leaderboard", "".join(index)))
    return protocols
