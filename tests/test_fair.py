"""Fair comparisons: one data protocol, per-model overrides, versions, result sets that are never replaced."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pandas as pd
import pytest

from tests.cli_helpers import invoke, register
from tests.models import TwoStage
from vpbench import config as C

FAST = ["--set", "eval.bootstrap=50", "--set", "eval.examples=1", "--set", "eval.profile=false",
        "--set", "eval.metrics=mse,ssim"]


class ThirdParty(TwoStage):
    """A plugin whose smoke preset shrinks the data, as a third-party plugin's might."""

    name = "thirdparty"
    presets = {"smoke": {"data": {"n_train": 16, "n_val": 4, "n_test": 9}, "train": {"batch_size": 4}}}


class Versioned(TwoStage):
    name = "versioned"
    version = "1.0"


@pytest.fixture
def with_plugins(with_test_models):
    register("thirdparty", models=(ThirdParty, Versioned))


def test_the_third_party_scenario_scores_every_model_on_the_same_clips(in_tmp, with_plugins):
    result = invoke("compare", "thirdparty", "copylast", "blank", "--preset", "smoke", *FAST, "--out", "cmp")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(in_tmp / "cmp" / "results.csv", dtype={"horizon": str})
    quality = table.query("metric == 'mse' and horizon == 'all'")
    assert list(quality["n_clips"]) == [9, 9, 9]  # the protocol of the first model, for all three
    paired = pd.read_csv(in_tmp / "cmp" / "paired.csv")
    assert set(paired["model"]) == {"copylast", "blank"} and set(paired["metric"]) == {"mse", "ssim"}
    report = (in_tmp / "cmp" / "report.md").read_text()
    assert ("- protocol: digits, 1x64x64, 10 -> 10 frames; clips: train 16, val 4, test 9; every model is scored "
            "on the first 9 clips of the test split") in report
    assert "| model | variant | dataset | clips | mse" in report and "| copylast | smoke | digits | 9 |" in report
    configs = json.loads(report.split("## Config\n\n```json\n")[1].split("```")[0])
    assert {c["data"]["n_test"] for c in configs.values()} == {9}
    assert "blank: the comparison's protocol replaces its own data.n_train 4000 -> 16" in result.output


def test_a_model_that_cannot_run_the_protocol_stops_the_comparison_before_training(in_tmp, with_plugins):
    # 62x62 frames: SimVP's smoke encoder halves them once (fine), S-HR-VQVAE's needs a multiple of 8
    result = invoke("compare", "twostage", "shrvqvae", "--preset", "smoke", "--set", "data.size=62", *FAST)
    assert result.exit_code == 2
    assert "model 'shrvqvae' cannot run on digits (1x62x62, 10 -> 10): frames of 62x62 do not divide by " \
           "downsample=4" in result.output
    assert not Path("runs").exists()  # twostage, first in line, was not trained either


def test_preset_data_fields_apply_only_where_the_dataset_has_them():
    from vpbench.builtin.videofolder import VideoFolder
    from vpbench_shrvqvae.model import SHRVQVAE

    cfg = C.resolve("shrvqvae", SHRVQVAE, lambda n: VideoFolder, preset="smoke", dataset="videofolder")
    assert cfg.dataset_name == "videofolder" and not hasattr(cfg.data, "n_train")
    with pytest.raises(C.ConfigError, match="unknown config key 'data.n_train'"):  # typed by the user: checked
        C.resolve("shrvqvae", SHRVQVAE, lambda n: VideoFolder, preset="smoke", dataset="videofolder",
                  sets=["data.n_train=5"])


def test_per_model_overrides(in_tmp, with_plugins):
    from vpbench.builtin.digits import Digits

    both = ["twostage", "blank"]
    cfg = C.resolve("twostage", TwoStage, lambda n: Digits, sets=["twostage:model.hidden=4", "blank:model.value=0.5",
                                                                 "train.batch_size=4"], models=both)
    assert cfg.model.hidden == 4 and cfg.train.batch_size == 4
    with pytest.raises(C.ConfigError, match="'simvp' is not a model of this command \\(twostage, blank\\)"):
        C.resolve("twostage", TwoStage, lambda n: Digits, sets=["simvp:model.hidden=4"], models=both)
    # a value holding a colon is no prefix
    assert C.model_sets(["train.steps=a:3,b:4"], "twostage") == ["train.steps=a:3,b:4"]
    result = invoke("compare", "twostage", "blank", "--set", "twostage:model.hidden=4", "--set", "blank:model.value=0.25",
                    "--set", "data.n_train=16", "--set", "data.n_val=4", "--set", "data.n_test=6", *FAST, "--out", "cmp")
    assert result.exit_code == 0, result.output
    configs = json.loads((in_tmp / "cmp" / "results.json").read_text())["configs"]
    assert configs["twostage"]["model"]["hidden"] == 4 and configs["blank"]["model"]["value"] == 0.25
    result = invoke("ablate", "--model", "twostage", "--grid", "model.hidden=4,6", "--set", "data.n_train=16",
                    "--set", "data.n_val=4", "--set", "data.n_test=6", *FAST, "--out", "abl")
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(in_tmp / "abl" / "results.csv")["variant"]) == {"hidden=4", "hidden=6"}
    result = invoke("ablate", "--model", "twostage", "--grid", "train.batch_size=4,8")
    assert result.exit_code == 2 and "an ablation varies model fields" in result.output


