"""Bad input gets one clear line naming the culprit, and loses nothing already written."""

from __future__ import annotations

import errno
import types

import numpy as np
import pytest
import torch

import vpbench
from tests.cli_helpers import invoke
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
    assert torch.load(in_tmp / "r" / "model.pt", weights_only=False)["model"] == {}
