"""``kitticaltech``: train on KITTI, test on Caltech Pedestrian, 3x128x160, 10 -> 1 (PredNet's / OpenSTL's).

Training and validation frames are PredNet's hickle files (Lotter, Kreiman, Cox, ICLR 2017;
``process_kitti.py`` of coxlab/prednet), under ``<data root>/kitti_hkl/`` as OpenSTL places
them: ``X_train.hkl`` / ``X_val.hkl`` (uint8 ``(frames, 128, 160, 3)``, RGB) and
``sources_train.hkl`` / ``sources_val.hkl`` (one recording name per frame). hickle files are
HDF5; they are read with h5py (:mod:`vpbench.data.hdf5`, hickle 2-5 layouts), so hickle itself
is not needed. PredNet's validation recordings are not training recordings, so the validation
split is PredNet's ``X_val`` (OpenSTL validates on its test set).

Test frames are Caltech Pedestrian's (Dollar et al., CVPR 2009) test sets ``set06``-``set10``
under ``<data root>/caltech/``, preprocessed as OpenSTL's ``dataloader_kitticaltech.py`` does:
every third frame of each ``.seq`` video (frames 3, 6, 9, ... counting from 1), resized to
height 128 keeping the aspect ratio (640x480 -> 171x128), centre-cropped to width 160
(PredNet's ``process_im``). ``.seq`` files (Norpix, JPEG frames) are read by splitting at JPEG
start-of-image markers and decoding with Pillow. OpenSTL's own cache of that test set
(``caltech/data_cache.npy`` uint8 ``(frames, 128, 160, 3)`` and ``indices_cache.npy``) is used
when present; OpenSTL decoded Caltech with OpenCV, whose frames are BGR, so its cache is
flipped to RGB (``data.caltech_cache_bgr``).

Clips are OpenSTL's: walking back from the last frame, a window of ``n_in + n_out`` frames is
kept where its first and last frame come from the same recording, and the next window ends
just before it (non-overlapping, aligned to each recording's end).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vpbench import io
from vpbench.data.arrays import WindowedDataset, check_files, save_npy_chunks, source_key, span_counts
from vpbench.data.hdf5 import hickle_array_info, read_hickle, read_hickle_rows
from vpbench.errors import ConfigError, DataError
from vpbench.events import Events
from vpbench.hookspecs import hookimpl
from vpbench.protocols import DataSpec
from vpbench.validate import positive

KITTI_URL = "https://www.dropbox.com/s/rpwlnn6j39jjme4/kitti_data.zip?dl=0"
KITTI_FIGSHARE = "https://figshare.com/articles/dataset/KITTI_hkl_files/7985684"
CALTECH_URL = "https://data.caltech.edu/records/f6rph-90m20"
CALTECH_TEST_SETS = ("set06", "set07", "set08", "set09", "set10")
# OpenSTL's install.md: "Kitti ... as the train set (2042 videos) and ... Caltech ... as the test set (1983 videos)"
PUBLISHED = {"train": 2042, "test": 1983}
PREPROCESS_VERSION = 1
SOI = b"\xff\xd8\xff"


def openstl_windows(sources: list[str], clip: int) -> list[int]:
    """Start frames of OpenSTL's clips: backwards from the end, non-overlapping, each inside one source."""
    starts = []
    index = len(sources) - 1
    while index >= clip - 1:
        if sources[index] == sources[index - clip + 1]:
            starts.append(index - clip + 1)
            index -= clip - 1
        index -= 1
    return starts


def seq_frames(path: Path) -> list[bytes]:
    """The JPEG frames of a Norpix ``.seq`` file (Caltech Pedestrian's videos)."""
    data = path.read_bytes()
    if len(data) < 1024:
        raise DataError(f"kitticaltech: {path} is too short for a .seq file (truncated?); move it away and unzip it again")
    starts = []
    at = data.find(SOI, 1024)
    while at >= 0:
        starts.append(at)
        at = data.find(SOI, at + 3)
    if not starts:
        raise DataError(f"kitticaltech: {path} holds no JPEG frames (not a Caltech .seq file?)")
    return [data[a:b] for a, b in zip(starts, starts[1:] + [len(data)])]


