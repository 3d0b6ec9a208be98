"""Generation speed of S-HR-VQVAE's priors: naive, cached sequential and wavefront decoding.

    python -m vpbench_shrvqvae.benchmarks [--size cpu|kth|all] [--prior vpn|pixelcnn|all] [--batch 1,100]
                                          [--frames F] [--run RUN_DIR --data-dir DIR]

Per generated frame (what a prediction of ``1 + F`` frames takes over one of 1 frame, divided
by ``F = --frames``; reading the context and preparing weights, the same for any number of
frames, are the ``fixed`` column, for the default path): the naive loop (the whole model on
the whole clip at every step; ``--naive-steps`` steps timed and multiplied, as every naive step
costs the same), the cached sequential path (one position and level per step from cached layer
inputs) and, for the VPN prior, wavefront decoding (the default: a wavefront of independent
positions per step), with the speed-up of each over the cached path. ``cpu`` is the cpu
preset's size (8x8 latent, 2 levels of 16, 10 -> 10), ``kth`` the paper preset's on KTH (32x32
latent, 3 levels of 16, 10 -> 20). Weights are random unless ``--run`` names a trained run,
whose prior decodes that run's own test clips. Equality of the codes of all paths is a unit
test (tests/test_layers_prior.py), not re-checked here.
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

import vpbench
from vpbench import VPBenchError

SIZES = {"cpu": ("cpu", 64, 64, 10, 10), "kth": ("paper", 128, 128, 10, 20)}  # preset, frame H, W, n_in, n_out


def build(size: str, run_dir: str | None, batch: int, prior: str = "vpn", data_dir: str | None = None):
    """A model (random weights, or the run's) and the global codes of ``batch`` context clips."""
    from vpbench_shrvqvae.model import SHRVQVAE, SHRVQVAEConfig

    torch.manual_seed(0)
    if run_dir:
        model, data = vpbench.load_trained(run_dir, data_dir=data_dir)
        split = data.split("test")
        context = torch.stack([split[i][0] for i in range(batch)])
        n_out = data.spec.n_out
        with torch.no_grad():
            glob = model.to_global(model.encode_clip(context))
        return model.eval(), glob, n_out
    preset, h, w, n_in, n_out = SIZES[size]
    fields = dict(SHRVQVAE.presets[preset]["model"], prior=prior)
    model = SHRVQVAE(vpbench.build_config(SHRVQVAEConfig, fields), vpbench.DataSpec(channels=1, height=h, width=w, n_in=n_in, n_out=n_out))
    q = model.quantizer
    hh, ww = model.latent_hw
    glob = q.global_codes(torch.randint(0, q.M, (batch, n_in, hh, ww, q.levels))).permute(0, 1, 4, 2, 3)
    return model.eval(), glob, n_out


def timed(fn, repeats: int = 3) -> float:
    """The fastest of ``repeats`` calls (the least disturbed by other work on the machine); one
    call if it takes more than ten seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if best > 10:
            break
    return best


def per_frame(generate, frames: int, repeats: int = 5) -> tuple[float, float]:
    """(seconds per generated frame, fixed seconds per prediction) of ``generate(n_out)``: a
    prediction of ``1 + frames`` frames against one of 1 (the fastest of ``repeats`` calls each,
    alternating; one each if a call takes more than ten seconds), so that reading the context and
    preparing weights, the same for every frame count, fall out of the per-frame time."""
    generate(1)  # warm-up
    one = more = float("inf")
    for _ in range(repeats):
        one = min(one, timed(lambda: generate(1), 1))
        more = min(more, timed(lambda: generate(1 + frames), 1))
        if more > 10:
            break
    step = (more - one) / frames
    return step, one - step


def measure(model, glob: torch.Tensor, frames: int, naive_steps: int) -> dict:
    prior, q = model.prior, model.quantizer
    choose = model._chooser(glob.device, 0.0)
    vpn = model.config.prior == "vpn"
    args = (choose, q.global_codes) + ((q.cumulative_codewords,) if vpn else ())
    sequential = {"wavefront": False} if vpn else {}
    volume = torch.cat([glob, glob[:, -1:].expand(-1, frames, -1, -1, -1)], 1)
    with torch.no_grad():
        cached, fixed = per_frame(lambda k: prior.generate(glob, k, *args, **sequential), frames)
        wavefront = None
        if vpn:
            wavefront, fixed = per_frame(lambda k: prior.generate(glob, k, *args), frames)
        step = timed(lambda: [model.prior_logits(volume) for _ in range(naive_steps)], 1) / naive_steps
    hh, ww = glob.shape[-2:]
    return {"naive": step * hh * ww * q.levels, "cached": cached, "wavefront": wavefront, "fixed": fixed,
            "codes": hh * ww * q.levels}


def positive(text: str) -> int:
    """An argparse type: an integer >= 1 (0 frames or steps would leave nothing to time)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def batches(text: str) -> list[int]:
    """An argparse type: comma-separated positive batch sizes."""
    return [positive(part) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=[*SIZES, "all"], default="all")
    parser.add_argument("--batch", type=batches, default="1,100", help="comma-separated batch sizes")
    parser.add_argument("--frames", type=positive, default=2, help="frames added to a one-frame prediction, per path")
    parser.add_argument("--naive-steps", type=positive, default=2)
    parser.add_argument("--prior", choices=["vpn", "pixelcnn", "all"], default="vpn")
    parser.add_argument("--run", default=None, help="a trained S-HR-VQVAE run directory")
    parser.add_argument("--data-dir", default=None, help="the data root of that run's dataset")
    args = parser.parse_args()
    sizes = ["run"] if args.run else (list(SIZES) if args.size == "all" else [args.size])
    priors = ["run"] if args.run else (["vpn", "pixelcnn"] if args.prior == "all" else [args.prior])
    console = Console()
    table = Table(title=f"S-HR-VQVAE generation: seconds per generated frame ({torch.get_num_threads()} torch threads)")
    for col in ("prior", "size", "batch", "codes", "fixed", "naive", "cached", "wavefront", "cached/naive",
                "wavefront/cached"):
        table.add_column(col, justify="right")
    for prior in priors:
        for size in sizes:
            for batch in args.batch:
                try:
                    model, glob, _ = build(size, args.run, batch, prior, args.data_dir)
                except VPBenchError as exc:  # e.g. a --run whose model.pt is refused: one line, as vpbench says it
                    parser.exit(2, f"error: {exc}\n")
                m = measure(model, glob, args.frames, args.naive_steps)
                wave = m["wavefront"]
                console.log(f"{prior} {size} batch {batch}: cached {m['cached']:.3g} s, wavefront "
                            f"{'-' if wave is None else f'{wave:.3g}'} s per frame")
                table.add_row(model.config.prior, size, str(batch), str(m["codes"]), f"{m['fixed']:.3g}", f"{m['naive']:.3g}",
                              f"{m['cached']:.3g}", "-" if wave is None else f"{wave:.3g}",
                              f"{m['naive'] / m['cached']:.0f}x", "-" if wave is None else f"{m['cached'] / wave:.1f}x")
    console.print(table)


if __name__ == "__main__":
    main()
