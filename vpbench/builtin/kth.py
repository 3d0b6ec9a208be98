"""``kth``, ``kth40``, ``kth64``: the KTH human actions videos (Schuldt, Laptev, Caputo, ICPR 2004).

Protocol (OpenSTL / PredRNN / E3D-LSTM): persons 01-16 for training and 17-25 for testing;
frames decoded from the official AVIs with PyAV, first channel (the content is grey),
resized to 128x128 (bilinear, half-pixel centres, like OpenCV's INTER_LINEAR) and scaled to
[0, 1]; clips of ``n_in + n_out`` frames cut inside the ranges of KTH's ``00sequences.txt``,
windows advancing by the clip length for boxing, handclapping, handwaving and walking and by
3 frames for jogging and running. ``kth`` predicts 10 -> 20, ``kth40`` 10 -> 40, ``kth64`` is
10 -> 20 at 64x64.

Validation never uses test persons: by default persons 15 and 16 are held out of training
for validation (so training uses persons 01-14 unless ``data.val_persons`` is changed).

Decoded frames are cached once per video as uint8 ``.npy`` files (memory-mapped on read)
under ``<data root>/kth/cache/``, keyed by the AVI's sha256 and the preprocessing protocol.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vpbench.data import download as dl
from vpbench.data.archive import extract as unpack
from vpbench.data.cache import CachedWindows, FrameCache
from vpbench.data.variant import variant
from vpbench.data.video import decode_resized
from vpbench.data.windows import window_starts
from vpbench.errors import ConfigError, DataError
from vpbench.events import Events
from vpbench.hookspecs import hookimpl
from vpbench.protocols import SPLITS, DataSpec
from vpbench.validate import positive

ACTIONS = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")
FAST_ACTIONS = ("jogging", "running")
BASE_URL = "https://www.csc.kth.se/cvap/actions/"
SEQUENCES = dl.RemoteFile("00sequences.txt", (BASE_URL + "00sequences.txt",),
                          "6331f4e4d0d820f306a46c40f82afc39f2486cc8723fe15f4742c14c261ccba7")
# KTH publishes no checksums for its zips: the sha256 of the first download is recorded.
ZIPS = {a: dl.RemoteFile(f"{a}.zip", (f"{BASE_URL}{a}.zip",)) for a in ACTIONS}
LINE_RE = re.compile(r"^(person(\d\d)_([a-z]+)_d(\d))\s+(.*)$")
RANGE_RE = re.compile(r"(\d+)\s*-\s*(\d+)")
PREPROCESS_VERSION = 1


@dataclass(frozen=True)
class Sequences:
    """Parsed ``00sequences.txt``: 1-based inclusive frame ranges per video, and missing ones."""

    ranges: dict[str, list[tuple[int, int]]]
    missing: list[str]

    @property
    def n_ranges(self) -> int:
        return sum(len(r) for r in self.ranges.values())


def parse_sequences(text: str) -> Sequences:
    """Parse KTH's annotation file with its quirks: CRLF line ends, a free-text header, spaces
    before tabs, ``*missing*`` entries, ranges out of order or overlapping (kept as given)."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    missing: list[str] = []
    for raw in text.splitlines():
        match = LINE_RE.match(raw.strip())
        if not match:
            continue  # header, blank lines
        video, rest = match.group(1), match.group(5)
        if "*missing*" in rest:
            missing.append(video)
            continue
        if not rest.startswith("frames"):
            raise DataError(f"00sequences.txt: cannot read the line for {video}: {raw.strip()!r}")
        spans = [(int(a), int(b)) for a, b in RANGE_RE.findall(rest)]
        bad = [s for s in spans if s[0] < 1 or s[1] < s[0]]
        if not spans or bad:
            raise DataError(f"00sequences.txt: bad frame ranges for {video}: {rest!r}")
        ranges[video] = spans
    return Sequences(ranges, missing)


def person_of(video: str) -> int:
    return int(video[6:8])


def action_of(video: str) -> str:
    return video.split("_")[1]


def _persons(text: str) -> tuple[int, ...]:
    return tuple(range(int(text.split("-")[0]), int(text.split("-")[1]) + 1))


