"""``vpbench run MODEL``: train if needed, evaluate, print the table, write the run directory."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from vpbench.cli import common as c


@c.executor_options
@c.protocol_options
def run(
    model: Annotated[str, typer.Argument(help="Model plugin name, e.g. copylast or shrvqvae.")],
    protocol: c.Protocol = c.Protocol(),
    out: c.Out = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an unfinished training in the run directory.")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Move an existing run directory aside and start over.")] = False,
    samples: Annotated[Optional[int], typer.Option("--samples", help="Predictions per clip: adds best-of-K and mean-of-K metrics.")] = None,
    track: c.Track = None,
    execution: c.Execution = c.Execution({}),
) -> None:
    """Train MODEL if needed, evaluate it on the test split and print the results table."""
    from vpbench import runs
    from vpbench.config import cli_sets
    from vpbench.plugins import get_harness
    from vpbench.tracking import check_tracking, tracked

    harness = get_harness()
    p = protocol
    sets = cli_sets(p.set_, budget=p.budget, samples=samples)
    run_ = runs.prepare(harness, model, dataset=p.dataset, preset=p.preset, config_file=p.config, sets=sets,
                        seed=p.seed, device=p.device, out=out, data_dir=p.data_dir)
    executor = execution.config()
    if executor.kind != "inline":
        from vpbench.executor import jobs_home, run_as_job

        check_tracking(harness, track, [run_])
        with c.rich_events() as events:
            table = run_as_job(run_, executor, events, track=track, fresh=fresh, detach=execution.detach,
                               gather_only=execution.gather_only, command=list(c.INVOKED))
        if table is not None:
            cfg = run_.config
            c.print_results(table, title=f"{cfg.model_name} on {cfg.dataset_name} ({cfg.eval.split})")
            c.console().print(f"run directory: {run_.run_dir} (this result set: {run_.eval_dir})", highlight=False,
                              markup=False)
        else:
            c.console().print(f"job submitted; gather with `vpbench gather {jobs_home(run_)}`", highlight=False,
                              markup=False)
        return
    from vpbench.distributed import shutdown

    try:
        with c.rich_events(enabled=run_.is_main) as events, runs.lock(run_, events), tracked(run_, track, events):
            data = runs.build_dataset(run_, events)
            trained = runs.train(run_, data, resume=resume, fresh=fresh, events=events)
            table = runs.evaluate(run_, trained, data, events=events)
    except BaseException:
        shutdown(run_.dist, finished=False)
        raise
    shutdown(run_.dist)
    if run_.is_main:
        cfg = run_.config
        c.print_results(table, title=f"{cfg.model_name} on {cfg.dataset_name} ({cfg.eval.split})")
        c.console().print(f"run directory: {run_.run_dir} (this result set: {run_.eval_dir})", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
