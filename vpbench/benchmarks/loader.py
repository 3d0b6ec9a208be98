"""Loader throughput (clips/s) of the built-in datasets against the time a training step takes.

    python -m vpbench.benchmarks.loader [--data-dir ../shared/data] [--seconds 5]

For each dataset it iterates a DataLoader (batch 16, shuffled indices, 0 and 2 workers) for a
few seconds and prints clips/s. KTH is measured on a synthetic copy (real KTH file names and
annotations, generated AVIs) decoded into the same uint8 cache as the real thing, so the
number is the cached-read path a training run sees. Reference: a small conv model's training
step on 16 clips, so the ratio says whether loading can be the bottleneck.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table


def clips_per_second(dataset, workers: int, seconds: float, batch: int = 16) -> float:
    rng = np.random.default_rng(0)
    sampler = [rng.integers(0, len(dataset), batch).tolist() for _ in range(100000)]
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers)
    it = iter(loader)
    next(it)  # warm-up (workers start, caches open)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        context, _ = next(it)
        n += len(context)
    return n / (time.perf_counter() - start)


def step_clips_per_second(spec, seconds: float, batch: int = 16) -> float:
    c = spec.channels
    net = torch.nn.Sequential(torch.nn.Conv2d(c * spec.n_in, 64, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(64, c * spec.n_out, 3, padding=1))
    opt = torch.optim.Adam(net.parameters())
    x = torch.rand(batch, c * spec.n_in, spec.height, spec.width)
    y = torch.rand(batch, c * spec.n_out, spec.height, spec.width)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        loss = torch.nn.functional.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += batch
    return n / (time.perf_counter() - start)


def synthetic_kth(root: Path, annotations: Path) -> Path:
    import av

    from vpbench.builtin import kth as K

    (root / "kth" / "videos").mkdir(parents=True)
    (root / "kth" / "00sequences.txt").write_bytes(annotations.read_bytes())
    frames = np.full((200, 120, 160, 3), 60, np.uint8)
    for t in range(200):
        frames[t, 40:80, (2 * t) % 120 : (2 * t) % 120 + 40] = 220
    for p in (1, 2, 16, 17):
        for a in K.ACTIONS:
            for d in (1, 2, 3, 4):
                path = root / "kth" / "videos" / f"person{p:02d}_{a}_d{d}_uncomp.avi"
                with av.open(str(path), "w") as out:
                    stream = out.add_stream("mpeg4", rate=25)
                    stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
                    for f in frames:
                        out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
                    out.mux(stream.encode())
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    from vpbench.builtin.digits import Digits
    from vpbench.builtin.kth import KTH, KTHConfig
    from vpbench.builtin.mmnist import MovingMNIST

    torch.set_num_threads(max(1, torch.get_num_threads()))
    data_dir = Path(args.data_dir)
    rows = []
    datasets = [("digits", Digits())]
    if (data_dir / "mnist").is_dir():
        datasets.append(("mmnist (generated train)", MovingMNIST(None, data_dir)))
    tmp = tempfile.TemporaryDirectory()
    if (data_dir / "kth" / "00sequences.txt").is_file():
        root = synthetic_kth(Path(tmp.name), data_dir / "kth" / "00sequences.txt")
        kth = KTH(KTHConfig(train_persons=(1, 2), val_persons=(16,), test_persons=(17,)), root)
        kth.prepare()
        datasets.append(("kth 128x128 (cached, synthetic AVIs)", kth))
    for name, data in datasets:
        split = data.split("train")
        step = step_clips_per_second(data.spec, args.seconds)
        for workers in (0, 2):
            rate = clips_per_second(split, workers, args.seconds)
            rows.append((name, str(workers), f"{rate:,.0f}", f"{step:,.0f}", f"{rate / step:.1f}x"))
    table = Table(title=f"loader throughput (batch 16, {torch.get_num_threads()} torch threads)")
    for col in ("dataset", "workers", "clips/s loaded", "clips/s trained (small conv)", "loader / step"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    tmp.cleanup()


if __name__ == "__main__":
    main()
