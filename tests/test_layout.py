"""Where things live: a plugin-free core, one report writer, one way to open a dataset, and the
library (not the CLI) deciding what a command accepts."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli_helpers import invoke, register
from tests.conftest import ROOT
from vpbench.errors import ConfigError

PLUGIN_PACKAGES = ("vpbench_shrvqvae", "vpbench_baselines")
FAST = ["--set", "data.n_train=8", "--set", "data.n_val=2", "--set", "data.n_test=4", "--set", "eval.bootstrap=20",
        "--set", "eval.speed=false", "--set", "eval.examples=1"]


def test_the_core_imports_no_in_repo_plugin():
    offenders = []
    for path in sorted((ROOT / "vpbench").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                          if n.split(".")[0] in PLUGIN_PACKAGES]
    assert not offenders



def public_face_offences(path: Path, text: str) -> list[str]:
    """Where ``text`` reaches past ``vpbench``'s public face (``vpbench.__all__``, ``vpbench.layers``, ``vpbench.testing``)."""
    import vpbench

    allowed = {*vpbench.__all__, "layers", "testing"}
    out = []
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "vpbench":
            names = [f"vpbench.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "vpbench":
            names = [f"vpbench.{node.attr}"]
        else:
            continue
        out += [f"{path}:{node.lineno} uses {n}" for n in names
                if n.startswith("vpbench.") and n.split(".")[1] not in allowed]
    return out


def test_plugins_examples_and_the_scaffold_use_only_the_public_face(tmp_path):
    from vpbench.scaffold import new_plugin

    sources = [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "examples").rglob("*.py"),
               *new_plugin("demo", tmp_path).rglob("*.py")]
    assert len(sources) > 20
    offenders = [o for path in sorted(sources) for o in public_face_offences(path, path.read_text())]
    assert not offenders
    assert public_face_offences(Path("x.py"), "from vpbench.errors import ConfigError\nimport vpbench\nvpbench.runs.train")\
        == ["x.py:1 uses vpbench.errors", "x.py:3 uses vpbench.runs"]


def test_the_public_face_has_every_name_it_lists_and_checks_configs():
    import vpbench

    assert all(hasattr(vpbench, name) for name in vpbench.__all__)

    @dataclass
    class Config:
        width: int = 4
        rate: float = 0.5

    vpbench.positive(Config(), "width")
    with pytest.raises(ConfigError, match=r"^width must be > 0, got 0$"):
        vpbench.positive(Config(width=0), "width", "rate")
    with pytest.raises(ConfigError, match=r"^width must be >= 0, got -1$"):
        vpbench.non_negative(Config(width=-1), "width")
    with pytest.raises(ConfigError, match=r"^width must be at most 3, got 4$"):
        vpbench.at_most(Config(), 3, "width")
    vpbench.in_range(Config(rate=1.0), 0, 1, "rate")
    with pytest.raises(ConfigError, match=r"^rate must be in \[0, 1\), got 1.0$"):
        vpbench.in_range(Config(rate=1.0), 0, 1, "rate", closed=False)

def test_run_identity_lives_in_rundir_and_names_runs_as_before():
    from vpbench import config as C
    from vpbench import rundir, runs
    from vpbench.plugins import get_harness

    harness = get_harness()
    cfg = C.resolve("copylast", harness.models.get("copylast"), harness.datasets.get)
    # the directory name of the same config must not change: --resume and compare find runs by it
    assert rundir.default_run_dir(cfg, harness.models.get("copylast")) == Path("runs/copylast-digits-none-5eba652f")
    assert not hasattr(runs, "config_hash") and not hasattr(runs, "read_results")  # one home each


def test_every_report_is_written_by_the_one_writer(in_tmp, monkeypatch):
    from vpbench.report import markdown

    written = []
    compose = markdown.compose

    def spy(title, provenance, **parts):
        written.append(compose(title, provenance, **parts))
        return written[-1]

    monkeypatch.setattr(markdown, "compose", spy)
    assert invoke("run", "copylast", *FAST, "--out", "r").exit_code == 0
    assert invoke("eval", "r", "--split", "val").exit_code == 0
    assert invoke("compare", "copylast", "blank", *FAST, "--note", "a note", "--out", "cmp").exit_code == 0
    result = invoke("ablate", "-m", "blank", "--grid", "value=0,0.5", *FAST, "--out", "abl")
    assert result.exit_code == 0, result.output
    assert invoke("report", "r").exit_code == 0
    assert invoke("report", "r", "--out", "one").exit_code == 0
    reports = sorted(in_tmp.rglob("report.md"))
    kinds = {p.read_text().splitlines()[0] for p in reports}
    assert kinds == {"# vpbench results", "# vpbench comparison", "# vpbench ablation", "# vpbench combined report"} | {
        f"# vpbench run {p.parent.name}" for p in reports if (p.parent / "evals").is_dir()}
    for path in reports:
        text = path.read_text()
        assert text in written, path  # composed by the writer, not by hand
        how = text.split("## How this was made\n", 1)[1].split("\n## ", 1)[0]
        for line in ("- command: `vpbench ", "- git revision: `", "- versions: python", "- device: cpu", "- seed: 0"):
            assert line in how, (path, line)
    for name in ("cmp", "abl"):
        text = (in_tmp / name / "report.md").read_text()
        assert "- budget: none shared" in text and "## Config\n\n```json" in text


