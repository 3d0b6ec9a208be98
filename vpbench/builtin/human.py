"""``human``, ``human128``: Human3.6M (Ionescu et al., TPAMI 2014), 3x256x256 (or 128x128), 4 -> 4.

Source: the per-frame JPEGs as OpenSTL's ``download_human3.6m.sh`` prepares them, one flat
folder ``<data root>/human/images/`` of ``S<subject>_<Action>.<camera>_<frame:06d>.jpg``
(e.g. ``S11_Walking.60457274_001621.jpg``), resized to 256x256 by its ``resize_image.py``, and
the clip lists ``<data root>/human/train.txt`` / ``test.txt`` that OpenSTL copies from
``tools/prepare_data/meta/human/`` (taken from STRPM). A list line
``images/S1_Directions.54138969_,226,296`` is one clip: frames 226, 231, ..., 261 (8 frames,
every 5th, OpenSTL's ``step = 5``) of that video; frames 1-4 are the context, 5-8 the future.

Splits (``data.split``):

- ``openstl`` (default, OpenSTL's numbers): OpenSTL's lists. They are **not** a subject split:
  both lists hold clips of the same 838 videos of subjects S1, S5-S9, S11 (73,404 training,
  8,582 test lines), and most test clips share frames with training clips. Validation: the
  training-list clips of the videos whose name hashes into ``data.val_fraction`` (removed
  from training), never a test clip;
- ``subjects``: the usual Human3.6M subject split, train S1, S5, S6, S7; val S8; test S9, S11,
  clips starting at frames 1, 26, 51, ... (every 25th, as in OpenSTL's lists) wherever all 8
  frames are on disk.

Frames are decoded once (Pillow, RGB; resized with bicubic interpolation when not
``size x size``: OpenSTL uses OpenCV's INTER_CUBIC, and its frames are BGR because OpenCV reads
BGR) and cached per video as uint8 (only the frames some clip uses), memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vpbench.data.arrays import WindowedDataset, save_npy, span_counts
from vpbench.data.variant import variant
from vpbench.errors import ConfigError, DataError
from vpbench.events import Events
from vpbench.hookspecs import hookimpl
from vpbench.protocols import SPLITS, DataSpec
from vpbench.validate import positive

PUBLISHED = {"train": 73404, "test": 8582}  # lines of OpenSTL's tools/prepare_data/meta/human/{train,test}.txt
LISTS_URL = "https://github.com/chengtan9907/OpenSTL/tree/master/tools/prepare_data/meta/human"
SOURCE_URL = "http://vision.imar.ro/human3.6m/description.php"
FRAME_RE = re.compile(r"^(S(\d+)_.+_)(\d{6})\.jpg$")
PREPROCESS_VERSION = 1


@dataclass(frozen=True)
class HumanConfig:
    n_in: int = 4  # context frames
    n_out: int = 4  # predicted frames
    size: int = 256  # frames are size x size
    step: int = 5  # frames between clip frames (OpenSTL's step)
    split: Literal["openstl", "subjects"] = "openstl"  # OpenSTL's clip lists, or a subject split
    val_fraction: float = 0.05  # openstl: share of training-list videos held out for validation
    train_subjects: tuple[int, ...] = (1, 5, 6, 7)  # subjects: training subjects
    val_subjects: tuple[int, ...] = (8,)  # subjects: validation subjects
    test_subjects: tuple[int, ...] = (9, 11)  # subjects: test subjects
    every: int = 25  # subjects: clips start at frames 1, 1 + every, ...

    def __post_init__(self) -> None:
        positive(self, "n_in", "n_out", "size", "step", "every")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("val_fraction must be in (0, 1)")
        test = set(self.test_subjects)
        if test & set(self.train_subjects) or test & set(self.val_subjects) or set(self.train_subjects) & set(self.val_subjects):
            raise ConfigError("train_subjects, val_subjects and test_subjects must not overlap")


def _hash01(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2**32


def parse_list(path: Path) -> list[tuple[str, int]]:
    """OpenSTL's clip list: ``(video prefix, first frame)`` per line."""
    out = []
    for k, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(",")
        if len(parts) < 2 or not parts[1].strip().isdigit():
            raise DataError(f"human: line {k} of {path} is not 'images/<video>_,<first frame>,<last frame>': {line!r}")
        prefix = parts[0].strip()
        out.append((prefix[len("images/"):] if prefix.startswith("images/") else prefix, int(parts[1])))
    return out