@dataclass(frozen=True)
class KTHConfig:
    n_in: int = 10  # context frames
    n_out: int = 20  # predicted frames
    size: int = 128  # frames are resized to size x size
    train_persons: tuple[int, ...] = _persons("1-14")  # persons 15-16 are held out for validation
    val_persons: tuple[int, ...] = (15, 16)  # validation persons (never test persons)
    test_persons: tuple[int, ...] = _persons("17-25")  # the published test persons
    actions: tuple[str, ...] = ACTIONS  # actions used
    stride: int = 0  # window stride for boxing, handclapping, handwaving, walking; 0 = clip length
    fast_stride: int = 3  # window stride for jogging and running
    on_corrupt: Literal["stop", "skip"] = "stop"  # a corrupt AVI stops the run, or is skipped

    def __post_init__(self) -> None:
        positive(self, "n_in", "n_out", "size", "fast_stride")
        if self.stride < 0:
            raise ConfigError("stride must be >= 0")
        unknown = set(self.actions) - set(ACTIONS)
        if unknown:
            raise ConfigError(f"unknown KTH actions {sorted(unknown)}; use {', '.join(ACTIONS)}")
        test = set(self.test_persons)
        if test & set(self.train_persons) or test & set(self.val_persons):
            raise ConfigError("test persons must not appear in train_persons or val_persons")
        if not all(1 <= p <= 25 for p in (*self.train_persons, *self.val_persons, *self.test_persons)):
            raise ConfigError("KTH persons are numbered 1-25")


