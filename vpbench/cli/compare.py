"""``vpbench compare MODEL... --dataset D``: several models, one table, paired differences."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vpbench.cli import common as c


def compare(
    models: Annotated[list[str], typer.Argument(help="Model plugin names; the first is the reference for paired differences.")],
    dataset: c.Dataset = None,
    preset: c.Preset = None,
    config: c.ConfigFile = None,
    set_: c.Sets = None,
    seed: c.Seed = None,
    device: c.Device = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Where the combined results go (default runs/compare-...).")] = None,
    data_dir: c.DataDir = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue unfinished trainings of the compared runs.")] = False,
    note: Annotated[str | None, typer.Option("--note", help="Text (or @FILE) added to the report's Notes section, "
                                                           "e.g. how the protocol differs from the published one.")] = None,
) -> None:
    """Train (if needed) and evaluate every model on the same test clips; print one table."""
    import pandas as pd

    from vpbench import runs
    from vpbench.compare import paired_table, same_clips, write_comparison
    from vpbench.errors import ConfigError
    from vpbench.plugins import get_harness

    if len(set(models)) != len(models):
        raise ConfigError("each model may appear once in vpbench compare")
    note_text = ""
    if note:
        if note.startswith("@"):
            try:
                note_text = Path(note[1:]).read_text()
            except OSError as exc:
                raise ConfigError(f"--note {note}: cannot read the file ({exc.strerror})") from None
        else:
            note_text = note
    harness = get_harness()
    prepared = [runs.prepare(harness, m, dataset=dataset, preset=preset, config_file=config, sets=set_,
                             seed=seed, device=device, data_dir=data_dir) for m in models]
    prepared, aligned = same_clips(prepared)
    tables, per_clip, datasets, predictions = [], {}, [], {}
    with c.rich_events() as events:
        if aligned:
            events.message(aligned)
        for run_ in prepared:
            data = runs.build_dataset(run_, events)
            model = runs.train(run_, data, resume=resume, events=events)
            tables.append(runs.evaluate(run_, model, data, events=events))
            per_clip[run_.config.model_name] = runs.read_per_clip(run_.run_dir)
            datasets.append(data)
            predictions[run_.config.model_name] = (run_.examples if run_.examples is not None
                                                   else runs.example_predictions(run_, model, data))
    table = pd.concat(tables, ignore_index=True)
    cfg = prepared[0].config
    out_dir = Path(out) if out else runs.timestamped_dir(f"compare-{cfg.dataset_name}-{cfg.preset}")
    paired = paired_table(per_clip, models[0], harness, cfg.eval.bootstrap, cfg.seed)
    split = datasets[0].split(cfg.eval.split)
    examples = [(*split[i], {name: preds[i] for name, preds in predictions.items()})
                for i in range(min(len(p) for p in predictions.values()))] if predictions else []
    write_comparison(out_dir, table, paired, prepared, harness, datasets, examples, note_text)
    c.print_results(table, title=f"{cfg.dataset_name} ({cfg.eval.split}), preset {cfg.preset}")
    from vpbench.compare import rich_paired

    c.console().print(rich_paired(paired, models[0]))
    c.console().print(f"results: {out_dir / 'results.csv'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