def decode_jpeg(jpeg: bytes, path: Path, count: int):
    from io import BytesIO

    from PIL import Image

    try:
        image = Image.open(BytesIO(jpeg))
        image.load()
    except Exception as exc:
        raise DataError(f"kitticaltech: frame {count} of {path} is not a readable JPEG ({exc}); the file is corrupt: "
                        "move it away and unzip it again") from None
    return image


def process_frame(image, height: int, width: int) -> np.ndarray:
    """PredNet's ``process_im``: resize to ``height`` keeping the aspect, centre-crop ``width``; uint8 HWC."""
    from PIL import Image

    image = image.convert("RGB")
    w = int(np.round(height / image.height * image.width))
    image = image.resize((w, height), Image.BILINEAR)
    left = int((w - width) / 2)
    return np.asarray(image)[:, left : left + width]


@dataclass(frozen=True)
class KittiCaltechConfig:
    n_in: int = 10  # context frames
    n_out: int = 1  # predicted frames
    test_source: Literal["auto", "seq", "cache", "kitti"] = "auto"  # auto: OpenSTL's Caltech cache, else the .seq files
    caltech_cache_bgr: bool = True  # OpenSTL's data_cache.npy was decoded by OpenCV (BGR): flip it to RGB

    def __post_init__(self) -> None:
        positive(self, "n_in", "n_out")


