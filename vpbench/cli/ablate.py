"""``vpbench ablate -m MODEL --grid FIELD=a,b``: one table over a grid of model config values.

Without ``-m`` the model is the one installed model that declares every shortcut option given
(``vpbench ablate --lambda 0,1`` ablates S-HR-VQVAE)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from typer.core import TyperCommand

from vpbench.cli import common as c
from vpbench.errors import ConfigError

SHORTCUTS_HELP = ("A model may offer its own options for its fields (its ablation_shortcuts): "
                  "`vpbench ablate -m shrvqvae --lambda 0,1` is `--grid lam=0,1`; without -m the model is the one "
                  "that declares every shortcut option given.")


class AblateCommand(TyperCommand):
    """The ablate command; its help lists the shortcut options of the installed models."""

    def format_help(self, ctx, formatter):
        self.epilog = SHORTCUTS_HELP + _installed_shortcuts()
        return super().format_help(ctx, formatter)


def _installed_shortcuts() -> str:
    from vpbench.ablate import shortcut_options
    from vpbench.plugins import get_harness

    models = get_harness().models
    lines = [f"{name}: {', '.join(shortcut_options(models.get(name)))}" for name in models.names()
             if shortcut_options(models.get(name))]
    return (" Installed: " + "; ".join(lines) + ".") if lines else ""


def model_for_shortcuts(models, extra: list[str]) -> str:
    """The one model of ``models`` (a registry) declaring every shortcut option in ``extra``
    (the command line's other arguments, e.g. ``["--lambda", "0,1"]``)."""
    from vpbench.ablate import shortcut_options

    given, i = [], 0
    while i < len(extra):  # --NAME VALUES or --NAME=VALUES (values may start with one '-')
        name, eq, _ = extra[i].lstrip("-").partition("=")
        if extra[i].startswith("-") and f"--{name}" not in given:
            given.append(f"--{name}")
        i += 2 if extra[i].startswith("-") and not eq and i + 1 < len(extra) and not extra[i + 1].startswith("--") else 1
    if not given:
        raise ConfigError(f"vpbench ablate needs --model/-m MODEL, one of {', '.join(models.names())}")
    offers = {name: shortcut_options(models.get(name)) for name in models.names()}
    matches = [name for name, offer in offers.items() if set(given) <= set(offer)]
    if len(matches) == 1:
        return matches[0]
    options = " ".join(given)
    if matches:
        raise ConfigError(f"{options}: several models declare {'these options' if len(given) > 1 else 'this option'} "
                          f"({', '.join(matches)}); choose one with --model/-m MODEL")
    declared = "; ".join(f"{name}: {', '.join(offer)}" for name, offer in offers.items() if offer) or "none"
    raise ConfigError(f"no installed model declares {options} (shortcut options: {declared}); give --model/-m MODEL "
                      "and --grid FIELD=a,b")


@c.executor_options
@c.protocol_options
def ablate(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model plugin to ablate (default: the one "
                                                 "model declaring the shortcut options given).")] = None,
    grid: Annotated[Optional[list[str]], typer.Option("--grid", help="A model field and its values: --grid field=v1,v2 "
                                                                      "(repeatable).")] = None,
    protocol: c.Protocol = c.Protocol(),
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Ablation directory (default runs/ablate-...).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue unfinished trainings of the variants.")] = False,
    track: c.Track = None,
    execution: c.Execution = c.Execution({}),
) -> None:
    """Train and evaluate one variant per grid point; shared early stages are trained once."""
    from vpbench.ablate import default_dir, parse_axes, run_ablation
    from vpbench.plugins import get_harness
    from vpbench.report.tables import fmt_value

    harness = get_harness()
    if model is None:
        model = model_for_shortcuts(harness.models, ctx.args)
    axes = parse_axes(harness.models.get(model), grid, ctx.args)
    p = protocol
    ladder = p.budget is not None and "," in p.budget  # a budget ladder: one ablation per budget
    out_dir = Path(out) if out else default_dir(harness, model, dataset=p.dataset, preset=p.preset, config_file=p.config,
                                                sets=p.set_ if ladder else p.sets)
    common = dict(dataset=p.dataset, preset=p.preset, config_file=p.config, seed=p.seed, device=p.device,
                  data_dir=p.data_dir, resume=resume, executor=execution.config(has_out=bool(out)), detach=execution.detach,
                  gather_only=execution.gather_only, command=list(c.INVOKED), track=track)
    with c.rich_events() as events:
        if ladder:
            from vpbench.ladder import parse_ladder, run_ablation_ladder

            budgets = parse_ladder(p.budget)
            done = run_ablation_ladder(harness, model, axes, budgets, out_dir, sets=p.set_, events=events, **common)
        else:
            done = run_ablation(harness, model, axes, out_dir, sets=p.sets, events=events, **common)
    if done is None:
        c.console().print(f"jobs submitted; gather with `vpbench gather {out_dir}`", highlight=False, markup=False)
        return
    if ladder:
        for budget, (table, _, _) in zip(budgets, done):
            c.print_results(table, title=f"budget {budget}: ablation of {model}")
        c.console().print(f"scaling report: {out_dir / 'scaling.md'}", highlight=False, markup=False)
        return
    table, diffs, variants = done
    c.print_results(table, title=f"ablation of {model}")
    diff_table = Table(title=f"difference to {variants[0].label} (paired over the same test clips)")
    for col in ("variant", "metric", "diff", "95% CI"):
        diff_table.add_column(col)
    for r in diffs.itertuples():
        diff_table.add_row(r.variant, r.metric, fmt_value(r.diff), f"[{fmt_value(r.ci_low)}, {fmt_value(r.ci_high)}]")
    c.console().print(diff_table)
    c.console().print(f"results: {out_dir / 'results.csv'}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("ablate", cls=AblateCommand,
                context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(ablate)
