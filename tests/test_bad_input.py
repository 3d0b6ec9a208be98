"""Bad input gets one clear line naming the culprit, and loses nothing already written."""

from __future__ import annotations

import errno
import types

import numpy as np
import pytest
import torch

import vpbench
from tests.cli_helpers import invoke, register
from tests.models import TwoStage
from vpbench.plugins import PluginRecord, get_harness

SMALL = ["--set", "data.n_test=6", "--set", "eval.bootstrap=20", "--set", "eval.speed=false", "--set", "eval.examples=0"]


def register_once(cls):
    h = get_harness()
    if cls.name not in h.models:

        @vpbench.hookimpl
        def vpbench_register_models(register):
            register(cls)

        h.add_plugin(types.SimpleNamespace(vpbench_register_models=vpbench_register_models),
                     PluginRecord(f"bad-{cls.name}", f"vpbench-{cls.name}", "0.0.1"))


class WrongShape(TwoStage):
    name = "wrongshape"

    def stages(self):
        return []

    def predict(self, context, n_out):
        return context[:, -1:]  # one frame instead of n_out


class OutOfRange(TwoStage):
    name = "outofrange"

    def stages(self):
        return []

    def predict(self, context, n_out):
        return context[:, -1:].expand(-1, n_out, -1, -1, -1) * 3 - 1


class RaisesInPredict(TwoStage):
    name = "raisesinpredict"

    def stages(self):
        return []

    def predict(self, context, n_out):
        raise KeyError("lookup table missing")


@pytest.mark.parametrize("cls, message", [
    # caught by the check before training, on a batch of two training clips
    (WrongShape, "model 'wrongshape': predict returned shape (2, 1, 1, 64, 64), expected (2, 10, 1, 64, 64)"),
    (OutOfRange, "model 'outofrange': predict returned values in [-1, 2]; frames must be in [0, 1]"),
    (RaisesInPredict, "model 'raisesinpredict' raised in predict: KeyError: 'lookup table missing'"),
])
def test_misbehaving_model_plugins_are_named(in_tmp, cls, message):
    register_once(cls)
    result = invoke("run", cls.name, *SMALL)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_config_the_model_refuses_leaves_no_run_directory(in_tmp):
    result = invoke("run", "convlstm", *SMALL, "--set", "model.patch_size=3", "--out", "r")
    assert result.exit_code == 2, result.output
    assert "do not divide by patch_size=3" in result.output and "Traceback" not in result.output
    assert not (in_tmp / "r").exists()


def test_corrupt_model_file_is_a_clear_error(in_tmp):
    assert invoke("run", "copylast", *SMALL, "--out", "r").exit_code == 0
    (in_tmp / "r" / "model.pt").write_bytes(b"\x00garbage")
    result = invoke("run", "copylast", *SMALL, "--out", "r")
    assert result.exit_code == 2 and "r/model.pt cannot be loaded" in result.output and "--fresh" in result.output
    result = invoke("eval", "r")
    assert result.exit_code == 2 and "cannot be loaded" in result.output


def test_corrupt_config_json_is_a_clear_error(in_tmp):
    assert invoke("run", "copylast", *SMALL, "--out", "r").exit_code == 0
    (in_tmp / "r" / "config.json").write_text("{ not json")
    result = invoke("eval", "r")
    assert result.exit_code == 2 and "config.json is not valid JSON" in result.output


