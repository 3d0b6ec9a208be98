"""Training budgets: counted step costs, plans that spend a budget, wall-clock stops, replay."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.cli_helpers import invoke, register
from tests.models import OneConv, TwoStage
from vpbench import config as C
from vpbench.budget import load_record, plan_steps, probe
from vpbench.builtin.digits import Digits, DigitsConfig
from vpbench.config import Budget, parse_budget, parse_stage_steps
from vpbench.errors import ConfigError, PluginError

HW = 64 * 64
TINY = ["--set", "data.n_train=16", "--set", "data.n_val=4", "--set", "data.n_test=4", "--set", "train.batch_size=4",
        "--set", "eval.bootstrap=20", "--set", "eval.examples=0", "--set", "eval.profile=false",
        "--set", "eval.metrics=mse,ssim"]


def conv_flops(c_in: int, c_out: int, k: int = 3) -> int:
    """FLOPs of one k x k convolution over one 64x64 frame (a multiply-add is 2)."""
    return 2 * c_in * c_out * k * k * HW


def test_budget_values_parse_or_fail_in_one_line():
    assert parse_budget("") is None
    assert parse_budget("2e15") == Budget("flops", 2e15, "2e15")
    assert parse_budget("30m").value == 1800 and parse_budget("1h30m").value == 5400
    assert parse_budget("90s").value == 90 and parse_budget("0.5h").value == 1800
    for bad in ("abc", "0", "-5", "nan", "inf", "30x", "m"):
        with pytest.raises(ConfigError, match="train.budget"):
            parse_budget(bad)
    assert parse_stage_steps(["prior:2000", "joint:150/200"]) == {"prior": (2000, 2000), "joint": (150, 200)}
    for bad in ("prior", "prior:x", "prior:5/3", ":4"):
        with pytest.raises(ConfigError, match="train.steps"):
            parse_stage_steps([bad])
    with pytest.raises(ConfigError, match="not both"):
        C.TrainConfig(budget="1e12", steps=("a:3",))


def test_a_plan_spends_the_budget_within_one_step_and_keeps_the_stage_ratio():
    assert plan_steps({"s": 10}, {"s": 7.0}, 100.0) == {"s": 14}  # floor(100 / 7)
    base, cost = {"ae": 1500, "prior": 5000, "joint": 200, "off": 0}, {"ae": 3e9, "prior": 9e9, "joint": 2e10, "off": 1e9}
    for budget in (1e12, 3.3e13, 7.77e14, 5e9):
        steps = plan_steps(base, cost, budget)
        spent = sum(steps[s] * cost[s] for s in steps)
        assert spent <= budget and budget - spent < max(cost.values()), budget
        assert steps["off"] == 0
        k = budget / sum(base[s] * cost[s] for s in base)
        assert all(abs(steps[s] - k * base[s]) <= 1 for s in base)  # one factor for every stage
    with pytest.raises(ConfigError, match="cost nothing"):
        plan_steps({"s": 5}, {"s": 0.0}, 10.0)


def test_the_probe_counts_forward_and_backward_flops_by_hand():
    data = Digits(DigitsConfig(n_train=16, n_val=4, n_test=4), None)
    for cls, expected in (
        # one conv 1 -> 4 on 4 clips x 10 frames: forward, and the weight gradient (the input needs none)
        (OneConv, {"train": 4 * 10 * 2 * conv_flops(1, 4)}),
        # stage a trains the body: forward body + head, backward head's input gradient + body's weights;
        # stage b trains the head: forward both, backward head's weights only
        (TwoStage, {"a": 4 * 10 * 4 * conv_flops(1, 8), "b": 4 * 10 * 3 * conv_flops(1, 8)}),
    ):
        cfg = C.resolve(cls.name, cls, lambda n: Digits, sets=["train.batch_size=4"])
        model = cls(cfg.model, data.spec)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        rng = torch.get_rng_state()
        found = probe(model, data, cfg, torch.device("cpu"), cls.name)
        assert {s.name: s.flops_per_step for s in found.stages} == expected
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is untouched
        assert torch.equal(rng, torch.get_rng_state())  # and so is the run's random stream


def test_two_models_under_one_flop_budget_take_steps_in_inverse_proportion(in_tmp, with_test_models):
    per_step = {"oneconv": 4 * 10 * 2 * conv_flops(1, 4), "wideconv": 4 * 10 * 2 * conv_flops(1, 64)}
    budget = 40 * per_step["wideconv"] + 12345  # 40 steps of the wide model, 640 of the narrow one
    result = invoke("compare", "oneconv", "wideconv", "copylast", *TINY, "--budget", f"{budget:.6e}", "--out", "cmp")
    assert result.exit_code == 0, result.output
    table = json.loads((in_tmp / "cmp" / "results.json").read_text())["rows"]
    cost = {(r["model"], r["metric"]): r["value"] for r in table if r["metric"].startswith("train_")}
    budget_value = float(f"{budget:.6e}")
    for name, flops in per_step.items():
        assert cost[(name, "train_steps")] == budget_value // flops  # exact
        assert cost[(name, "train_flops")] == (budget_value // flops) * flops
        assert budget_value - flops < cost[(name, "train_flops")] <= budget_value
        assert cost[(name, "train_time")] > 0
    assert cost[("oneconv", "train_steps")] == 16 * cost[("wideconv", "train_steps")]
    assert cost[("copylast", "train_steps")] == 0 and cost[("copylast", "train_flops")] == 0
    report = (in_tmp / "cmp" / "report.md").read_text()
    assert f"- budget: {budget_value:.3g} training FLOPs for every learned model" in report
    for column in ("train_steps", "train_flops", "train_time", "trained on"):
        assert column in report, column


def test_a_wall_clock_budget_stops_within_one_step_and_replays_exactly(in_tmp, with_test_models):
    # the model turns slow after the probe timed it: the plan overshoots, the deadline must stop it
    delay = 0.05
    sets = [*TINY, "--set", "model.steps_a=400", "--set", "model.steps_b=400", "--set", "train.val_clips=0",
            "--set", "model.dropout=0"]
    slow = ["--set", f"model.step_delay={delay}", "--set", "model.delay_from=12"]
    result = invoke("run", "twostage", *sets, *slow, "--budget", "2s", "--out", "timed")
    assert result.exit_code == 0, result.output
    assert "wall-clock budget reached" in result.output
    record = load_record(in_tmp / "timed")
    assert record.budget_kind == "seconds"
    assert 2.0 <= record.seconds <= 2.0 + delay + 0.3  # one step of 0.05 s, plus the loop's overhead
    a, b = record.stages
    assert a.steps_taken < a.steps and b.steps_taken < b.steps and a.steps_taken > 0 and b.steps_taken > 0
    assert record.replay() == f"a:{a.steps_taken}/{a.steps},b:{b.steps_taken}/{b.steps}"
    # the recorded steps, replayed without a budget (and without the delay), give the same weights
    again = invoke("run", "twostage", *sets, "--set", f"train.steps={record.replay()}", "--out", "replay")
    assert again.exit_code == 0, again.output
    w1 = torch.load(in_tmp / "timed" / "model.pt", weights_only=True)["model"]
    w2 = torch.load(in_tmp / "replay" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert [s.steps_taken for s in load_record(in_tmp / "replay").stages] == [a.steps_taken, b.steps_taken]


def test_train_steps_override_names_real_stages(in_tmp, with_test_models):
    result = invoke("run", "twostage", *TINY, "--set", "train.steps=a:3,c:4")
    assert result.exit_code == 2 and "train.steps names stage 'c'; the stages of twostage are a, b" in result.output
    result = invoke("run", "twostage", *TINY, "--set", "train.steps=a:3", "--out", "r")
    assert result.exit_code == 0, result.output
    record = load_record(in_tmp / "r")
    assert [(s.name, s.steps_taken) for s in record.stages] == [("a", 3), ("b", 6)]
    assert record.flops == 3 * 4 * 10 * 4 * conv_flops(1, 8) + 6 * 4 * 10 * 3 * conv_flops(1, 8)


def test_the_check_does_not_change_training(in_tmp, harness_with_test_models):
    """runs.train checks a copy first; the weights equal a trainer run without any check."""
    from vpbench import runs
    from vpbench.train import Job, Trainer

    run = runs.prepare(harness_with_test_models, "twostage", sets=["data.n_train=16", "data.n_val=4", "train.batch_size=4"],
                       out=in_tmp / "checked")
    data = runs.build_dataset(run)
    checked = runs.train(run, data)
    direct = runs.build_model(run, data)
    assert Trainer(direct, data, run.config.train, Job.of(run.config), in_tmp / "direct", torch.device("cpu")).fit()
    assert all(torch.equal(a, b) for a, b in zip(checked.state_dict().values(), direct.state_dict().values()))
    assert math.isfinite(load_record(in_tmp / "checked").seconds)


class ShortPredict(TwoStage):
    name = "shortpredict"

    @torch.no_grad()
    def predict(self, context, n_out):
        return super().predict(context, n_out)[:, :-1]


class BadLoss(TwoStage):
    name = "badloss"

    def training_step(self, batch, stage):
        out = super().training_step(batch, stage)
        return {"loss": out["loss"].expand(3)} if stage == "b" else out


@pytest.fixture
def with_bad_models(with_test_models):
    register("bad", models=(ShortPredict, BadLoss))


def test_a_broken_model_fails_before_any_training(in_tmp, with_bad_models):
    result = invoke("run", "shortpredict", *TINY, "--set", "model.steps_a=100000")
    assert result.exit_code == 2
    assert "model 'shortpredict': predict returned shape (2, 9, 1, 64, 64), expected (2, 10, 1, 64, 64)" in result.output
    assert not (in_tmp / "runs").exists()  # nothing was written, nothing trained
    result = invoke("run", "badloss", *TINY)
    assert result.exit_code == 2
    assert "model 'badloss': training_step of stage 'b' returned a loss of (3,); it must be a scalar tensor" in result.output
    # compare checks every model before it trains any: the first one is not trained either
    result = invoke("compare", "twostage", "badloss", *TINY, "--out", "cmp")
    assert result.exit_code == 2 and "stage 'b'" in result.output
    assert not (in_tmp / "runs").exists()
    # --keep-going: the others are trained and scored, the failed one gets a row saying why
    result = invoke("compare", "twostage", "shortpredict", "copylast", *TINY, "--keep-going", "--out", "cmp")
    assert result.exit_code == 0, result.output
    assert "shortpredict: failed: model 'shortpredict': predict returned shape" in result.output
    report = (in_tmp / "cmp" / "report.md").read_text()
    assert "| shortpredict | failed: model 'shortpredict': predict returned shape" in report
    assert "copylast" in (in_tmp / "cmp" / "paired.csv").read_text()
    # when the reference itself fails, the paired differences are against the first model that did not
    result = invoke("compare", "shortpredict", "twostage", "copylast", *TINY, "--keep-going", "--out", "cmp2")
    assert result.exit_code == 0, result.output
    assert "shortpredict failed: paired differences are against twostage" in result.output
    paired = (in_tmp / "cmp2" / "paired.csv").read_text().splitlines()
    assert paired[1].startswith("copylast,twostage,")
    with pytest.raises(PluginError):  # the check itself, without the CLI
        from vpbench.evaluate import check_prediction

        check_prediction(torch.zeros(1, 9, 1, 64, 64), torch.zeros(1, 10, 1, 64, 64), Digits(DigitsConfig(), None).spec, "x")
