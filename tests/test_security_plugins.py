"""Misbehaving plugins (security review 2026-12: M6, M7, L2, L6, L12): each is named, none takes
vpbench or another plugin down with it."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest
import torch
import typer
from typer.testing import CliRunner

import vpbench
from tests.cli_helpers import invoke, plugin_object, register
from tests.conftest import EXAMPLE_PLUGIN, ROOT, write_dist_info
from tests.models import TwoStage
from vpbench import testing
from vpbench.builtin.digits import Digits, DigitsConfig
from vpbench.builtin.trivial import CopyLast
from vpbench.errors import PluginError
from vpbench.evaluate import score
from vpbench.metrics.basic import _PixelSum
from vpbench.plugins import PluginRecord
from vpbench.protocols import DataSpec

SMOKE = ("--preset", "smoke", "--set", "eval.speed=false")


def _env(site) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(EXAMPLE_PLUGIN), str(ROOT)]), COLUMNS="200")
    env.pop("VPBENCH_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("VPBENCH_LOAD_PLUGINS", None)
    return env


def _vpbench(site, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vpbench", *args], capture_output=True, text=True, env=_env(site),
                          cwd=site, timeout=300)


def _commands_plugin(*names: str, exit_code: int | None = None) -> types.SimpleNamespace:
    @vpbench.hookimpl
    def vpbench_register_commands(app):
        for name in names:
            app.command(name)(lambda name=name: print(f"the plugin's {name}"))
        if exit_code is not None:
            sys.exit(exit_code)

    return types.SimpleNamespace(vpbench_register_commands=vpbench_register_commands)


def _builtin_app() -> typer.Typer:
    """An app with vpbench's own `report` and `run` commands, as the CLI has them."""
    from vpbench.cli import report_cmd, run

    app = typer.Typer()
    report_cmd.register(app)
    run.register(app)
    return app


# -- M6: a plugin's command never replaces a built-in one or another plugin's ------------------------
def test_plugin_command_named_like_a_builtin_is_refused_and_the_builtin_kept(harness):
    record = harness.add_plugin(_commands_plugin("hello", "report"), PluginRecord("shadow", "vpbench-shadow", "1"))
    app = _builtin_app()
    harness.register_commands(app)
    assert record.error and "command 'report' is already a built-in vpbench command" in record.error
    assert [f for f in harness.failures if f.distribution == "vpbench-shadow"] == [record]
    out = CliRunner().invoke(app, ["report", "--help"])
    assert out.exit_code == 0 and "the plugin's" not in out.output and "RUN" in out.output.upper()
    assert CliRunner().invoke(app, ["hello"]).exit_code != 0  # all of the plugin's commands or none


def test_second_plugin_with_the_same_command_is_refused_naming_the_first(harness):
    first = harness.add_plugin(_commands_plugin("hello"), PluginRecord("one", "vpbench-one", "1"))
    second = harness.add_plugin(_commands_plugin("hello"), PluginRecord("two", "vpbench-two", "1"))
    app = _builtin_app()
    harness.register_commands(app)
    assert first.error is None
    assert "command 'hello' is already a command of plugin 'one' (vpbench-one)" in second.error
    assert sum(1 for c in app.registered_commands if c.name == "hello") == 1


def test_plugin_group_named_like_a_builtin_is_refused(harness):
    @vpbench.hookimpl
    def vpbench_register_commands(app):
        sub = typer.Typer()
        sub.command("x")(lambda: None)
        app.add_typer(sub, name="run")

    record = harness.add_plugin(types.SimpleNamespace(vpbench_register_commands=vpbench_register_commands),
                                PluginRecord("grp", "vpbench-grp", "1"))
    app = _builtin_app()
    harness.register_commands(app)
    assert "command 'run' is already a built-in" in record.error and not app.registered_groups


def test_cli_plugin_shadowing_report_is_listed_as_failed_and_report_still_works(tmp_path):
    (tmp_path / "shadow_plugin.py").write_text(
        "import vpbench\n\n@vpbench.hookimpl\ndef vpbench_register_commands(app):\n"
        "    @app.command('report')\n    def report():\n        print('SHADOWED')\n")
    write_dist_info(tmp_path, "vpbench-shadow", "1.0", {"shadow": "shadow_plugin"})
    listed = _vpbench(tmp_path, "plugins")
    assert listed.returncode == 0, listed.stderr
    assert "vpbench-shadow" in listed.stdout and "command 'report' is already a built-in" in listed.stdout
    report = _vpbench(tmp_path, "report", "no-such-run")
    assert "SHADOWED" not in report.stdout + report.stderr and report.returncode == 2


# -- M7: a metric (or model) that edits its inputs in place ---------------------------------------
class Zeroing(_PixelSum):
    """Scores like mae, then zeroes the prediction it was given."""

    def __init__(self, name: str = "zeroing", through_data: bool = False):
        super().__init__(name, 1, "mean")
        self.through_data = through_data

    def per_frame(self, pred, target):
        out = super().per_frame(pred, target)
        (pred.data if self.through_data else pred).mul_(0)  # .data bypasses the version counter
        return out


