"""``weatherbench``: WeatherBench (Rasp et al. 2020) at 5.625 deg (32x64), 12 -> 12 hourly frames (OpenSTL's).

Source: the WeatherBench netCDF files, one per variable and year, as the WeatherBench archive
(https://github.com/pangeo-data/WeatherBench) unpacks them and OpenSTL's
``download_weatherbench.sh`` places them: ``<data root>/weather_5.625deg/<variable>/<variable>_<year>_5.625deg.nc``
(OpenSTL also accepts ``<data root>/weather/``; so does vpbench). They are read with xarray
(``pip install 'vpbench[weather]'``), one file at a time (no dask needed).

Variables (``data.variable``), as OpenSTL's ``dataloader_weather.py`` builds them:

- ``t2m``: ``2m_temperature`` (netCDF variable ``t2m``), 1 channel;
- ``r``: ``relative_humidity`` (``r``) at ``data.level`` (1000 hPa: OpenSTL takes the file's last
  level), 1 channel;
- ``uv10``: ``10m_u_component_of_wind`` (``u10``) and ``10m_v_component_of_wind`` (``v10``), 2;
- ``tcc``: ``total_cloud_cover`` (``tcc``), 1;
- ``mv``: ``relative_humidity``, ``temperature``, ``u_component_of_wind``,
  ``v_component_of_wind`` (``r``, ``t``, ``u``, ``v``) at ``data.levels`` (150, 500, 850 hPa), 12;
- ``mv5``: ``geopotential`` (``z``) and the four of ``mv``, 15.

Splits are years (OpenSTL's ``train_time`` / ``val_time`` / ``test_time``): train 2010-2015,
val 2016, test 2017-2018 (``weatherbench_mv``: train 1979-2015). Frames are ``data.step``
hours apart. OpenSTL's windows are reproduced exactly: the split's hourly series minus its last
hour, taken every ``step`` hours, gives ``T`` frames and ``T - n_in - n_out`` clips, one per
start, stride 1 (t2m: train 52583, val 8759, test 17495 clips).

Normalisation: OpenSTL z-scores each channel with a mean / std computed on the split itself
(test data with test statistics). vpbench computes every statistic on the training years only
and maps each channel into [0, 1] with ``x01 = (x - lo) / (hi - lo)``, ``lo`` / ``hi`` the
training min / max widened by ``data.margin`` (10%) of the range on each side; the rare val /
test values outside are clamped (counted in ``vpbench data info``). Metrics go back to physical
units by ``MSE * (hi - lo)**2`` and ``MAE * (hi - lo)``, and to OpenSTL's z-scale by
``MSE * ((hi - lo) / std)**2`` (per channel; printed by ``vpbench data info``). Frames are
cached once per split as float16 in [0, 1] (quantisation below 2.5e-4 of ``hi - lo``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vpbench import io
from vpbench.data import download as dl
from vpbench.data.archive import extract
from vpbench.data.arrays import WindowedDataset, require, save_npy, source_key, span_counts
from vpbench.data.variant import variant
from vpbench.errors import ConfigError, DataError
from vpbench.events import Events
from vpbench.hookspecs import hookimpl
from vpbench.protocols import SPLITS, DataSpec
from vpbench.validate import positive

LONG = {"t2m": "2m_temperature", "r": "relative_humidity", "u10": "10m_u_component_of_wind",
        "v10": "10m_v_component_of_wind", "tcc": "total_cloud_cover", "t": "temperature",
        "u": "u_component_of_wind", "v": "v_component_of_wind", "z": "geopotential"}
MULTI = {"mv": ("r", "t", "u", "v"), "mv5": ("z", "r", "t", "u", "v")}
SHAPES = {"5.625": (32, 64), "2.8125": (64, 128), "1.40625": (128, 256)}
ARCHIVE_URL = "https://dataserv.ub.tum.de/s/m1524895/download?path=%2F{res}deg%2F{long}&files={long}_{res}deg.zip"
PREPROCESS_VERSION = 1
YEAR_RE = re.compile(r"_(\d{4})_")


def _years(text: str) -> tuple[int, int]:
    return int(text[:4]), int(text[-4:])


@dataclass(frozen=True)
class WeatherBenchConfig:
    variable: Literal["t2m", "r", "uv10", "tcc", "mv", "mv5"] = "t2m"  # OpenSTL's data_name
    resolution: Literal["5.625", "2.8125", "1.40625"] = "5.625"  # degrees (32x64, 64x128, 128x256)
    n_in: int = 12  # context frames
    n_out: int = 12  # predicted frames
    step: int = 1  # hours between frames
    train_years: tuple[int, int] = (2010, 2015)  # first and last training year (inclusive)
    val_years: tuple[int, int] = (2016, 2016)  # validation years
    test_years: tuple[int, int] = (2017, 2018)  # test years
    level: int = 1000  # hPa, for variable=r (OpenSTL takes the last level of the file: 1000 hPa)
    levels: tuple[int, ...] = (150, 500, 850)  # hPa, for variable=mv / mv5
    margin: float = 0.1  # the [0, 1] map spans the training range widened by this fraction on each side

    def __post_init__(self) -> None:
        positive(self, "n_in", "n_out", "step")
        spans = {"train": self.train_years, "val": self.val_years, "test": self.test_years}
        for name, (a, b) in spans.items():
            if a > b:
                raise ConfigError(f"{name}_years must be (first, last), got ({a}, {b})")
        ordered = sorted(spans.values())
        if any(ordered[i][1] >= ordered[i + 1][0] for i in range(2)):
            raise ConfigError("train_years, val_years and test_years must not overlap")
        if not 0 <= self.margin <= 1:
            raise ConfigError("margin must be in [0, 1]")


class WeatherBench(WindowedDataset):
    """WeatherBench 5.625 deg, 12 -> 12 hours (OpenSTL's weather protocols), statistics from training years."""

    name = "weatherbench"
    version = "1"
    description = "WeatherBench 5.625 deg (32x64), 12 -> 12 hours: t2m, r, uv10, tcc or multi-variable (OpenSTL's)"
    Config = WeatherBenchConfig

    # -- protocol -----------------------------------------------------------------------------
    def channels(self) -> list[tuple[str, int | None]]:
        """``(short variable name, level or None)`` per channel, in order."""
        c = self.config
        if c.variable == "uv10":
            return [("u10", None), ("v10", None)]
        if c.variable == "r":
            return [("r", c.level)]
        if c.variable in MULTI:
            return [(v, lev) for v in MULTI[c.variable] for lev in c.levels]
        return [(c.variable, None)]

    @property
    def spec(self) -> DataSpec:
        h, w = SHAPES[self.config.resolution]
        return DataSpec(self.config.n_in, self.config.n_out, len(self.channels()), h, w)

    @property
    def dir(self) -> Path:
        own = self.root / f"weather_{self.config.resolution}deg"
        return own if own.is_dir() or not (self.root / "weather").is_dir() else self.root / "weather"

    def files(self, short: str) -> dict[int, Path]:
        """Year -> netCDF file of the variable ``short`` found on disk."""
        folder = self.dir / LONG[short]
        out = {}
        if folder.is_dir():
            for path in sorted(folder.glob(f"{LONG[short]}*.nc")):
                match = YEAR_RE.search(path.name)
                if match:
                    out[int(match.group(1))] = path
        return out

    def needed(self) -> dict[str, dict[int, Path]]:
        c = self.config
        years = [y for a, b in (c.train_years, c.val_years, c.test_years) for y in range(a, b + 1)]
        out = {}
        for short in dict.fromkeys(s for s, _ in self.channels()):
            found = self.files(short)
            missing = [y for y in years if y not in found]
            if missing:
                expected = self.dir / LONG[short] / f"{LONG[short]}_{missing[0]}_{c.resolution}deg.nc"
                raise DataError(
                    f"weatherbench: {expected} is missing ({len(missing)} of {len(years)} years of {LONG[short]}); run "
                    f"`vpbench data download weatherbench` or unzip {LONG[short]}_{c.resolution}deg.zip from the "
                    f"WeatherBench archive ({ARCHIVE_URL.format(res=c.resolution, long=LONG[short])}) into "
                    f"{self.dir / LONG[short]}")
            out[short] = {y: found[y] for y in years}
        return out

    # -- reading ------------------------------------------------------------------------------
    def _read(self, path: Path, short: str, levels: list[int | None]) -> tuple[np.ndarray, np.ndarray]:
        """Times (datetime64[h]) and values ``(T, len(levels), H, W)`` float32 of one file."""
        xr = require("xarray", "weatherbench", "weather")
        require("netCDF4", "weatherbench", "weather")
        try:
            ds = xr.open_dataset(path)
        except Exception as exc:  # netCDF4 / HDF5 raise OSError, ValueError, RuntimeError ...
            raise DataError(f"weatherbench: {path} is not a readable netCDF file (truncated or corrupt? "
                            f"{type(exc).__name__}: {exc}); move it away and unzip it again") from None
        with ds:
            if short not in ds.data_vars:
                raise DataError(f"weatherbench: {path} has no variable '{short}' (it holds "
                                f"{', '.join(map(str, ds.data_vars)) or 'none'}); is it the {LONG[short]} file?")
            var = ds[short]
            h, w = SHAPES[self.config.resolution]
            blocks = []
            for level in levels:
                v = var
                if level is not None:
                    if "level" not in var.dims:
                        raise DataError(f"weatherbench: {path}: '{short}' has no 'level' dimension for level {level} hPa")
                    have = [int(x) for x in ds["level"].values]
                    if level not in have:
                        raise DataError(f"weatherbench: {path} has no level {level} hPa for '{short}' (levels: "
                                        f"{', '.join(map(str, have))}); set data.level / data.levels")
                    v = var.sel(level=level)
                elif "level" in var.dims:
                    raise DataError(f"weatherbench: {path}: '{short}' has levels; expected a surface variable")
                if tuple(v.dims) != ("time", "lat", "lon") or v.shape[1:] != (h, w):
                    raise DataError(f"weatherbench: {path}: '{short}' is {dict(zip(v.dims, v.shape))}; expected time x "
                                    f"lat {h} x lon {w} at {self.config.resolution} deg")
                try:
                    blocks.append(np.asarray(v.values, dtype=np.float32))
                except Exception as exc:
                    raise DataError(f"weatherbench: cannot read '{short}' from {path} (truncated or corrupt? {exc}); "
                                    "move it away and unzip it again") from None
            times = ds["time"].values.astype("datetime64[h]")
        return times, np.stack(blocks, axis=1)

    def _series(self, needed: dict[str, dict[int, Path]], years: tuple[int, int]) -> np.ndarray:
        """The split's frames ``(T, C, H, W)``: hourly series of its years, minus the last hour,
        every ``step`` hours (OpenSTL's ``isel(time=slice(None, -1, step))``)."""
        per_var: dict[str, list] = {}
        for short in needed:
            levels = [lev for s, lev in self.channels() if s == short]
            parts, stamps = [], []
            for year in range(years[0], years[1] + 1):
                times, values = self._read(needed[short][year], short, levels)
                keep = times.astype("datetime64[Y]").astype(int) + 1970 == year
                parts.append(values[keep])
                stamps.append(times[keep])
            per_var[short] = [np.concatenate(stamps), np.concatenate(parts)]
        ref = next(iter(per_var.values()))[0]
        for short, (times, _) in per_var.items():
            if len(times) != len(ref) or not np.array_equal(times, ref):
                raise DataError(f"weatherbench: the {LONG[short]} files of {years[0]}-{years[1]} have other time steps "
                                f"than {LONG[next(iter(per_var))]}'s ({len(times)} vs {len(ref)})")
        frames = np.concatenate([per_var[s][1] for s in per_var], axis=1)  # channel order of self.channels()
        return frames[:-1 : self.config.step]

    def _key(self, needed: dict[str, dict[int, Path]]) -> str:
        c = self.config
        paths = [p for files in needed.values() for p in files.values()]
        protocol = f"{c.variable}|{c.resolution}|{c.step}|{c.train_years}|{c.val_years}|{c.test_years}|{c.level}|" \
                   f"{c.levels}|{c.margin}"
        return source_key(*paths, extra=protocol)

    def prepare(self, events: Events | None = None) -> tuple[dict[str, Path], dict[str, list], dict]:
        if self._prepared is not None:
            return self._prepared
        events = events or Events()
        c = self.config
        needed = self.needed()
        cache = self.dir / "cache" / f"v{PREPROCESS_VERSION}-{c.variable}-{self._key(needed)}"
        stats_path = cache / "stats.json"
        years = {"train": c.train_years, "val": c.val_years, "test": c.test_years}
        if not stats_path.is_file() or not all((cache / f"{s}.npy").is_file() for s in SPLITS):
            events.task_start("weatherbench", "reading WeatherBench netCDF files (once)", 3)
            train = self._series(needed, c.train_years)
            mean = train.mean(axis=(0, 2, 3), dtype=np.float64)
            std = train.std(axis=(0, 2, 3), dtype=np.float64)
            lo_raw, hi_raw = train.min(axis=(0, 2, 3)).astype(np.float64), train.max(axis=(0, 2, 3)).astype(np.float64)
            width = np.maximum(hi_raw - lo_raw, 1e-12)
            lo, hi = lo_raw - c.margin * width, hi_raw + c.margin * width
            clamped, lengths = {}, {}
            for split in SPLITS:
                frames = train if split == "train" else self._series(needed, years[split])
                x = (frames - lo[None, :, None, None].astype(np.float32)) / (hi - lo)[None, :, None, None].astype(np.float32)
                clamped[split] = int(((x < 0) | (x > 1)).sum())
                lengths[split] = len(frames)
                save_npy(cache / f"{split}.npy", x.clip(0, 1).astype(np.float16))
                events.task_advance("weatherbench")
            events.task_end("weatherbench")
            io.write_json(stats_path, {"channels": [f"{s}{'' if lev is None else lev}" for s, lev in self.channels()],
                                       "mean": mean.tolist(), "std": std.tolist(), "lo": lo.tolist(), "hi": hi.tolist(),
                                       "clamped": clamped, "frames": lengths})
        stats = json.loads(stats_path.read_text())
        clip = c.n_in + c.n_out
        windows = {s: [(s, i) for i in range(max(0, stats["frames"][s] - clip))] for s in SPLITS}
        self._prepared = ({s: cache / f"{s}.npy" for s in SPLITS}, windows, stats)
        events.message("weatherbench clips: " + span_counts({s: len(w) for s, w in windows.items()}))
        return self._prepared

    def empty_split(self, name: str) -> str:
        return (f"weatherbench: the {name} split has no clips of {self.config.n_in + self.config.n_out} frames "
                f"{self.config.step} h apart")

    def download(self, events: Events | None = None, optional: bool = False) -> list[Path]:
        """The WeatherBench zip of each variable this protocol uses, unpacked into its folder."""
        c = self.config
        out = []
        for short in dict.fromkeys(s for s, _ in self.channels()):
            long = LONG[short]
            remote = dl.RemoteFile(f"{long}_{c.resolution}deg.zip", (ARCHIVE_URL.format(res=c.resolution, long=long),))
            archive = dl.fetch(remote, self.dir / "archives", events)
            out += _extract_flat(archive, self.dir / long)
        return out

    def info(self) -> dict[str, str]:
        c = self.config
        chans = ", ".join(f"{s}{'' if lev is None else f'@{lev}hPa'}" for s, lev in self.channels())
        out = {
            "source": f"WeatherBench netCDF files (ERA5 regridded to {c.resolution} deg), "
            "https://github.com/pangeo-data/WeatherBench; read with xarray",
            "licence": "WeatherBench data: ERA5 (Copernicus Climate Change Service) licence; WeatherBench code MIT",
            "citation": "Rasp et al., WeatherBench: A benchmark dataset for data-driven weather forecasting, "
            "JAMES 2020",
            "protocol": f"{c.variable} ({chans}), {c.n_in} -> {c.n_out} frames {c.step} h apart; train "
            f"{c.train_years[0]}-{c.train_years[1]}, val {c.val_years[0]}-{c.val_years[1]}, test "
            f"{c.test_years[0]}-{c.test_years[1]}; per-channel [0, 1] map from training-year min / max widened by "
            f"{c.margin:g} of the range",
            "files": f"under {self.dir}",
        }
        try:
            _, windows, stats = self.prepare()
            counts = {s: len(w) for s, w in windows.items()}
            expected = {s: stats["frames"][s] - c.n_in - c.n_out for s in SPLITS}
            out["clips"] = span_counts(counts, None, "as OpenSTL's code cuts them: one clip per start, stride 1; "
                                       + ", ".join(f"{s} {expected[s]} expected" for s in SPLITS))
            rows = []
            for name, lo, hi, std in zip(stats["channels"], stats["lo"], stats["hi"], stats["std"]):
                rows.append(f"{name}: x = x01 * {hi - lo:.6g} + {lo:.6g}, MSE x {(hi - lo) ** 2:.6g} (physical), "
                            f"MSE x {((hi - lo) / std) ** 2:.6g} (OpenSTL's z-scale)")
            out["physical units"] = "; ".join(rows)
            out["clamped"] = ", ".join(f"{s} {n}" for s, n in stats["clamped"].items()) + " values outside [0, 1]"
        except (DataError, ConfigError) as exc:
            out["status"] = f"not available: {exc}"
        return out


def _extract_flat(archive: Path, target: Path) -> list[Path]:
    """The ``.nc`` members of ``archive`` into ``target`` (whatever folders the zip has)."""
    return extract(archive, target, keep=lambda name: name.endswith(".nc"), flat=True)


WeatherBenchMV = variant(
    WeatherBench, "WeatherBenchMV", name="weatherbench_mv",
    description="WeatherBench 5.625 deg multi-variable (r, t, u, v at 3 levels, 12 channels), 4 -> 4 frames 6 h apart",
    doc="OpenSTL's multi-variable WeatherBench (r, t, u, v at 150 / 500 / 850 hPa), 4 -> 4 frames 6 h apart.",
    variable="mv", n_in=4, n_out=4, step=6, train_years=(1979, 2015))


@hookimpl
def vpbench_register_datasets(register):
    register(WeatherBench)
    register(WeatherBenchMV)
