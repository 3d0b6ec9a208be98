"""Metric throughput (frames/s): batched torch SSIM / PSNR vs scikit-image, and LPIPS.

    python -m vpbench.benchmarks.metrics [--frames 2000] [--size 64] [--device cpu]

scikit-image is the reference implementation (the tests check parity to 1e-4); this prints
how much faster the batched torch versions are. LPIPS runs with the official weights when
they are in the torch hub cache, else with random weights of the same architecture (same
arithmetic, so the same speed), as the output says.
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table


def rate(fn, frames: int, repeats: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return frames / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from vpbench.errors import MetricUnavailable
    from vpbench.metrics import lpips as L
    from vpbench.metrics.basic import PSNR, SSIM

    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    n, s = args.frames, args.size
    target = torch.rand(n, 1, 1, s, s, generator=g)
    pred = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    tn, pn = target[:, 0, 0].double().numpy(), pred[:, 0, 0].double().numpy()
    td, pd_ = target.to(device), pred.to(device)

    def sync(fn):
        def run():
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
        return run

    rows = []
    ssim_ref = rate(lambda: [structural_similarity(tn[i], pn[i], data_range=1.0) for i in range(n)], n, 1)
    ssim_ours = rate(sync(lambda: SSIM().per_frame(pd_, td)), n)
    rows.append(("ssim", f"{ssim_ours:,.0f}", f"{ssim_ref:,.0f}", f"{ssim_ours / ssim_ref:.1f}x"))
    psnr_ref = rate(lambda: [peak_signal_noise_ratio(tn[i], pn[i], data_range=1.0) for i in range(n)], n, 1)
    psnr_ours = rate(sync(lambda: PSNR().per_frame(pd_, td)), n)
    rows.append(("psnr", f"{psnr_ours:,.0f}", f"{psnr_ref:,.0f}", f"{psnr_ours / psnr_ref:.1f}x"))
    metric = L.LPIPS()
    try:
        metric.network(device)
        weights = "official weights"
    except MetricUnavailable:
        metric = L.LPIPS(L.LPIPSNet())
        weights = "random weights (official ones not cached; same arithmetic)"
    m = min(n, 512)
    lp = rate(sync(lambda: [metric.per_frame(pd_[i:i + 64], td[i:i + 64]) for i in range(0, m, 64)]), m)
    rows.append((f"lpips ({weights})", f"{lp:,.0f}", "-", "-"))
    table = Table(title=f"metric throughput, {n} frames of 1x{s}x{s}, {device}, {torch.get_num_threads()} threads")
    for col in ("metric", "torch frames/s", "scikit-image frames/s", "torch / scikit-image"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
