from __future__ import annotations

import os
from pathlib import Path

import pytest

from vpbench.plugins import Harness, PluginRecord

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = ROOT / "examples" / "vpbench-example"


def shared_data_dir() -> Path:
    return Path(os.environ.get("VPBENCH_TEST_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real test data not found at {path} (set VPBENCH_TEST_DATA)")
    return path


@pytest.fixture
def harness() -> Harness:
    h = Harness()
    h.load_builtins()
    return h


@pytest.fixture
def harness_with_test_models(harness) -> Harness:
    from tests import models

    harness.add_plugin(models, PluginRecord("tests", "vpbench-tests", "0"))
    return harness


@pytest.fixture
def with_test_models():
    """The small test models (tests/models.py) in the process-wide harness the CLI uses."""
    from tests import models
    from vpbench.plugins import get_harness

    h = get_harness()
    if "oneconv" not in h.models:
        h.add_plugin(models, PluginRecord("tests", "vpbench-tests", "0"))
    yield h


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run in an empty directory (run directories default to ./runs)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


KTH_VIDEOS = [f"person{p:02d}_{a}_d{d}" for p in (1, 2, 15, 17) for a in ("boxing", "running") for d in (1, 2, 3, 4)]


@pytest.fixture(scope="module")
def kth_root(tmp_path_factory, request):
    """Small real AVIs under real KTH names, beside the real 00sequences.txt."""
    from tests.media import moving_square, write_video

    seq = shared_data_dir() / "kth" / "00sequences.txt"
    if not seq.is_file():
        pytest.skip(f"real KTH annotations not found at {seq}")
    root = tmp_path_factory.mktemp("kthroot")
    (root / "kth" / "videos").mkdir(parents=True)
    (root / "kth" / "00sequences.txt").write_bytes(seq.read_bytes())
    for i, video in enumerate(KTH_VIDEOS):
        write_video(root / "kth" / "videos" / f"{video}_uncomp.avi", moving_square(100, seed=i))
    return root



def write_dist_info(site: Path, dist: str, version: str, entry_points: dict[str, str]) -> None:
    """A minimal installed-distribution record: real entry-point metadata on sys.path."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[vpbench]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


# Tests never reach for the network: weights and data must come from disk (or be reported n/a).
os.environ.setdefault("VPBENCH_OFFLINE", "1")
