"""``bair``, ``bair2``, ``bair_fvd``: BAIR robot pushing (Ebert et al., CoRL 2017), 3x64x64.

Source: the original TFRecords of ``bair_robot_pushing_dataset_v0.tar``
(http://rail.eecs.berkeley.edu/datasets/), unpacked as ``<data root>/softmotion30_44k/train/``
and ``.../test/`` (``traj_<a>_to_<b>.tfrecords``, as OpenSTL's ``download_bair.sh`` leaves
them). Each record is a ``tf.train.Example`` of one 30-frame trajectory whose frame ``i`` is
``"{i}/image_aux1/encoded"`` (raw 64x64 RGB bytes; also ``image_main``, ``action``,
``endeffector_pos``). They are read without TensorFlow by :mod:`vpbench.data.tfrecord`.

Protocols:

- ``bair``: 4 -> 12, OpenSTL's (``dataset_constant.py``: ``pre_seq_length`` 4,
  ``aft_seq_length`` 12); every window of 16 frames (stride 1) of every trajectory, as
  OpenSTL's ``dataloader_bair.py`` (its docs: 648,960 training and 3,840 test clips, i.e.
  43,264 and 256 trajectories x 15 windows);
- ``bair2``: 2 -> 10, PredRNN's setting (and the default arguments of OpenSTL's loader);
- ``bair_fvd``: 1 -> 15, the usual FVD protocol (Unterthiner et al. 2018; SAVP): the first 16
  frames of each test trajectory (256 test clips), all windows for training.

Validation is never the test set (OpenSTL has none): the last ``data.val_files`` training
TFRecord files in sorted order (256 trajectories each) are held out. Decoded frames are cached
once per TFRecord file as uint8 ``(trajectories x frames, 3, 64, 64)`` and memory-mapped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vpbench import io
from vpbench.data import download as dl
from vpbench.data.archive import extract
from vpbench.data.arrays import WindowedDataset, save_npy, source_key, span_counts
from vpbench.data.tfrecord import parse_example, read_records
from vpbench.data.variant import variant
from vpbench.errors import ConfigError, DataError
from vpbench.events import Events
from vpbench.hookspecs import hookimpl
from vpbench.protocols import SPLITS, DataSpec
from vpbench.validate import positive

# No checksum is published (the sha256 is recorded at the first download). https first; the
# published link is plain http, kept as the fallback (a checksum recorded from it is announced as unverified).
ARCHIVE = dl.RemoteFile("bair_robot_pushing_dataset_v0.tar",
                        ("https://rail.eecs.berkeley.edu/datasets/bair_robot_pushing_dataset_v0.tar",
                         "http://rail.eecs.berkeley.edu/datasets/bair_robot_pushing_dataset_v0.tar"))
PUBLISHED = {"train": 648960, "test": 3840}  # OpenSTL's install.md, for 4 -> 12 (16-frame windows)
PREPROCESS_VERSION = 1
SIZE = 64


def decode_image(data: bytes, where: str) -> np.ndarray:
    """A BAIR frame: raw 64x64x3 bytes (the original files) or an encoded image; ``(3, 64, 64)`` uint8."""
    if len(data) == SIZE * SIZE * 3:
        return np.frombuffer(data, np.uint8).reshape(SIZE, SIZE, 3).transpose(2, 0, 1)
    from io import BytesIO

    from PIL import Image

    try:
        image = Image.open(BytesIO(data)).convert("RGB")
    except Exception:
        raise DataError(f"bair: {where} is neither 64x64 raw RGB bytes ({len(data)} bytes) nor an image") from None
    if image.size != (SIZE, SIZE):
        raise DataError(f"bair: {where} is {image.size[0]}x{image.size[1]}; expected 64x64")
    return np.asarray(image).transpose(2, 0, 1)


@dataclass(frozen=True)
class BAIRConfig:
    n_in: int = 4  # context frames
    n_out: int = 12  # predicted frames
    stride: int = 1  # window stride inside a trajectory
    test_windows: Literal["all", "first"] = "all"  # first: only the first n_in + n_out frames of a test trajectory
    view: Literal["aux1", "main"] = "aux1"  # camera: image_aux1 (OpenSTL, PredRNN, SAVP) or image_main
    val_files: int = 1  # training TFRecord files (256 trajectories each) held out for validation
    check_crc: bool = True  # verify every record's CRC-32C (needs the crc32c package)

    def __post_init__(self) -> None:
        positive(self, "n_in", "n_out", "stride")
        if self.val_files < 1:
            raise ConfigError("val_files must be >= 1 (validation is never the test split)")


class BAIR(WindowedDataset):
    """BAIR robot pushing, 3x64x64, 4 -> 12 (OpenSTL's protocol)."""

    name = "bair"
    version = "1"
    description = "BAIR robot pushing, 3x64x64, 4 -> 12 (OpenSTL's), from the original TFRecords"
    Config = BAIRConfig
    folder = "softmotion30_44k"  # under the data root
    # FVD on BAIR (Unterthiner et al. 2018; SAVP) scores the context frames with the predictions (1 + 15 = 16 frames)
    fvd_includes_context = True

    @property
    def spec(self) -> DataSpec:
        return DataSpec(self.config.n_in, self.config.n_out, 3, SIZE, SIZE)

    def records(self, part: str) -> list[Path]:
        folder = self.dir / part
        files = sorted(folder.glob("*.tfrecords")) if folder.is_dir() else []
        if not files:
            raise DataError(f"bair: no TFRecords in {folder}; run `vpbench data download bair` or unpack "
                            f"{ARCHIVE.urls[0]} into {self.dir.parent} (it holds softmotion30_44k/train and /test)")
        return files

    def decode(self, path: Path) -> tuple[Path, list[int]]:
        """Cached frames of one TFRecord file and the frame count of each trajectory in it."""
        c = self.config
        out = self.dir / "cache" / f"v{PREPROCESS_VERSION}-{c.view}" / f"{path.stem}-{source_key(path)}.npy"
        meta = out.with_suffix(".json")
        if not out.is_file() or not meta.is_file():
            trajectories, lengths = [], []
            for k, record in enumerate(read_records(path, "bair", c.check_crc)):
                try:
                    example = parse_example(record)
                except ValueError as exc:
                    raise DataError(f"bair: record {k} of {path} is not a tf.train.Example ({exc}); the file is corrupt: "
                                    "move it away and unpack it again") from None
                frames = []
                while f"{len(frames)}/image_{c.view}/encoded" in example:
                    values = example[f"{len(frames)}/image_{c.view}/encoded"]
                    if not values:
                        break
                    frames.append(decode_image(values[0], f"frame {len(frames)} of record {k} of {path}"))
                if not frames:
                    keys = ", ".join(sorted(example)[:4])
                    raise DataError(f"bair: record {k} of {path} has no '0/image_{c.view}/encoded' (keys: {keys} ...); "
                                    "is it a BAIR robot pushing file?")
                trajectories.append(np.stack(frames))
                lengths.append(len(frames))
            if not trajectories:
                raise DataError(f"bair: {path} holds no records (empty file?); move it away and unpack it again")
            save_npy(out, np.concatenate(trajectories))
            io.write_json(meta, lengths)
        return out, json.loads(meta.read_text())

    def _windows(self, key: str, lengths: list[int], first_only: bool) -> list[tuple[str, int]]:
        clip, out, offset = self.config.n_in + self.config.n_out, [], 0
        for n in lengths:
            starts = range(0, n - clip + 1, self.config.stride)
            out += [(key, offset + s) for s in (starts[:1] if first_only else starts)]
            offset += n
        return out

    def prepare(self, events: Events | None = None) -> tuple[dict[str, Path], dict[str, list], dict]:
        if self._prepared is not None:
            return self._prepared
        events = events or Events()
        c = self.config
        train, test = self.records("train"), self.records("test")
        if c.val_files >= len(train):
            raise ConfigError(f"data.val_files={c.val_files} leaves no training files of {len(train)}")
        parts = {"train": train[: len(train) - c.val_files], "val": train[len(train) - c.val_files :], "test": test}
        arrays: dict[str, Path] = {}
        windows: dict[str, list] = {s: [] for s in SPLITS}
        trajectories = {s: 0 for s in SPLITS}
        events.task_start("bair", "decoding BAIR TFRecords (once)", sum(len(p) for p in parts.values()))
        for split, files in parts.items():
            for path in files:
                key = f"{split}/{path.name}"
                arrays[key], lengths = self.decode(path)
                windows[split] += self._windows(key, lengths, split == "test" and c.test_windows == "first")
                trajectories[split] += len(lengths)
                events.task_advance("bair")
        events.task_end("bair")
        self._prepared = (arrays, windows, {"trajectories": trajectories})
        events.message("bair clips: " + span_counts({s: len(w) for s, w in windows.items()}))
        return self._prepared

    def download(self, events: Events | None = None, optional: bool = False) -> list[Path]:
        """The 30 GB tar (resumable; its sha256 is recorded at the first download), unpacked here."""
        archive = dl.fetch(ARCHIVE, self.dir.parent / "archives", events)
        return extract(archive, self.dir.parent, keep=lambda n: n.endswith(".tfrecords"))

    def info(self) -> dict[str, str]:
        c = self.config
        out = {
            "source": f"BAIR robot pushing TFRecords ({ARCHIVE.urls[0]}), read without TensorFlow",
            "licence": "BAIR robot pushing dataset: released by UC Berkeley for research (no explicit licence)",
            "citation": "Ebert, Finn, Lee, Levine, Self-Supervised Visual Planning with Temporal Skip Connections, "
            "CoRL 2017",
            "protocol": f"3x64x64 RGB (image_{c.view}), {c.n_in} -> {c.n_out}, windows every {c.stride} frame(s)"
            + (", test: first window of each trajectory" if c.test_windows == "first" else "")
            + f"; val = the last {c.val_files} training TFRecord file(s)",
            "files": f"{self.dir}: " + ", ".join(
                f"{p} {len(list((self.dir / p).glob('*.tfrecords'))) if (self.dir / p).is_dir() else 0} TFRecords"
                for p in ("train", "test")),
        }
        try:
            _, windows, stats = self.prepare()
            counts = {s: len(w) for s, w in windows.items()}
            note = "trajectories " + ", ".join(f"{s} {n}" for s, n in stats["trajectories"].items())
            if (c.n_in + c.n_out, c.stride, c.test_windows) == (16, 1, "all"):
                both = counts["train"] + counts["val"]
                note += (f"; train + val = {both} ({'=' if both == PUBLISHED['train'] else '!='} OpenSTL's published "
                         f"{PUBLISHED['train']}), test {'=' if counts['test'] == PUBLISHED['test'] else '!='} published "
                         f"{PUBLISHED['test']}")
            out["clips"] = span_counts(counts, None, note)
        except (DataError, ConfigError) as exc:
            out["status"] = f"not available: {exc}"
        return out


BAIR2 = variant(BAIR, "BAIR2", name="bair2", description="BAIR robot pushing, 3x64x64, 2 -> 10 (PredRNN's setting)",
                n_in=2, n_out=10)
# test_windows=first: only the first n_in + n_out frames of a test trajectory
BAIRFVD = variant(BAIR, "BAIRFVD", name="bair_fvd", description="BAIR robot pushing, 3x64x64, 1 -> 15 (the FVD protocol: "
                  "first 16 frames of each test video)", n_in=1, n_out=15, test_windows="first")


@hookimpl
def vpbench_register_datasets(register):
    register(BAIR)
    register(BAIR2)
    register(BAIRFVD)