def test_versions_are_recorded_and_a_new_model_version_retrains(in_tmp, with_plugins):
    small = ["--set", "data.n_train=16", "--set", "data.n_val=4", "--set", "data.n_test=6", *FAST]
    assert invoke("run", "versioned", *small).exit_code == 0
    (run_dir,) = Path("runs").iterdir()
    table = pd.read_csv(next((run_dir / "evals").iterdir()) / "results.csv", dtype=str)
    assert set(table["model_version"]) == {"1.0"} and set(table["dataset_version"]) == {"1"}
    assert set(table.query("metric == 'ssim'")["metric_version"]) == {"1"}
    assert "plugin versions: model versioned 1.0; dataset digits 1; metrics mse 1, ssim 1" in (run_dir / "report.md").read_text()
    Versioned.version = "1.1"
    try:
        again = invoke("run", "versioned", *small)
        assert again.exit_code == 0 and "already trained" not in again.output  # a new run directory, trained
        assert len(list(Path("runs").iterdir())) == 2
        mixed = invoke("run", "versioned", *small, "--out", str(run_dir))
        assert mixed.exit_code == 2 and "holds a run with another config (model_version: '1.0' -> '1.1')" in mixed.output
    finally:
        Versioned.version = "1.0"


def test_a_second_evaluation_adds_a_result_set_and_destroys_none(in_tmp, with_plugins):
    small = ["--set", "data.n_train=16", "--set", "data.n_val=4", "--set", "data.n_test=6", *FAST]
    assert invoke("run", "twostage", *small, "--out", "r").exit_code == 0
    config_before = Path("r/config.json").read_text()
    (test_set,) = Path("r/evals").iterdir()
    before = {p.name: p.read_bytes() for p in test_set.iterdir() if p.is_file()}
    result = invoke("eval", "r", "--split", "val", "--set", "eval.metrics=mse")
    assert result.exit_code == 0, result.output
    assert Path("r/config.json").read_text() == config_before  # eval never rewrites the run's config
    sets = sorted(p.name for p in Path("r/evals").iterdir())
    assert len(sets) == 2 and any(s.startswith("val-4clips-") for s in sets) and test_set.name in sets
    assert {p.name: p.read_bytes() for p in test_set.iterdir() if p.is_file()} == before
    val = pd.read_csv(next(Path("r/evals").glob("val-*")) / "results.csv")
    assert set(val["split"]) == {"val"} and "mse" in set(val["metric"]) and "ssim" not in set(val["metric"])
    index = Path("r/report.md").read_text()
    assert test_set.name in index and "val-4clips-" in index
    # a comparison that scores fewer clips adds its own set too
    result = invoke("compare", "twostage", "copylast", *small, "--set", "eval.max_clips=4", "--out", "cmp")
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in test_set.iterdir() if p.is_file()} == before
    # report reads the set it is told to
    result = invoke("report", "r", "--eval", test_set.name, "--out", "one")
    assert result.exit_code == 0 and set(pd.read_csv("one/results.csv")["split"]) == {"test"}
    result = invoke("report", "r", "--eval", "nosuchset")
    assert result.exit_code == 2 and "has no result set 'nosuchset'" in result.output


def test_a_full_disk_half_way_through_an_evaluation_leaves_the_previous_set_whole(in_tmp, with_plugins, monkeypatch):
    from vpbench import runs

    small = ["--set", "data.n_train=16", "--set", "data.n_val=4", "--set", "data.n_test=6", *FAST]
    assert invoke("run", "twostage", *small, "--out", "r").exit_code == 0
    (test_set,) = Path("r/evals").iterdir()
    before = {p.relative_to(test_set): p.read_bytes() for p in test_set.rglob("*") if p.is_file()}

    def full(*args, **kwargs):  # results.csv/json and per_clip.npz are written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs, "write_examples", full)
    result = invoke("run", "twostage", *small, "--out", "r", "--set", "eval.bootstrap=60")  # same set, re-evaluated
    assert result.exit_code != 0
    assert sorted(p.name for p in Path("r/evals").iterdir()) == [test_set.name]  # no staging directory left
    assert {p.relative_to(test_set): p.read_bytes() for p in test_set.rglob("*") if p.is_file()} == before


def test_a_crash_between_the_renames_is_recovered(in_tmp):
    from vpbench import results

    evals = Path("run/evals")
    (evals / ".replaced-test-3clips-abcd1234").mkdir(parents=True)
    (evals / ".replaced-test-3clips-abcd1234" / "results.json").write_text("{}")
    (evals / ".staging-test-3clips-abcd1234-999999999").mkdir()
    assert [p.name for p in results.sets(Path("run"))] == ["test-3clips-abcd1234"]
    assert sorted(p.name for p in evals.iterdir()) == ["test-3clips-abcd1234"]
