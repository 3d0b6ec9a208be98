"""vpbench ablate: shared early stages, one table, paired differences."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tests.cli_helpers import invoke
from vpbench.ablate import grid, shared_stage
from vpbench_shrvqvae.model import SHRVQVAE

FAST = ["--preset", "smoke", "--set", "model.ae_steps=30", "--set", "model.prior_steps=20", "--set",
        "model.joint_steps=8", "--set", "data.n_test=6", "--set", "eval.examples=0", "--set", "eval.bootstrap=50",
        "--set", "data.n_train=32", "--set", "data.n_val=8", "--set", "data.size=32", "--set", "data.glyph_size=14",
        "--set", "eval.profile=false"]  # 32 x 32 frames: an 8 x 8 latent, a quarter of the smoke preset's generation


def test_shared_stage_follows_the_models_late_fields():
    assert shared_stage(SHRVQVAE, ["lam"]) == "joint"
    assert shared_stage(SHRVQVAE, ["prior_blocks", "lam"]) == "prior"
    assert shared_stage(SHRVQVAE, ["levels"]) is None
    assert grid({"lam": ["0", "1"], "levels": ["1", "2"]}) == [
        {"lam": "0", "levels": "1"}, {"lam": "0", "levels": "2"}, {"lam": "1", "levels": "1"}, {"lam": "1", "levels": "2"}]


def test_lambda_ablation_shares_stages_one_and_two(in_tmp):
    # no -m: S-HR-VQVAE is the one installed model declaring --lambda
    result = invoke("ablate", "--lambda", "0,1", "--dataset", "digits", *FAST, "--out", "abl")
    assert result.exit_code == 0, result.output
    assert "ablation of shrvqvae" in result.output
    quality = result.output.split("ablation of shrvqvae", 1)[1].split("└", 1)[0]  # the first table: one row per lambda
    assert [[cell.strip() for cell in line.split("│")[1:3]] for line in quality.splitlines() if line.startswith("│")] == [
        ["shrvqvae", "lam=0"], ["shrvqvae", "lam=1"]], result.output
    table = pd.read_csv(in_tmp / "abl" / "results.csv", dtype={"horizon": str})
    assert set(table["variant"]) == {"lam=0", "lam=1"}
    diffs = pd.read_csv(in_tmp / "abl" / "differences.csv")
    assert set(diffs["variant"]) == {"lam=1"} and {"mse", "ssim"} <= set(diffs["metric"])
    uncomputed = {m for m, v in table.groupby("metric")["value"] if v.isna().all()}  # LPIPS without weights
    assert not uncomputed & set(diffs["metric"])
    mse = table.query("metric == 'mse' and horizon == 'all'").set_index("variant")["value"]
    row = diffs.query("metric == 'mse'").iloc[0]
    assert abs(row["diff"] - (mse["lam=1"] - mse["lam=0"])) < 1e-6 * max(1.0, abs(row["diff"]))
    assert row["ci_low"] <= row["diff"] <= row["ci_high"]
    w0 = torch.load(in_tmp / "abl" / "lam-0" / "model.pt", weights_only=True)["model"]
    w1 = torch.load(in_tmp / "abl" / "lam-1" / "model.pt", weights_only=True)["model"]
    base = torch.load(in_tmp / "abl" / "base-until-joint" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for k in w0:
        if k.startswith(("encoder.", "quantizer.")):
            assert torch.equal(w0[k], w1[k]) and torch.equal(w0[k], base[k]), k  # stages 1-2 shared, frozen after
        if k.startswith("decoder."):
            assert torch.equal(w0[k], base[k]), k  # lambda = 0: the decoder gets no gradient
    assert any(not torch.equal(w1[k], base[k]) for k in w1 if k.startswith("decoder."))  # lambda = 1 adapts it
    assert "Differences to `lam=0`" in (in_tmp / "abl" / "report.md").read_text()
    # a lost variant is retrained from the same base, which is reused, not trained again
    import shutil

    shutil.rmtree(in_tmp / "abl" / "lam-1")
    base_mtime = (in_tmp / "abl" / "base-until-joint" / "checkpoints" / "last.pt").stat().st_mtime_ns
    again = invoke("ablate", "-m", "shrvqvae", "--lambda", "0,1", *FAST, "--out", "abl")
    assert again.exit_code == 0, again.output
    assert "stages before 'joint' are already trained" in again.output
    assert (in_tmp / "abl" / "base-until-joint" / "checkpoints" / "last.pt").stat().st_mtime_ns == base_mtime
    w1_again = torch.load(in_tmp / "abl" / "lam-1" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(w1[k], w1_again[k]) for k in w1)  # same base, same seed: same weights


def test_an_interrupted_variant_continues_with_resume(in_tmp):
    result = invoke("ablate", "-m", "shrvqvae", "--grid", "levels=1,2", *FAST, "--out", "abl")
    assert result.exit_code == 0, result.output
    done = torch.load(in_tmp / "abl" / "levels-2" / "model.pt", weights_only=True)["model"]
    (in_tmp / "abl" / "levels-2" / "model.pt").unlink()  # as if stopped after its last checkpoint
    again = invoke("ablate", "-m", "shrvqvae", "--grid", "levels=1,2", *FAST, "--out", "abl")
    assert again.exit_code == 2 and "unfinished training" in again.output
    resumed = invoke("ablate", "-m", "shrvqvae", "--grid", "levels=1,2", *FAST, "--out", "abl", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "levels=1" in resumed.output and "already trained" in resumed.output  # the finished variant is kept
    weights = torch.load(in_tmp / "abl" / "levels-2" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(done[k], weights[k]) for k in done)


def test_model_shortcuts_resolve_to_config_fields():
    from vpbench.ablate import parse_axes
    from vpbench.errors import ConfigError
    from vpbench.plugins import get_harness

    # the options come from the plugin, and the axes keep the model's declared order
    assert parse_axes(SHRVQVAE, None, ["--lambda", "0,1"]) == {"lam": ["0", "1"]}
    assert list(parse_axes(SHRVQVAE, ["hidden=8,16"], ["--quantizer=tree,flat", "--lambda", "0, 1"])) == [
        "lam", "quantizer", "hidden"]
    assert parse_axes(SHRVQVAE, ["model.tau=0.5,1"]) == {"tau": ["0.5", "1"]}
    with pytest.raises(ConfigError) as err:
        parse_axes(SHRVQVAE, None, ["--foo", "1,2"])
    assert str(err.value) == ("no such option --foo for model 'shrvqvae': its shortcuts are --lambda, --levels, "
                              "--codebook-size, --quantizer; or use --grid FIELD=a,b")
    with pytest.raises(ConfigError, match="no such option --lambda for model 'copylast': it declares no ablation "
                                          "shortcuts; or use --grid FIELD=a,b"):
        parse_axes(get_harness().models.get("copylast"), None, ["--lambda", "0,1"])
    with pytest.raises(ConfigError, match="--lambda needs values"):
        parse_axes(SHRVQVAE, None, ["--lambda"])
    with pytest.raises(ConfigError, match="model.lam is given twice"):
        parse_axes(SHRVQVAE, ["lam=2"], ["--lambda", "0,1"])


def test_ablate_errors_are_one_line(in_tmp):
    result = invoke("ablate", "--grid", "lam=0,1", *FAST)
    assert result.exit_code == 2 and "error: vpbench ablate needs --model/-m MODEL, one of " in result.output
    assert " blank," in result.output  # other test files may have registered more models before
    assert "shrvqvae" in result.output and "Traceback" not in result.output
    result = invoke("ablate", "-m", "shrvqvae", "--foo", "1,2", *FAST)
    assert result.exit_code == 2 and "no such option --foo for model 'shrvqvae': its shortcuts are --lambda" in result.output
    result = invoke("ablate", "-m", "shrvqvae", *FAST)
    assert result.exit_code == 2 and "nothing to ablate: give --grid FIELD=a,b or --lambda" in result.output
    result = invoke("ablate", "-m", "shrvqvae", "--grid", "nonsense=1,2", *FAST)
    assert result.exit_code == 2 and "has no config field 'nonsense'" in result.output
    result = invoke("ablate", "-m", "shrvqvae", "--quantizer", "tree,bush", *FAST, "--out", "bad")
    assert result.exit_code == 2 and "'bush' is not one of tree, residual, flat" in result.output
    assert not (in_tmp / "bad").exists()  # nothing trained before the bad value was found


@pytest.mark.slow
def test_an_ablation_of_the_prior_architecture_shares_the_autoencoder(in_tmp):
    """``prior`` only affects the prior stage and later: the autoencoder is trained once and each
    variant builds its own prior (different modules and keys) on top of the shared weights."""
    result = invoke("ablate", "-m", "shrvqvae", "--grid", "prior=pixelcnn,vpn", *FAST, "--out", "abl")
    assert result.exit_code == 0, result.output
    assert "stages before 'prior' shared from" in result.output
    w = {v: torch.load(in_tmp / "abl" / f"prior-{v}" / "model.pt", weights_only=True)["model"]
         for v in ("pixelcnn", "vpn")}
    base = torch.load(in_tmp / "abl" / "base-until-prior" / "checkpoints" / "last.pt", weights_only=True)["model"]
    shared = [k for k in base if k.startswith(("encoder.", "quantizer."))]
    assert shared and all(torch.equal(w["pixelcnn"][k], base[k]) and torch.equal(w["vpn"][k], base[k]) for k in shared)
    prior_keys = {v: {k for k in w[v] if k.startswith("prior.")} for v in w}
    assert prior_keys["pixelcnn"] and prior_keys["vpn"] and prior_keys["pixelcnn"] != prior_keys["vpn"]
    assert len(list((in_tmp / "abl").glob("base-until-*"))) == 1


def test_prediction_only_fields_share_the_whole_training(in_tmp):
    from vpbench import config as C
    from vpbench.builtin.digits import Digits
    from vpbench.rundir import config_hash

    def cfg(*sets):
        return C.resolve("shrvqvae", SHRVQVAE, lambda n: Digits, preset="smoke", sets=list(sets))

    assert config_hash(cfg("model.mbr_samples=8", "model.temperature=1.5"), SHRVQVAE) == config_hash(cfg(), SHRVQVAE)
    assert config_hash(cfg("model.lam=0.5"), SHRVQVAE) != config_hash(cfg(), SHRVQVAE)
    assert shared_stage(SHRVQVAE, ["lam", "mbr_samples"]) == "joint"  # decoding options affect no stage
    result = invoke("ablate", "-m", "shrvqvae", "--grid", "mbr_samples=0,2", *FAST, "--out", "abl")
    assert result.exit_code == 0, result.output
    assert "prediction-only change" in result.output
    w0 = torch.load(in_tmp / "abl" / "mbr_samples-0" / "model.pt", weights_only=True)["model"]
    w2 = torch.load(in_tmp / "abl" / "mbr_samples-2" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(w0[k], w2[k]) for k in w0)  # trained once
    assert not (in_tmp / "abl" / "mbr_samples-2" / "checkpoints").exists()
    table = pd.read_csv(in_tmp / "abl" / "results.csv", dtype={"horizon": str})
    assert set(table["variant"]) == {"mbr_samples=0", "mbr_samples=2"}


@pytest.mark.slow
def test_a_budgeted_ablation_shares_early_stages_only_where_the_plans_agree(in_tmp):
    import json

    from vpbench import runs
    from vpbench.budget import load_record, make_record
    from vpbench.plugins import get_harness

    # the budget is what the FAST steps of the lambda = 1 model cost
    run = runs.prepare(get_harness(), "shrvqvae", preset="smoke", sets=FAST[3::2])
    data = runs.build_dataset(run)
    model = runs.build_model(run, data)
    record = make_record(model, run.config, runs.check(run, model, data), "cpu")
    assert [s.steps for s in record.stages] == [30, 20, 8]
    budget = sum(s.steps * s.flops_per_step for s in record.stages)

    # tau changes no step's cost: every variant plans the same early steps, which are shared
    result = invoke("ablate", "-m", "shrvqvae", "--grid", "tau=0.5,1", *FAST, "--budget", str(budget), "--out", "tau")
    assert result.exit_code == 0, result.output
    assert "stages before 'joint' shared from" in result.output
    (base,) = [p for p in (in_tmp / "tau").iterdir() if p.name.startswith("base-until-joint")]
    assert json.loads((base / "config.json").read_text())["train"]["steps"] == ["autoencoder:30", "prior:20"]
    for variant in ("tau-0.5", "tau-1"):
        assert [s.steps_taken for s in load_record(in_tmp / "tau" / variant).stages] == [30, 20, 8]

    # lambda 0 skips the decoder in the joint stage: a cheaper step, so another plan; no sharing
    result = invoke("ablate", "-m", "shrvqvae", "--lambda", "0,1", *FAST, "--budget", str(budget), "--out", "lam")
    assert result.exit_code == 0, result.output
    assert "each variant trains every stage itself" in result.output
    lam0, lam1 = load_record(in_tmp / "lam" / "lam-0"), load_record(in_tmp / "lam" / "lam-1")
    assert [s.steps_taken for s in lam1.stages] == [30, 20, 8] and lam1.flops == budget
    assert lam0.stages[2].flops_per_step < lam1.stages[2].flops_per_step
    assert budget - max(s.flops_per_step for s in lam0.stages) < lam0.flops <= budget


def test_the_default_ablation_directory_names_the_dataset_the_preset_chooses():
    from vpbench.ablate import default_dir
    from vpbench.plugins import get_harness

    harness = get_harness()
    assert "ablate-shrvqvae-mmnist-cpu-" in str(default_dir(harness, "shrvqvae", preset="cpu"))
    assert "ablate-shrvqvae-digits-smoke-" in str(default_dir(harness, "shrvqvae", preset="smoke"))
    assert "ablate-shrvqvae-kth-paper-" in str(default_dir(harness, "shrvqvae", preset="paper", dataset="kth"))


def test_without_model_the_shortcut_options_must_name_one_model(in_tmp):
    from tests.cli_helpers import register
    from tests.models import OneConv

    class Narrow(OneConv):
        name = "narrowconv"
        ablation_shortcuts = {"width": "hidden"}

    class Wide(OneConv):
        name = "wideconv1"
        ablation_shortcuts = {"width": "hidden", "steps": "steps"}

    register("shortcutpair", models=(Narrow, Wide))
    result = invoke("ablate", "--width", "4,8", "--preset", "smoke", "--out", "abl")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("error: --width: several models declare this option (narrowconv, wideconv1); "
                                     "choose one with --model/-m MODEL")
    result = invoke("ablate", "--width=4,8", "--lambda", "-1,0", "--preset", "smoke", "--out", "abl")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: no installed model declares --width --lambda (shortcut options: narrowconv: "
                                    "--width; shrvqvae: --lambda, --levels, --codebook-size, --quantizer; wideconv1: "
                                    "--width, --steps); give --model/-m MODEL and --grid FIELD=a,b")
    assert len(result.output.strip().splitlines()) == 1 and not (in_tmp / "abl").exists()
    result = invoke("ablate", "--width", "4", "--steps", "2,3", "--preset", "smoke", "--out", "abl")
    assert result.exit_code == 0, result.output  # only wideconv1 declares both
    assert "ablation of wideconv1" in result.output and (in_tmp / "abl" / "hidden-4_steps-3").is_dir()


def test_ablate_help_names_the_installed_models_shortcuts():
    result = invoke("ablate", "--help")
    assert result.exit_code == 0
    assert "shrvqvae: --lambda, --levels, --codebook-size, --quantizer" in " ".join(result.output.split())
