"""Frames cached once as ``.npy`` arrays, memory-mapped on read, and clips cut from them.

A cache file holds frames ``(N, C, H, W)``: uint8 (pixel values, scaled by 1/255 on read) or
float16 (values already in [0, 1], for data a normalisation maps there: flows, temperatures).
Every file is written atomically, so an interrupted build keeps the files already finished and
never leaves a half-written one under the real name. Cache names carry a key derived from the
source file (its name, size and modification time) and the preprocessing version, so a changed
source or protocol builds a new entry and never reads a stale one.

Optional format libraries (h5py, xarray, ...) are imported through :func:`require`, which
turns a missing one into one line saying which extra to install.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vpbench import io
from vpbench.errors import ConfigError, DataError

PIP_NAMES = {"h5py": "h5py", "xarray": "xarray", "netCDF4": "netCDF4", "crc32c": "crc32c"}


def require(module: str, dataset: str, extra: str) -> Any:
    """``import module``, or a :class:`DataError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pip = PIP_NAMES.get(module, module)
        raise DataError(f"{dataset} needs {pip}: pip install 'vpbench[{extra}]'") from None


def source_key(*paths: Path, extra: str = "") -> str:
    """16 hex digits naming the sources (name, size, mtime) and ``extra`` (the protocol)."""
    h = hashlib.sha256(extra.encode())
    for path in paths:
        stat = path.stat()
        h.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def save_npy(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` to ``path`` atomically (a crash leaves no partial file under the name)."""
    with io.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array))
    return path


def cached_npy(path: Path, build: Callable[[], np.ndarray]) -> np.ndarray:
    """The array at ``path`` (memory-mapped), built once with ``build()`` when absent."""
    if not path.is_file():
        save_npy(path, build())
    return np.load(path, mmap_mode="r")


def save_npy_chunks(path: Path, shape: tuple[int, ...], dtype: Any, chunks: Any) -> Path:
    """Write a ``.npy`` of ``shape`` from ``chunks`` (an iterable of ``(start, array)``) without
    holding it in memory; atomic like :func:`save_npy`."""
    with io.atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        for start, block in chunks:
            out[start : start + len(block)] = block
        out.flush()
        del out
    return path


class Windows:
    """A map-style dataset of clips cut from cached frame arrays.

    ``arrays`` maps a key to a ``.npy`` of frames ``(N, C, H, W)`` (uint8 or float16);
    ``windows`` lists ``(key, start)`` (frames ``start .. start + n_in + n_out - 1``) or
    ``(key, rows)`` (explicit frame rows). Items are ``(context, future)`` float32 in [0, 1].
    The arrays are opened lazily in each process (DataLoader workers reopen their maps).
    """

    def __init__(self, arrays: dict[str, Path], windows: Sequence[tuple[str, Any]], n_in: int, n_out: int):
        self.arrays, self.windows, self.n_in, self.n_out = dict(arrays), list(windows), n_in, n_out
        self._open: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.windows)

    def frames(self, key: str) -> np.ndarray:
        if key not in self._open:
            self._open[key] = np.load(self.arrays[key], mmap_mode="r")
        return self._open[key]

    def __getitem__(self, index: int):
        import torch

        if not -len(self.windows) <= index < len(self.windows):
            raise IndexError(index)
        key, where = self.windows[index]
        frames = self.frames(key)
        if isinstance(where, (int, np.integer)):
            clip = np.array(frames[where : where + self.n_in + self.n_out])
        else:
            clip = np.array(frames[np.asarray(where)])
        x = torch.from_numpy(clip)
        x = x.float().div_(255.0) if clip.dtype == np.uint8 else x.float().clamp_(0, 1)
        return x[: self.n_in], x[self.n_in :]

    def __getstate__(self):
        return {**self.__dict__, "_open": {}}


class WindowedDataset:
    """Base of the datasets whose ``prepare()`` returns ``(arrays, windows, extra)``: cached
    frame arrays by key, the ``(key, start)`` of every clip of each split, and facts for ``info()``.

    Subclasses set ``folder`` (their directory under the data root, or ``""``) and implement
    ``prepare``; ``split`` and the constructor are shared.
    """

    folder = ""

    def __init__(self, config: Any = None, root: str | Path | None = None):
        from vpbench.data.root import data_root

        self.config = config or self.Config()
        self.root = Path(root) if root is not None else data_root()
        self._prepared: tuple[dict[str, Path], dict[str, list], dict] | None = None

    @property
    def dir(self) -> Path:
        return self.root / self.folder

    def empty_split(self, name: str) -> str:
        """The message for a split without clips."""
        return f"{self.name}: the {name} split has no clips of {self.config.n_in + self.config.n_out} frames"

    def split(self, name: str) -> Windows:
        from vpbench.protocols import SPLITS

        if name not in SPLITS:
            raise ConfigError(f"unknown split '{name}'; use one of {', '.join(SPLITS)}")
        arrays, windows, _ = self.prepare()
        if not windows[name]:
            raise DataError(self.empty_split(name))
        return Windows(arrays, windows[name], self.config.n_in, self.config.n_out)


def check_files(paths: Sequence[Path], what: str, fix: str) -> None:
    """One :class:`DataError` naming the first missing file among ``paths``."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{what}: {missing[0]} is missing{more}; {fix}")


def span_counts(counts: dict[str, int], published: dict[str, int] | None = None, note: str = "") -> str:
    """``train 10, val 2, test 3`` with the published counts beside them where known."""
    parts = []
    for split, n in counts.items():
        ref = (published or {}).get(split)
        if ref is None:
            parts.append(f"{split} {n}")
        else:
            parts.append(f"{split} {n} ({'=' if ref == n else '!='} published {ref})")
    return ", ".join(parts) + (f"; {note}" if note else "")
