"""Output directories are vpbench's own: nothing outside a run is cleaned, no foreign directory is
written into or moved, no write follows a link (review 2026-12: M4, M5, M8, L5, L12)."""

from __future__ import annotations

import json
import os
import shutil

from tests.cli_helpers import invoke
from vpbench.rundir import MARKER

FAST = ["--preset", "smoke", "--set", "eval.metrics=mse", "--set", "eval.speed=false", "--set", "eval.examples=0",
        "--set", "data.n_test=6", "--set", "eval.bootstrap=20"]
TRAINS = ["--set", "data.n_train=16", "--set", "data.n_val=4", "--set", "data.n_test=4", "--set", "train.batch_size=4",
          "--set", "eval.bootstrap=20", "--set", "eval.examples=0", "--set", "eval.profile=false",
          "--set", "eval.metrics=mse", "--set", "eval.speed=false"]


def _refused(result, *parts: str) -> None:
    assert result.exit_code == 2, result.output
    for part in parts:
        assert part in result.output, result.output
    assert "Traceback" not in result.output and "unexpected" not in result.output


# -- M4: half-written files are removed only in this run, at its own levels ----------------------
def test_taking_the_lock_of_a_directory_that_is_not_a_run_removes_nothing(in_tmp):
    (in_tmp / "runs" / "other" / "checkpoints").mkdir(parents=True)
    (in_tmp / "runs" / "x").mkdir()
    theirs = [in_tmp / "runs" / "other" / "checkpoints" / ".last.pt.k3j2.partial", in_tmp / "runs" / "x" / ".notes.txt.partial"]
    for path in theirs:
        path.write_text("in flight")
    _refused(invoke("run", "copylast", *FAST, "--out", "runs"), "runs exists and is not a vpbench run (no config.json)")
    assert all(path.read_text() == "in flight" for path in theirs)


def test_a_run_removes_its_own_leftovers_but_nothing_deeper(in_tmp):
    assert invoke("run", "copylast", *FAST, "--out", "r").exit_code == 0
    result_set = next((in_tmp / "r" / "evals").iterdir())
    own = [in_tmp / "r" / ".model.pt.a1.partial", result_set / ".report.md.b2.partial"]
    (in_tmp / "r" / "checkpoints").mkdir()
    own.append(in_tmp / "r" / "checkpoints" / ".last.pt.c3.partial")
    (in_tmp / "r" / "notes" / "deep").mkdir(parents=True)
    kept = [in_tmp / "r" / "notes" / ".draft.md.d4.partial", in_tmp / "r" / "notes" / "deep" / ".x.e5.partial"]
    for path in own + kept:
        path.write_text("half")
    result = invoke("run", "copylast", *FAST, "--out", "r")
    assert result.exit_code == 0 and "removed 3 half-written temporary file(s)" in result.output, result.output
    assert not any(path.exists() for path in own)
    assert all(path.read_text() == "half" for path in kept)


def test_a_run_dir_that_a_kill_left_with_only_its_torn_config_is_taken(in_tmp):
    (in_tmp / "r").mkdir()
    (in_tmp / "r" / ".config.json.x7.partial").write_text("{")
    assert invoke("run", "copylast", *FAST, "--out", "r").exit_code == 0
    assert json.loads((in_tmp / "r" / "config.json").read_text())["model_name"] == "copylast"
    assert not (in_tmp / "r" / ".config.json.x7.partial").exists()


# -- M5: compare, ablate and report --out write only into their own directories ------------------
def test_compare_refuses_a_directory_that_is_not_a_comparison_and_reuses_its_own(in_tmp):
    (in_tmp / "notes").mkdir()
    (in_tmp / "notes" / "report.md").write_text("mine")
    compare = ["compare", "copylast", "blank", *FAST]
    _refused(invoke(*compare, "--out", "notes"), "notes exists and is not a vpbench comparison directory",
             "choose another --out")
    assert [p.name for p in (in_tmp / "notes").iterdir()] == ["report.md"]
    assert (in_tmp / "notes" / "report.md").read_text() == "mine"
    assert invoke("run", "copylast", *FAST, "--out", "r").exit_code == 0
    _refused(invoke(*compare, "--out", "r"), "r exists and is a vpbench run directory")
    assert invoke(*compare, "--out", "cmp").exit_code == 0
    assert json.loads((in_tmp / "cmp" / MARKER).read_text())["kind"] == "comparison"
    assert invoke(*compare, "--out", "cmp").exit_code == 0  # its own: written again
    (in_tmp / "cmp" / MARKER).unlink()  # as the previous version wrote it
    assert invoke(*compare, "--out", "cmp").exit_code == 0


def test_ablate_refuses_a_directory_that_is_not_an_ablation_and_reuses_its_own(in_tmp):
    (in_tmp / "notes2").mkdir()
    (in_tmp / "notes2" / "report.md").write_text("mine")
    ablate = ["ablate", "-m", "blank", "--grid", "value=0,0.5", *FAST]
    _refused(invoke(*ablate, "--out", "notes2"), "notes2 exists and is not a vpbench ablation directory")
    assert [p.name for p in (in_tmp / "notes2").iterdir()] == ["report.md"]
    assert (in_tmp / "notes2" / "report.md").read_text() == "mine"
    assert invoke(*ablate, "--out", "abl").exit_code == 0
    assert json.loads((in_tmp / "abl" / MARKER).read_text())["kind"] == "ablation"
    (in_tmp / "abl" / MARKER).unlink()  # as the previous version wrote it
    assert invoke(*ablate, "--out", "abl").exit_code == 0
    for name in ("differences.csv", "results.csv", "report.md", "horizon.png", MARKER):
        (in_tmp / "abl" / name).unlink()  # an unfinished ablation of the previous version: its variants only
    assert invoke(*ablate, "--out", "abl").exit_code == 0


