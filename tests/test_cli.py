"""The command line, through Typer's CliRunner (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tests.models import TwoStage
from vpbench.cli import app
from vpbench.plugins import PluginRecord, get_harness

SMALL = ["--set", "data.n_test=12", "--set", "eval.bootstrap=100", "--set", "eval.speed_seconds=0.2",
         "--set", "eval.max_batch=4", "--set", "eval.examples=2"]
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result


@pytest.fixture
def with_twostage(with_test_models):
    yield


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "eval", "predict", "compare", "plugins", "report", "data"):
        assert command in result.output


def test_run_writes_a_complete_run_directory(in_tmp):
    result = invoke("run", "copylast", *SMALL, "--out", "r")
    assert result.exit_code == 0, result.output
    assert "copylast on digits (test)" in result.output and "ssim" in result.output
    from vpbench.results import find_set

    run_dir = in_tmp / "r"
    for name in ("config.json", "model.pt", "training.json", "report.md"):
        assert (run_dir / name).is_file(), name
    (run,) = (run_dir / "evals").iterdir()
    assert run.name.startswith("test-12clips-") and find_set(run_dir) == run
    for name in ("results.csv", "results.json", "per_clip.npz", "report.md", "profile.json",
                 "horizon.png", "examples/clip00000.png", "examples/clip00001.gif"):
        assert (run / name).is_file(), name
    assert not (run / "examples" / "clip00002.png").exists()
    table = pd.read_csv(run / "results.csv", dtype={"horizon": str})
    assert list(table.columns[:8]) == ["run", "model", "variant", "dataset", "split", "metric", "horizon", "seed"]
    assert set(table["metric"]) == {"mse", "mae", "psnr", "ssim", "lpips", "params", "params_trainable", "gflops",
                                    "gmacs", "latency", "throughput", "train_steps", "train_flops", "train_time"}
    assert len(table.query("metric == 'ssim'")) == 11  # "all" + 10 horizons
    assert table.query("metric == 'mse' and horizon == 'all'")["n_clips"].item() == 12
    assert table.query("metric == 'lpips'")["value"].isna().all()  # no AlexNet weights offline: n/a
    assert "lpips: n/a" in result.output and "alexnet-owt-7be5be79.pth" in result.output
    assert table.query("metric == 'gmacs'")["value"].item() == 0.0  # copy-last does no arithmetic
    assert table.query("metric == 'train_steps'")["value"].item() == 0  # copy-last does not train
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model_name"] == "copylast" and config["dataset_name"] == "digits"
    meta = json.loads((run / "results.json").read_text())
    for key in ("command", "git_revision", "versions", "device", "seed", "created"):
        assert key in meta["provenance"]
    from vpbench.runtime import native_bf16_cpu

    assert ("native bf16" in meta["provenance"]["device"]) == native_bf16_cpu()  # what train.amp=on does here
    report = (run / "report.md").read_text()
    for needle in ("mse ↓", "ssim ↑", "lpips ↓", "n/a", "git revision", "command: `", "versions: python", "device: cpu",
                   "seed: 0", "![per-horizon metrics](horizon.png)", "examples/clip00000.png", "gmacs"):
        assert needle in report, needle
    from PIL import Image

    assert Image.open(run / "horizon.png").format == "PNG"
    index = (run_dir / "report.md").read_text()  # the run's report: an index of its result sets
    assert f"[{run.name}](evals/{run.name}/report.md)" in index and "## Latest results" in index


def test_default_run_dir_and_rerun_reuses_the_trained_model(in_tmp):
    assert invoke("run", "blank", *SMALL).exit_code == 0
    (run_dir,) = (in_tmp / "runs").iterdir()
    assert run_dir.name.startswith("blank-digits-none-")
    again = invoke("run", "blank", *SMALL)
    assert again.exit_code == 0 and "already trained" in again.output


def test_unknown_names_get_one_line_suggestions(in_tmp):
    result = invoke("run", "copylst")
    assert result.exit_code == 2
    assert "error: unknown model 'copylst' (did you mean copylast or convlstm?)" in result.output
    assert "Traceback" not in result.output
    result = invoke("run", "copylast", "--dataset", "digit")
    assert result.exit_code == 2 and "did you mean digits?" in result.output
    result = invoke("run", "copylast", "--set", "eval.metrics=mse,sssim")
    assert result.exit_code == 2 and "unknown metric 'sssim' (did you mean ssim" in result.output


def test_bad_config_value_is_one_line(in_tmp):
    result = invoke("run", "blank", "--set", "model.value=2")
    assert result.exit_code == 2 and "model.value must be in [0, 1], got 2.0" in result.output


def test_trained_work_is_never_overwritten(in_tmp, with_twostage):
    base = ["run", "twostage", "--out", "r", "--set", "data.n_train=16", "--set", "data.n_val=4", *SMALL]
    assert invoke(*base).exit_code == 0
    weights = torch.load(in_tmp / "r" / "model.pt", weights_only=True)["model"]
    changed = invoke(*base, "--set", "model.steps_a=3")
    assert changed.exit_code == 2
    assert "holds a run with another config (model.steps_a: 6 -> 3)" in changed.output
    kept = torch.load(in_tmp / "r" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(weights[k], kept[k]) for k in weights)
    fresh = invoke(*base, "--set", "model.steps_a=3", "--fresh")
    assert fresh.exit_code == 0, fresh.output
    moved = [p for p in in_tmp.iterdir() if p.name.startswith("r.old-")]
    assert len(moved) == 1 and (moved[0] / "model.pt").is_file()


def test_unfinished_training_needs_resume(in_tmp, with_twostage):
    base = ["run", "twostage", "--out", "r", "--set", "data.n_train=16", "--set", "data.n_val=4",
            "--set", "train.ckpt_every=2", *SMALL]
    # leave an unfinished run behind: a checkpoint but no final model
    assert invoke(*base).exit_code == 0
    (in_tmp / "r" / "model.pt").unlink()
    result = invoke(*base)
    assert result.exit_code == 2 and "unfinished training; pass --resume" in result.output
    resumed = invoke(*base, "--resume")
    assert resumed.exit_code == 0, resumed.output


def test_eval_predict_report_and_data_info(in_tmp):
    assert invoke("run", "meanframe", *SMALL, "--out", "r").exit_code == 0
    result = invoke("eval", "r", "--split", "val", "--set", "eval.metrics=mse_px,psnr")
    assert result.exit_code == 0, result.output
    (val_set,) = Path("r/evals").glob("val-*")
    table = pd.read_csv(val_set / "results.csv")
    assert set(table["split"]) == {"val"} and {"mse_px", "psnr"} <= set(table["metric"])
    assert invoke("eval", "r", "--set", "train.batch_size=2").exit_code == 2

    result = invoke("predict", "r", "--clips", "0,3")
    assert result.exit_code == 0, result.output
    from PIL import Image

    strip = Image.open("r/predictions/clip00003.png")
    assert strip.size[1] == 4 * 64 + 3 * 2  # context, truth, prediction, error rows
    gif = Image.open("r/predictions/clip00000.gif")
    assert gif.n_frames == 20
    assert invoke("predict", "r", "--clips", "999").exit_code == 2

    (test_set,) = Path("r/evals").glob("test-*")
    (test_set / "report.md").unlink()
    (test_set / "horizon.png").unlink()
    result = invoke("report", str(test_set))
    assert result.exit_code == 0 and (test_set / "report.md").is_file() and (test_set / "horizon.png").is_file()
    assert "examples/clip00001.png" in (test_set / "report.md").read_text()
    result = invoke("report", "r", "--out", "combined")
    assert result.exit_code == 0 and Path("combined/results.csv").is_file() and Path("combined/horizon.png").is_file()
    result = invoke("report", "r")  # a run directory: its latest result set (the val one)
    assert result.exit_code == 0 and "val-" in result.output
    result = invoke("report", "nowhere")
    assert result.exit_code == 2 and "no results yet" in result.output

    result = invoke("data", "info", "digits")
    assert result.exit_code == 0 and "Srivastava" in result.output and "1x64x64, 10 -> 10" in result.output


def test_predict_from_a_folder_of_frames(in_tmp):
    from PIL import Image

    assert invoke("run", "copylast", *SMALL, "--out", "r").exit_code == 0
    folder = in_tmp / "frames"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(((i * 20) * (1 + 0 * torch.zeros(48, 48))).numpy().astype("uint8")).save(folder / f"{i:03d}.png")
    result = invoke("predict", "r", "--input", str(folder), "--out", "p")
    assert result.exit_code == 0, result.output
    assert Path("p/frames.png").is_file() and Path("p/frames.gif").is_file()
    result = invoke("predict", "r", "--input", str(in_tmp / "missing"))
    assert result.exit_code == 2 and "does not exist" in result.output


def test_compare_gives_one_table_and_paired_differences(in_tmp):
    result = invoke("compare", "copylast", "blank", "meanframe", *SMALL, "--out", "cmp", "--note", "short training")
    assert result.exit_code == 0, result.output
    table = pd.read_csv("cmp/results.csv")
    assert set(table["model"]) == {"copylast", "blank", "meanframe"}
    paired = pd.read_csv("cmp/paired.csv")
    assert set(paired["model"]) == {"blank", "meanframe"} and set(paired["reference"]) == {"copylast"}
    # a metric that could not be computed gets no verdict (LPIPS without its weights)
    uncomputed = {m for m, v in table.groupby("metric")["value"] if v.isna().all()}
    assert not uncomputed & set(paired["metric"]) and {"mse", "ssim"} <= set(paired["metric"])
    row = paired.query("model == 'blank' and metric == 'mse'").iloc[0]
    # blank beats copy-last on moving digits (two digits land in the wrong place)
    assert row["diff"] < 0 and row["verdict"] == "better"
    report = Path("cmp/report.md").read_text()
    assert "Paired differences\n\nEach model minus `copylast` on the same test clips" in report
    # how it differs from the published protocol, per model; the dataset's provenance; the note
    assert "| copylast | none | untrained | - | 12 of 12 |" in report
    assert "dataset protocol: 2 digits" in report
    assert "## Notes\n\nshort training" in report
    # every model's resolved config, pointed to from the top
    assert "- config: the full resolved config is written at the end" in report
    configs = json.loads(report.split("## Config\n\n```json\n")[1].split("```")[0])
    assert set(configs) == {"copylast", "blank", "meanframe"} and configs["blank"]["data"]["n_test"] == 12
    # one side-by-side strip per example clip: labelled rows context, truth, then each model
    strip = np.asarray(Image.open("cmp/examples/clip00000.png"))
    frame, label, gap = 64, 12, 2
    assert strip.shape[0] == 5 * (label + frame) + 4 * gap
    tile = lambda row, col: strip[row * (label + frame + gap) + label:][:frame, col * (frame + gap):][:, :frame]  # noqa: E731
    assert tile(3, 4).max() == 0 and tile(1, 0).max() > 0  # blank predicts zeros; the truth has digits
    assert np.array_equal(tile(2, 0), tile(0, 9)) and np.array_equal(tile(2, 5), tile(0, 9))  # copylast
    gif = Image.open("cmp/examples/clip00000.gif")
    assert gif.n_frames == 20 and gif.size[0] == 2 * 4 * frame  # truth + 3 models, scale 2


class FewClips(TwoStage):
    name = "fewclips"
    presets = {"smoke": {"eval": {"max_clips": 5}}}


def test_compare_scores_every_model_on_the_same_clips(in_tmp):
    import types

    import vpbench

    h = get_harness()
    if "fewclips" not in h.models:
        @vpbench.hookimpl
        def vpbench_register_models(register):
            register(FewClips)

        h.add_plugin(types.SimpleNamespace(vpbench_register_models=vpbench_register_models),
                     PluginRecord("fewclips", "vpbench-fewclips", "0"))
    # the first model's preset scores 5 clips, copylast's would score all 12: both get 5
    result = invoke("compare", "fewclips", "copylast", "--preset", "smoke", *SMALL, "--out", "cmp")
    assert result.exit_code == 0, result.output
    assert "copylast: the comparison's protocol replaces its own eval.max_clips 0 -> 5" in result.output
    assert "every model is scored on the first 5 clips of the test split" in result.output
    table = pd.read_csv("cmp/results.csv").query("metric == 'mse' and horizon == 'all'")
    assert list(table["n_clips"]) == [5, 5]
    assert "mse" in set(pd.read_csv("cmp/paired.csv").query("model == 'copylast'")["metric"])


def test_compare_note_from_a_missing_file_is_one_line_before_any_work(in_tmp):
    result = invoke("compare", "copylast", "blank", "--note", "@missing.md", "--out", "cmp")
    assert result.exit_code == 2 and "--note @missing.md: cannot read the file" in result.output
    assert "Traceback" not in result.output and not Path("cmp").exists() and not Path("runs").exists()
    Path("notes.md").write_text("trained for 10 steps only")
    result = invoke("compare", "copylast", "blank", *SMALL, "--note", "@notes.md", "--out", "cmp")
    assert result.exit_code == 0 and "## Notes\n\ntrained for 10 steps only" in Path("cmp/report.md").read_text()


def test_profile_command_counts_by_hand(in_tmp, with_twostage):
    result = invoke("profile", "twostage", "--no-speed")
    assert result.exit_code == 0, result.output
    # predict runs body (1->8, 3x3) and head (8->1, 3x3) convs on 10 frames of 64x64
    flops = 2 * (1 * 8 * 9 + 8 * 1 * 9) * 64 * 64 * 10
    assert f"{flops / 1e9:.4g} G (counted on meta)" in result.output
    assert f"{flops / 2e9:.4g} G" in result.output and "relu" in result.output
    result = invoke("profile", "twostage", "--set", "eval.speed_seconds=0.2", "--set", "eval.max_batch=2")
    assert result.exit_code == 0 and "clips/s at batch" in result.output


def test_plugin_exception_is_one_line(in_tmp, monkeypatch):
    h = get_harness()
    h.add_plugin(_raising_plugin(), PluginRecord("raiser", "vpbench-raiser", "1")) if "raiser" not in h.models else None
    result = invoke("run", "raiser", *SMALL)
    assert result.exit_code == 2
    assert "model 'raiser' from plugin 'raiser' (vpbench-raiser 1) raised while being built: " \
           "ZeroDivisionError: division by zero" in result.output


def _raising_plugin():
    import types

    import vpbench

    class Raiser(TwoStage):
        name = "raiser"

        def __init__(self, config, spec):
            self.ratio = 1 / 0

    @vpbench.hookimpl
    def vpbench_register_models(register):
        register(Raiser)

    return types.SimpleNamespace(vpbench_register_models=vpbench_register_models)


def test_the_revision_is_the_one_a_command_started_with(tmp_path):
    """A commit made while a long command runs does not relabel its results: the report names the
    revision the command started from and says the checkout moved."""
    import subprocess

    from vpbench.provenance import git_revision, pin_revision

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "f").write_text("1")
    git("add", "f")
    git("commit", "-qm", "one")
    first = git("rev-parse", "HEAD")
    assert git_revision(tmp_path) == first  # nothing pinned: the checkout as it is
    pin_revision(tmp_path)
    (tmp_path / "f").write_text("2")
    git("commit", "-qam", "two")
    second = git("rev-parse", "HEAD")
    assert git_revision(tmp_path) == f"{first} (the checkout moved to {second} while this command ran)"
