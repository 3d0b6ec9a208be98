"""``videofolder``: any folder of videos (mp4, avi, ...) or of frame folders.

The user sets the protocol: ``data.path``, ``n_in``, ``n_out``, frame ``height`` / ``width``,
``channels`` (1 = grey, 3 = RGB), the window ``stride`` and the split rule:

- ``split=folders``: ``path/train``, ``path/val`` and ``path/test`` hold the sources;
- ``split=hash``: every source goes to a split by a hash of its relative name
  (``val_fraction`` / ``test_fraction``), so the assignment never changes when files are
  added and whole videos never straddle splits.

A source is a video file or a directory of images (sorted by name). Decoded, resized frames
are cached once per source under ``path/.vpbench-cache/`` (uint8, memory-mapped).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vpbench.data import download as dl
from vpbench.data.cache import CachedWindows, FrameCache
from vpbench.data.frames import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from vpbench.data.video import decode_resized
from vpbench.data.windows import window_starts
from vpbench.errors import ConfigError, DataError
from vpbench.events import Events
from vpbench.hookspecs import hookimpl
from vpbench.protocols import SPLITS, DataSpec
from vpbench.validate import positive


@dataclass(frozen=True)
class VideoFolderConfig:
    path: str = ""  # the folder of videos or frame folders (required)
    n_in: int = 10  # context frames
    n_out: int = 10  # predicted frames
    height: int = 64  # frames are resized to height x width
    width: int = 64  # frames are resized to height x width
    channels: Literal[1, 3] = 1  # 1 = grey (mean of RGB), 3 = RGB
    stride: int = 0  # window stride in frames; 0 = the clip length (no overlap)
    split: Literal["hash", "folders"] = "hash"  # how sources are assigned to splits
    val_fraction: float = 0.1  # split=hash: share of sources for validation
    test_fraction: float = 0.1  # split=hash: share of sources for testing
    on_corrupt: Literal["stop", "skip"] = "stop"  # a corrupt video stops the run, or is skipped

    def __post_init__(self) -> None:
        positive(self, "n_in", "n_out", "height", "width")
        if self.stride < 0:
            raise ConfigError(f"stride must be >= 0 (0 = the clip length), got {self.stride}")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise ConfigError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1")


def hash_split(name: str, val_fraction: float, test_fraction: float) -> str:
    u = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 2**32
    return "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"


def is_source(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() in VIDEO_SUFFIXES
    return path.is_dir() and not path.name.startswith(".") and any(
        p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())


class VideoFolder:
    name = "videofolder"
    version = "1"
    description = "any folder of videos or frame folders, with a protocol you set"
    Config = VideoFolderConfig

    def __init__(self, config: VideoFolderConfig | None = None, root: str | Path | None = None):
        self.config = config or VideoFolderConfig()
        self._index: dict[str, list[tuple[str, int]]] | None = None
        self._digests: dict[str, str] = {}
        self.skipped: list[str] = []

    @property
    def spec(self) -> DataSpec:
        c = self.config
        return DataSpec(c.n_in, c.n_out, c.channels, c.height, c.width)

    @property
    def folder(self) -> Path:
        if not self.config.path:
            raise ConfigError("videofolder needs a folder: --set data.path=/path/to/videos")
        folder = Path(self.config.path).expanduser()
        if not folder.is_dir():
            raise DataError(f"videofolder: {folder} is not a directory")
        return folder

    @property
    def cache(self) -> FrameCache:
        c = self.config
        return FrameCache(self.folder / ".vpbench-cache" / f"v1-{c.height}x{c.width}-c{c.channels}")

    def sources(self) -> dict[str, list[Path]]:
        c, folder = self.config, self.folder
        out: dict[str, list[Path]] = {s: [] for s in SPLITS}
        if c.split == "folders":
            for split in SPLITS:
                sub = folder / split
                if not sub.is_dir():
                    raise DataError(f"videofolder with split=folders needs {sub}")
                out[split] = sorted(p for p in sub.iterdir() if is_source(p))
        else:
            for p in sorted(folder.rglob("*")):
                if ".vpbench-cache" in p.parts or not is_source(p) or (p.is_file() and is_source(p.parent)):
                    continue
                out[hash_split(str(p.relative_to(folder)), c.val_fraction, c.test_fraction)].append(p)
        if not any(out.values()):
            raise DataError(f"videofolder: no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) or frame folders in {folder}")
        return out

    def decode(self, source: Path) -> np.ndarray:
        c = self.config
        return decode_resized(source, c.height, c.width, "mean" if c.channels == 1 else "rgb")

    def digest(self, source: Path) -> str:
        if source.is_file():
            return dl._cached_sha256(source)
        h = hashlib.sha256()
        for f in sorted(source.iterdir()):
            h.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
        return h.hexdigest()

    def prepare(self, events: Events | None = None) -> dict[str, list[tuple[str, int]]]:
        if self._index is not None:
            return self._index
        events = events or Events()
        c = self.config
        sources = self.sources()
        clip = c.n_in + c.n_out
        keyed = {split: [(str(p.relative_to(self.folder)).replace("/", "__"), p) for p in paths]
                 for split, paths in sources.items()}
        path_of = {key: path for items in keyed.values() for key, path in items}
        lengths, digests, skipped = self.cache.decode_all(
            [item for items in keyed.values() for item in items], self.digest, self.decode, c.on_corrupt, events,
            "videofolder", "decoding videos (once)")
        self._digests.update(digests)
        self.skipped += [str(path_of[key]) for key in skipped]
        index: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
        for split, items in keyed.items():
            for key, _ in items:
                if key in lengths:
                    index[split] += [(key, s) for s in window_starts([(1, lengths[key])], clip, c.stride or clip)]
        self._index = index
        events.message("videofolder clips: " + ", ".join(f"{s} {len(w)}" for s, w in index.items()))
        return index

    def split(self, name: str):
        if name not in SPLITS:
            raise ConfigError(f"unknown split '{name}'; use one of {', '.join(SPLITS)}")
        index = self.prepare()
        if not index[name]:
            raise DataError(f"videofolder: the {name} split has no clips of {self.config.n_in + self.config.n_out} frames")
        return CachedWindows(self.cache, self._digests, index[name], self.config.n_in, self.config.n_out)

    def info(self) -> dict[str, str]:
        c = self.config
        return {
            "source": f"the user's folder {c.path or '(data.path not set)'}",
            "licence": "the user's",
            "citation": "the user's",
            "protocol": f"{c.channels}x{c.height}x{c.width}, {c.n_in} -> {c.n_out}, stride {c.stride or 'clip length'}, "
            f"split by {c.split}" + (f" (val {c.val_fraction}, test {c.test_fraction})" if c.split == "hash" else ""),
        }


@hookimpl
def vpbench_register_datasets(register):
    register(VideoFolder)