def test_report_out_refuses_a_comparison_or_a_run_and_reuses_its_own(in_tmp):
    assert invoke("compare", "copylast", "blank", *FAST, "--out", "cmp").exit_code == 0
    assert invoke("run", "copylast", *FAST, "--out", "r").exit_code == 0
    before = {p.name: p.read_bytes() for p in (in_tmp / "cmp").iterdir() if p.is_file()}
    _refused(invoke("report", "r", "--out", "cmp"), "cmp exists and is a vpbench comparison directory")
    assert {p.name: p.read_bytes() for p in (in_tmp / "cmp").iterdir() if p.is_file()} == before
    index = (in_tmp / "r" / "report.md").read_text()
    _refused(invoke("report", "cmp", "--out", "r"), "r exists and is a vpbench run directory")
    assert (in_tmp / "r" / "report.md").read_text() == index
    assert invoke("report", "r", "cmp", "--out", "both").exit_code == 0
    assert json.loads((in_tmp / "both" / MARKER).read_text())["kind"] == "report"
    (in_tmp / "both" / MARKER).unlink()  # as the previous version wrote it
    assert invoke("report", "r", "--out", "both").exit_code == 0
    _refused(invoke("report", "nothing-here", "--out", "new"))
    assert not (in_tmp / "new").exists()  # a failed report leaves no directory behind


# -- M8: no write follows a link ---------------------------------------------------------------
def test_a_symlinked_or_hard_linked_lock_file_is_refused_and_its_target_kept(in_tmp):
    (in_tmp / "r").mkdir()
    victim = in_tmp / "victim.txt"
    victim.write_text("precious")
    (in_tmp / "r" / ".x.lock").symlink_to("../victim.txt")
    _refused(invoke("run", "copylast", *FAST, "--out", "r/x"), "r/.x.lock is a symbolic link", "delete the link")
    assert victim.read_text() == "precious" and not (in_tmp / "r" / "x").exists()
    (in_tmp / "r" / ".x.lock").unlink()
    os.link(victim, in_tmp / "r" / ".x.lock")
    _refused(invoke("run", "copylast", *FAST, "--out", "r/x"), "r/.x.lock is not a plain vpbench lock file")
    assert victim.read_text() == "precious"


def test_a_symlinked_train_log_is_refused_and_its_target_kept(in_tmp, with_test_models):
    assert invoke("run", "oneconv", *TRAINS, "--out", "r").exit_code == 0
    for name in ("model.pt", "training.json", "train_log.jsonl"):
        (in_tmp / "r" / name).unlink()  # a run that starts training: config.json, no checkpoint
    shutil.rmtree(in_tmp / "r" / "checkpoints")
    victim = in_tmp / "victim.txt"
    victim.write_text("precious")
    (in_tmp / "r" / "train_log.jsonl").symlink_to("../victim.txt")
    _refused(invoke("run", "oneconv", *TRAINS, "--out", "r"), "r/train_log.jsonl is a symbolic link")
    assert victim.read_text() == "precious"


# -- L5: another tool's config.json is not a run -------------------------------------------------
def test_a_foreign_config_json_is_not_a_run_and_is_never_moved(in_tmp):
    (in_tmp / "proj").mkdir()
    (in_tmp / "proj" / "config.json").write_text('{"lr": 0.1, "layers": [64, 64]}')
    for extra in ([], ["--fresh"], ["--resume"]):
        _refused(invoke("run", "copylast", *FAST, "--out", "proj", *extra),
                 "proj exists and is not a vpbench run (its config.json has no model_name")
    _refused(invoke("eval", "proj"), "proj is not a vpbench run")
    assert sorted(p.name for p in in_tmp.iterdir()) == ["proj"]
    assert (in_tmp / "proj" / "config.json").read_text() == '{"lr": 0.1, "layers": [64, 64]}'


# -- L12: --out . from inside a run directory ------------------------------------------------------
def test_out_dot_from_inside_a_run_names_the_run(in_tmp, monkeypatch):
    assert invoke("run", "copylast", *FAST, "--out", "r").exit_code == 0
    monkeypatch.chdir(in_tmp / "r")
    result = invoke("run", "copylast", *FAST, "--out", ".")
    assert result.exit_code == 0 and "already trained" in result.output, result.output
    result = invoke("run", "copylast", *FAST, "--out", ".", "--fresh")
    assert result.exit_code == 0, result.output
    assert "moved the previous run to" in result.output
    moved = [p for p in in_tmp.iterdir() if p.name.startswith("r.old-")]
    assert len(moved) == 1 and (moved[0] / "model.pt").is_file()  # the old run kept whole
    assert (in_tmp / "r" / "model.pt").is_file() and (in_tmp / "r" / "config.json").is_file()
    assert not list(in_tmp.rglob("..lock")) and not list(in_tmp.glob(".*.lock"))  # the lock was beside r, and released
