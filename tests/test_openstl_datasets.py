"""OpenSTL's dataset families on small files written here in their real formats, with the real
libraries: DeepST's HDF5 and OpenSTL's npz (TaxiBJ), JPEG folders and clip lists (Human3.6M),
PredNet's hickle files and Caltech .seq videos (KITTI -> Caltech), TFRecords (BAIR), WeatherBench
netCDF through xarray, Fashion-MNIST IDX files (Moving Fashion-MNIST)."""

from __future__ import annotations

import gzip
import json
import struct
import sys
from datetime import datetime, timedelta
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch

from vpbench.errors import ConfigError, DataError

h5py = pytest.importorskip("h5py")


# -- fixture writers ---------------------------------------------------------------------------
def write_taxibj_npz(root: Path, n_train=30, n_test=6, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "taxibj").mkdir(parents=True, exist_ok=True)
    arrays = {k: rng.uniform(-1, 1, (n, 4, 2, 32, 32)) for k, n in
              (("X_train", n_train), ("Y_train", n_train), ("X_test", n_test), ("Y_test", n_test))}
    np.savez(root / "taxibj" / "dataset.npz", **arrays)
    return root / "taxibj" / "dataset.npz"


def deepst_stamps(start: datetime, days: int, skip: tuple[int, ...] = ()) -> list[bytes]:
    out = []
    for d in range(days):
        day = start + timedelta(days=d)
        out += [f"{day:%Y%m%d}{s:02d}".encode() for s in range(1, 49) if (d, s) not in skip]
    return out


def write_taxibj_h5(root: Path, seed=0) -> dict[str, np.ndarray]:
    """Four DeepST files: two full days each; BJ13 also has a day with a missing slot (removed)."""
    rng = np.random.default_rng(seed)
    (root / "taxibj").mkdir(parents=True, exist_ok=True)
    out = {}
    for year, (month, days, skip) in zip((13, 14, 15, 16), ((7, 3, ((0, 20),)), (3, 2, ()), (3, 2, ()), (11, 2, ()))):
        stamps = deepst_stamps(datetime(2000 + year, month, 1), days, skip)
        data = rng.integers(0, 500, (len(stamps), 2, 32, 32)).astype(np.float64)
        data[0, 0, 0, 0] = -3.0  # negative flows are set to 0 (DeepST)
        with h5py.File(root / "taxibj" / f"BJ{year}_M32x32_T30_InOut.h5", "w") as f:
            f["data"] = data
            f["date"] = np.array(stamps)
        out[f"BJ{year}"] = data
    return out


def jpeg(array: np.ndarray, quality=95) -> bytes:
    from PIL import Image

    buf = BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_human(root: Path, size=32) -> None:
    """Two videos of 60 frames (flat images/ folder, OpenSTL's names) and OpenSTL-style lists."""
    folder = root / "human" / "images"
    folder.mkdir(parents=True)
    for video in ("S1_Walking.54138969_", "S9_Eating.55011271_"):
        for f in range(1, 61):
            (folder / f"{video}{f:06d}.jpg").write_bytes(jpeg(np.full((size, size, 3), 4 * f, np.uint8)))
    (root / "human" / "train.txt").write_text(
        "images/S1_Walking.54138969_,1,71\nimages/S1_Walking.54138969_,11,81\nimages/S9_Eating.55011271_,1,71\n")
    (root / "human" / "test.txt").write_text("images/S1_Walking.54138969_,21,91\n")


def write_hickle_v3(path: Path, obj) -> None:
    """hickle 2/3 layout: the object at /data_0 (an array, or a list of strings as one dataset)."""
    with h5py.File(path, "w") as f:
        f.attrs["CLASS"] = b"hickle"
        f.attrs["VERSION"] = 3
        if isinstance(obj, list):
            d = f.create_dataset("data_0", data=np.array([s.encode() for s in obj]))
            d.attrs["type"] = [b"<type 'list'>"]
        else:
            d = f.create_dataset("data_0", data=obj)
            d.attrs["type"] = [b"ndarray"]


