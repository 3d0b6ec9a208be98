"""``taxibj``: TaxiBJ crowd flows (Zhang, Zheng, Qi, AAAI 2017), 2x32x32, 4 -> 4 (OpenSTL's protocol).

Two source formats, both under ``<data root>/taxibj/``:

- ``dataset.npz``, OpenSTL's preprocessed file (its ``download_taxibj.sh``: the v0.1.0 release
  ``taxibj_dataset.zip``): ``X_train``, ``Y_train``, ``X_test``, ``Y_test`` of shape
  ``(N, 4, 2, 32, 32)``, already min-max scaled to [-1, 1] by DeepST's ``MinMaxNormalization``;
  OpenSTL's ``TaxibjDataset`` maps them with ``(X + 1) / 2`` into [0, 1] and reports MSE / MAE
  on that scale. vpbench applies the same map, so its numbers are on OpenSTL's scale.
- the original DeepST files ``BJ13_M32x32_T30_InOut.h5`` .. ``BJ16_M32x32_T30_InOut.h5``
  (datasets ``date``: ``b"YYYYMMDDSS"``, slot 01-48 of 30 minutes, and ``data``:
  ``(slots, 2, 32, 32)`` inflow / outflow), read with h5py and prepared as DeepST's
  ``load_dataset`` does: days without all 48 slots removed, negative flows set to 0, the last
  28 days (``len_test = 28 * 48`` slots) held out for testing, and one min / max over all
  training flows (both channels) for the normalisation ``x01 = (x - min) / (max - min)``
  (DeepST's [-1, 1] scaling followed by OpenSTL's ``(X + 1) / 2``). Clips are 8 consecutive
  slots (30 minutes apart, checked) inside one file, stride 1. OpenSTL's script that turned the
  DeepST files into ``dataset.npz`` is not public: clip counts from the ``.h5`` files are
  vpbench's reconstruction and differ from the ``.npz`` ones.

``BJ_Meteorology.h5`` and ``BJ_Holiday.txt`` are not used by the 4 -> 4 frame protocol (ST-ResNet
uses them as external features); ``info`` reports whether they are present.

Validation (OpenSTL validates on its test set; vpbench never does): with ``dataset.npz`` the
last ``val_clips`` training clips, with the ``n_in + n_out - 1`` clips before them dropped from
training so that no frame is shared when the clips are in time order; with the ``.h5`` files
the ``val_days`` days before the test period. Frames are cached once as float16 in [0, 1]
(quantisation below 2.5e-4 of the range) and memory-mapped.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np

from vpbench import io
from vpbench.data import download as dl
from vpbench.data.archive import extract
from vpbench.data.arrays import WindowedDataset, check_files, save_npy, source_key, span_counts
from vpbench.data.hdf5 import open_h5, read_dataset
from vpbench.errors import ConfigError, DataError
from vpbench.events import Events
from vpbench.hookspecs import hookimpl
from vpbench.protocols import DataSpec
from vpbench.validate import positive

YEARS = (13, 14, 15, 16)
H5_FILES = tuple(f"BJ{y}_M32x32_T30_InOut.h5" for y in YEARS)
EXTRA_FILES = ("BJ_Meteorology.h5", "BJ_Holiday.txt")
NPZ = "dataset.npz"
NPZ_KEYS = ("X_train", "Y_train", "X_test", "Y_test")
RELEASE = dl.RemoteFile("taxibj_dataset.zip",
                        ("https://github.com/chengtan9907/OpenSTL/releases/download/v0.1.0/taxibj_dataset.zip",))
DEEPST = "https://github.com/TolicWang/DeepST/tree/master/data/TaxiBJ"
PUBLISHED_NPZ = {"train": 20461}  # X_train of OpenSTL's dataset.npz: (20461, 4, 2, 32, 32) (OpenSTL issue #39)
SLOTS = 48
PREPROCESS_VERSION = 1
FIX = (f"put OpenSTL's {NPZ} (run `vpbench data download taxibj`) or DeepST's BJ13..BJ16_M32x32_T30_InOut.h5 "
       f"({DEEPST}) in the taxibj folder")


@dataclass(frozen=True)
class TaxiBJConfig:
    n_in: int = 4  # context frames (30-minute slots)
    n_out: int = 4  # predicted frames
    source: Literal["auto", "npz", "h5"] = "auto"  # auto: OpenSTL's dataset.npz when present, else DeepST's .h5 files
    val_clips: int = 1000  # npz: the last training clips held out for validation
    test_days: int = 28  # h5: the last days held out for testing (DeepST's len_test = 28 * 48)
    val_days: int = 14  # h5: the days before the test period held out for validation

    def __post_init__(self) -> None:
        positive(self, "n_in", "n_out", "val_clips", "test_days", "val_days")


def parse_slot(stamp: bytes | str) -> datetime:
    """DeepST's ``YYYYMMDDSS`` (slot 01-48, 30 minutes each) as the slot's start time."""
    text = stamp.decode() if isinstance(stamp, bytes) else str(stamp)
    slot = int(text[8:])
    if not 1 <= slot <= SLOTS:
        raise ValueError(text)
    return datetime(int(text[:4]), int(text[4:6]), int(text[6:8])) + timedelta(minutes=30 * (slot - 1))


def complete_days(stamps: list[str]) -> np.ndarray:
    """Indices of the slots of days that have all 48 slots (DeepST's ``remove_incomplete_days``)."""
    days: set[str] = set()
    i = 0
    while i < len(stamps):
        if int(stamps[i][8:]) != 1:
            i += 1
        elif i + SLOTS - 1 < len(stamps) and int(stamps[i + SLOTS - 1][8:]) == SLOTS:
            days.add(stamps[i][:8])
            i += SLOTS
        else:
            i += 1
    return np.array([k for k, s in enumerate(stamps) if s[:8] in days], dtype=np.int64)


class TaxiBJ(WindowedDataset):
    """TaxiBJ inflow / outflow, 2x32x32, 4 -> 4 (OpenSTL's protocol and scale)."""

    name = "taxibj"
    version = "1"
    description = "TaxiBJ crowd flows, 2x32x32, 4 -> 4 (OpenSTL's dataset.npz or DeepST's .h5 files)"
    Config = TaxiBJConfig
    folder = "taxibj"  # under the data root

    @property
    def spec(self) -> DataSpec:
        return DataSpec(self.config.n_in, self.config.n_out, 2, 32, 32)

    def source(self) -> str:
        mode = self.config.source
        if mode == "auto":
            if (self.dir / NPZ).is_file():
                return "npz"
            if any((self.dir / f).is_file() for f in H5_FILES):
                return "h5"
            raise DataError(f"taxibj: no data in {self.dir}; {FIX}")
        return mode

    # -- preparation --------------------------------------------------------------------------
    def prepare(self, events: Events | None = None) -> tuple[dict[str, Path], dict[str, list], dict]:
        if self._prepared is None:
            events = events or Events()
            self._prepared = self._prepare_npz() if self.source() == "npz" else self._prepare_h5()
            _, windows, stats = self._prepared
            events.message(f"taxibj ({stats['source']}) clips: " + span_counts(
                {s: len(w) for s, w in windows.items()}))
        return self._prepared

    def _prepare_npz(self):
        c = self.config
        path = self.dir / NPZ
        check_files([path], "taxibj", FIX)
        cache = self.dir / "cache" / f"v{PREPROCESS_VERSION}-npz-{source_key(path)}"
        meta_path = cache / "meta.json"
        if not meta_path.is_file():
            try:
                npz = np.load(path)
                missing = [k for k in NPZ_KEYS if k not in npz.files]
                if missing:
                    raise DataError(f"taxibj: {path} has no {missing[0]} (it holds {', '.join(npz.files)}); is it "
                                    "OpenSTL's taxibj dataset.npz?")
                sizes = {}
                for part in ("train", "test"):
                    x, y = npz[f"X_{part}"], npz[f"Y_{part}"]
                    if x.ndim != 5 or x.shape[2:] != (2, 32, 32) or y.shape[0] != x.shape[0] or y.shape[2:] != (2, 32, 32):
                        raise DataError(f"taxibj: {path}: X_{part} {x.shape} / Y_{part} {y.shape}; expected "
                                        "(N, T, 2, 32, 32) each")
                    clips = np.concatenate([x, y], axis=1)  # (N, T_in + T_out, 2, 32, 32) in [-1, 1]
                    frames = ((clips.astype(np.float32) + 1) / 2).clip(0, 1).astype(np.float16)
                    save_npy(cache / f"{part}.npy", frames.reshape(-1, 2, 32, 32))
                    sizes[part] = [int(x.shape[0]), int(x.shape[1]), int(y.shape[1])]
            except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
                raise DataError(f"taxibj: {path} is not a readable .npz (truncated or corrupt? {exc}); move it "
                                "away and fetch it again") from None
            io.write_json(meta_path, {"sizes": sizes})
        sizes = json.loads(meta_path.read_text())["sizes"]
        n_train, t_in, t_out = sizes["train"]
        if (c.n_in, c.n_out) != (t_in, t_out):
            raise ConfigError(f"taxibj's {NPZ} holds {t_in} -> {t_out} clips; data.n_in={c.n_in}, data.n_out={c.n_out} "
                              "need data.source=h5")
        clip = t_in + t_out
        gap = clip - 1
        if c.val_clips + gap >= n_train:
            raise ConfigError(f"data.val_clips={c.val_clips} leaves no training clips of {n_train}")
        train = [("train", i * clip) for i in range(n_train - c.val_clips - gap)]
        val = [("train", i * clip) for i in range(n_train - c.val_clips, n_train)]
        test = [("test", i * clip) for i in range(sizes["test"][0])]
        arrays = {"train": cache / "train.npy", "test": cache / "test.npy"}
        stats = {"source": f"OpenSTL {NPZ}", "normalisation": "(X + 1) / 2 of OpenSTL's [-1, 1] file (OpenSTL's scale)",
                 "published": PUBLISHED_NPZ, "npz_train": n_train}
        return arrays, {"train": train, "val": val, "test": test}, stats

    def _prepare_h5(self):
        c = self.config
        paths = [self.dir / f for f in H5_FILES]
        check_files(paths, "taxibj", FIX)
        cache = self.dir / "cache" / f"v{PREPROCESS_VERSION}-h5-{source_key(*paths)}"
        meta_path = cache / f"meta-test{c.test_days}.json"
        frames_path = cache / f"frames-test{c.test_days}.npy"
        if not meta_path.is_file() or not frames_path.is_file():
            flows, stamps, files = [], [], []
            for k, path in enumerate(paths):
                with open_h5(path, "taxibj", fix=FIX) as h5:
                    data = read_dataset(h5, "data", "taxibj", path)
                    dates = read_dataset(h5, "date", "taxibj", path)
                if data.ndim != 4 or data.shape[1] < 2 or data.shape[2:] != (32, 32) or len(dates) != len(data):
                    raise DataError(f"taxibj: {path}: data {data.shape} and {len(dates)} dates; expected (slots, 2, 32, "
                                    "32) with one date per slot")
                text = [d.decode() if isinstance(d, bytes) else str(d) for d in dates]
                keep = complete_days(text)
                flows.append(np.maximum(data[keep, :2].astype(np.float64), 0.0))
                stamps += [text[i] for i in keep]
                files += [k] * len(keep)
            data = np.concatenate(flows)
            n_test = c.test_days * SLOTS
            if n_test >= len(data):
                raise ConfigError(f"data.test_days={c.test_days} leaves no training slots")
            lo, hi = float(data[:-n_test].min()), float(data[:-n_test].max())
            frames = (data - lo) / max(hi - lo, 1e-12)
            clamped = int((frames > 1).sum())
            save_npy(frames_path, frames.clip(0, 1).astype(np.float16))
            try:
                minutes = [int(parse_slot(s).timestamp() // 60) for s in stamps]
            except ValueError as exc:
                raise DataError(f"taxibj: a date in the .h5 files is not YYYYMMDDSS with slot 01-48: {exc}") from None
            io.write_json(meta_path, {"min": lo, "max": hi, "clamped": clamped, "minutes": minutes, "files": files})
        meta = json.loads(meta_path.read_text())
        minutes, files = np.array(meta["minutes"]), np.array(meta["files"])
        clip = c.n_in + c.n_out
        n = len(minutes)
        n_test, n_val = c.test_days * SLOTS, c.val_days * SLOTS
        if n_test + n_val >= n:
            raise ConfigError("data.test_days + data.val_days leave no training slots")
        ok = np.zeros(n, dtype=bool)  # a clip may start at s when its slots are consecutive, in one file
        if n >= clip:
            span = minutes[clip - 1 :] - minutes[: n - clip + 1]
            same = files[clip - 1 :] == files[: n - clip + 1]
            ok[: n - clip + 1] = (span == 30 * (clip - 1)) & same
        test_start, val_start = n - n_test, n - n_test - n_val
        starts = np.flatnonzero(ok)
        windows = {
            "train": [("frames", int(s)) for s in starts if s + clip <= val_start],
            "val": [("frames", int(s)) for s in starts if s >= val_start and s + clip <= test_start],
            "test": [("frames", int(s)) for s in starts if s >= test_start],
        }
        stats = {"source": "DeepST .h5 files", "min": meta["min"], "max": meta["max"], "clamped": meta["clamped"],
                 "normalisation": f"x01 = (flow - {meta['min']:g}) / ({meta['max']:g} - {meta['min']:g}) (training min "
                 "/ max, DeepST's MinMaxNormalization then OpenSTL's (X + 1) / 2)"}
        return {"frames": frames_path}, windows, stats

    def empty_split(self, name: str) -> str:
        return f"taxibj: the {name} split has no clips of {self.config.n_in + self.config.n_out} slots"

    def download(self, events: Events | None = None, optional: bool = False) -> list[Path]:
        """OpenSTL's ``dataset.npz`` (its release zip, extracted here). DeepST's ``.h5`` files have
        no direct link (OneDrive / Baidu folders): see the card."""
        if (self.dir / NPZ).is_file():
            return [self.dir / NPZ]
        archive = dl.fetch(RELEASE, self.dir / "archives", events)
        out = extract(archive, self.dir, keep=lambda n: Path(n).name == NPZ, strip=0)
        found = [p for p in out if p.name == NPZ]
        if not found:
            raise DataError(f"{archive} holds no {NPZ}; move it away and download it again")
        if found[0] != self.dir / NPZ:
            found[0].replace(self.dir / NPZ)
        return [self.dir / NPZ]

    def info(self) -> dict[str, str]:
        c = self.config
        present = [f for f in (NPZ, *H5_FILES, *EXTRA_FILES) if (self.dir / f).is_file()]
        out = {
            "source": f"OpenSTL's taxibj {NPZ} (release v0.1.0) or DeepST's BJ13-BJ16 .h5 files ({DEEPST})",
            "licence": "TaxiBJ (Microsoft Research, Zhang et al.): for research use, cite the paper",
            "citation": "Zhang, Zheng, Qi, Deep Spatio-Temporal Residual Networks for Citywide Crowd Flows "
            "Prediction, AAAI 2017",
            "protocol": f"2x32x32 inflow/outflow, 30-minute slots, {c.n_in} -> {c.n_out}; values scaled to [0, 1] by "
            "the training min / max (OpenSTL's scale: its MSE / MAE are reported on it); validation never the test "
            f"split (npz: last {c.val_clips} training clips; h5: {c.val_days} days before the last {c.test_days})",
            "files": f"{', '.join(present) or 'none'} in {self.dir} (meteorology and holidays are not used by the "
            "frame protocol)",
        }
        try:
            _, windows, stats = self.prepare()
            counts = {s: len(w) for s, w in windows.items()}
            published = None
            note = ""
            if "npz_train" in stats:
                note = (f"train + val + gap = {stats['npz_train']} clips in X_train "
                        f"({'=' if stats['npz_train'] == PUBLISHED_NPZ['train'] else '!='} published "
                        f"{PUBLISHED_NPZ['train']}); published test count not verified here")
            out["clips"] = span_counts(counts, published, note)
            out["normalisation"] = stats["normalisation"]
            if "max" in stats:
                scale = stats["max"] - stats["min"]
                out["physical units"] = (f"flow = x01 * {scale:g} + {stats['min']:g}; MSE in flow^2 = MSE * {scale ** 2:g}, "
                                         f"MAE in flows = MAE * {scale:g}; {stats['clamped']} values above the "
                                         "training max were clamped to 1")
            else:
                out["physical units"] = ("the npz does not store DeepST's min / max: metrics stay on OpenSTL's [0, 1] "
                                         "scale (use data.source=h5 with the .h5 files for the physical scale)")
        except (DataError, ConfigError) as exc:
            out["status"] = f"not available: {exc}"
        return out


@hookimpl
def vpbench_register_datasets(register):
    register(TaxiBJ)