class KTH:
    """KTH actions, 1x128x128, 10 -> 20 (persons 1-16 train / 17-25 test)."""

    name = "kth"
    version = "1"
    description = "KTH human actions, 128x128, 10 -> 20 (OpenSTL/PredRNN protocol)"
    Config = KTHConfig

    def __init__(self, config: KTHConfig | None = None, root: str | Path | None = None):
        from vpbench.data.root import data_root

        self.config = config or self.Config()
        self.dir = (Path(root) if root is not None else data_root()) / "kth"
        self._index: dict[str, list[tuple[str, int]]] | None = None
        self._digests: dict[str, str] = {}
        self.skipped: list[str] = []

    @property
    def spec(self) -> DataSpec:
        c = self.config
        return DataSpec(c.n_in, c.n_out, 1, c.size, c.size)

    @property
    def cache(self) -> FrameCache:
        return FrameCache(self.dir / "cache" / f"v{PREPROCESS_VERSION}-{self.config.size}px-grey")

    # -- files ----------------------------------------------------------------------------
    def sequences(self) -> Sequences:
        path = self.dir / SEQUENCES.name
        if not path.is_file():
            raise DataError(f"KTH's {SEQUENCES.name} is missing in {self.dir}; run `vpbench data download kth` or put "
                            f"{SEQUENCES.urls[0]} there")
        dl.verify(path, SEQUENCES, self.dir)
        return parse_sequences(path.read_text(encoding="latin-1"))

    def videos(self) -> dict[str, Path]:
        """``personXX_action_dY`` -> AVI path, for every KTH AVI found under the KTH folder."""
        found = {}
        if self.dir.is_dir():
            for path in self.dir.rglob("person*_uncomp.avi"):
                found[path.name[: -len("_uncomp.avi")]] = path
        return found

    def wanted(self, seqs: Sequences) -> dict[str, list[str]]:
        c = self.config
        persons = {"train": set(c.train_persons), "val": set(c.val_persons), "test": set(c.test_persons)}
        out: dict[str, list[str]] = {s: [] for s in SPLITS}
        for video in sorted(seqs.ranges):
            if action_of(video) not in c.actions:
                continue
            for split, people in persons.items():
                if person_of(video) in people:
                    out[split].append(video)
        return out

    # -- preparation: decode once, cut windows --------------------------------------------
    def prepare(self, events: Events | None = None) -> dict[str, list[tuple[str, int]]]:
        if self._index is not None:
            return self._index
        events = events or Events()
        c = self.config
        seqs = self.sequences()
        wanted = self.wanted(seqs)
        files = self.videos()
        needed = sorted({v for vs in wanted.values() for v in vs})
        absent = [v for v in needed if v not in files]
        if absent:
            raise DataError(
                f"{len(absent)} KTH videos are missing under {self.dir} (e.g. {absent[0]}_uncomp.avi); run "
                f"`vpbench data download kth` or unzip the six action zips from {BASE_URL} there"
            )
        lengths, digests, skipped = self.cache.decode_all(
            [(video, files[video]) for video in needed], dl._cached_sha256,
            lambda path: decode_resized(path, c.size, c.size, "first")[:, 0], c.on_corrupt, events, "kth",
            "decoding KTH (once)")
        self._digests.update(digests)
        self.skipped += skipped
        clip = c.n_in + c.n_out
        index: dict[str, list[tuple[str, int]]] = {}
        for split, videos in wanted.items():
            windows = []
            for video in videos:
                if video not in lengths:
                    continue
                stride = c.fast_stride if action_of(video) in FAST_ACTIONS else (c.stride or clip)
                windows += [(video, s) for s in window_starts(seqs.ranges[video], clip, stride, lengths[video])]
            index[split] = windows
        self._index = index
        events.message("kth clips per split: " + "; ".join(
            f"{s} {len(w)} ({', '.join(f'{a} {n}' for a, n in self.counts()[s].items())})" for s, w in index.items()))
        return index

    def counts(self) -> dict[str, dict[str, int]]:
        index = self.prepare()
        return {s: {a: sum(1 for v, _ in w if action_of(v) == a) for a in self.config.actions} for s, w in index.items()}

    def split(self, name: str) -> CachedWindows:
        if name not in SPLITS:
            raise ConfigError(f"unknown split '{name}'; use one of {', '.join(SPLITS)}")
        index = self.prepare()
        return CachedWindows(self.cache, self._digests, index[name], self.config.n_in, self.config.n_out)

    def download(self, events: Events | None = None, optional: bool = False) -> list[Path]:
        """00sequences.txt and the six action zips (extracted here; the zips are kept)."""
        paths = [dl.fetch(SEQUENCES, self.dir, events)]
        for action in self.config.actions:
            archive = dl.fetch(ZIPS[action], self.dir / "zips", events)
            extract(archive, self.dir / "videos")
            paths.append(archive)
        return paths

    def info(self) -> dict[str, str]:
        c = self.config
        out = {
            "source": f"KTH actions page {BASE_URL} (six zips of AVIs, 160x120, 25 fps) and its 00sequences.txt",
            "licence": "free for non-commercial research use (KTH)",
            "citation": "Schuldt, Laptev, Caputo, Recognizing Human Actions: A Local SVM Approach, ICPR 2004",
            "protocol": f"{c.size}x{c.size} grey (first channel), {c.n_in} -> {c.n_out}; persons train "
            f"{_span(c.train_persons)}, val {_span(c.val_persons)}, test {_span(c.test_persons)}; windows inside "
            f"00sequences.txt ranges, stride {c.stride or 'clip length'} (fast actions: {c.fast_stride})",
        }
        try:
            counts = self.counts()
            out["clips"] = "; ".join(f"{s} {sum(v.values())} ({', '.join(f'{a} {n}' for a, n in v.items())})"
                                     for s, v in counts.items())
            out["status"] = f"{len(self._digests)} videos decoded and cached in {self.cache.directory}"
        except DataError as exc:
            out["status"] = f"not available: {exc}"
        return out


def _span(persons: tuple[int, ...]) -> str:
    p = sorted(persons)
    if p and p == list(range(p[0], p[-1] + 1)):
        return f"{p[0]:02d}-{p[-1]:02d}"
    return ",".join(f"{x:02d}" for x in p)


def extract(archive: Path, target: Path) -> None:
    """Extract the AVIs of ``archive`` into ``target`` (see :func:`vpbench.data.archive.extract`:
    each file lands atomically, present files are checked by CRC, errors are one line)."""
    if not zipfile.is_zipfile(archive):
        raise DataError(f"{archive} is not a valid zip file; move it away and download it again")
    unpack(archive, target, keep=lambda name: name.endswith(".avi"), flat=True)


KTH40 = variant(KTH, "KTH40", name="kth40", description="KTH human actions, 128x128, 10 -> 40", n_out=40)
KTH64 = variant(KTH, "KTH64", name="kth64", description="KTH human actions, 64x64, 10 -> 20", size=64)


@hookimpl
def vpbench_register_datasets(register):
    register(KTH)
    register(KTH40)
    register(KTH64)
