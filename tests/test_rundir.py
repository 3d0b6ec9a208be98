"""The layout of a run directory has one owner: :class:`vpbench.rundir.RunDir` names every file a run writes."""

from __future__ import annotations

from pathlib import Path

from tests.cli_helpers import invoke
from vpbench.rundir import RunDir

SMALL = ["--set", "data.n_train=16", "--set", "data.n_val=4", "--set", "data.n_test=6", "--set", "eval.bootstrap=50",
         "--set", "eval.examples=1", "--set", "eval.metrics=mse"]


def unnamed(run_dir: Path, stages: int = 2, until: str | None = None) -> list[str]:
    """The paths under ``run_dir`` that RunDir does not name (a result set's and a prediction's own files are
    :mod:`vpbench.results`' and ``vpbench predict``'s, inside the folders RunDir names)."""
    layout = RunDir(run_dir)
    named = {layout.config, layout.model, layout.checkpoints, layout.last, layout.train_log, layout.training,
             layout.evals, layout.report, layout.predictions, layout.imported, *(layout.best(i) for i in range(stages))}
    if until is not None:
        named.add(layout.until_marker(until))
    return [str(p.relative_to(run_dir)) for p in sorted(run_dir.rglob("*"))
            if p not in named and layout.evals not in p.parents and layout.predictions not in p.parents]


def test_every_file_a_run_writes_is_named_by_rundir(in_tmp, with_test_models):
    assert invoke("run", "twostage", *SMALL, "--out", "r").exit_code == 0
    assert invoke("eval", "r", "--set", "eval.max_clips=3").exit_code == 0
    assert invoke("predict", "r").exit_code == 0
    layout = RunDir(in_tmp / "r")
    for path in (layout.config, layout.model, layout.last, layout.best(0), layout.best(1), layout.train_log, layout.training,
                 layout.report, layout.predictions):
        assert path.exists(), path
    assert len(list(layout.evals.iterdir())) == 2
    assert unnamed(in_tmp / "r") == []


def test_a_run_trained_up_to_a_stage_holds_the_marker_rundir_names(in_tmp, with_test_models):
    from vpbench import runs
    from vpbench.plugins import get_harness

    run = runs.prepare(get_harness(), "twostage", sets=[s for s in SMALL if s != "--set"], out="u")
    runs.train(run, runs.build_dataset(run), until="b")
    assert run.layout.until_marker("b").is_file() and not run.layout.model.exists()
    assert unnamed(in_tmp / "u", until="b") == []
