"""Registries and plugin loading: built-ins, real entry-point metadata, failures."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import vpbench
from tests.conftest import EXAMPLE_PLUGIN, ROOT, write_dist_info
from vpbench.errors import RegistryError
from vpbench.plugins import Harness, PluginRecord
from vpbench.protocols import validate_model
from vpbench.registry import Registry, Source


def test_registry_rejects_duplicates_naming_both_sources():
    reg = Registry("model", lambda obj: obj.name)
    first, second = Source("a", "dist-a", "1"), Source("b", "dist-b", "2")
    obj = types.SimpleNamespace(name="shrvqvae")
    reg.add(obj, first)
    with pytest.raises(RegistryError) as err:
        reg.add(types.SimpleNamespace(name="shrvqvae"), second)
    assert "dist-a" in str(err.value) and "dist-b" in str(err.value)


def test_registry_suggests_near_misses():
    reg = Registry("model", lambda obj: obj.name)
    for name in ("shrvqvae", "convlstm", "simvp"):
        reg.add(types.SimpleNamespace(name=name), Source("p", "d"))
    with pytest.raises(RegistryError, match="did you mean shrvqvae"):
        reg.get("shrvqae")
    with pytest.raises(RegistryError, match="available: convlstm, shrvqvae, simvp") as err:
        reg.get("zzz")
    assert "did you mean" not in str(err.value)


@pytest.mark.parametrize("bad", ["Upper", "has-dash", "1starts", ""])
def test_registry_rejects_bad_names(bad):
    reg = Registry("model", lambda obj: obj.name)
    with pytest.raises(RegistryError, match="names must match"):
        reg.add(types.SimpleNamespace(name=bad), Source("p", "d"))


def test_model_validation_names_what_is_missing():
    class NoPredict:
        name, version = "x", "1"

    with pytest.raises(RegistryError, match="Config, stages, training_step, predict"):
        validate_model(NoPredict)


def test_builtins_register_through_hooks(harness):
    assert {"copylast", "blank", "meanframe"} <= set(harness.models.names())
    assert "digits" in harness.datasets
    assert {"mse", "mae", "psnr", "ssim"} <= set(harness.metrics.names())
    assert not harness.failures
    assert harness.source_of("model", "copylast").distribution == "vpbench"


def test_entry_point_discovery_through_real_metadata(tmp_path, monkeypatch):
    """The example package is found through a *.dist-info entry_points.txt on sys.path."""
    write_dist_info(tmp_path, "vpbench-example", "0.1.0", {"example": "vpbench_example"})
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("VPBENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    h = Harness()
    h.load_builtins()
    h.load_entrypoints()
    assert "tinyconv" in h.models
    src = h.source_of("model", "tinyconv")
    assert (src.plugin, src.distribution, src.version) == ("example", "vpbench-example", "0.1.0")


def _broken_plugin_site(tmp_path):
    (tmp_path / "vpbench_broken.py").write_text("raise RuntimeError('boom at import')\n")
    write_dist_info(tmp_path, "vpbench-broken", "9.9", {"broken": "vpbench_broken"})
    write_dist_info(tmp_path, "vpbench-example", "0.1.0", {"example": "vpbench_example"})


def test_plugin_raising_at_import_is_reported_not_fatal(tmp_path, monkeypatch):
    _broken_plugin_site(tmp_path)
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    h = Harness()
    h.load_builtins()
    h.load_entrypoints()
    failed = {r.name: r for r in h.failures}
    assert set(failed) == {"broken"}
    assert failed["broken"].distribution == "vpbench-broken"
    assert "RuntimeError: boom at import" in failed["broken"].error
    assert "tinyconv" in h.models and "copylast" in h.models


def test_vpbench_load_plugins_restricts_entry_points(tmp_path, monkeypatch):
    _broken_plugin_site(tmp_path)
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("VPBENCH_LOAD_PLUGINS", "example")
    h = Harness()
    h.load_entrypoints()
    assert [r.name for r in h.records] == ["example"] and not h.failures


def test_plugin_raising_while_registering_is_rolled_back(harness):
    class Good(types.SimpleNamespace):
        pass

    @vpbench.hookimpl
    def vpbench_register_metrics(register):
        from vpbench.metrics.basic import SSIM

        register(SSIM("ssim_partial"))
        raise ValueError("second metric broke")

    plugin = types.SimpleNamespace(vpbench_register_metrics=vpbench_register_metrics)
    record = harness.add_plugin(plugin, PluginRecord("partial", "vpbench-partial", "1"))
    assert "ValueError: second metric broke" in record.error
    assert "ssim_partial" not in harness.metrics  # nothing half-registered
    assert "ssim" in harness.metrics


def test_plugin_registering_a_taken_name_fails_alone(harness):
    from vpbench.builtin.trivial import CopyLast

    @vpbench.hookimpl
    def vpbench_register_models(register):
        register(CopyLast)

    record = harness.add_plugin(types.SimpleNamespace(vpbench_register_models=vpbench_register_models),
                                PluginRecord("dup", "vpbench-dup", "1"))
    assert "already registered by plugin 'builtin:trivial'" in record.error
    assert harness.source_of("model", "copylast").distribution == "vpbench"


def test_misspelt_hook_name_is_reported(harness):
    @vpbench.hookimpl
    def vpbench_register_model(register):  # missing "s"
        pass

    record = harness.add_plugin(types.SimpleNamespace(vpbench_register_model=vpbench_register_model),
                                PluginRecord("typo", "vpbench-typo", "1"))
    assert record.error and "vpbench_register_model" in record.error


def test_plugin_can_add_a_command(harness):
    import typer
    from typer.testing import CliRunner

    @vpbench.hookimpl
    def vpbench_register_commands(app):
        @app.command("hello")
        def hello():
            print("hello from a plugin")

    harness.add_plugin(types.SimpleNamespace(vpbench_register_commands=vpbench_register_commands),
                       PluginRecord("cmd", "vpbench-cmd", "1"))
    app = typer.Typer()

    @app.command("noop")
    def noop():
        pass

    harness.register_commands(app)
    result = CliRunner().invoke(app, ["hello"])
    assert result.exit_code == 0 and "hello from a plugin" in result.output


def _cli_env(tmp_path):
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(EXAMPLE_PLUGIN), str(ROOT)])
    env["COLUMNS"] = "200"
    env.pop("VPBENCH_LOAD_PLUGINS", None)
    return env


def test_cli_plugins_lists_third_party_and_failures(tmp_path):
    _broken_plugin_site(tmp_path)
    out = subprocess.run([sys.executable, "-m", "vpbench", "plugins"], capture_output=True, text=True,
                         env=_cli_env(tmp_path), cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "vpbench-example" in out.stdout and "tinyconv" in out.stdout
    assert "vpbench-broken" in out.stdout and "boom at import" in out.stdout
    assert "1 plugin(s) failed to load" in out.stdout


def test_the_example_plugins_model_is_the_one_new_plugin_writes(tmp_path):
    from vpbench.scaffold import new_plugin

    written = new_plugin("tinyconv", tmp_path) / "vpbench_tinyconv" / "model.py"
    example = EXAMPLE_PLUGIN / "vpbench_example" / "model.py"
    assert example.read_text() == written.read_text(), f"{example} differs from vpbench.scaffold.MODEL: change both"
    assert "if config.window > spec.n_in:" in example.read_text()


def test_version_names_vpbench_and_every_plugin_distribution(tmp_path):
    from vpbench import __version__

    _broken_plugin_site(tmp_path)
    out = subprocess.run([sys.executable, "-m", "vpbench", "--version"], capture_output=True, text=True,
                         env=_cli_env(tmp_path), cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == [f"vpbench {__version__}", "plugins, by distribution:", f"  vpbench {__version__}: baselines, shrvqvae",
                     "  vpbench-broken 9.9: broken (failed)", "  vpbench-example 0.1.0: example"], out.stdout


def test_third_party_model_runs_through_vpbench_run(tmp_path):
    """No change to vpbench: the example plugin's model trains and is scored by `vpbench run`."""
    write_dist_info(tmp_path, "vpbench-example", "0.1.0", {"example": "vpbench_example"})
    out = subprocess.run(
        [sys.executable, "-m", "vpbench", "run", "tinyconv", "--preset", "smoke", "--out", "r"],
        capture_output=True, text=True, env=_cli_env(tmp_path), cwd=tmp_path, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    import pandas as pd

    from vpbench.results import find_set

    table = pd.read_csv(find_set(tmp_path / "r") / "results.csv", dtype={"horizon": str})
    assert set(table["model"]) == {"tinyconv"}
    assert table.query("metric == 'params'")["value"].item() > 0
    assert (tmp_path / "r" / "model.pt").is_file()


def test_cli_plugins_fits_80_columns_with_every_name_whole_and_described():
    from typer.testing import CliRunner

    from vpbench.cli import app
    from vpbench.plugins import get_harness

    out = CliRunner().invoke(app, ["plugins"], env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    assert max(len(line) for line in out.output.splitlines()) <= 80
    harness = get_harness()
    cells = {cell.strip() for line in out.output.splitlines() for cell in line.split("│")}
    for name in harness.models.names():
        assert name in cells, name  # never cut to "predrnnv…"
    row = next(line for line in out.output.splitlines() if line.startswith("│ copylast "))
    assert row.split("│")[4].strip().startswith("repeat")  # copylast's description, however it wraps


def test_hooks_are_called_through_pluggy_one_plugin_at_a_time(tmp_path):
    """VPBENCH_TRACE_PLUGINS traces each plugin's register call, naming the plugin."""
    import os

    env = dict(os.environ, VPBENCH_TRACE_PLUGINS="1", VPBENCH_DISABLE_PLUGIN_AUTOLOAD="1")
    out = subprocess.run([sys.executable, "-c", "from vpbench.plugins import get_harness; get_harness()"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    calls = [line.strip() for line in out.stderr.splitlines() if line.strip().startswith("register: <register")]
    assert "register: <register datasets of plugin 'builtin:digits'>" in calls
    assert "register: <register metrics of plugin 'builtin:basic'>" in calls
    assert "register: <register models of plugin 'builtin:trivial'>" in calls
    # one call per (plugin, hook) it implements: digits registers datasets only
    assert not any("plugin 'builtin:digits'" in c and "datasets" not in c for c in calls)
    assert len(calls) == len(set(calls))


def test_frozen_registries_refuse_late_registration(harness):
    from vpbench.builtin.trivial import CopyLast

    class Late(CopyLast):
        name = "late_model"

    @vpbench.hookimpl
    def vpbench_register_models(register):
        register(Late)

    harness.freeze()
    record = harness.add_plugin(types.SimpleNamespace(vpbench_register_models=vpbench_register_models),
                                PluginRecord("late", "vpbench-late", "1"))
    assert "late_model" not in harness.models
    assert "model registry is frozen" in record.error and "vpbench-late" in record.error
    with pytest.raises(RegistryError, match="frozen"):
        harness.models.remove("copylast")
    assert "copylast" in harness.models


def test_registry_transaction_and_removal():
    reg = Registry("metric", lambda obj: obj.name)
    reg.add(types.SimpleNamespace(name="kept"), Source("p", "d"))
    with pytest.raises(ValueError), reg.transaction():
        reg.add(types.SimpleNamespace(name="staged"), Source("p", "d"))
        raise ValueError("the plugin broke half-way")
    assert reg.names() == ["kept"]
    assert reg.remove("kept").name == "kept" and len(reg) == 0
    with pytest.raises(RegistryError, match="unknown metric 'kept'"):
        reg.remove("kept")


@pytest.mark.parametrize("attr, value, message", [
    ("late_fields", {"train": ("no_such_field",)}, "late_fields['train'] names no_such_field, not a field"),
    ("predict_fields", ("nope",), "predict_fields names nope, not a field"),
    ("predict_fields", "hidden", "predict_fields must list config field names"),
    ("ablation_shortcuts", {"width": "nope"}, "ablation_shortcuts names nope"),
    ("ablation_shortcuts", {"--width": "hidden"}, "must map option names"),
    ("on_stage_start", "not callable", "on_stage_start must be callable"),
])
def test_optional_model_members_are_checked_at_registration(attr, value, message):
    from tests.models import TwoStage

    bad = type("Bad", (TwoStage,), {attr: value})
    with pytest.raises(RegistryError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_model(bad)
    validate_model(type("Good", (TwoStage,), {"predict_fields": ("hidden",)}))


def test_optional_members_fall_back_to_the_declared_defaults():
    from vpbench.protocols import Dataset, Model, implements, member

    class Plain:  # subclasses nothing
        pass

    class Sub(Dataset):
        def download(self, events=None, optional=False):
            return ["file"]

    assert member(Plain, "late_fields") == {} and member(Plain, "predict_fields") == ()
    assert member(Plain(), "on_stage_start")("train") is None
    assert member(Sub(), "download", "dataset")() == ["file"]
    assert implements(Sub, "download", "dataset") and not implements(Sub, "prepare", "dataset")
    assert not implements(Plain, "import_state_dict") and not implements(type("M", (Model,), {}), "on_stage_end")
    with pytest.raises(AttributeError, match="'on_epoch' is not an optional model member"):
        member(Plain, "on_epoch")
