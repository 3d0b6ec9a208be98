"""Decode once: decoded, resized frames cached as uint8 ``.npy`` files, memory-mapped on read.

One file per source video, named by the video and the first 16 hex digits of the source's
sha256, inside a directory named by the preprocessing protocol (size, channels, version). A
changed source file gets a new cache entry; an interrupted build keeps every finished file
(each is written atomically), so decoding never repeats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from vpbench import io


class FrameCache:
    def __init__(self, directory: Path):
        self.directory = directory
        self._open: dict[Path, np.ndarray] = {}

    def path(self, name: str, digest: str) -> Path:
        return self.directory / f"{name}-{digest[:16]}.npy"

    def has(self, name: str, digest: str) -> bool:
        return self.path(name, digest).is_file()

    def put(self, name: str, digest: str, frames: np.ndarray) -> Path:
        path = self.path(name, digest)
        with io.atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(frames, dtype=np.uint8))
        return path

    def get(self, name: str, digest: str, build: Callable[[], np.ndarray] | None = None) -> np.ndarray:
        """The cached frames (memory-mapped), building them with ``build()`` when absent."""
        path = self.path(name, digest)
        if path not in self._open:
            if not path.is_file():
                if build is None:
                    raise FileNotFoundError(path)
                self.put(name, digest, build())
            self._open[path] = np.load(path, mmap_mode="r")
        return self._open[path]

    def decode_all(self, sources: Iterable[tuple[str, Path]], digest: Callable[[Path], str],
                   build: Callable[[Path], np.ndarray], on_corrupt: str, events, task: str,
                   description: str) -> tuple[dict[str, int], dict[str, str], list[str]]:
        """Decode every ``(key, source)`` not cached yet, with progress. Returns frame counts and
        digests by key, and the keys of corrupt sources skipped (``on_corrupt="skip"``; with
        ``"stop"`` the :class:`~vpbench.errors.DataError` naming the file propagates)."""
        from vpbench.errors import DataError

        sources = list(sources)
        lengths, digests, skipped = {}, {}, []
        events.task_start(task, description, len(sources))
        for key, source in sources:
            value = digest(source)
            try:
                frames = self.get(key, value, lambda s=source: build(s))
            except DataError:
                if on_corrupt == "stop":
                    raise
                skipped.append(key)
                events.message(f"skipping corrupt video {source}")
            else:
                digests[key], lengths[key] = value, len(frames)
            events.task_advance(task)
        events.task_end(task)
        return lengths, digests, skipped

    def __getstate__(self):  # DataLoader workers reopen their own memory maps
        return {"directory": self.directory, "_open": {}}


class CachedWindows:
    """Clips cut from cached videos: ``windows`` are ``(key, start)``; items are
    ``(context, future)`` float in [0, 1] with a channel axis (added for grey ``(T, H, W)`` caches)."""

    def __init__(self, cache: FrameCache, digests: dict[str, str], windows: list[tuple[str, int]], n_in: int, n_out: int):
        self.cache, self.digests, self.windows, self.n_in, self.n_out = cache, digests, windows, n_in, n_out

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int):
        import torch

        key, start = self.windows[index]
        frames = np.array(self.cache.get(key, self.digests[key])[start : start + self.n_in + self.n_out])
        x = torch.from_numpy(frames).float().div_(255.0)
        if x.dim() == 3:
            x = x[:, None]
        return x[: self.n_in], x[self.n_in :]
