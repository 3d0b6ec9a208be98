"""``mfmnist``: Moving Fashion-MNIST, 1x64x64, 10 -> 10 (OpenSTL's ``mfmnist``).

The Moving MNIST generator of :mod:`vpbench.builtin.mmnist` (two glyphs, Srivastava dynamics,
max-combined) with Fashion-MNIST images (Xiao, Rasul, Vollgraf 2017; same IDX format, 28x28,
background 0) instead of MNIST digits:

- train: generated on demand from the Fashion-MNIST *training* images;
- val: a fixed seeded set from the training images (another seed stream);
- test: OpenSTL's fixed ``fmnist_test_seq.npy`` (its v0.1.0 release, time-major
  ``(20, 10000, 64, 64)`` uint8 like ``mnist_test_seq.npy``) when present; otherwise a fixed
  seeded set from the Fashion-MNIST *test* images, and reports say "generated test set".

Files: ``<data root>/fashion_mnist/`` (the four IDX files, MD5s as published in
zalandoresearch/fashion-mnist's README) and ``<data root>/mfmnist/fmnist_test_seq.npy``
(OpenSTL puts both in ``moving_fmnist/``; OpenSTL publishes no checksum for its test set, so
its sha256 is recorded at the first download and checked after).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vpbench.builtin.mmnist import MMNISTConfig, MovingMNIST
from vpbench.data import download as dl
from vpbench.data.archive import extract
from vpbench.events import Events
from vpbench.hookspecs import hookimpl

FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_FILES = {
    "train-images": dl.RemoteFile("train-images-idx3-ubyte.gz", (FASHION_URL + "train-images-idx3-ubyte.gz",),
                                  md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train-labels": dl.RemoteFile("train-labels-idx1-ubyte.gz", (FASHION_URL + "train-labels-idx1-ubyte.gz",),
                                  md5="25c81989df183df01b3e8a0aad5dffbe"),
    "test-images": dl.RemoteFile("t10k-images-idx3-ubyte.gz", (FASHION_URL + "t10k-images-idx3-ubyte.gz",),
                                 md5="bef4ecab320f06d8554ea6380940ec79"),
    "test-labels": dl.RemoteFile("t10k-labels-idx1-ubyte.gz", (FASHION_URL + "t10k-labels-idx1-ubyte.gz",),
                                 md5="bb300cfdad3c16e7a12a480ee83cd310"),
}
OPENSTL_RELEASE = "https://github.com/chengtan9907/OpenSTL/releases/download/v0.1.0/"
OFFICIAL_TEST = dl.RemoteFile("fmnist_test_seq.npy", (OPENSTL_RELEASE + "fmnist_test_seq.npy.tar",))
OFFICIAL_TAR = dl.RemoteFile("fmnist_test_seq.npy.tar", (OPENSTL_RELEASE + "fmnist_test_seq.npy.tar",))


@dataclass(frozen=True)
class MFMNISTConfig(MMNISTConfig):
    pass


class MovingFashionMNIST(MovingMNIST):
    """Moving Fashion-MNIST, 1x64x64, 10 -> 10 (OpenSTL's protocol): the mmnist generator on
    Fashion-MNIST images."""

    name = "mfmnist"
    version = "1"
    description = "Moving Fashion-MNIST: Fashion-MNIST images with Moving MNIST dynamics; OpenSTL's test set when present"
    Config = MFMNISTConfig
    GLYPH_FILES = FASHION_FILES
    OFFICIAL = OFFICIAL_TEST
    glyph_dir_name = "fashion_mnist"
    official_dir_name = "mfmnist"
    glyphs_name = "Fashion-MNIST"
    glyph_word = "images"
    info_source = ("Fashion-MNIST IDX files (zalandoresearch/fashion-mnist); fixed test set fmnist_test_seq.npy from "
                   "OpenSTL's v0.1.0 release")
    info_licence = "Fashion-MNIST: MIT; OpenSTL's test set: Apache-2.0 project release, for research"
    info_citation = ("Xiao, Rasul, Vollgraf, Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning "
                     "Algorithms, arXiv:1708.07747, 2017; Tan et al., OpenSTL, NeurIPS 2023 Datasets and Benchmarks; "
                     "Srivastava et al., ICML 2015 (dynamics)")

    def official_hint(self) -> str:
        return f"unpack {self.OFFICIAL.name} from {OFFICIAL_TAR.urls[0]} into {self.official_path.parent}"

    def fetch_official(self, events: Events | None = None) -> Path:
        """OpenSTL ships the test set as a tar holding ``fmnist_test_seq.npy``."""
        if self.official_path.is_file():
            dl.verify(self.official_path, self.OFFICIAL, self.official_path.parent)
            return self.official_path
        archive = dl.fetch(OFFICIAL_TAR, self.official_path.parent / "archives", events)
        extract(archive, self.official_path.parent, keep=lambda n: Path(n).name == self.OFFICIAL.name,
                strip=len(Path(self._member(archive)).parts) - 1)
        return self.official_path

    def _member(self, archive: Path) -> str:
        import tarfile

        with tarfile.open(archive) as tf:
            for member in tf:
                if Path(member.name).name == self.OFFICIAL.name:
                    return member.name
        from vpbench.errors import DataError

        raise DataError(f"{archive} holds no {self.OFFICIAL.name}; move it away and download it again")


@hookimpl
def vpbench_register_datasets(register):
    register(MovingFashionMNIST)