class ZeroingSet:
    """A set-level metric whose features zero the clips they embed."""

    name, version, higher_is_better, unit, description, min_frames = "zeroset", "1", False, "", "mean pixel", 1

    def features(self, clips):
        out = clips.flatten(2).mean(-1)
        clips.mul_(0)
        return out

    def score(self, pred, true):
        return float((pred.mean(0) - true.mean(0)).abs().sum())

    def details(self):
        return {}


def _score(metrics):
    data = Digits(DigitsConfig(n_test=4, n_in=4, n_out=3, size=32))
    model = CopyLast(CopyLast.Config(), data.spec)
    return score(model, data.split("test"), data.spec, metrics, model_name="copylast", device=torch.device("cpu"),
                 batch_size=2)


@pytest.mark.parametrize("through_data", [False, True])
def test_metric_writing_into_its_inputs_is_refused_naming_it(through_data):
    mse = _PixelSum("mse", 2, "sum")
    assert _score([mse]).values["mse"].mean() > 0  # the clean metric alone scores
    for metrics in ([Zeroing(through_data=through_data), mse], [mse, Zeroing(through_data=through_data)]):
        with pytest.raises(PluginError, match="metric 'zeroing' wrote into the frames it scores"):
            _score(metrics)


def test_set_metric_writing_into_its_clips_is_refused():
    with pytest.raises(PluginError, match="metric 'zeroset' wrote into the frames"):
        _score([ZeroingSet(), _PixelSum("mse", 2, "sum")])


def test_cli_run_names_the_mutating_metric_and_its_distribution(in_tmp):
    register("zeroer", metrics=[Zeroing("zeroing_cli")])
    result = invoke("run", "copylast", *SMOKE, "--set", "eval.metrics=zeroing_cli,mse", "--out", "r")
    assert result.exit_code == 2, result.output
    assert "metric 'zeroing_cli' from plugin 'zeroer' (vpbench-zeroer 0.3) wrote into the frames" in result.output
    assert "Traceback" not in result.output


def test_check_fails_metrics_that_write_into_their_inputs(harness):
    record = harness.add_plugin(plugin_object(metrics=[Zeroing(), ZeroingSet()]), PluginRecord("z", "vpbench-z", "1"))
    assert record.error is None, record.error
    out = {str(o.case): o for o in map(testing.outcome, testing.cases("z", harness=harness))}
    for case in ("metric:zeroing:leaves its inputs unchanged@1ch", "metric:zeroset:leaves its input unchanged@3ch"):
        assert out[case].status == "failed" and "in place" in out[case].message, out[case]
    assert out["metric:zeroing:scores every frame@1ch"].status == "passed"
    mae = harness.metrics.get("mae")
    assert testing.outcome(next(c for c in testing.metric_cases(harness, mae.name) if "unchanged" in c.check)).status \
        == "passed"


def test_check_fails_a_model_that_writes_into_its_context(harness):
    class Overwrites(TwoStage):
        name = "overwrites"

        def predict(self, context, n_out):
            out = super().predict(context, n_out)
            context.mul_(0)
            return out

    record = harness.add_plugin(plugin_object(models=[Overwrites]), PluginRecord("ow", "vpbench-ow", "1"))
    assert record.error is None, record.error
    (case,) = [c for c in testing.cases("ow", harness=harness) if c.on == "digits" and "input" in c.check]
    o = testing.outcome(case)
    assert o.status == "failed" and "wrote into its input tensor (the context) in place; clone it" in o.message


# -- L2: a faulty dataset is named, not the model or a metric --------------------------------------------
class _Split:
    def __init__(self, inner, fn, length):
        self.inner, self.fn, self.length = inner, fn, length

    def __len__(self):
        return len(self.inner) if self.length is None else self.length

    def __getitem__(self, i):
        return self.fn(*self.inner[i])


def _faulty(name: str, fn=lambda c, f: (c, f), spec: DataSpec | None = None, length: int | None = None,
            parts: tuple[str, ...] = ("train", "val", "test")) -> type:
    class Faulty(Digits):
        def split(self, part):
            return _Split(super().split(part), fn, length) if part in parts else super().split(part)

        @property
        def spec(self):
            return spec or super().spec

    Faulty.name = name
    return Faulty