class Human(WindowedDataset):
    """Human3.6M, 3x256x256, 4 -> 4 (OpenSTL's clip lists)."""

    name = "human"
    version = "1"
    description = "Human3.6M, 3x256x256, 4 -> 4 frames 5 apart (OpenSTL's clip lists or a subject split)"
    Config = HumanConfig
    folder = "human"  # under the data root

    @property
    def spec(self) -> DataSpec:
        c = self.config
        return DataSpec(c.n_in, c.n_out, 3, c.size, c.size)

    def frame_path(self, video: str, frame: int) -> Path:
        return self.dir / "images" / f"{video}{frame:06d}.jpg"

    # -- clips --------------------------------------------------------------------------------
    def clips(self) -> dict[str, list[tuple[str, int]]]:
        """``(video, first frame)`` per clip and split."""
        c = self.config
        span = (c.n_in + c.n_out - 1) * c.step
        if c.split == "openstl":
            lists = {p: self.dir / f"{p}.txt" for p in ("train", "test")}
            for path in lists.values():
                if not path.is_file():
                    raise DataError(f"human: {path} is missing; copy OpenSTL's clip lists ({LISTS_URL}) into {self.dir} "
                                    "(or set data.split=subjects)")
            train, test = parse_list(lists["train"]), parse_list(lists["test"])
            val = [(v, b) for v, b in train if _hash01(v) < c.val_fraction]
            return {"train": [(v, b) for v, b in train if _hash01(v) >= c.val_fraction], "val": val, "test": test}
        folder = self.dir / "images"
        if not folder.is_dir():
            raise DataError(f"human: {folder} is missing; prepare the frames as OpenSTL's download_human3.6m.sh does "
                            f"({SOURCE_URL})")
        frames: dict[str, set[int]] = {}
        subject: dict[str, int] = {}
        for path in folder.iterdir():
            match = FRAME_RE.match(path.name)
            if match:
                frames.setdefault(match.group(1), set()).add(int(match.group(3)))
                subject[match.group(1)] = int(match.group(2))
        groups = {"train": set(c.train_subjects), "val": set(c.val_subjects), "test": set(c.test_subjects)}
        out: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
        for video in sorted(frames):
            have = frames[video]
            for split, subjects in groups.items():
                if subject[video] in subjects:
                    last = max(have)
                    out[split] += [(video, b) for b in range(1, last - span + 1, c.every)
                                   if all(b + k * c.step in have for k in range(c.n_in + c.n_out))]
        return out

    # -- preparation --------------------------------------------------------------------------
    def prepare(self, events: Events | None = None) -> tuple[dict[str, Path], dict[str, list], dict]:
        if self._prepared is not None:
            return self._prepared
        events = events or Events()
        c = self.config
        clips = self.clips()
        n = c.n_in + c.n_out
        used: dict[str, set[int]] = {}
        for items in clips.values():
            for video, begin in items:
                used.setdefault(video, set()).update(begin + k * c.step for k in range(n))
        cache = self.dir / "cache" / f"v{PREPROCESS_VERSION}-{c.size}px"
        arrays, rows = {}, {}
        events.task_start("human", "decoding Human3.6M frames (once)", len(used))
        for video in sorted(used):
            numbers = sorted(used[video])
            digest = hashlib.sha256(json.dumps(numbers).encode())
            first = self.frame_path(video, numbers[0])
            if first.is_file():
                digest.update(f"{first.stat().st_size}:{first.stat().st_mtime_ns}".encode())
            path = cache / f"{video}-{digest.hexdigest()[:16]}.npy"
            if not path.is_file():
                save_npy(path, np.stack([self._decode(video, f) for f in numbers]))
            arrays[video] = path
            rows[video] = {f: i for i, f in enumerate(numbers)}
            events.task_advance("human")
        events.task_end("human")
        windows = {s: [(v, tuple(rows[v][b + k * c.step] for k in range(n))) for v, b in items]
                   for s, items in clips.items()}
        self._prepared = (arrays, windows, {"videos": len(used)})
        events.message("human clips: " + span_counts({s: len(w) for s, w in windows.items()}))
        return self._prepared

    def _decode(self, video: str, frame: int) -> np.ndarray:
        from PIL import Image

        path = self.frame_path(video, frame)
        if not path.is_file():
            raise DataError(f"human: {path} is missing (a clip needs it); prepare the frames as OpenSTL's "
                            "download_human3.6m.sh does, or check data.split")
        size = self.config.size
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                if image.size != (size, size):
                    image = image.resize((size, size), Image.BICUBIC)
                return np.asarray(image).transpose(2, 0, 1)
        except (OSError, SyntaxError) as exc:
            raise DataError(f"human: {path} is not a readable image ({exc}); the file is corrupt or truncated: "
                            "replace it") from None

    def empty_split(self, name: str) -> str:
        return f"human: the {name} split has no clips"

    def download(self, events: Events | None = None, optional: bool = False) -> list[Path]:
        raise DataError(
            f"human has no direct download: Human3.6M needs a licence ({SOURCE_URL}); prepare the frames as OpenSTL's "
            f"tools/prepare_data/download_human3.6m.sh does (subjects S1, S5-S9, S11, resized to 256x256) into "
            f"{self.dir / 'images'} and copy its clip lists train.txt / test.txt ({LISTS_URL}) into {self.dir}")

    def info(self) -> dict[str, str]:
        c = self.config
        if c.split == "openstl":
            split = (f"OpenSTL's clip lists (not a subject split: train and test clips come from the same videos); val "
                     f"= training-list clips of {c.val_fraction:g} of the videos (by name hash)")
        else:
            split = (f"subjects: train {c.train_subjects}, val {c.val_subjects}, test {c.test_subjects}, clips every "
                     f"{c.every} frames")
        images = self.dir / "images"
        out = {
            "source": f"Human3.6M frames ({SOURCE_URL}) prepared as OpenSTL's download_human3.6m.sh; clip lists from "
            f"OpenSTL ({LISTS_URL}, from STRPM)",
            "licence": "Human3.6M: academic use only, under its own licence agreement",
            "citation": "Ionescu, Papava, Olaru, Sminchisescu, Human3.6M: Large Scale Datasets and Predictive Methods "
            "for 3D Human Sensing in Natural Environments, TPAMI 2014",
            "protocol": f"3x{c.size}x{c.size} RGB, {c.n_in} -> {c.n_out}, every {c.step}th frame; {split}",
            "files": f"{images} {'present' if images.is_dir() else 'absent'}; "
            + ", ".join(f"{p}.txt {'present' if (self.dir / f'{p}.txt').is_file() else 'absent'}" for p in ("train", "test")),
        }
        try:
            counts = {s: len(w) for s, w in self.clips().items()}  # from the lists: no decoding needed
            note = ""
            if c.split == "openstl":
                both = counts["train"] + counts["val"]
                note = (f"train + val = {both} training-list lines ({'=' if both == PUBLISHED['train'] else '!='} "
                        f"OpenSTL's {PUBLISHED['train']})")
            out["clips"] = span_counts(counts, {"test": PUBLISHED["test"]} if c.split == "openstl" else None, note)
        except (DataError, ConfigError) as exc:
            out["status"] = f"not available: {exc}"
        return out


Human128 = variant(Human, "Human128", name="human128", description="Human3.6M, 3x128x128, 4 -> 4 frames 5 apart "
                   "(OpenSTL's clip lists or a subject split)", size=128)


@hookimpl
def vpbench_register_datasets(register):
    register(Human)
    register(Human128)
