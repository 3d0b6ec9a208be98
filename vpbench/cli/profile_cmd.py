"""``vpbench profile MODEL``: parameters, FLOPs / MACs, latency, throughput, peak memory."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from vpbench.cli import common as c


def profile(
    model: Annotated[str, typer.Argument(help="Model plugin name.")],
    dataset: c.Dataset = None,
    preset: c.Preset = None,
    config: c.ConfigFile = None,
    set_: c.Sets = None,
    device: c.Device = None,
    speed: Annotated[bool, typer.Option("--speed/--no-speed", help="Also time latency and throughput.")] = True,
) -> None:
    """Cost of one prediction (n_in -> n_out at batch 1) of MODEL on DATASET's frame size."""
    from vpbench import runs
    from vpbench.plugins import get_harness
    from vpbench.profile import profile_model
    from vpbench.report.tables import fmt_value

    harness = get_harness()
    run_ = runs.prepare(harness, model, dataset=dataset, preset=preset, config_file=config, sets=set_, device=device)
    cfg = run_.config
    spec = runs.open_dataset(harness, cfg.dataset_name, cfg.data, prepare=False).spec  # the frame shape only
    built = runs.build_model_for_spec(run_, spec)
    prof = profile_model(built, run_.model_cls, cfg.model, spec, run_.device, speed=speed,
                         max_batch=cfg.eval.max_batch, seconds=cfg.eval.speed_seconds)
    table = Table(title=f"{model}: {spec.n_in} -> {spec.n_out} frames of {spec.channels}x{spec.height}x{spec.width}",
                  show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("parameters", f"{fmt_value(prof.params, 'count')} ({prof.params:,}; trainable {prof.params_trainable:,})")
    table.add_row("FLOPs / prediction", f"{prof.flops.flops / 1e9:.4g} G (counted on {prof.flops.counted_on})")
    table.add_row("MACs / prediction", f"{prof.flops.macs / 1e9:.4g} G (= OpenSTL's 'FLOPs')")
    uncounted = ", ".join(f"{op} x{n}" for op, n in prof.flops.uncounted.items()) or "none"
    table.add_row("ops without a FLOP formula", uncounted)
    if prof.speed is not None:
        s = prof.speed
        table.add_row("latency (batch 1)", f"{s.latency_ms:.4g} ms (IQR {s.latency_ms_iqr:.2g} ms)")
        table.add_row("throughput", f"{s.throughput:.4g} clips/s at batch {s.throughput_batch}")
        table.add_row("peak memory", f"{s.peak_memory_mb:.0f} MiB ({s.memory_kind})")
        table.add_row("device / dtype", f"{s.device} / {s.dtype}")
    c.console().print(table)


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
