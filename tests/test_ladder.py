"""Budget ladders: ``vpbench compare ... --budget B1,B2,...`` end to end on the embedded digits."""

from __future__ import annotations

import pandas as pd
import pytest

from tests import cli_helpers
from vpbench.errors import ConfigError
from vpbench.ladder import parse_ladder

FAST = ["--preset", "smoke", "--set", "eval.metrics=mse,ssim", "--set", "eval.speed=false", "--set", "eval.profile=false",
        "--set", "eval.max_clips=32", "--set", "eval.examples=1", "--set", "eval.bootstrap=100"]
BUDGETS = ["2e10", "5e10", "1e11", "2e11"]


def invoke(*args: str, expect: int = 0):
    result = cli_helpers.invoke(*args)
    assert result.exit_code == expect, result.output
    return result


def test_parse_ladder_sorts_and_refuses_mixtures():
    assert parse_ladder("1e12, 4e11,2e12") == ["4e11", "1e12", "2e12"]
    with pytest.raises(ConfigError, match="all FLOPs or all durations"):
        parse_ladder("1e12,30m")
    with pytest.raises(ConfigError, match="twice"):
        parse_ladder("1e12,1000000000000")
    with pytest.raises(ConfigError, match="train.budget"):
        parse_ladder("1e12,lots")


@pytest.mark.slow
def test_a_ladder_runs_end_to_end_and_reuses_its_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the runs go to ./runs
    out = tmp_path / "ladder"
    invoke("compare", "convlstm", "copylast", *FAST, "--budget", ",".join(BUDGETS[:3]), "--out", str(out))
    first = pd.read_csv(out / "scaling.csv", dtype={"budget": str})
    trained = {p.parent.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("convlstm-*/model.pt")}
    assert len(trained) == 3  # one run per budget
    # one more budget: only its runs train, the others are reused (their weights untouched)
    result = invoke("compare", "convlstm", "copylast", *FAST, "--budget", ",".join(BUDGETS), "--out", str(out),
                    "--note", "the ladder's own note")
    assert result.output.count("convlstm is already trained") == 3
    after = {p.parent.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("convlstm-*/model.pt")}
    assert len(after) == 4 and all(after[name] == stamp for name, stamp in trained.items())
    table = pd.read_csv(out / "scaling.csv", dtype={"budget": str})
    conv = table[(table.model == "convlstm") & (table.metric == "mse")].sort_values("train_flops")
    assert list(conv.budget.astype(str)) == BUDGETS
    # each budget is spent without going over, and more budget means more steps
    assert all(0 < f <= float(b) for f, b in zip(conv.train_flops, BUDGETS))
    assert conv.train_flops.is_monotonic_increasing and (conv.n_clips == 32).all()
    # the earlier budgets' numbers are the same runs, so the same values
    before = first[(first.model == "convlstm") & (first.metric == "mse")].sort_values("train_flops")
    assert list(before.value) == list(conv.value[:3])
    floor = table[(table.model == "copylast") & (table.metric == "mse")]
    assert (floor.train_flops == 0).all() and floor.value.nunique() == 1  # a floor scores the same at every budget
    report = (out / "scaling.md").read_text()
    assert "## mse" in report and "## ssim" in report and "Best model per budget" in report
    assert "Where the fitted curves cross" in report and "budget: a ladder of 4 budgets, 2e10, 5e10, 1e11, 2e11" in report
    assert "## Notes\n\nthe ladder's own note" in report
    # the runner-up is worse than the best: a positive MSE difference, a negative SSIM one
    best_mse = report.split("## mse", 1)[1].split("Where the fitted", 1)[0]
    diffs = [float(line.split("|")[5].split("[")[0]) for line in best_mse.splitlines() if line.startswith("| 2e10 |")]
    assert diffs and all(d > 0 for d in diffs)
    # four budgets give convlstm a fit or an honest reason; never both missing
    section = report.split("## mse", 1)[1].split("## ssim", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith("| convlstm |"))
    assert ("ill-determined" in row) != ("[" in row.split("|")[2])
    assert (out / "scaling-mse.png").stat().st_size > 5_000
    for budget in BUDGETS:
        assert (out / f"budget-{budget}" / "results.csv").is_file()


@pytest.mark.slow
def test_an_ablation_ladder_gives_each_variant_a_curve(tmp_path, monkeypatch):
    """``vpbench ablate ... --budget B1,B2,...``: one ablation per budget, every variant spending
    each budget, and the scaling report with a curve per variant (which design scales better)."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "abl"
    result = invoke("ablate", "-m", "convlstm", "--grid", "hidden=8,16", *FAST, "--budget", ",".join(BUDGETS[:2]),
                    "--out", str(out))
    assert "scaling report:" in result.output
    table = pd.read_csv(out / "scaling.csv", dtype={"budget": str})
    mse = table[table.metric == "mse"].sort_values(["model", "train_flops"])
    assert list(mse.model) == ["hidden=16", "hidden=16", "hidden=8", "hidden=8"]
    assert list(mse.budget) == BUDGETS[:2] * 2
    assert all(0 < f <= float(b) for f, b in zip(mse.train_flops, mse.budget))
    for budget in BUDGETS[:2]:  # the points are the per-budget ablations' own numbers
        ablation = pd.read_csv(out / f"budget-{budget}" / "results.csv")
        rows = ablation[(ablation.metric == "mse") & (ablation.horizon.astype(str) == "all")].set_index("variant")
        here = mse[mse.budget == budget].set_index("model")
        assert rows.loc["hidden=8", "value"] == pytest.approx(here.loc["hidden=8", "value"])
    report = (out / "scaling.md").read_text()
    assert "each spent by every learned variant" in report and "one ablation per budget" in report
