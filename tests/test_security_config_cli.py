"""Config values, printed paths, closed pipes and wrong-shaped files: one short clear line each
(security review 2026-12, L3, L4, L7, L10, L11)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tests.cli_helpers import invoke
from vpbench import config as C
from vpbench.errors import short

SMALL = ["--set", "data.n_test=6", "--set", "eval.bootstrap=20", "--set", "eval.speed=false", "--set", "eval.examples=0",
         "--set", "eval.metrics=mse"]


def error_line(result) -> str:
    """The one error line of a failed command (exit status 2, no traceback)."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output[:2000]
    assert len(lines[0]) < 300, lines[0][:2000]
    return lines[0]


@pytest.mark.parametrize("text, expected", [
    ("preset: 5", "error: preset: expected a name such as smoke, got 5"),
    ("preset: {a: 1}", "error: preset: expected a name such as smoke, got {'a': 1}"),
    ("preset: [smoke]", "error: preset: expected a name such as smoke, got ['smoke']"),
    ("dataset_name: [1, 2]", "error: dataset_name: expected a name such as digits, got [1, 2]"),
    ("dataset_name: 7", "error: dataset_name: expected a name such as digits, got 7"),
    ("model: [1, 2]", "error: model: expected a section of keys, got [1, 2]"),
    ("data: 3", "error: data: expected a section of keys, got 3"),
])
def test_wrong_types_in_a_config_file_name_the_key(in_tmp, text, expected):
    (in_tmp / "c.yaml").write_text(text + "\n")
    assert error_line(invoke("run", "copylast", "--config", "c.yaml", "--out", "r")) == expected


@pytest.mark.parametrize("pair, expected", [
    ("data.n_test=99999999999999999999999999",
     "error: data.n_test: '99999999999999999999999999' is out of range (config integers are at most 2**63 - 1 in magnitude)"),
    ("data.n_test=4611686018427387904", "error: data.n_test must be at most 10,000,000 clips, got 4611686018427387904"),
    ("eval.bootstrap=100001", "error: eval.bootstrap must be at most 100,000, got 100001"),
    ("eval.samples=1001", "error: eval.samples must be at most 1,000, got 1001"),
    ("eval.fvd_resize=10001", "error: eval.fvd_resize must be at most 10,000, got 10001"),
    (f"train.num_workers={C.MAX_WORKERS + 1}", f"error: train.num_workers must be at most {C.MAX_WORKERS}, got {C.MAX_WORKERS + 1}"),
])
def test_sizes_past_their_bound_are_refused_up_front(in_tmp, pair, expected):
    """Just past each bound (the review's eval.bootstrap=1000000000 ran the whole evaluation, then ran out of memory)."""
    assert error_line(invoke("run", "copylast", *SMALL, "--set", pair, "--out", "r")) == expected
    assert not (in_tmp / "r").exists()  # refused before anything ran


def test_huge_integers_in_files_name_the_key():
    with pytest.raises(C.ConfigError, match=r"^eval.bootstrap must be at most 100,000, got 1000000000$"):
        C.build(C.RunConfig, {"eval": {"bootstrap": "1000000000"}}, model_name="x")
    with pytest.raises(C.ConfigError, match=r"^train.grad_clip: expected a finite number, got <an integer of about 400"):
        C.build(C.RunConfig, {"train": {"grad_clip": 10**400}}, model_name="x")
    with pytest.raises(C.ConfigError, match=r"^seed: <an integer of about 60 digits> is out of range"):
        C.build(C.RunConfig, {"seed": 10**60}, model_name="x")


def test_a_huge_value_is_echoed_short(in_tmp):
    line = error_line(invoke("run", "copylast", "--set", "data.n_test=" + "9" * 5000, "--out", "r"))
    assert line.startswith("error: data.n_test: '9999") and "is out of range" in line
    line = error_line(invoke("run", "copylast", "--set", "train.budget=" + "x" * 5000, "--out", "r"))
    assert line.startswith("error: train.budget: 'xxxx") and "is neither a number of training FLOPs" in line
    assert short(10**5000) == "<an integer of about 5000 digits>"
    assert len(short("x" * 10**6)) <= 100 and len(short({str(i): list(range(1000)) for i in range(1000)})) <= 100


def _nested_aliases(width: int, depth: int) -> str:
    """A YAML flow list ``width`` wide and ``depth`` deep whose copies are aliases of the first."""
    text = f"&l0 [{', '.join(map(str, range(width)))}]"
    for i in range(1, depth):
        text = f"&l{i} [{text}{f', *l{i - 1}' * (width - 1)}]"
    return text


