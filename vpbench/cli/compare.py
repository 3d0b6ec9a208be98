"""``vpbench compare MODEL... --dataset D``: several models, one protocol, one table, paired differences."""

from __future__ import annotations

from typing import Annotated

import typer

from vpbench.cli import common as c


@c.executor_options
@c.protocol_options
def compare(
    models: Annotated[list[str], typer.Argument(help="Model plugin names; the first is the reference for paired "
                                                     "differences and its preset sets the shared data protocol.")],
    protocol: c.Protocol = c.Protocol(),
    out: Annotated[str | None, typer.Option("--out", "-o", help="Where the combined results go (default runs/compare-...).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue unfinished trainings of the compared runs.")] = False,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="Go on past a model that fails; its row says why.")] = False,
    note: Annotated[str | None, typer.Option("--note", help="Text (or @FILE) added to the report's Notes section, "
                                                           "e.g. how the protocol differs from the published one.")] = None,
    track: c.Track = None,
    execution: c.Execution = c.Execution({}),
) -> None:
    """Train (if needed) and evaluate every model under one data protocol and, with --budget,
    the same training budget; print one table and the paired differences against the first."""
    from rich.markup import escape

    from vpbench.compare import read_note, run_comparison
    from vpbench.plugins import get_harness

    note_text = read_note(note)
    executor = execution.config(has_out=bool(out))

    p = protocol
    common = dict(dataset=p.dataset, preset=p.preset, config_file=p.config, seed=p.seed, device=p.device, out=out,
                  data_dir=p.data_dir, resume=resume, keep_going=keep_going, note=note_text, track=track,
                  executor=executor, detach=execution.detach, gather_only=execution.gather_only,
                  command=list(c.INVOKED))
    if p.budget is not None and "," in p.budget:  # a ladder: one comparison per budget, then the scaling report
        from vpbench.ladder import parse_ladder, run_ladder

        budgets = parse_ladder(p.budget)
        with c.rich_events() as events:
            outcomes = run_ladder(get_harness(), models, budgets, sets=p.set_, events=events, **common)
        if outcomes is None:
            c.console().print(f"jobs submitted; gather with `vpbench gather {out}`", highlight=False, markup=False)
            return
        for budget, outcome in zip(budgets, outcomes):
            cfg = outcome.runs[0].config
            c.print_results(outcome.table, title=f"budget {budget}: {cfg.dataset_name} ({cfg.eval.split}), preset {cfg.preset}")
        c.console().print(f"scaling report: {outcomes[0].out_dir.parent / 'scaling.md'}", highlight=False, markup=False)
        return
    with c.rich_events() as events:
        outcome = run_comparison(get_harness(), models, sets=p.sets, events=events, **common)
    if outcome is None:
        c.console().print(f"jobs submitted; gather with `vpbench gather {out}`", highlight=False, markup=False)
        return
    cfg = outcome.runs[0].config
    c.print_results(outcome.table, title=f"{cfg.dataset_name} ({cfg.eval.split}), preset {cfg.preset}")
    for name, why in outcome.failures.items():
        c.console().print(f"[red]{escape(name)}: failed: {escape(why)}[/]", highlight=False)
    from vpbench.compare import rich_paired

    c.console().print(rich_paired(outcome.paired, models[0]))
    c.console().print(f"results: {outcome.out_dir / 'results.csv'}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
