"""Loader throughput (clips/s) of the built-in datasets against the time a training step takes.

    python -m vpbench.benchmarks.loader [--data-dir ../shared/data] [--seconds 5]

For each dataset it iterates a DataLoader (batch 16, shuffled indices, 0 and 2 workers) for a
few seconds and prints clips/s. The OpenSTL datasets (taxibj, human, kitticaltech, bair,
weatherbench) are measured on synthetic caches of their frame shape and dtype, read through the
same memory-mapped ``Windows`` their splits return; mfmnist is the mmnist generator. KTH is
measured on a synthetic copy (real KTH file names and annotations, generated AVIs) decoded into
the same uint8 cache as the real thing. Every number is the cached-read path a training run sees. Reference: a small conv model's training
step on 16 clips, so the ratio says whether loading can be the bottleneck.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import types
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


# The OpenSTL datasets read clips from memory-mapped caches (vpbench.data.arrays.Windows): the
# benchmark times that path on synthetic caches of each dataset's frame shape, dtype and clip length.
CACHED = (  # name, frames (C, H, W), dtype, n_in, n_out, frames per source, how windows are cut
    ("taxibj 2x32x32 (float16 cache)", (2, 32, 32), np.float16, 4, 4, 8, "clips"),
    ("human 3x256x256 (uint8 cache)", (3, 256, 256), np.uint8, 4, 4, 40, "rows"),
    ("kitticaltech 3x128x160 (uint8 cache)", (3, 128, 160), np.uint8, 10, 1, 400, "clips"),
    ("bair 3x64x64 (uint8 cache)", (3, 64, 64), np.uint8, 4, 12, 30, "stride1"),
    ("weatherbench t2m 1x32x64 (float16 cache)", (1, 32, 64), np.float16, 12, 12, 2000, "stride1"),
)


def synthetic_cached(root: Path, shape, dtype, n_in: int, n_out: int, per_source: int, how: str):
    """A Windows dataset over a synthetic cache like the dataset's own (4 sources)."""
    from vpbench.data.arrays import Windows, save_npy

    rng = np.random.default_rng(0)
    arrays, windows, clip = {}, [], n_in + n_out
    for k in range(4):
        frames = rng.integers(0, 255, (per_source, *shape)).astype(dtype)
        if dtype != np.uint8:
            frames = (frames.astype(np.float32) / 255).astype(dtype)
        arrays[str(k)] = save_npy(root / f"{k}.npy", frames)
        if how == "rows":  # Human3.6M: frames 5 apart, cached as consecutive rows
            windows += [(str(k), tuple(range(s, s + clip))) for s in range(0, per_source - clip + 1)]
        elif how == "clips":
            windows += [(str(k), s) for s in range(0, per_source - clip + 1, clip)]
        else:
            windows += [(str(k), s) for s in range(0, per_source - clip + 1)]
    return Windows(arrays, windows, n_in, n_out)


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
    if (data_dir / "mnist").is_dir():
        # mfmnist is the same generator on other glyphs: timed on the MNIST digits when Fashion-MNIST is absent
        from vpbench.builtin.mfmnist import MovingFashionMNIST
        from vpbench.builtin.mmnist import MMNISTConfig

        fashion = MovingFashionMNIST(None, data_dir)
        if all((fashion.mnist_dir / r.name).is_file() for r in fashion.GLYPH_FILES.values()):
            datasets.append(("mfmnist (generated train)", fashion))
        else:
            datasets.append(("mfmnist generator (MNIST glyphs)", MovingMNIST(MMNISTConfig(), data_dir)))
    from vpbench.protocols import DataSpec

    for k, (name, shape, dtype, n_in, n_out, per_source, how) in enumerate(CACHED):
        folder = Path(tmp.name) / f"cached{k}"
        split = synthetic_cached(folder, shape, dtype, n_in, n_out, per_source, how)
        spec = DataSpec(n_in, n_out, *shape)
        datasets.append((name, types.SimpleNamespace(split=lambda _name, s=split: s, spec=spec)))
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