def test_full_disk_leaves_no_half_written_files(in_tmp, monkeypatch):
    from vpbench.results import find_set

    assert invoke("run", "copylast", *SMALL, "--out", "r").exit_code == 0
    first = find_set(in_tmp / "r")
    before = {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()}

    def disk_full(fh, **arrays):
        fh.write(b"PK partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    result = invoke("eval", "r", "--set", "eval.metrics=mse,psnr")
    assert result.exit_code == 1
    assert "No space left on device" in result.output and "finished files are intact" in result.output
    leftovers = [p.name for p in (in_tmp / "r").rglob("*") if p.name.endswith(".partial") or ".staging-" in p.name]
    assert leftovers == []
    assert [p.name for p in (in_tmp / "r" / "evals").iterdir()] == [first.name]  # no half-written result set
    assert {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()} == before  # the old one survives
    assert torch.load(in_tmp / "r" / "model.pt", weights_only=True)["model"] == {}


# -- the fault pass (issue: no run directory is ever overwritten, shared or hung) ---------------
def test_resume_and_fresh_refuse_a_directory_that_is_not_a_run(in_tmp):
    (in_tmp / "foreign").mkdir()
    (in_tmp / "foreign" / "report.md").write_text("my notes")
    for flag in ("--resume", "--fresh"):
        result = invoke("run", "copylast", *SMALL, "--out", "foreign", flag)
        assert result.exit_code == 2 and "foreign exists and is not a vpbench run (no config.json)" in result.output
    assert (in_tmp / "foreign" / "report.md").read_text() == "my notes"
    assert sorted(p.name for p in in_tmp.iterdir()) == ["foreign"]


@pytest.mark.parametrize("key, value, message", [
    ("data.stride", "-1", "data.stride must be >= 0"),
    ("train.grad_clip", "nan", "train.grad_clip: expected a finite number, got 'nan'"),
    ("eval.speed_seconds", "nan", "eval.speed_seconds: expected a finite number"),
    ("data.step", "nan", "data.step: expected a finite number"),
    ("data.step", "0", "data.step must be in (0, 1]"),
    ("model.lr", "inf", "model.lr: expected a finite number"),
])
def test_bad_numbers_are_refused_when_the_config_is_resolved(in_tmp, key, value, message):
    dataset = "videofolder" if key == "data.stride" else "digits"
    extra = ["--set", "data.path=nowhere"] if dataset == "videofolder" else []
    result = invoke("run", "convlstm", "--dataset", dataset, *extra, "--set", f"{key}={value}")
    assert result.exit_code == 2 and message in result.output, result.output
    result = invoke("run", "copylast", "--seed", "-1")
    assert result.exit_code == 2 and "seed must be >= 0, got -1" in result.output


def test_an_edited_config_json_is_refused(in_tmp, with_test_models):
    import json

    args = ["run", "twostage", *SMALL, "--set", "data.n_train=16", "--set", "data.n_val=4", "--out", "r"]
    assert invoke(*args).exit_code == 0
    path = in_tmp / "r" / "config.json"
    config = json.loads(path.read_text())
    config["data"]["n_out"] = 3
    path.write_text(json.dumps(config))
    result = invoke("eval", "r")
    assert result.exit_code == 2
    assert "r/config.json does not match the config model.pt was trained with (data.n_out: 10 -> 3)" in result.output


class FullDiskCheckpoint(TwoStage):
    name = "fulldiskckpt"


def test_a_full_disk_while_checkpointing_is_blamed_on_the_disk_not_the_model(in_tmp, monkeypatch):
    from vpbench import io

    register_once(FullDiskCheckpoint)
    real = io.torch_save

    def full(obj, path):
        if "last.pt" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(obj, path)

    monkeypatch.setattr(io, "torch_save", full)
    result = invoke("run", "fulldiskckpt", *SMALL, "--set", "data.n_train=16", "--set", "data.n_val=4", "--out", "r")
    assert result.exit_code == 1
    assert "cannot read or write a file" in result.output and "No space left on device" in result.output
    assert "--resume" in result.output and "fulldiskckpt" not in result.output.split("error:")[1].split("(")[0]
    assert "raised" not in result.output


class BadMetric:
    name, version, higher_is_better, unit = "badmetric", "1", False, ""

    def per_frame(self, pred, target):
        return (pred - target).abs().mean(dim=(2, 3, 4)).mean(1)  # (B,) instead of (B, T)


def test_a_metric_with_the_wrong_shape_is_named_at_once(in_tmp):
    register("badmetric", metrics=(BadMetric(),))
    result = invoke("run", "copylast", *SMALL, "--set", "eval.metrics=mse,badmetric")
    assert result.exit_code == 2
    assert "metric 'badmetric': per_frame returned shape (6,), expected (6, 10) (B, T)" in result.output


class Brackets(TwoStage):
    name = "brackets"

    def __init__(self, config, spec):
        from vpbench.errors import ConfigError

        raise ConfigError("needs [rgb] frames; names must match ^[a-z][a-z0-9_]*$")


def test_error_lines_keep_square_brackets_and_debug_shows_the_traceback(in_tmp, monkeypatch):
    register_once(Brackets)
    result = invoke("run", "brackets", *SMALL)
    assert result.exit_code == 2
    assert "needs [rgb] frames; names must match ^[a-z][a-z0-9_]*$" in result.output
    assert "Traceback" not in result.output
    monkeypatch.setenv("VPBENCH_DEBUG", "1")
    result = invoke("run", "brackets", *SMALL)
    assert result.exit_code == 2 and "Traceback" in result.output and "needs [rgb] frames" in result.output


def test_a_run_whose_plugin_is_gone_names_the_distribution_to_install(in_tmp, monkeypatch, with_test_models):
    import json

    assert invoke("run", "twostage", *SMALL, "--set", "data.n_train=16", "--set", "data.n_val=4", "--out", "r").exit_code == 0
    path = in_tmp / "r" / "config.json"
    config = json.loads(path.read_text())
    config["model_name"] = "uninstalled"
    path.write_text(json.dumps(config))
    from vpbench.results import find_set

    meta_path = find_set(in_tmp / "r") / "results.json"
    meta = json.loads(meta_path.read_text())
    meta["provenance"]["plugins"]["model_distribution"] = "'vpbench-uninstalled' (2.0)"
    meta_path.write_text(json.dumps(meta))
    result = invoke("eval", "r")
    assert result.exit_code == 2
    assert ("was made with model 'uninstalled' from the distribution 'vpbench-uninstalled' (2.0), which is not "
            "installed here: pip install it") in " ".join(result.output.split())
    from vpbench.errors import RegistryError
    from vpbench.plugins import Harness

    monkeypatch.setenv("VPBENCH_LOAD_PLUGINS", "shrvqvea")
    with pytest.raises(RegistryError, match="VPBENCH_LOAD_PLUGINS names 'shrvqvea', which no installed distribution "
                                            "provides \\(did you mean shrvqvae\\?\\)"):
        Harness().load_entrypoints()


def test_leftovers_permissions_config_files_and_corrupt_results(in_tmp):
    import os
    import stat

    assert invoke("run", "copylast", *SMALL, "--out", "r").exit_code == 0
    mode = stat.S_IMODE((in_tmp / "r" / "config.json").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600
    # a kill in the middle of an atomic write leaves a temporary file: the next command removes it
    (in_tmp / "r" / ".results.csv.abc123.partial").write_text("half")
    result = invoke("run", "copylast", *SMALL, "--out", "r")
    assert result.exit_code == 0 and "removed 1 half-written temporary file" in result.output
    assert not list((in_tmp / "r").rglob("*.partial"))
    # --config that is a directory, or binary
    (in_tmp / "conf.yaml").mkdir()
    result = invoke("run", "copylast", "--config", "conf.yaml")
    assert result.exit_code == 2 and "config file conf.yaml is a directory" in result.output
    (in_tmp / "bin.yaml").write_bytes(b"\xff\xfe\x00\x81binary")
    result = invoke("run", "copylast", "--config", "bin.yaml")
    assert result.exit_code == 2 and "config file bin.yaml is not text" in result.output
    # corrupt results name the file
    from vpbench.results import find_set

    (find_set(in_tmp / "r") / "results.csv").write_text("not,a\n\x00table")
    result = invoke("report", "r")
    assert result.exit_code == 2 and "results.csv is corrupt" in result.output


class FlakyDigits:
    """The digits dataset, except that training clips past the eighth cannot be read (a
    truncated cache file, say)."""

    from vpbench.builtin.digits import DigitsConfig as Config

    name, version, description = "brokencache", "1", "digits that break"

    def __init__(self, config, root):
        from vpbench.builtin.digits import Digits

        self.inner = Digits(config, root)

    @property
    def spec(self):
        return self.inner.spec

    def info(self):
        return self.inner.info()

    def split(self, name):
        split = self.inner.split(name)
        if name != "train":
            return split

        class Broken(torch.utils.data.Dataset):
            def __len__(self):
                return len(split)

            def __getitem__(self, i):
                if i >= 8:
                    raise ValueError(f"cache file truncated at clip {i}")
                return split[i]

        return Broken()


def test_a_data_error_in_training_names_the_dataset_and_a_foreign_checkpoint_names_the_file(in_tmp, with_test_models):
    register("flaky", datasets=(FlakyDigits,))
    args = [*SMALL, "--set", "data.n_train=16", "--set", "data.n_val=4", "--set", "train.batch_size=4"]
    result = invoke("run", "twostage", "--dataset", "brokencache", *args, "--set", "model.steps_a=50")
    assert result.exit_code == 2
    assert "dataset 'brokencache' failed to load a training batch: ValueError: cache file truncated at clip" in result.output
    assert "model 'twostage'" not in result.output
    # a checkpoint of another model in the run directory: the file is named, not the model
    assert invoke("run", "twostage", *args, "--set", "train.ckpt_every=2", "--out", "r").exit_code == 0
    (in_tmp / "r" / "model.pt").unlink()
    ckpt = torch.load(in_tmp / "r" / "checkpoints" / "last.pt", weights_only=True)
    ckpt["model"] = {"something.else": torch.zeros(1)}
    torch.save(ckpt, in_tmp / "r" / "checkpoints" / "last.pt")
    result = invoke("run", "twostage", *args, "--set", "train.ckpt_every=2", "--out", "r", "--resume")
    assert result.exit_code == 2 and "checkpoints/last.pt does not fit this model" in result.output


def test_a_bad_stage_setting_is_one_line_before_training(in_tmp):
    result = invoke("run", "shrvqvae", "--preset", "smoke", "--set", "model.joint_lr=-1", "--out", "r")
    assert result.exit_code == 2
    assert "stage 'joint': the learning rate must be a positive, finite number, got -1.0" in result.output
    assert "Traceback" not in result.output and not (in_tmp / "r").exists()
