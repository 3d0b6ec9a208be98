"""``vpbench ablate --lambda 0,1``: one table over a grid of config values."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from vpbench.cli import common as c


def ablate(
    model: Annotated[str, typer.Option("--model", "-m", help="Model plugin to ablate.")] = "shrvqvae",
    lam: Annotated[Optional[str], typer.Option("--lambda", help="Joint-stage weights, e.g. 0,1 (model.lam).")] = None,
    levels: Annotated[Optional[str], typer.Option("--levels", help="Levels of the codebook tree, e.g. 1,2,3.")] = None,
    codebook_size: Annotated[Optional[str], typer.Option("--codebook-size", help="Codewords per codebook, e.g. 8,16,32.")] = None,
    quantizer: Annotated[Optional[str], typer.Option("--quantizer", help="tree, residual and/or flat.")] = None,
    grid: Annotated[Optional[list[str]], typer.Option("--grid", help="Any model field: --grid field=v1,v2 (repeatable).")] = None,
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
    from vpbench.ablate import default_dir, run_ablation
    from vpbench.errors import ConfigError
    from vpbench.plugins import get_harness
    from vpbench.report.tables import fmt_value

    def values(text: str) -> list[str]:
        return [v.strip() for v in text.split(",") if v.strip()]

    axes: dict[str, list[str]] = {}
    for field, text in (("lam", lam), ("levels", levels), ("codebook_size", codebook_size), ("quantizer", quantizer)):
        if text:
            axes[field] = values(text)
    for item in grid or []:
        field, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--grid expects field=v1,v2, got {item!r}")
        field = field.strip()
        section, dot, rest = field.partition(".")
        if dot:  # --grid model.hidden=32,64, spelled like --set
            if section != "model":
                raise ConfigError(f"--grid {item}: an ablation varies model fields (model.FIELD=a,b), not {section}.*")
            field = rest
        axes[field] = values(text)
    if not axes:
        raise ConfigError("nothing to ablate: give e.g. --lambda 0,1 or --grid field=a,b")
    if budget is not None:
        set_ = list(set_ or []) + [f"train.budget={budget}"]
    out_dir = Path(out) if out else default_dir(get_harness(), model, dataset=dataset, preset=preset,
                                                config_file=config, sets=set_)
    with c.rich_events() as events:
        table, diffs, variants = run_ablation(get_harness(), model, axes, out_dir, dataset=dataset, preset=preset,
                                              config_file=config, sets=set_, seed=seed, device=device,
                                              data_dir=data_dir, resume=resume, events=events)
    c.print_results(table, title=f"ablation of {model}")
    diff_table = Table(title=f"difference to {variants[0].label} (paired over the same test clips)")
    for col in ("variant", "metric", "diff", "95% CI"):
        diff_table.add_column(col)
    for r in diffs.itertuples():
        diff_table.add_row(r.variant, r.metric, fmt_value(r.diff), f"[{fmt_value(r.ci_low)}, {fmt_value(r.ci_high)}]")
    c.console().print(diff_table)
    c.console().print(f"results: {out_dir / 'results.csv'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("ablate")(ablate)
