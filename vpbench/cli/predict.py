"""``vpbench predict RUN_DIR``: predicted frames as PNG strips and GIFs."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from vpbench.cli import common as c


def predict(
    run_dir: Annotated[str, typer.Argument(help="A run directory with a trained model.")],
    input_: Annotated[
        Optional[str], typer.Option("--input", "-i", help="Frames to continue: a folder of images, a .npy array or a video file.")
    ] = None,
    clips: Annotated[str, typer.Option("--clips", help="Test clips to predict when no --input is given, e.g. 0,1,2.")] = "0",
    out: c.Out = None,
    device: c.Device = None,
    data_dir: c.DataDir = None,
) -> None:
    """Predict the future of test clips (or of your own frames) and save PNG strips and GIFs."""
    import torch

    from vpbench import runs
    from vpbench.data.frames import load_frames
    from vpbench.errors import ConfigError
    from vpbench.evaluate import predict as checked_predict
    from vpbench.plugins import get_harness
    from vpbench.report.media import save_gif, save_strip

    harness = get_harness()
    run_ = runs.load_run(harness, run_dir, device=device, data_dir=data_dir)
    data = runs.build_dataset(run_)
    model = runs.load_trained(run_, data).eval()
    spec = data.spec
    out_dir = Path(out) if out else run_.layout.predictions
    items = []
    if input_:
        frames = load_frames(input_, spec)  # (T, C, H, W)
        if len(frames) < spec.n_in:
            raise ConfigError(f"{input_} has {len(frames)} frames; the model needs {spec.n_in} context frames")
        truth = frames[spec.n_in : spec.n_in + spec.n_out] if len(frames) > spec.n_in else None
        items.append((Path(input_).stem, frames[: spec.n_in], truth))
    else:
        split = data.split(run_.config.eval.split)
        try:
            indices = [int(i) for i in clips.split(",") if i.strip()]
        except ValueError:
            raise ConfigError(f"--clips expects comma-separated integers, got {clips!r}") from None
        for i in indices:
            if not 0 <= i < len(split):
                raise ConfigError(f"clip {i} is outside the {run_.config.eval.split} split (0..{len(split) - 1})")
            context, future = split[i]
            items.append((f"clip{i:05d}", context, future))
    writes_into_run = out is None
    with runs.lock(run_) if writes_into_run else contextlib.nullcontext(), torch.no_grad():
        for name, context, truth in items:
            pred = checked_predict(model, context[None].to(run_.device), spec, run_.config.model_name)[0].cpu()
            save_strip(out_dir / f"{name}.png", context, truth, pred)
            save_gif(out_dir / f"{name}.gif", context, truth, pred)
            c.console().print(f"wrote {out_dir / name}.png and .gif", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