class KittiCaltech(WindowedDataset):
    """KITTI (PredNet's hickle files) for training, Caltech Pedestrian for testing, 3x128x160, 10 -> 1."""

    name = "kitticaltech"
    version = "1"
    description = "KITTI -> Caltech Pedestrian, 3x128x160, 10 -> 1 (PredNet's files, OpenSTL's protocol)"
    Config = KittiCaltechConfig

    @property
    def spec(self) -> DataSpec:
        return DataSpec(self.config.n_in, self.config.n_out, 3, 128, 160)

    @property
    def kitti_dir(self) -> Path:
        return self.root / "kitti_hkl"

    @property
    def caltech_dir(self) -> Path:
        return self.root / "caltech"

    @property
    def cache_dir(self) -> Path:
        return self.root / "kitti_hkl" / "cache"

    def seq_files(self) -> list[Path]:
        out = []
        for s in CALTECH_TEST_SETS:
            if (self.caltech_dir / s).is_dir():
                out += sorted((self.caltech_dir / s).glob("*.seq"))
        return out

    def test_source(self) -> str:
        mode = self.config.test_source
        if mode != "auto":
            return mode
        if (self.caltech_dir / "data_cache.npy").is_file():
            return "cache"
        if self.seq_files():
            return "seq"
        raise DataError(f"kitticaltech: no Caltech test data in {self.caltech_dir}: unzip Caltech Pedestrian's "
                        f"set06-set10 (.seq videos, {CALTECH_URL}) there, or put OpenSTL's data_cache.npy and "
                        "indices_cache.npy there (or set data.test_source=kitti for PredNet's KITTI test split)")

    # -- KITTI (hickle) -----------------------------------------------------------------------
    def _kitti(self, part: str) -> tuple[Path, list[str]]:
        """Cached frames ``(N, 3, 128, 160)`` uint8 of ``X_<part>.hkl`` and its per-frame sources."""
        x_path, s_path = self.kitti_dir / f"X_{part}.hkl", self.kitti_dir / f"sources_{part}.hkl"
        fix = f"get PredNet's kitti_data.zip ({KITTI_URL} or {KITTI_FIGSHARE}) and unzip it into {self.kitti_dir}"
        check_files([x_path, s_path], "kitticaltech", fix)
        out = self.cache_dir / f"v{PREPROCESS_VERSION}-{part}-{source_key(x_path, s_path)}.npy"
        sources_path = out.with_suffix(".sources.json")
        if not out.is_file() or not sources_path.is_file():
            sources = read_hickle(s_path, "kitticaltech", fix)
            if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
                raise DataError(f"kitticaltech: {s_path} does not hold a list of recording names")
            shape, dtype = hickle_array_info(x_path, "kitticaltech", fix)
            if len(shape) != 4 or shape[1:] != (128, 160, 3):
                raise DataError(f"kitticaltech: {x_path} holds {shape} frames; expected (N, 128, 160, 3) (PredNet's)")
            if shape[0] != len(sources):
                raise DataError(f"kitticaltech: {x_path} has {shape[0]} frames but {s_path} names {len(sources)}")

            def chunks():
                for start in range(0, shape[0], 512):
                    rows = read_hickle_rows(x_path, "kitticaltech", start, min(start + 512, shape[0]))
                    if rows.dtype != np.uint8:
                        rows = np.clip(np.round(rows * (255.0 if rows.max() <= 1.0 else 1.0)), 0, 255)
                    yield start, rows.astype(np.uint8).transpose(0, 3, 1, 2)

            save_npy_chunks(out, (shape[0], 3, 128, 160), np.uint8, chunks())
            io.write_json(sources_path, sources)
        return out, json.loads(sources_path.read_text())

    # -- Caltech ------------------------------------------------------------------------------
    def _caltech(self, events: Events) -> tuple[Path, list[int]]:
        clip = self.config.n_in + self.config.n_out
        source = self.test_source()
        if source == "kitti":
            path, sources = self._kitti("test")
            return path, openstl_windows(sources, clip)
        if source == "cache":
            data_path, idx_path = self.caltech_dir / "data_cache.npy", self.caltech_dir / "indices_cache.npy"
            check_files([data_path, idx_path], "kitticaltech", "put OpenSTL's Caltech cache files there")
            key = source_key(data_path, extra=str(self.config.caltech_cache_bgr))
            out = self.cache_dir / f"v{PREPROCESS_VERSION}-caltech-cache-{key}.npy"
            try:
                frames = np.load(data_path, mmap_mode="r")
                indices = [int(i) for i in np.load(idx_path)]
            except (OSError, ValueError) as exc:
                raise DataError(f"kitticaltech: {data_path} / {idx_path} are not readable .npy files ({exc})") from None
            if frames.ndim != 4 or frames.shape[1:] != (128, 160, 3):
                raise DataError(f"kitticaltech: {data_path} holds {frames.shape}; expected (N, 128, 160, 3)")
            if not out.is_file():
                flip = self.config.caltech_cache_bgr
                save_npy_chunks(out, (len(frames), 3, 128, 160), np.uint8,
                                ((s, np.asarray(frames[s : s + 512])[..., ::-1 if flip else 1].transpose(0, 3, 1, 2))
                                 for s in range(0, len(frames), 512)))
            if self.config.n_in + self.config.n_out != 11:
                raise ConfigError("OpenSTL's Caltech cache holds 10 -> 1 windows; other clip lengths need the .seq files "
                                  "(data.test_source=seq)")
            return out, indices
        files = self.seq_files()
        if not files:
            raise DataError(f"kitticaltech: no Caltech .seq files in {self.caltech_dir}/set06..set10 ({CALTECH_URL})")
        out = self.cache_dir / f"v{PREPROCESS_VERSION}-caltech-seq-{source_key(*files)}.npy"
        sources_path = out.with_suffix(".sources.json")
        if not out.is_file() or not sources_path.is_file():
            counts = [len(seq_frames(path)) // 3 for path in files]  # frames 3, 6, 9, ... of each video
            if not sum(counts):
                raise DataError(f"kitticaltech: the .seq files in {self.caltech_dir} hold fewer than 3 frames each")
            sources = [f"{path.parent.name}{path.name}" for path, n in zip(files, counts) for _ in range(n)]

            def chunks():
                events.task_start("caltech", "decoding Caltech .seq videos (once)", len(files))
                start = 0
                for path in files:
                    block = [process_frame(decode_jpeg(jpeg, path, count), 128, 160).transpose(2, 0, 1)
                             for count, jpeg in enumerate(seq_frames(path), start=1) if count % 3 == 0]
                    if block:
                        yield start, np.stack(block)
                        start += len(block)
                    events.task_advance("caltech")
                events.task_end("caltech")

            save_npy_chunks(out, (len(sources), 3, 128, 160), np.uint8, chunks())
            io.write_json(sources_path, sources)
        return out, openstl_windows(json.loads(sources_path.read_text()), clip)

    def prepare(self, events: Events | None = None) -> tuple[dict[str, Path], dict[str, list], dict]:
        if self._prepared is None:
            events = events or Events()
            clip = self.config.n_in + self.config.n_out
            train_path, train_sources = self._kitti("train")
            val_path, val_sources = self._kitti("val")
            test_path, test_starts = self._caltech(events)
            arrays = {"train": train_path, "val": val_path, "test": test_path}
            windows = {"train": [("train", s) for s in openstl_windows(train_sources, clip)],
                       "val": [("val", s) for s in openstl_windows(val_sources, clip)],
                       "test": [("test", s) for s in test_starts]}
            self._prepared = (arrays, windows, {"test_source": self.test_source()})
            events.message("kitticaltech clips: " + span_counts({s: len(w) for s, w in windows.items()}))
        return self._prepared

    def download(self, events: Events | None = None, optional: bool = False) -> list[Path]:
        raise DataError(
            f"kitticaltech has no checksummed download: get PredNet's kitti_data.zip ({KITTI_URL}, also {KITTI_FIGSHARE}) "
            f"and unzip its X_*.hkl / sources_*.hkl into {self.kitti_dir}; get Caltech Pedestrian's test videos "
            f"(set06-set10 of {CALTECH_URL}) into {self.caltech_dir}")

    def info(self) -> dict[str, str]:
        c = self.config
        out = {
            "source": f"PredNet's KITTI hickle files ({KITTI_FIGSHARE}) and Caltech Pedestrian set06-set10 ({CALTECH_URL})",
            "licence": "KITTI: CC BY-NC-SA 3.0; Caltech Pedestrian: for research (Caltech)",
            "citation": "Geiger et al., Vision meets Robotics: The KITTI Dataset, IJRR 2013; Dollar et al., Pedestrian "
            "Detection: A Benchmark, CVPR 2009; Lotter, Kreiman, Cox, PredNet, ICLR 2017",
            "protocol": f"3x128x160 RGB, {c.n_in} -> {c.n_out}; train KITTI X_train, val KITTI X_val (PredNet's "
            "validation recordings), test Caltech set06-set10 every 3rd frame; OpenSTL's non-overlapping windows",
            "files": f"{self.kitti_dir}: {', '.join(p.name for p in sorted(self.kitti_dir.glob('*.hkl'))) or 'none'}; "
            f"{self.caltech_dir}: {len(self.seq_files())} .seq files"
            + (", OpenSTL's data_cache.npy" if (self.caltech_dir / "data_cache.npy").is_file() else ""),
        }
        try:
            _, windows, stats = self.prepare()
            out["clips"] = span_counts({s: len(w) for s, w in windows.items()},
                                       PUBLISHED if (c.n_in, c.n_out) == (10, 1) else None,
                                       f"test from {stats['test_source']}; the published counts are OpenSTL's "
                                       "install.md 'videos' (its unit is not stated)")
        except (DataError, ConfigError) as exc:
            out["status"] = f"not available: {exc}"
        return out


@hookimpl
def vpbench_register_datasets(register):
    register(KittiCaltech)