def write_hickle_v5(path: Path, obj) -> None:
    """hickle 4/5 layout: /data; a list of strings is a group of (1, n) S1 datasets data0, data1, ..."""
    with h5py.File(path, "w") as f:
        f.attrs["HICKLE_VERSION"] = "5.0.2"
        if isinstance(obj, list):
            g = f.create_group("data")
            for i, s in enumerate(obj):
                raw = np.frombuffer(s.encode(), dtype="S1").reshape(1, -1)
                g.create_dataset(f"data{i}", data=raw)
        else:
            f.create_dataset("data", data=obj)


def kitti_frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 128, 160, 3), dtype=np.uint8)


def write_seq(path: Path, frames: list[np.ndarray]) -> None:
    """A Norpix .seq like Caltech's: a 1024-byte header, then per frame a uint32 size and a JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytearray(1024)
    header[:4] = struct.pack("<I", 0xFEED)
    body = b"".join(struct.pack("<I", len(j) + 4) + j + b"\x00" * 8 for j in map(jpeg, frames))
    path.write_bytes(bytes(header) + body)


def write_kitticaltech(root: Path, hickle=write_hickle_v3) -> None:
    (root / "kitti_hkl").mkdir(parents=True)
    for part, (n_a, n_b), seed in (("train", (25, 13), 0), ("val", (12, 0), 1)):
        sources = ["city-2011_09_26_drive_0001_sync"] * n_a + ["road-2011_09_26_drive_0015_sync"] * n_b
        hickle(root / "kitti_hkl" / f"X_{part}.hkl", kitti_frames(len(sources), seed))
        hickle(root / "kitti_hkl" / f"sources_{part}.hkl", sources)
    for s, n in (("set06", 36), ("set07", 40)):
        frames = [np.full((480, 640, 3), (k * 7) % 256, np.uint8) for k in range(n)]
        write_seq(root / "caltech" / s / "V000.seq", frames)


def bair_record(k: int, n_frames=30) -> bytes:
    from vpbench.data.tfrecord import build_example

    features = {}
    for i in range(n_frames):
        image = np.full((64, 64, 3), (k * 31 + i) % 256, np.uint8)
        image[0, 0] = (i, k, 7)
        features[f"{i}/image_aux1/encoded"] = image.tobytes()
        features[f"{i}/image_main/encoded"] = image[::-1].tobytes()
        features[f"{i}/action"] = [0.1 * i, 0.2, 0.3, 0.4]
        features[f"{i}/endeffector_pos"] = [1.0, 2.0, 3.0]
    return build_example(features)


def write_bair(root: Path, n_frames=30) -> None:
    from vpbench.data.tfrecord import write_records

    for part, files in (("train", ("traj_0_to_1.tfrecords", "traj_2_to_3.tfrecords")), ("test", ("traj_0_to_1.tfrecords",))):
        (root / "softmotion30_44k" / part).mkdir(parents=True)
        for f, name in enumerate(files):
            write_records(root / "softmotion30_44k" / part / name, [bair_record(2 * f + j, n_frames) for j in range(2)])


WEATHER_VARS = {"t2m": ("2m_temperature", 280.0, 15.0), "u10": ("10m_u_component_of_wind", 0.0, 5.0),
                "v10": ("10m_v_component_of_wind", 0.0, 5.0), "tcc": ("total_cloud_cover", 0.5, 0.2),
                "r": ("relative_humidity", 60.0, 20.0)}


def write_weather(root: Path, years=(2014, 2015, 2016, 2017), hours=36, variables=("t2m",), name_override=None) -> None:
    """WeatherBench-style netCDF files (32x64, hourly) with only the first ``hours`` hours of each year."""
    import xarray as xr

    lat = np.linspace(-87.1875, 87.1875, 32)
    lon = np.arange(64) * 5.625
    levels = np.array([50, 150, 500, 850, 1000])
    for short in variables:
        long, mean, std = WEATHER_VARS[short]
        folder = root / "weather_5.625deg" / long
        folder.mkdir(parents=True, exist_ok=True)
        for year in years:
            time = np.datetime64(f"{year}-01-01T00") + np.arange(hours).astype("timedelta64[h]")
            rng = np.random.default_rng(year)
            if short == "r":
                values = (mean + std * rng.standard_normal((hours, len(levels), 32, 64))).astype(np.float32)
                da = xr.DataArray(values, dims=("time", "level", "lat", "lon"),
                                  coords={"time": time, "level": levels, "lat": lat, "lon": lon})
            else:
                values = (mean + std * rng.standard_normal((hours, 32, 64))).astype(np.float32)
                da = xr.DataArray(values, dims=("time", "lat", "lon"), coords={"time": time, "lat": lat, "lon": lon})
            da.to_dataset(name=name_override or short).to_netcdf(folder / f"{long}_{year}_5.625deg.nc")


def write_idx(path: Path, images: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 8, images.ndim) + struct.pack(f">{images.ndim}I", *images.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + images.astype(np.uint8).tobytes())


def write_fashion(root: Path) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("train-images-idx3-ubyte.gz", 50), ("t10k-images-idx3-ubyte.gz", 20)):
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 6:22, 8:20] = rng.integers(100, 256, (n, 1, 1))  # a garment-like blob on 0 background
        write_idx(root / "fashion_mnist" / name, images)
    for name, n in (("train-labels-idx1-ubyte.gz", 50), ("t10k-labels-idx1-ubyte.gz", 20)):
        write_idx(root / "fashion_mnist" / name, np.arange(n) % 10)


@pytest.fixture
def unpinned_fashion(monkeypatch):
    """Fixture IDX files are not the published ones: drop the pinned MD5s for these tests."""
    import dataclasses

    from vpbench.builtin import mfmnist

    files = {k: dataclasses.replace(v, md5=None) for k, v in mfmnist.FASHION_FILES.items()}
    monkeypatch.setattr(mfmnist.MovingFashionMNIST, "GLYPH_FILES", files)


# -- TaxiBJ --------------------------------------------------------------------------------------
def test_taxibj_npz_is_openstls_scale_and_val_is_held_out(tmp_path):
    from vpbench.builtin.taxibj import TaxiBJ, TaxiBJConfig

    write_taxibj_npz(tmp_path)
    data = TaxiBJ(TaxiBJConfig(val_clips=5), tmp_path)
    assert data.spec.frame_shape == (2, 32, 32)
    assert [len(data.split(s)) for s in ("train", "val", "test")] == [30 - 5 - 7, 5, 6]
    npz = np.load(tmp_path / "taxibj" / "dataset.npz")
    context, future = data.split("test")[2]
    assert torch.allclose(context, torch.from_numpy((npz["X_test"][2] + 1) / 2).float(), atol=5e-4)
    assert torch.allclose(future, torch.from_numpy((npz["Y_test"][2] + 1) / 2).float(), atol=5e-4)
    context, _ = data.split("val")[0]
    assert torch.allclose(context, torch.from_numpy((npz["X_train"][25] + 1) / 2).float(), atol=5e-4)
    frames = np.load(next((tmp_path / "taxibj" / "cache").rglob("train.npy")), mmap_mode="r")
    assert isinstance(frames, np.memmap) and frames.dtype == np.float16
    with pytest.raises(ConfigError, match="holds 4 -> 4 clips"):
        TaxiBJ(TaxiBJConfig(n_in=3, val_clips=5), tmp_path).prepare()


def test_taxibj_from_deepst_h5_files(tmp_path):
    from vpbench.builtin.taxibj import TaxiBJ, TaxiBJConfig

    raw = write_taxibj_h5(tmp_path)
    data = TaxiBJ(TaxiBJConfig(source="h5", test_days=1, val_days=1), tmp_path)
    _, windows, stats = data.prepare()
    # BJ13 loses its incomplete day; 8 full days remain: BJ16's last is test, its first is val
    assert {s: len(w) for s, w in windows.items()} == {"train": 3 * (96 - 7), "val": 48 - 7, "test": 48 - 7}
    train_max = max([float(raw[k].max()) for k in ("BJ13", "BJ14", "BJ15")] + [float(raw["BJ16"][:48].max())])
    assert stats["min"] == 0.0 and stats["max"] == train_max
    context, future = data.split("train")[0]  # BJ13's first complete day (the first day has a gap)
    expected = np.maximum(raw["BJ13"][48 - 1 : 48 - 1 + 4], 0) / train_max  # day 0 has 47 slots
    assert torch.allclose(context, torch.from_numpy(expected).float(), atol=3e-4)
    info = data.info()
    assert "MSE in flow^2 = MSE *" in info["physical units"] and "train 267" in info["clips"]


def test_taxibj_bad_input_is_one_line(tmp_path, monkeypatch):
    from vpbench.builtin.taxibj import TaxiBJ, TaxiBJConfig

    with pytest.raises(DataError, match="no data in .*download taxibj"):
        TaxiBJ(None, tmp_path).prepare()
    write_taxibj_h5(tmp_path)
    bj14 = tmp_path / "taxibj" / "BJ14_M32x32_T30_InOut.h5"
    original = bj14.read_bytes()
    bj14.write_bytes(original[: len(original) // 3])
    with pytest.raises(DataError, match="BJ14_M32x32_T30_InOut.h5 is not a readable HDF5 file"):
        TaxiBJ(TaxiBJConfig(source="h5", test_days=1, val_days=1), tmp_path).prepare()
    with h5py.File(bj14, "w") as f:
        f["flows"] = np.zeros((48, 2, 32, 32))
    with pytest.raises(DataError, match="BJ14_M32x32_T30_InOut.h5 has no 'data' .*flows.*right file"):
        TaxiBJ(TaxiBJConfig(source="h5", test_days=1, val_days=1), tmp_path).prepare()
    assert (tmp_path / "taxibj" / "BJ13_M32x32_T30_InOut.h5").is_file()  # nothing else touched
    npz = write_taxibj_npz(tmp_path)
    npz.write_bytes(npz.read_bytes()[:5000])
    with pytest.raises(DataError, match="dataset.npz is not a readable .npz"):
        TaxiBJ(TaxiBJConfig(val_clips=5), tmp_path).prepare()
    assert npz.stat().st_size == 5000  # kept for inspection
    monkeypatch.setitem(sys.modules, "h5py", None)
    npz.unlink()
    with pytest.raises(DataError, match=r"^taxibj needs h5py: pip install 'vpbench\[hdf5\]'$"):
        TaxiBJ(TaxiBJConfig(source="h5"), tmp_path).prepare()


# -- Human3.6M -----------------------------------------------------------------------------------
def test_human_openstl_lists_and_subject_split(tmp_path):
    from vpbench.builtin.human import Human, HumanConfig

    write_human(tmp_path)
    data = Human(HumanConfig(size=32, val_fraction=0.2), tmp_path)  # S1_Walking's name hashes below 0.2: val
    _, windows, _ = data.prepare()
    assert {s: len(w) for s, w in windows.items()} == {"train": 1, "val": 2, "test": 1}
    assert {v for v, _ in windows["val"]} == {"S1_Walking.54138969_"} and "train + val = 3" in data.info()["clips"]
    context, future = data.split("test")[0]  # frames 21, 26, ..., 56 of S1_Walking
    assert context.shape == (4, 3, 32, 32) and future.shape == (4, 3, 32, 32)
    values = torch.cat([context, future])[:, 0, 16, 16].mul(255).tolist()
    assert all(abs(v - 4 * f) <= 3 for v, f in zip(values, range(21, 61, 5)))  # JPEG: within 3 levels
    subjects = Human(HumanConfig(size=16, split="subjects", train_subjects=(1,), val_subjects=(5,), test_subjects=(9,)),
                     tmp_path)
    _, windows, _ = subjects.prepare()
    assert [b for _, b in subjects.clips()["train"]] == [1]  # 1 + 35 <= 60; 26 + 35 > 60
    assert len(windows["test"]) == 1 and subjects.split("test")[0][0].shape == (4, 3, 16, 16)
    with pytest.raises(DataError, match="human: the val split has no clips"):
        subjects.split("val")


def test_human_bad_input(tmp_path):
    from vpbench.builtin.human import Human, HumanConfig

    with pytest.raises(DataError, match="train.txt is missing; copy OpenSTL's clip lists"):
        Human(None, tmp_path).prepare()
    write_human(tmp_path)
    (tmp_path / "human" / "images" / "S1_Walking.54138969_000031.jpg").unlink()
    with pytest.raises(DataError, match="S1_Walking.54138969_000031.jpg is missing"):
        Human(HumanConfig(size=32), tmp_path).prepare()
    broken = tmp_path / "human" / "images" / "S1_Walking.54138969_000031.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DataError, match="000031.jpg is not a readable image"):
        Human(HumanConfig(size=32), tmp_path).prepare()


# -- KITTI -> Caltech ----------------------------------------------------------------------------
@pytest.mark.parametrize("hickle", [write_hickle_v3, write_hickle_v5], ids=["hickle3", "hickle5"])
def test_kitticaltech_hickle_files_and_caltech_seq(tmp_path, hickle):
    from vpbench.builtin.kitticaltech import KittiCaltech, openstl_windows

    write_kitticaltech(tmp_path, hickle)
    data = KittiCaltech(None, tmp_path)
    _, windows, _ = data.prepare()
    # train: recordings of 25 and 13 frames -> 2 + 1 windows of 11; val: 12 frames -> 1; test: 36 // 3 = 12 and 13
    assert {s: len(w) for s, w in windows.items()} == {"train": 3, "val": 1, "test": 2}
    assert openstl_windows(["a"] * 25 + ["b"] * 13, 11) == [27, 14, 3]  # from the end of each recording
    context, future = data.split("train")[0]
    frames = kitti_frames(38, 0)
    assert torch.equal(context, torch.from_numpy(frames[27:37].transpose(0, 3, 1, 2).copy()).float() / 255)
    assert future.shape == (1, 3, 128, 160)
    context, _ = data.split("test")[0]  # set07's last 11 of its 13 kept frames (3rd, 6th, ... of 40)
    assert context.shape == (10, 3, 128, 160)
    assert abs(float(context[0].mean()) * 255 - ((3 * 3 - 1) * 7 % 256)) < 3


def test_kitticaltech_openstl_cache_is_flipped_to_rgb(tmp_path):
    from vpbench.builtin.kitticaltech import KittiCaltech

    write_kitticaltech(tmp_path)
    cache = np.zeros((22, 128, 160, 3), np.uint8)
    cache[..., 0] = 200  # blue in OpenCV's BGR order
    np.save(tmp_path / "caltech" / "data_cache.npy", cache)
    np.save(tmp_path / "caltech" / "indices_cache.npy", np.array([11, 0], np.int32))
    data = KittiCaltech(None, tmp_path)
    context, _ = data.split("test")[0]
    assert len(data.split("test")) == 2 and float(context[:, 2].mean()) == pytest.approx(200 / 255)


def test_kitticaltech_bad_input(tmp_path):
    from vpbench.builtin.kitticaltech import KittiCaltech

    with pytest.raises(DataError, match="X_train.hkl is missing.*kitti_data.zip"):
        KittiCaltech(None, tmp_path).prepare()
    write_kitticaltech(tmp_path)
    x_val = tmp_path / "kitti_hkl" / "X_val.hkl"
    x_val.write_bytes(x_val.read_bytes()[:2000])
    with pytest.raises(DataError, match="X_val.hkl is not a readable HDF5 file"):
        KittiCaltech(None, tmp_path).prepare()
    with h5py.File(x_val, "w") as f:
        f["frames"] = np.zeros((3, 128, 160, 3), np.uint8)
    with pytest.raises(DataError, match="X_val.hkl is HDF5 but not a hickle file"):
        KittiCaltech(None, tmp_path).prepare()


# -- BAIR ----------------------------------------------------------------------------------------
def test_bair_tfrecords_read_without_tensorflow(tmp_path):
    from vpbench.builtin.bair import BAIR, BAIRFVD

    assert "tensorflow" not in sys.modules
    write_bair(tmp_path)
    data = BAIR(None, tmp_path)
    _, windows, stats = data.prepare()
    assert stats["trajectories"] == {"train": 2, "val": 2, "test": 2}
    assert {s: len(w) for s, w in windows.items()} == {"train": 30, "val": 30, "test": 30}  # 15 windows each
    context, future = data.split("test")[16]  # trajectory 1, start 1
    assert context.shape == (4, 3, 64, 64) and future.shape == (12, 3, 64, 64)
    assert context[:, 0, 0, 0].mul(255).round().tolist() == [1, 2, 3, 4]  # frame index in the red corner
    assert context[0, 1, 0, 0].mul(255).round() == 1  # trajectory index
    assert "tensorflow" not in sys.modules
    fvd = BAIRFVD(None, tmp_path)
    assert len(fvd.split("test")) == 2 and len(fvd.split("train")) == 2 * 15
    assert fvd.split("test")[1][0][0, 1, 0, 0].mul(255).round() == 1


def test_bair_bad_input(tmp_path):
    from vpbench.builtin.bair import BAIR

    with pytest.raises(DataError, match="no TFRecords in .*download bair"):
        BAIR(None, tmp_path).prepare()
    write_bair(tmp_path)
    path = tmp_path / "softmotion30_44k" / "test" / "traj_0_to_1.tfrecords"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(DataError, match=r"traj_0_to_1.tfrecords is truncated \(record 1 cut short\)"):
        BAIR(None, tmp_path).prepare()
    flipped = bytearray(raw)
    flipped[len(raw) // 4] ^= 0xFF  # inside the first record's data
    path.write_bytes(bytes(flipped))
    with pytest.raises(DataError, match="corrupt \\(bad data checksum at record 0\\)"):
        BAIR(None, tmp_path).prepare()
    from vpbench.data.tfrecord import build_example, write_records

    write_records(path, [build_example({"0/image/encoded": b"x"})])
    with pytest.raises(DataError, match="has no '0/image_aux1/encoded'"):
        BAIR(None, tmp_path).prepare()


# -- WeatherBench --------------------------------------------------------------------------------
WEATHER_SMALL = dict(train_years=(2014, 2015), val_years=(2016, 2016), test_years=(2017, 2017), n_in=4, n_out=4)


def test_weatherbench_netcdf_windows_and_training_statistics(tmp_path):
    pytest.importorskip("xarray")
    pytest.importorskip("netCDF4")
    from vpbench.builtin.weatherbench import WeatherBench, WeatherBenchConfig

    write_weather(tmp_path, variables=("t2m", "u10", "v10"))
    data = WeatherBench(WeatherBenchConfig(**WEATHER_SMALL), tmp_path)
    _, windows, stats = data.prepare()
    # OpenSTL: the split's series minus its last hour -> T frames, T - n_in - n_out clips
    assert {s: len(w) for s, w in windows.items()} == {"train": 72 - 1 - 8, "val": 36 - 1 - 8, "test": 36 - 1 - 8}
    import xarray as xr

    train = np.concatenate([xr.open_dataset(tmp_path / "weather_5.625deg" / "2m_temperature" /
                                            f"2m_temperature_{y}_5.625deg.nc")["t2m"].values for y in (2014, 2015)])[:-1]
    lo, hi = stats["lo"][0], stats["hi"][0]
    width = float(train.max() - train.min())
    assert lo == pytest.approx(train.min() - 0.1 * width, rel=1e-5) and hi == pytest.approx(train.max() + 0.1 * width)
    assert stats["mean"][0] == pytest.approx(train.mean(dtype=np.float64), rel=1e-6)
    context, future = data.split("train")[3]
    assert context.shape == (4, 1, 32, 64) and future.shape == (4, 1, 32, 64)
    assert torch.allclose(context, torch.from_numpy((train[3:7, None] - lo) / (hi - lo)).float(), atol=3e-4)
    uv = WeatherBench(WeatherBenchConfig(**WEATHER_SMALL, variable="uv10"), tmp_path)
    assert uv.spec.channels == 2 and uv.split("test")[0][0].shape == (4, 2, 32, 64)
    step = WeatherBench(WeatherBenchConfig(**{**WEATHER_SMALL, "n_in": 2, "n_out": 2}, step=6), tmp_path)
    assert len(step.split("train")) == len(range(0, 71, 6)) - 4  # frames 0, 6, ..., 66
    info = data.info()
    assert "(OpenSTL's z-scale)" in info["physical units"] and "train 63" in info["clips"]


def test_weatherbench_bad_input(tmp_path, monkeypatch):
    pytest.importorskip("xarray")
    from vpbench.builtin.weatherbench import WeatherBench, WeatherBenchConfig

    config = WeatherBenchConfig(**WEATHER_SMALL)
    with pytest.raises(DataError, match="2m_temperature_2014_5.625deg.nc is missing .*download weatherbench"):
        WeatherBench(config, tmp_path).prepare()
    write_weather(tmp_path, name_override="temperature2m")
    with pytest.raises(DataError, match="has no variable 't2m' \\(it holds temperature2m\\)"):
        WeatherBench(config, tmp_path).prepare()
    write_weather(tmp_path)
    path = tmp_path / "weather_5.625deg" / "2m_temperature" / "2m_temperature_2016_5.625deg.nc"
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(DataError, match="2m_temperature_2016_5.625deg.nc is not a readable netCDF file"):
        WeatherBench(config, tmp_path).prepare()
    write_weather(tmp_path, variables=("r",))
    with pytest.raises(DataError, match="no level 700 hPa"):
        WeatherBench(WeatherBenchConfig(**WEATHER_SMALL, variable="r", level=700), tmp_path).prepare()
    assert len(WeatherBench(WeatherBenchConfig(**WEATHER_SMALL, variable="r"), tmp_path).split("val")) == 27
    monkeypatch.setitem(sys.modules, "xarray", None)
    with pytest.raises(DataError, match=r"^weatherbench needs xarray: pip install 'vpbench\[weather\]'$"):
        WeatherBench(config, tmp_path)._read(path, "t2m", [None])


# -- Moving Fashion-MNIST ------------------------------------------------------------------------
def test_mfmnist_is_the_mmnist_generator_on_fashion_images(tmp_path, unpinned_fashion):
    from vpbench.builtin.mfmnist import MFMNISTConfig, MovingFashionMNIST
    from vpbench.builtin.mmnist import MovingMNIST
    from vpbench.data.moving import MovingGlyphs

    write_fashion(tmp_path)
    data = MovingFashionMNIST(MFMNISTConfig(n_train=10, n_val=3, n_test=4), tmp_path)
    data.prepare()
    assert isinstance(data, MovingMNIST) and isinstance(data.split("train"), MovingGlyphs)
    context, future = data.split("test")[0]
    assert context.shape == (10, 1, 64, 64) and future.shape == (10, 1, 64, 64)
    assert "generated test set" in data.info()["test set"] and "Fashion-MNIST" in data.info()["files"]
    official = np.random.default_rng(0).integers(0, 256, (20, 5, 64, 64), dtype=np.uint8)
    (tmp_path / "mfmnist").mkdir()
    np.save(tmp_path / "mfmnist" / "fmnist_test_seq.npy", official)
    context, future = MovingFashionMNIST(MFMNISTConfig(n_test=4), tmp_path).split("test")[3]
    assert torch.equal(future[:, 0], torch.from_numpy(official[10:, 3]).float() / 255)


def test_mfmnist_says_its_official_test_set_comes_in_a_tar(tmp_path, unpinned_fashion):
    from vpbench.builtin.mfmnist import MFMNISTConfig, MovingFashionMNIST

    write_fashion(tmp_path)
    data = MovingFashionMNIST(MFMNISTConfig(test_set="official"), tmp_path)
    with pytest.raises(DataError, match=r"unpack fmnist_test_seq.npy from \S+fmnist_test_seq.npy.tar into \S+mfmnist"):
        data.prepare()


def test_mfmnist_checks_the_published_md5(tmp_path):
    from vpbench.builtin.mfmnist import MovingFashionMNIST

    with pytest.raises(DataError, match="Fashion-MNIST file train-images-idx3-ubyte.gz is missing .*md5 8d4fb7e6"):
        MovingFashionMNIST(None, tmp_path).prepare()
    write_fashion(tmp_path)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz has md5 .* expected 8d4fb7e6c68d591d"):
        MovingFashionMNIST(None, tmp_path).prepare()


# -- the CLI on every fixture --------------------------------------------------------------------
CLI_CASES = {
    "taxibj": (write_taxibj_npz, ["data.val_clips=5"]),
    "human": (write_human, ["data.size=32", "data.val_fraction=0.2"]),
    "kitticaltech": (write_kitticaltech, []),
    "bair": (write_bair, []),
    "weatherbench": (write_weather, [f"data.{k}={v[0]},{v[1]}" if isinstance(v, tuple) else f"data.{k}={v}"
                                     for k, v in WEATHER_SMALL.items()]),
    "mfmnist": (write_fashion, ["data.n_test=4", "data.n_val=2"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_run_copylast_and_info_on_each_fixture(name, tmp_path, monkeypatch, request):
    from tests.cli_helpers import invoke

    if name == "mfmnist":
        request.getfixturevalue("unpinned_fashion")
    if name == "weatherbench":
        pytest.importorskip("xarray")
    writer, sets = CLI_CASES[name]
    writer(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    args = [a for s in sets + ["eval.bootstrap=20", "eval.speed=false", "eval.examples=0", "eval.metrics=mse,mae",
                               "eval.max_clips=4", "eval.profile=false"] for a in ("--set", s)]
    result = invoke("run", "copylast", "--dataset", name, "--data-dir", str(tmp_path / "data"), "--out", "run", *args)
    assert result.exit_code == 0, result.output
    assert f"copylast on {name} (test)" in result.output
    result = invoke("data", "info", name, "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 0 and "citation" in result.output, result.output


# -- downloads -----------------------------------------------------------------------------------
def test_downloads_unpack_archives_and_say_where_files_go(tmp_path, monkeypatch):
    import tarfile
    import zipfile

    from vpbench.builtin import bair, human, kitticaltech, taxibj
    from vpbench.data.download import RemoteFile

    src = tmp_path / "src"
    npz = write_taxibj_npz(src)
    with zipfile.ZipFile(tmp_path / "taxibj_dataset.zip", "w") as zf:
        zf.write(npz, "taxibj/dataset.npz")
    monkeypatch.setattr(taxibj, "RELEASE", RemoteFile("taxibj_dataset.zip", ((tmp_path / "taxibj_dataset.zip").as_uri(),)))
    root = tmp_path / "root"
    assert taxibj.TaxiBJ(None, root).download() == [root / "taxibj" / "dataset.npz"]
    assert (root / "taxibj" / "dataset.npz").read_bytes() == npz.read_bytes()
    assert "taxibj_dataset.zip" in json.loads((root / "taxibj" / "archives" / "checksums.json").read_text())
    write_bair(src)
    with tarfile.open(tmp_path / "bair.tar", "w") as tf:
        tf.add(src / "softmotion30_44k", "softmotion30_44k")
    monkeypatch.setattr(bair, "ARCHIVE", RemoteFile("bair.tar", ((tmp_path / "bair.tar").as_uri(),)))
    paths = bair.BAIR(None, root).download()
    assert len(paths) == 3 and len(bair.BAIR(None, root).split("test")) == 30
    for cls, where in ((human.Human, "human/images"), (kitticaltech.KittiCaltech, "kitti_hkl")):
        with pytest.raises(DataError, match=f"no (direct|checksummed) download.*{where}"):
            cls(None, root).download()
