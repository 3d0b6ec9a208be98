"""``vpbench ablate -m MODEL --grid FIELD=a,b``: one table over a grid of model config values."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from typer.core import TyperCommand

from vpbench.cli import common as c

SHORTCUTS_HELP = ("A model may offer its own options for its fields (its ablation_shortcuts): "
                  "`vpbench ablate -m shrvqvae --lambda 0,1` is `--grid lam=0,1`.")


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


def ablate(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model plugin to ablate (required).")] = None,
    grid: Annotated[Optional[list[str]], typer.Option("--grid", help="A model field and its values: --grid field=v1,v2 "
                                                                      "(repeatable).")] = None,
    dataset: c.Dataset = None,
    preset: c.Preset = None,
    config: c.ConfigFile = None,
    set_: c.Sets = None,
    seed: c.Seed = None,
    device: c.Device = None,
    budget: c.Budget = None,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Ablation directory (default runs/ablate-...).")] = None,
    data_dir: c.DataDir = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue unfinished trainings of the variants.")] = False,
) -> None:
    """Train and evaluate one variant per grid point; shared early stages are trained once."""
    from vpbench.ablate import default_dir, parse_axes, run_ablation
    from vpbench.errors import ConfigError
    from vpbench.plugins import get_harness
    from vpbench.report.tables import fmt_value

    harness = get_harness()
    if model is None:
        raise ConfigError(f"vpbench ablate needs --model/-m MODEL, one of {', '.join(harness.models.names())}")
    axes = parse_axes(harness.models.get(model), grid, ctx.args)
    if budget is not None:
        set_ = list(set_ or []) + [f"train.budget={budget}"]
    out_dir = Path(out) if out else default_dir(harness, model, dataset=dataset, preset=preset, config_file=config,
                                                sets=set_)
    with c.rich_events() as events:
        table, diffs, variants = run_ablation(harness, model, axes, out_dir, dataset=dataset, preset=preset,
                                              config_file=config, sets=set_, seed=seed, device=device,
                                              data_dir=data_dir, resume=resume, events=events)
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
