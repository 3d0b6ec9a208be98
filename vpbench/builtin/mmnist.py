"""``mmnist``: Moving MNIST (Srivastava, Mansimov, Salakhutdinov, ICML 2015), 1x64x64, 10 -> 10.

- train: generated on demand from the MNIST *training* digits (two digits, 28x28, on a 64x64
  canvas, 0.1 of the free range per frame, clamp-and-reflect bounce, max-combined); clip ``i``
  is a pure function of ``(seed, "train", i)``, so a large virtual training set costs nothing;
- val: a fixed seeded set, also from the MNIST training digits (another seed stream);
- test: the official ``mnist_test_seq.npy`` (10000 clips of 20 frames, time-major
  ``(20, 10000, 64, 64)`` uint8, sha256 checked) when present; otherwise a fixed seeded set from
  the MNIST *test* digits, and every report then says "generated test set".

Files live under the data root: ``mnist/`` (the four IDX files, shared with anything else
that reads MNIST) and ``mmnist/mnist_test_seq.npy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from vpbench.data import download as dl
from vpbench.data.idx import read_idx
from vpbench.data.moving import MovingGlyphs
from vpbench.errors import ConfigError, DataError
from vpbench.events import Events
from vpbench.hookspecs import hookimpl
from vpbench.protocols import SPLITS, DataSpec
from vpbench.validate import positive

MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/",
           "http://yann.lecun.com/exdb/mnist/")
MNIST_FILES = {
    "train-images": dl.RemoteFile("train-images-idx3-ubyte.gz", tuple(m + "train-images-idx3-ubyte.gz" for m in MIRRORS),
                                  "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
    "train-labels": dl.RemoteFile("train-labels-idx1-ubyte.gz", tuple(m + "train-labels-idx1-ubyte.gz" for m in MIRRORS),
                                  "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
    "test-images": dl.RemoteFile("t10k-images-idx3-ubyte.gz", tuple(m + "t10k-images-idx3-ubyte.gz" for m in MIRRORS),
                                 "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
    "test-labels": dl.RemoteFile("t10k-labels-idx1-ubyte.gz", tuple(m + "t10k-labels-idx1-ubyte.gz" for m in MIRRORS),
                                 "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
}
OFFICIAL_TEST = dl.RemoteFile(
    "mnist_test_seq.npy", ("http://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy",),
    "c2a3e8d3939c001ab77bf543f130157424efa486bb4d0974d2cebb773b13f8b3", 819200096,
)
OFFICIAL_SHAPE = (20, 10000, 64, 64)
SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class MMNISTConfig:
    n_train: int = 100_000  # virtual training clips, generated on demand (never repeated within this count)
    n_val: int = 1000  # validation clips (MNIST training digits, own seed stream)
    n_test: int = 10000  # test clips (official set: at most 10000)
    n_in: int = 10  # context frames
    n_out: int = 10  # predicted frames (official test set: n_in + n_out <= 20)
    n_digits: int = 2  # digits per generated clip
    step: float = 0.1  # motion per frame as a fraction of the free range
    seed: int = 4321  # data seed (independent of the run seed)
    test_set: Literal["auto", "official", "generated"] = "auto"  # auto: official when present

    def __post_init__(self) -> None:
        positive(self, "n_train", "n_val", "n_test", "n_in", "n_out", "n_digits")
        if not 0 < self.step <= 1:
            raise ConfigError(f"step must be in (0, 1] (a fraction of the free range per frame), got {self.step}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")


class OfficialTest(torch.utils.data.Dataset):
    """Clips of ``mnist_test_seq.npy``, memory-mapped: ``(20, N, 64, 64)`` time-major."""

    def __init__(self, path: Path, n_in: int, n_out: int, n_clips: int):
        try:
            array = np.load(path, mmap_mode="r")
        except Exception as exc:
            raise DataError(f"{path} is not a readable .npy array ({exc}); move it away and download it again") from None
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[0] != 20 or array.shape[2:] != (64, 64):
            raise DataError(f"{path} has shape {array.shape} and dtype {array.dtype}; expected uint8 {OFFICIAL_SHAPE} "
                            "(time, sequence, H, W)")
        if n_in + n_out > array.shape[0]:
            raise ConfigError(f"the official test set has 20 frames per clip; n_in + n_out = {n_in + n_out}")
        self.array, self.n_in, self.n_out = array, n_in, n_out
        self.length = min(n_clips, array.shape[1])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(index)
        clip = np.asarray(self.array[: self.n_in + self.n_out, index])  # (T, 64, 64)
        frames = torch.from_numpy(clip.copy()).float().div_(255.0)[:, None]
        return frames[: self.n_in], frames[self.n_in :]


class MovingMNIST:
    """Moving MNIST, 1x64x64, 10 -> 10 (Srivastava et al. 2015; OpenSTL's protocol)."""

    name = "mmnist"
    version = "1"
    description = "Moving MNIST: MNIST digits with Srivastava dynamics; official test set when present"
    Config = MMNISTConfig
    # The glyph source and the fixed test set (mfmnist reuses this class with Fashion-MNIST's).
    GLYPH_FILES = MNIST_FILES
    OFFICIAL = OFFICIAL_TEST
    glyph_dir_name = "mnist"
    official_dir_name = "mmnist"
    glyphs_name = "MNIST"
    glyph_word = "digits"
    info_source = ("MNIST (LeCun & Cortes) IDX files; official Moving MNIST test set from the Toronto "
                   "unsupervised-video page")
    info_licence = "MNIST: CC BY-SA 3.0"
    info_citation = ("Srivastava, Mansimov, Salakhutdinov, Unsupervised Learning of Video Representations "
                     "using LSTMs, ICML 2015")

    def __init__(self, config: MMNISTConfig | None = None, root: str | Path | None = None):
        from vpbench.data.root import data_root

        self.config = config or MMNISTConfig()
        self.root = Path(root) if root is not None else data_root()
        self._digits: dict[str, np.ndarray] = {}

    @property
    def spec(self) -> DataSpec:
        return DataSpec(self.config.n_in, self.config.n_out, 1, 64, 64)

    # -- files ----------------------------------------------------------------------------
    @property
    def mnist_dir(self) -> Path:
        return self.root / self.glyph_dir_name

    @property
    def official_path(self) -> Path:
        return self.root / self.official_dir_name / self.OFFICIAL.name

    def digits(self, part: str) -> np.ndarray:
        """MNIST ``train`` or ``test`` digit images, ``(N, 28, 28)`` uint8, checksum verified."""
        if part not in self._digits:
            remote = self.GLYPH_FILES[f"{part}-images"]
            path = self.mnist_dir / remote.name
            if not path.is_file():
                checksum = f"sha256 {remote.sha256}" if remote.sha256 else f"md5 {remote.md5}"
                raise DataError(
                    f"{self.glyphs_name} file {remote.name} is missing in {self.mnist_dir}; run `vpbench data download "
                    f"{self.name}` or put it there by hand ({remote.urls[0]}, {checksum})"
                )
            dl.verify(path, remote, self.mnist_dir)
            self._digits[part] = read_idx(path)
        return self._digits[part]

    def official_hint(self) -> str:
        """Where the official test set comes from and where it goes."""
        return f"put {self.OFFICIAL.urls[0]} at {self.official_path}"

    def uses_official_test(self) -> bool:
        mode = self.config.test_set
        if mode == "generated":
            return False
        present = self.official_path.is_file()
        if mode == "official" and not present:
            checksum = f" (sha256 {self.OFFICIAL.sha256})" if self.OFFICIAL.sha256 else ""
            raise DataError(
                f"the official {self.description.split(':')[0]} test set is missing: {self.official_hint()}"
                f"{checksum}, run `vpbench data download {self.name} --optional`, or set "
                "data.test_set=generated"
            )
        return present

    # -- splits ---------------------------------------------------------------------------
    def prepare(self, events: Events | None = None) -> None:
        """Check (and load) every file the splits need before any work starts."""
        self.digits("train")
        if self.uses_official_test():
            dl.verify(self.official_path, self.OFFICIAL, self.official_path.parent)
            if events is not None:
                events.message(f"{self.name} test split: official {self.official_path}")
        else:
            self.digits("test")
            if events is not None:
                events.message(f"{self.name} test split: GENERATED from {self.glyphs_name} test images (official "
                               f"{self.OFFICIAL.name} absent)")

    def split(self, name: str):
        if name not in SPLITS:
            raise ConfigError(f"unknown split '{name}'; use one of {', '.join(SPLITS)}")
        c = self.config
        if name == "test" and self.uses_official_test():
            dl.verify(self.official_path, self.OFFICIAL, self.official_path.parent)
            return OfficialTest(self.official_path, c.n_in, c.n_out, c.n_test)
        digits = self.digits("test" if name == "test" else "train")
        length = {"train": c.n_train, "val": c.n_val, "test": c.n_test}[name]
        return MovingGlyphs(digits, length, c.n_in, c.n_out, 64, c.n_digits, c.step, (c.seed, SPLIT_CODE[name]))

    def download(self, events: Events | None = None, optional: bool = False) -> list[Path]:
        """The MNIST IDX files; with ``optional``, also the official 819 MB test set."""
        paths = [dl.fetch(remote, self.mnist_dir, events) for remote in self.GLYPH_FILES.values()]
        if optional:
            paths.append(self.fetch_official(events))
        return paths

    def fetch_official(self, events: Events | None = None) -> Path:
        return dl.fetch(self.OFFICIAL, self.official_path.parent, events)

    def info(self) -> dict[str, str]:
        c = self.config
        g, official = self.glyphs_name, self.OFFICIAL.name
        if c.test_set == "generated" or (c.test_set == "auto" and not self.official_path.is_file()):
            test = (f"generated test set: {c.n_test} seeded clips from {g} test {self.glyph_word} (official "
                    f"{official} not used; numbers are close to, not identical with, published ones)")
        else:
            test = f"official {official} ({self.official_path}), first {min(c.n_test, 10000)} clips"
        present = [r.name for r in self.GLYPH_FILES.values() if (self.mnist_dir / r.name).is_file()]
        return {
            "source": self.info_source,
            "licence": self.info_licence,
            "citation": self.info_citation,
            "protocol": f"{c.n_digits} {self.glyph_word}, 64x64, {c.n_in} -> {c.n_out}; train {c.n_train} clips "
            f"generated on demand from {g} train {self.glyph_word}, val {c.n_val} fixed clips (train "
            f"{self.glyph_word}, own seed stream)",
            "test set": test,
            "files": f"{len(present)}/4 {g} files in {self.mnist_dir}; official test set "
            f"{'present' if self.official_path.is_file() else 'absent'}",
        }


@hookimpl
def vpbench_register_datasets(register):
    register(MovingMNIST)