FAULTY = {
    "bad_scaled": (_faulty("bad_scaled", lambda c, f: (c * 255, f * 255)), "has values in [0, 255]"),
    "bad_nan": (_faulty("bad_nan", lambda c, f: (torch.full_like(c, float("nan")), f)), "has NaN or Inf values"),
    "bad_future": (_faulty("bad_future", lambda c, f: (c, f[..., :16, :16])),
                   "the future of clip 0 of its train split has shape (10, 1, 16, 16), its spec says (10, 1, 64, 64)"),
    "bad_channels": (_faulty("bad_channels", spec=DataSpec(10, 10, 0, 64, 64)), "its spec has channels=0"),
    "bad_len": (_faulty("bad_len", length=-1), "the length of its train split is invalid"),
    "ok_uint8": (_faulty("ok_uint8", lambda c, f: ((c > 0.5).to(torch.uint8), (f > 0.5).to(torch.uint8))), None),
}


@pytest.mark.parametrize("dataset", sorted(FAULTY))
def test_faulty_dataset_is_named_not_the_model(in_tmp, dataset):
    register("faulty", datasets=[cls for cls, _ in FAULTY.values()])
    result = invoke("run", "copylast", "-d", dataset, *SMOKE, "--set", "eval.metrics=mse", "--out", "r")
    expected = FAULTY[dataset][1]
    if expected is None:  # uint8 frames in [0, 1] keep working
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert f"dataset '{dataset}' from plugin 'faulty' (vpbench-faulty 0.3)" in result.output and expected in result.output
    assert "model 'copylast'" not in result.output and "metric" not in result.output


def test_a_faulty_test_split_is_named_when_the_run_is_evaluated(in_tmp):
    register("faultytest", datasets=[_faulty("bad_test", lambda c, f: (c, f * 255), parts=("test",))])
    result = invoke("run", "copylast", "-d", "bad_test", *SMOKE, "--set", "eval.metrics=mse", "--out", "r")
    assert result.exit_code == 2, result.output
    assert "dataset 'bad_test' from plugin 'faultytest' (vpbench-faultytest 0.3): the future of clip 0 of its test " \
           "split has values in [0, 255]" in result.output


def test_evaluated_split_is_checked_too():
    from vpbench.evaluate import open_split

    data = FAULTY["bad_scaled"][0](DigitsConfig(n_test=2))
    with pytest.raises(PluginError, match="the context of clip 0 of its test split has values in"):
        open_split(data, "test", "bad_scaled")
    assert len(open_split(Digits(DigitsConfig(n_test=2)), "test", "digits")) == 2


# -- L6: sys.exit in a plugin ------------------------------------------------------------------------
def test_cli_plugin_calling_sys_exit_at_import_is_one_failed_plugin(tmp_path):
    (tmp_path / "exiting_plugin.py").write_text("import sys\nsys.exit(3)\n")
    write_dist_info(tmp_path, "vpbench-exiting", "2.0", {"exiting": "exiting_plugin"})
    write_dist_info(tmp_path, "vpbench-example", "0.1.0", {"example": "vpbench_example"})
    out = _vpbench(tmp_path, "plugins")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "vpbench-exiting" in out.stdout and "sys.exit(3)" in out.stdout and "tinyconv" in out.stdout


def test_register_hook_calling_sys_exit_is_recorded_and_rolled_back(harness):
    @vpbench.hookimpl
    def vpbench_register_metrics(register):
        register(_PixelSum("exit_partial", 2, "sum"))
        sys.exit(1)

    record = harness.add_plugin(types.SimpleNamespace(vpbench_register_metrics=vpbench_register_metrics),
                                PluginRecord("quitter", "vpbench-quitter", "1"))
    assert record.error == "registration failed: it called sys.exit(1)"
    assert "exit_partial" not in harness.metrics and "mse" in harness.metrics


def test_commands_hook_calling_sys_exit_is_recorded_and_adds_nothing(harness):
    record = harness.add_plugin(_commands_plugin("bye", exit_code=4), PluginRecord("bye", "vpbench-bye", "1"))
    app = _builtin_app()
    harness.register_commands(app)
    assert record.error == "adding commands failed: it called sys.exit(4)"
    assert {c.name for c in app.registered_commands} == {"report", "run"}


def test_keyboard_interrupt_in_a_plugin_still_interrupts(harness):
    @vpbench.hookimpl
    def vpbench_register_models(register):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        harness.add_plugin(types.SimpleNamespace(vpbench_register_models=vpbench_register_models),
                           PluginRecord("ctrlc", "vpbench-ctrlc", "1"))


# -- L12: registered names are bounded ----------------------------------------------------------------
def test_a_300_character_model_name_is_refused_at_registration(harness):
    long_model = type("Long", (CopyLast,), {"name": "m" * 300})
    ok_model = type("Ok", (CopyLast,), {"name": "m" * 64})
    record = harness.add_plugin(plugin_object(models=[long_model]), PluginRecord("longname", "vpbench-longname", "1"))
    assert "plugin 'longname' (vpbench-longname 1) registered a model named" in record.error
    assert "(300 characters)" in record.error and "at most 64 characters" in record.error
    assert len(record.error) < 400 and "m" * 300 not in harness.models
    assert harness.add_plugin(plugin_object(models=[ok_model]), PluginRecord("ok", "vpbench-ok", "1")).error is None
