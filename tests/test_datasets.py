"""Data sets on real formats: MNIST IDX files, KTH's annotations and AVIs, folders of videos."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from tests.conftest import KTH_VIDEOS
from tests.media import moving_square, write_video
from vpbench.builtin import kth as K
from vpbench.builtin.mmnist import MMNISTConfig, MovingMNIST, OfficialTest
from vpbench.builtin.videofolder import VideoFolder, VideoFolderConfig
from vpbench.data.idx import read_idx
from vpbench.data.windows import window_starts
from vpbench.errors import ConfigError, DataError

# -- MNIST / Moving MNIST ------------------------------------------------------------------


def test_idx_reader_on_the_real_mnist_files(shared_data):
    images = read_idx(shared_data / "mnist" / "train-images-idx3-ubyte.gz")
    labels = read_idx(shared_data / "mnist" / "train-labels-idx1-ubyte.gz")
    test = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")
    test_labels = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8 and test.shape == (10000, 28, 28)
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(labels).tolist()[:3] == [5923, 6742, 5958]
    assert images.max() == 255 and images[0, 0, 0] == 0


def test_idx_reader_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as fh:
        fh.write(b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") * 2 + b"\x00" * 10)
    with pytest.raises(DataError, match="truncated or padded: 10 data bytes, expected 18"):
        read_idx(bad)
    (tmp_path / "x.idx").write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "x.idx")


def test_mmnist_from_real_digits(shared_data):
    data = MovingMNIST(MMNISTConfig(n_test=5), shared_data)
    data.prepare()
    train, test = data.split("train"), data.split("test")
    assert "generated test set" in data.info()["test set"]
    c1, f1 = train[7]
    c2, f2 = MovingMNIST(MMNISTConfig(), shared_data).split("train")[7]
    assert torch.equal(c1, c2) and torch.equal(f1, f2)  # same seed, same clip
    assert c1.shape == (10, 1, 64, 64) and c1.max() == 1.0
    # test clips are made of MNIST *test* digits, train clips of train digits
    assert test.glyphs.shape == (10000, 28, 28) and train.glyphs.shape == (60000, 28, 28)
    assert not torch.equal(data.split("val")[0][0], train[0][0])


def test_mmnist_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(DataError) as err:
        MovingMNIST(MMNISTConfig(), tmp_path).prepare()
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz is missing" in message and "vpbench data download mmnist" in message
    assert "https://" in message and "440fcabf" in message
    with pytest.raises(DataError, match="official Moving MNIST test set is missing"):
        MovingMNIST(MMNISTConfig(test_set="official"), tmp_path).uses_official_test()


def test_official_test_set_layout_and_shape_check(tmp_path):
    array = np.zeros((20, 3, 64, 64), np.uint8)
    for t in range(20):
        array[t, 1] = t  # clip 1, frame t has value t
    np.save(tmp_path / "seq.npy", array)
    split = OfficialTest(tmp_path / "seq.npy", 10, 10, 10000)
    assert len(split) == 3
    context, future = split[1]
    assert context[:, 0, 0, 0].mul(255).round().tolist() == list(range(10))
    assert future[:, 0, 0, 0].mul(255).round().tolist() == list(range(10, 20))
    np.save(tmp_path / "wrong.npy", np.zeros((3, 20, 64, 64), np.uint8))  # sequence-major by mistake
    with pytest.raises(DataError, match="expected uint8 \\(20, 10000, 64, 64\\)"):
        OfficialTest(tmp_path / "wrong.npy", 10, 10, 10)


def test_official_test_set_with_wrong_checksum_is_refused(shared_data, tmp_path):
    root = tmp_path / "root"
    (root / "mnist").mkdir(parents=True)
    for f in (shared_data / "mnist").iterdir():
        (root / "mnist" / f.name).symlink_to(f)
    (root / "mmnist").mkdir()
    np.save(root / "mmnist" / "mnist_test_seq.npy", np.zeros((20, 2, 64, 64), np.uint8))
    with pytest.raises(DataError, match="mnist_test_seq.npy has sha256 .* expected c2a3e8d3"):
        MovingMNIST(MMNISTConfig(), root).prepare()


# -- KTH -----------------------------------------------------------------------------------


def test_sequences_parser_on_the_real_file(shared_data):
    text = (shared_data / "kth" / "00sequences.txt").read_bytes().decode("latin-1")
    assert "\r\n" in text  # CRLF as shipped, fed to the parser untranslated
    seqs = K.parse_sequences(text)
    assert len(seqs.ranges) == 599 and seqs.n_ranges == 2391
    assert seqs.missing == ["person13_handclapping_d3"]
    assert seqs.ranges["person01_boxing_d1"] == [(1, 95), (96, 185), (186, 245), (246, 360)]
    assert seqs.ranges["person07_handclapping_d2"] == [(1, 102), (103, 248), (249, 368), (369, 518)]  # spaces before tab
    assert seqs.ranges["person11_boxing_d4"] == [(1, 106), (107, 194), (195, 250)]  # only three ranges
    assert seqs.ranges["person12_handclapping_d4"][1:3] == [(134, 238), (237, 344)]  # overlapping
    assert seqs.ranges["person25_walking_d4"][-1] == (488, 592)


def _mcnet(shared_data, name):
    out = {}
    for line in (shared_data / "kth" / "mcnet_split" / name).read_text().split("\n"):
        if line.strip():
            video, a, b = line.split()
            out.setdefault(video, []).append((int(a), int(b)))
    return out


def test_sequences_parser_agrees_with_the_mcnet_lists(shared_data):
    """MCnet's train list is 00sequences.txt for persons 01-16, range for range. Its test list
    keeps every video and range count but trims the ranges of the moving actions (jogging,
    running, walking) of persons 17-25 to sub-ranges: a protocol difference worth knowing."""
    seqs = K.parse_sequences((shared_data / "kth" / "00sequences.txt").read_text(encoding="latin-1"))
    train, test = _mcnet(shared_data, "train_data_list.txt"), _mcnet(shared_data, "test_data_list.txt")
    assert {K.person_of(v) for v in train} == set(range(1, 17)) and {K.person_of(v) for v in test} == set(range(17, 26))
    assert train == {v: r for v, r in seqs.ranges.items() if K.person_of(v) <= 16}
    assert set(test) == {v for v in seqs.ranges if K.person_of(v) >= 17}
    trimmed = [v for v in test if test[v] != seqs.ranges[v]]
    assert len(trimmed) == 108 and {K.action_of(v) for v in trimmed} == {"jogging", "running", "walking"}
    for v in trimmed:
        assert len(test[v]) == len(seqs.ranges[v])
        assert all(o[0] <= m[0] and m[1] <= o[1] for m, o in zip(test[v], seqs.ranges[v]))


def test_window_starts_by_hand():
    # ranges 1-95 and 96-185, clip 30, stride 30: starts 0, 30, 60 | 95, 125, 155
    assert window_starts([(1, 95), (96, 185)], 30, 30) == [0, 30, 60, 95, 125, 155]
    assert window_starts([(96, 185), (1, 95)], 30, 30) == [0, 30, 60, 95, 125, 155]  # order does not matter
    assert window_starts([(1, 40)], 30, 3) == [0, 3, 6, 9]
    assert window_starts([(1, 95)], 30, 30, n_frames=70) == [0, 30]  # a video shorter than its annotation
    assert window_starts([(1, 40), (1, 40)], 30, 3) == [0, 3, 6, 9]  # duplicated range counted once


def kth_config(**kw):
    base = dict(n_in=4, n_out=6, size=32, train_persons=(1, 2), val_persons=(15,), test_persons=(17,),
                actions=("boxing", "running"))
    return K.KTHConfig(**{**base, **kw})


def expected_windows(seqs, videos, clip, n_frames=100):
    total = 0
    for v in videos:
        stride = 3 if "running" in v else clip
        for first, last in seqs.ranges[v]:
            start, end = first - 1, min(last, n_frames)
            while start + clip <= end:
                total += 1
                start += stride
    return total


def test_kth_end_to_end_on_real_avis(kth_root, shared_data):
    data = K.KTH(kth_config(), kth_root)
    index = data.prepare()
    seqs = K.parse_sequences((shared_data / "kth" / "00sequences.txt").read_text(encoding="latin-1"))
    for split, persons in (("train", (1, 2)), ("val", (15,)), ("test", (17,))):
        videos = [v for v in KTH_VIDEOS if K.person_of(v) in persons]
        assert len(index[split]) == expected_windows(seqs, videos, 10)
    # person01_boxing_d1: ranges 1-95 and 96-185 inside 100 decoded frames, clip 10, stride 10 -> 9 + 0 windows
    assert sum(1 for v, _ in index["train"] if v == "person01_boxing_d1") == 9 + 0
    assert all(K.person_of(v) in (1, 2) for v, _ in index["train"])
    assert all(K.person_of(v) == 15 for v, _ in index["val"])
    assert all(K.person_of(v) == 17 for v, _ in index["test"])
    context, future = data.split("test")[0]
    assert context.shape == (4, 1, 32, 32) and future.shape == (6, 1, 32, 32)
    assert 0.15 < context.min() < 0.35 and context.max() > 0.75  # grey background, bright square
    counts = data.counts()
    assert counts["train"]["running"] > counts["train"]["boxing"]  # stride 3 for running


def test_kth_decodes_once(kth_root, monkeypatch):
    K.KTH(kth_config(), kth_root).prepare()
    cache_files = sorted((kth_root / "kth" / "cache").rglob("*.npy"))
    assert len(cache_files) == len(KTH_VIDEOS)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(K, "decode_resized", no_decoding)
    data = K.KTH(kth_config(), kth_root)
    assert len(data.split("train")) > 0
    frames = np.load(cache_files[0], mmap_mode="r")
    assert isinstance(frames, np.memmap) and frames.dtype == np.uint8 and frames.shape == (100, 32, 32)


def test_kth_corrupt_video_names_the_file(kth_root, tmp_path):
    root = tmp_path / "r"
    (root / "kth" / "videos").mkdir(parents=True)
    (root / "kth" / "00sequences.txt").write_bytes((kth_root / "kth" / "00sequences.txt").read_bytes())
    for video in KTH_VIDEOS:
        src = kth_root / "kth" / "videos" / f"{video}_uncomp.avi"
        (root / "kth" / "videos" / src.name).write_bytes(src.read_bytes())
    broken = root / "kth" / "videos" / "person17_boxing_d2_uncomp.avi"
    broken.write_bytes(broken.read_bytes()[:300])
    with pytest.raises(DataError, match="person17_boxing_d2_uncomp.avi"):
        K.KTH(kth_config(), root).prepare()
    data = K.KTH(kth_config(on_corrupt="skip"), root)
    index = data.prepare()
    assert data.skipped == ["person17_boxing_d2"]
    assert not any(v == "person17_boxing_d2" for v, _ in index["test"]) and index["test"]


def test_kth_missing_videos_and_bad_persons(tmp_path, shared_data):
    (tmp_path / "kth").mkdir()
    with pytest.raises(DataError, match="00sequences.txt is missing .* `vpbench data download kth`"):
        K.KTH(kth_config(), tmp_path).prepare()
    (tmp_path / "kth" / "00sequences.txt").write_bytes((shared_data / "kth" / "00sequences.txt").read_bytes())
    with pytest.raises(DataError, match="KTH videos are missing .*person01_boxing_d1_uncomp.avi"):
        K.KTH(kth_config(), tmp_path).prepare()
    with pytest.raises(ConfigError, match="test persons must not appear"):
        kth_config(val_persons=(17,))


def test_kth_variants_and_defaults():
    assert K.KTH40.Config().n_out == 40 and K.KTH64.Config().size == 64
    cfg = K.KTHConfig()
    assert set(cfg.train_persons) | set(cfg.val_persons) == set(range(1, 17))
    assert set(cfg.test_persons) == set(range(17, 26))


def test_a_declared_variant_is_the_hand_written_subclass(tmp_path):
    """``variant(...)`` gives what the 8-line subclass gave: fields, types, spec and run identity."""
    import pickle
    import typing
    from dataclasses import dataclass, fields

    from vpbench import config as C
    from vpbench.builtin.trivial import CopyLast
    from vpbench.data.variant import variant
    from vpbench.rundir import config_hash

    class ByHand(K.KTH):
        name = "kth40"
        description = "KTH human actions, 128x128, 10 -> 40"

        @dataclass(frozen=True)
        class Config(K.KTHConfig):
            n_out: int = 40  # predicted frames

    declared = K.KTH40
    assert (declared.name, declared.version, declared.description) == (ByHand.name, ByHand.version, ByHand.description)
    assert [(f.name, f.default) for f in fields(declared.Config)] == [(f.name, f.default) for f in fields(ByHand.Config)]
    assert typing.get_type_hints(declared.Config) == typing.get_type_hints(ByHand.Config)
    assert declared(None, tmp_path).spec == ByHand(None, tmp_path).spec
    run_config = {cls: C.resolve("copylast", CopyLast, lambda n, cls=cls: cls, dataset="kth40") for cls in (declared, ByHand)}
    assert config_hash(run_config[declared], CopyLast) == config_hash(run_config[ByHand], CopyLast)
    again = pickle.loads(pickle.dumps(declared(None, tmp_path)))  # DataLoader workers get it by name
    assert type(again) is declared and again.config == declared.Config()
    with pytest.raises(TypeError, match="variant kth7: KTH.Config has no field n_future"):
        variant(K.KTH, "KTH7", name="kth7", description="", n_future=7)


# -- videofolder ---------------------------------------------------------------------------


def test_videofolder_with_split_folders(tmp_path):
    from PIL import Image

    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        for i in range(n):
            write_video(tmp_path / split / f"v{i}.mp4", moving_square(24, 48, 64, seed=i))
    frames_dir = tmp_path / "train" / "clipdir"
    frames_dir.mkdir()
    for t in range(12):
        Image.fromarray(np.full((30, 40, 3), t * 10, np.uint8)).save(frames_dir / f"{t:04d}.png")
    data = VideoFolder(VideoFolderConfig(path=str(tmp_path), n_in=3, n_out=3, height=16, width=16, channels=3,
                                         split="folders"))
    index = data.prepare()
    assert len(index["train"]) == 4 + 4 + 2  # 24 // 6 per video, 12 // 6 for the frame folder
    assert len(index["val"]) == 4 and len(index["test"]) == 4
    context, future = data.split("train")[0]  # first window of the frame folder ("clipdir" sorts first)
    assert context.shape == (3, 3, 16, 16)
    assert context[:, 0, 0, 0].mul(255).round().tolist() == [0, 10, 20]


def test_videofolder_hash_split_is_stable_and_complete(tmp_path):
    for i in range(12):
        write_video(tmp_path / f"clip{i:02d}.avi", moving_square(10, 32, 32, seed=i))
    cfg = VideoFolderConfig(path=str(tmp_path), n_in=2, n_out=3, height=16, width=16, val_fraction=0.25, test_fraction=0.25)
    first = VideoFolder(cfg).sources()
    second = VideoFolder(cfg).sources()
    assert first == second
    assert sum(len(v) for v in first.values()) == 12
    with pytest.raises(ConfigError, match="needs a folder"):
        _ = VideoFolder(VideoFolderConfig()).folder
    with pytest.raises(DataError, match="is not a directory"):
        VideoFolder(VideoFolderConfig(path=str(tmp_path / "nonexistent"))).sources()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no videos"):
        VideoFolder(VideoFolderConfig(path=str(tmp_path / "empty"))).sources()


def test_kth_zip_extraction_is_atomic_and_idempotent(tmp_path):
    import zipfile

    video = write_video(tmp_path / "src" / "person01_walking_d1_uncomp.avi", moving_square(5))
    archive = tmp_path / "walking.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(video, "walking/person01_walking_d1_uncomp.avi")
        zf.writestr("walking/readme.txt", "not a video")
    K.extract(archive, tmp_path / "videos")
    out = tmp_path / "videos" / "person01_walking_d1_uncomp.avi"
    assert out.read_bytes() == video.read_bytes()
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == [out.name]
    mtime = out.stat().st_mtime_ns
    K.extract(archive, tmp_path / "videos")
    assert out.stat().st_mtime_ns == mtime  # present files are left alone
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="broken.zip is not a valid zip file"):
        K.extract(tmp_path / "broken.zip", tmp_path / "videos")


def test_cli_data_download_uses_present_files_and_info_reports_them(shared_data, tmp_path):
    from typer.testing import CliRunner

    from vpbench.cli import app

    (tmp_path / "mnist").mkdir()
    for f in (shared_data / "mnist").glob("*.gz"):
        (tmp_path / "mnist" / f.name).write_bytes(f.read_bytes())
    result = CliRunner().invoke(app, ["data", "download", "mmnist", "--data-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.output.count("ok: ") == 4
    result = CliRunner().invoke(app, ["data", "info", "mmnist", "--data-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert "4/4 MNIST files" in result.output and "generated test set" in result.output
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"corrupt")
    result = CliRunner().invoke(app, ["data", "download", "mmnist", "--data-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "corrupt or another version" in result.output
    assert (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes() == b"corrupt"  # kept for inspection


def test_data_root_precedence(tmp_path, monkeypatch):
    from vpbench.data.root import data_root

    monkeypatch.setenv("VPBENCH_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "cli") == tmp_path / "cli"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("VPBENCH_DATA")
    assert data_root().name in ("datasets", "data")