def test_a_huge_shared_value_in_the_wrong_place_is_echoed_short(in_tmp):
    """6 wide and 5 deep: 7,776 leaves (under the size bound), a 40 kB repr."""
    (in_tmp / "c.yaml").write_text(f"train: {_nested_aliases(6, 5)}\n")
    line = error_line(invoke("run", "copylast", "--config", "c.yaml", "--out", "r"))
    assert line.startswith("error: train: expected a section of keys, got [[[[...], [...], [...], [...], [...], [...]], ")


def test_yaml_alias_bombs_are_refused_before_they_expand(in_tmp):
    """The review's bomb, 9 wide and 7 deep (a 66 MB error line before), and a list holding itself."""
    (in_tmp / "bomb.yaml").write_text(f"train: {_nested_aliases(9, 8)}\n")
    line = error_line(invoke("run", "copylast", "--config", "bomb.yaml", "--out", "r"))
    assert re.fullmatch(r"error: config file bomb.yaml expands to [\d,]{10,} values through its aliases \(at most "
                        r"100,000\); write the values out instead of nesting aliases", line), line
    (in_tmp / "loop.yaml").write_text("train: &a [*a]\n")
    assert error_line(invoke("run", "copylast", "--config", "loop.yaml")) == (
        "error: config file loop.yaml holds an alias inside its own anchor (a value that contains itself)")


@pytest.mark.parametrize("out", ["a[/]b", "a[red]b", "x[bold]y[/bold]"])
def test_paths_are_printed_as_they_are_never_as_markup(in_tmp, out):
    result = invoke("run", "copylast", *SMALL, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"run directory: {out}" in result.output.replace(f"{in_tmp}/", "")
    report = invoke("report", out)
    assert report.exit_code == 0, report.output
    assert out in report.output  # the table's title is the result set's path


def test_a_closed_pipe_is_not_a_disk_error():
    """A BrokenPipeError from any command exits 141 (as ``yes | head`` does), printing nothing."""
    from vpbench.cli import VPBenchGroup

    app = typer.Typer(cls=VPBenchGroup)

    @app.command()
    def write() -> None:
        raise BrokenPipeError(32, "Broken pipe")

    @app.command()
    def other() -> None:
        pass

    result = CliRunner().invoke(app, ["write"])
    assert (result.exit_code, result.output) == (141, "")


@pytest.mark.slow
def test_help_piped_into_head_exits_quietly(tmp_path):
    """`vpbench predict RUN --help | head -2`, the review's case, a few times (whether the pipe
    is closed before the help is written is a race)."""
    for _ in range(3):
        out = subprocess.run(f"'{sys.executable}' -m vpbench predict RUN --help | head -2", shell=True,
                             capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert "Usage" in out.stdout
        assert "cannot read or write" not in out.stderr and "Broken pipe" not in out.stderr, out.stderr


@pytest.fixture(scope="module")
def made_run(tmp_path_factory):
    """One small run, made once; tests change copies of it."""
    root = tmp_path_factory.mktemp("made")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        result = invoke("run", "copylast", *SMALL, "--out", "r")
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    return root / "r"


@pytest.fixture
def result_set(made_run, in_tmp):
    from vpbench.results import find_set

    shutil.copytree(made_run, in_tmp / "r")
    return find_set(in_tmp / "r")


@pytest.mark.parametrize("change, where", [
    (lambda meta: [meta], "its top level is a list, not an object"),
    (lambda meta: {**meta, "evaluation": "x"}, "'evaluation' is a string, not an object"),
    (lambda meta: {**meta, "provenance": None}, "'provenance' is null, not an object"),
    (lambda meta: {**meta, "provenance": {**meta["provenance"], "versions": "1.0"}}, "'provenance.versions' is a string, not an object"),
    (lambda meta: {**meta, "evaluation": {**meta["evaluation"], "metrics": [1, 2]}}, "'evaluation.metrics' is a list, "
                                                                                      "not a list of names"),
])
def test_report_on_a_wrong_shaped_results_json_names_the_file(result_set, change, where):
    path = result_set / "results.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    assert error_line(invoke("report", "r")) == (f"error: {path.relative_to(result_set.parents[2])} is not a vpbench "
                                                 f"results file ({where}); re-evaluate the run with `vpbench eval`")


@pytest.mark.parametrize("array, dtype", [(np.array([["a", "b"]] * 12), "<U1"),
                                          (np.zeros((12, 4, 4), dtype="datetime64[s]"), "datetime64[s]")])
def test_predict_input_of_strings_names_the_file(result_set, in_tmp, array, dtype):
    np.save(in_tmp / "frames.npy", array)
    line = error_line(invoke("predict", "r", "--input", "frames.npy"))
    assert line == (f"error: frames.npy holds {dtype} values, not pixels; give uint8 (0..255) or float (0..1) frames")
