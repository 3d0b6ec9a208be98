"""Config layering, parsing and errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import pytest

from vpbench import config as C
from vpbench.builtin.digits import Digits
from vpbench.errors import ConfigError


@dataclass(frozen=True)
class ToyConfig:
    levels: int = 3
    lam: float = 1.0
    quantizer: Literal["tree", "residual", "flat"] = "tree"
    sizes: tuple[int, ...] = (8, 16)
    ema: bool = True


class Toy:
    name = "toy"
    Config = ToyConfig
    presets = {
        "smoke": {"model": {"levels": 2}, "train": {"batch_size": 4}},
        "smoke@other": {"model": {"lam": 0.5}},
        "paper": {"dataset_name": "other", "model": {"levels": 4}},
    }


def datasets(name):
    if name in ("digits", "other"):
        return Digits
    raise ConfigError(f"unknown dataset {name}")


def resolve(**kw):
    return C.resolve("toy", Toy, datasets, **kw)


def test_defaults_and_layer_order(tmp_path):
    cfg = resolve()
    assert (cfg.model.levels, cfg.train.batch_size, cfg.dataset_name, cfg.preset) == (3, 16, "digits", "none")
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  levels: 5\n  lam: 0.25\ntrain:\n  batch_size: 2\n")
    cfg = resolve(preset="smoke", config_file=f, sets=["model.lam=0.11", "eval.metrics=mse,ssim"], seed=7)
    assert cfg.model.levels == 5  # file beats preset
    assert cfg.model.lam == 0.11  # --set beats file
    assert cfg.train.batch_size == 2
    assert cfg.eval.metrics == ("mse", "ssim")
    assert cfg.seed == 7


def test_dataset_specific_preset_and_preset_default_dataset():
    assert resolve(preset="smoke").model.lam == 1.0
    assert resolve(preset="smoke", dataset="other").model.lam == 0.5
    cfg = resolve(preset="paper")
    assert cfg.dataset_name == "other" and cfg.model.levels == 4
    assert resolve(preset="paper", dataset="digits").dataset_name == "digits"


@pytest.mark.parametrize(
    "sets, message",
    [
        (["model.levles=2"], "unknown config key 'model.levles' (did you mean levels?)"),
        (["train.batch_size=abc"], "train.batch_size: expected an integer, got 'abc'"),
        (["train.batch_size=0"], "batch_size must be > 0"),
        (["model.quantizer=tre"], "model.quantizer: 'tre' is not one of tree, residual, flat (did you mean tree?)"),
        (["model.ema=maybe"], "model.ema: expected true or false"),
        (["model.sizes=8,x"], "model.sizes[1]: expected an integer"),
        (["train.amp=sometimes"], "train.amp: 'sometimes' is not one of auto, on, off"),
        (["nonsense"], "--set expects key=value"),
        (["seed=1.5"], "seed: expected an integer"),
        (["train=3"], "train: expected a section of keys"),
    ],
)
def test_bad_values_are_clear_errors(sets, message):
    with pytest.raises(ConfigError) as err:
        resolve(sets=sets)
    assert message in str(err.value)


def test_unknown_preset_suggests():
    with pytest.raises(ConfigError, match="no preset 'smok' \\(did you mean smoke\\?\\); available: paper, smoke"):
        resolve(preset="smok")


def test_typed_values_from_files(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[model]\nlevels = 2\nsizes = [4, 8]\nema = false\nlam = 1\n')
    cfg = resolve(config_file=toml)
    assert (cfg.model.levels, cfg.model.sizes, cfg.model.ema, cfg.model.lam) == (2, (4, 8), False, 1.0)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": {"levels": "two"}}))
    with pytest.raises(ConfigError, match="model.levels: expected an integer, got 'two'"):
        resolve(config_file=bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="does not parse"):
        resolve(config_file=broken)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(config_file=tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="use .yaml"):
        (tmp_path / "c.ini").write_text("x")
        resolve(config_file=tmp_path / "c.ini")


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="expected an integer"):
        C.coerce(True, int, "k")


def test_round_trip_through_dict():
    cfg = resolve(preset="smoke", sets=["model.sizes=1,2,3"])
    again = C.from_dict(json.loads(json.dumps(cfg.to_dict())), Toy, Digits)
    assert again == cfg
    with pytest.raises(AttributeError):
        cfg.seed = 3  # frozen


def test_renamed_key_still_loads_from_saved_configs_and_sets():
    """``eval.speed_budget`` became ``eval.speed_seconds``: a config.json written before the
    rename loads with its value, ``--set`` takes either name, and giving both is an error."""
    saved = resolve(sets=["eval.speed_seconds=1.5"]).to_dict()
    assert "speed_budget" not in saved["eval"]
    saved["eval"]["speed_budget"] = saved["eval"].pop("speed_seconds")  # as an old run wrote it
    old = C.from_dict(json.loads(json.dumps(saved)), Toy, Digits)
    assert old.eval.speed_seconds == 1.5
    assert old == resolve(sets=["eval.speed_seconds=1.5"])
    assert resolve(sets=["eval.speed_budget=0.25"]).eval.speed_seconds == 0.25
    with pytest.raises(ConfigError, match="eval.speed_budget is the old name of eval.speed_seconds"):
        resolve(sets=["eval.speed_budget=1", "eval.speed_seconds=2"])
    with pytest.raises(ConfigError, match="eval.speed_seconds: expected a finite number"):
        resolve(sets=["eval.speed_budget=nan"])