def test_eval_overrides_take_eval_keys_and_prediction_fields_only():
    from vpbench import config as C
    from vpbench.builtin.digits import Digits
    from vpbench.builtin.trivial import CopyLast
    from vpbench.overrides import eval_overrides
    from vpbench_shrvqvae.model import SHRVQVAE

    cfg = C.resolve("shrvqvae", SHRVQVAE, lambda n: Digits, preset="smoke")
    new = eval_overrides(cfg, SHRVQVAE, ["eval.max_clips=5", "model.temperature=1.5"], split="val")
    assert (new.eval.max_clips, new.eval.split, new.model.temperature) == (5, "val", 1.5)
    assert new.train == cfg.train and new.data == cfg.data and cfg.eval.split == "test"  # a new config
    fields = "model.temperature, model.cached, model.wavefront, model.parallel_decoding, model.mbr_samples, model.mbr_temperature"
    for key in ("train.batch_size=2", "model.lam=0"):
        with pytest.raises(ConfigError) as err:
            eval_overrides(cfg, SHRVQVAE, [key])
        assert str(err.value) == (f"vpbench eval cannot change {key.split('=')[0]}: it accepts only eval.* overrides "
                                  f"and {fields} (training keys would need a new run)")
    plain = C.resolve("copylast", CopyLast, lambda n: Digits)
    with pytest.raises(ConfigError, match=r"^vpbench eval cannot change data.n_test: it accepts only eval.\* overrides "
                                          r"\(training keys would need a new run\)$"):
        eval_overrides(plain, CopyLast, ["data.n_test=3"])
    with pytest.raises(ConfigError, match="unknown config key 'eval.nonsense'"):
        eval_overrides(plain, CopyLast, ["eval.nonsense=1"])


def test_a_note_is_its_text_or_a_files_contents(tmp_path):
    from vpbench.compare import read_note

    (tmp_path / "n.md").write_text("from a file")
    assert read_note(None) == "" and read_note("plain") == "plain" and read_note(f"@{tmp_path / 'n.md'}") == "from a file"
    with pytest.raises(ConfigError, match="--note @nowhere.md: cannot read the file"):
        read_note("@nowhere.md")


@dataclass(frozen=True)
class BrokenConfig:
    size: int = 8


class Broken:
    """A dataset whose constructor fails."""

    name = "brokendata"
    version = "1"
    Config = BrokenConfig
    spec = None

    def __init__(self, config, root):
        raise RuntimeError("the disk is on fire")

    def split(self, name):
        raise NotImplementedError

    def info(self):
        return {}


@pytest.mark.parametrize("command", [["data", "info", "brokendata"], ["data", "download", "brokendata"],
                                     ["profile", "copylast", "--dataset", "brokendata"],
                                     ["run", "copylast", "--dataset", "brokendata", "--out", "r"]])
def test_every_command_opens_datasets_one_way(in_tmp, command):
    register("brokendata", datasets=(Broken,))
    result = invoke(*command)
    assert result.exit_code == 2, result.output
    assert "dataset 'brokendata' from " in result.output
    assert "raised while loading: RuntimeError: the disk is on fire" in result.output


def test_report_keeps_a_comparisons_report_and_combines_the_same_model_twice(in_tmp):
    """`vpbench report CMP` must not replace a comparison's report (paired differences and all)
    with a plain results report; `report RUN CMP --out X` with the same model in both names the
    source of each row instead of failing."""
    assert invoke("run", "copylast", *FAST, "--out", "r").exit_code == 0
    assert invoke("compare", "copylast", "blank", *FAST, "--out", "cmp").exit_code == 0
    before = (in_tmp / "cmp" / "report.md").read_bytes()
    result = invoke("report", "cmp")
    assert result.exit_code == 0 and "report.md kept: a comparison's report" in result.output
    assert (in_tmp / "cmp" / "report.md").read_bytes() == before and b"## Paired differences" in before
    result = invoke("report", "r", "cmp", "--out", "both")
    assert result.exit_code == 0, result.output
    text = (in_tmp / "both" / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| copylast |")]
    assert len({row.split(" | ")[1] for row in rows}) == 2 and any("(cmp)" in row for row in rows)
    assert [line.split(" | ")[1] for line in text.splitlines() if line.startswith("| blank | ")][0] == "none (cmp)"


def import_graph(package: Path) -> dict[str, set[str]]:
    """Every module of ``package`` and the package modules it imports, at the top or inside a
    function (a lazy import that closes a circle is still a circle)."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle_lazy_imports_included():
    assert cycles(import_graph(ROOT / "vpbench")) == []


def test_the_cycle_finder_finds_a_lazy_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
