"""``vpbench check`` and :mod:`vpbench.testing`: the conformance suite catches broken plugins."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest
import torch

from tests.cli_helpers import plugin_object
from tests.conftest import EXAMPLE_PLUGIN, ROOT, write_dist_info
from tests.models import TwoStage
from vpbench import testing
from vpbench.metrics.basic import _PixelSum
from vpbench.plugins import PluginRecord


def _outcomes(harness, target):
    return {str(o.case): o for o in map(testing.outcome, testing.cases(target, harness=harness))}


def _plugin(harness, name, models=(), metrics=(), datasets=()):
    record = harness.add_plugin(plugin_object(models=models, datasets=datasets, metrics=metrics),
                                PluginRecord(name, f"vpbench-{name}", "1"))
    assert record.error is None, record.error


class WrongShape(TwoStage):
    name = "wrongshape"

    def predict(self, context, n_out):
        return super().predict(context, n_out)[:, :1]


class WritesInput(TwoStage):
    name = "writesinput"

    def predict(self, context, n_out):
        out = super().predict(context, n_out)
        context.zero_()
        return out


class GreyOnly(TwoStage):
    """Declines colour frames with a ConfigError: a skip, not a failure."""

    name = "greyonly"

    def __init__(self, config, spec):
        if spec.channels != 1:
            from vpbench.errors import ConfigError

            raise ConfigError("grey frames only")
        super().__init__(config, spec)


def test_good_plugin_passes_every_model_check_on_digits_and_colour(harness):
    _plugin(harness, "good", models=[TwoStage])
    out = _outcomes(harness, "good")
    assert len(out) == 10 and {o.status for o in out.values()} == {"passed"}
    assert "model:twostage:predicts the contract shape and range@rgb" in out


def test_broken_models_fail_the_check_that_names_them(harness):
    _plugin(harness, "bad", models=[WrongShape, WritesInput, GreyOnly])
    out = _outcomes(harness, "bad")
    shape = out["model:wrongshape:predicts the contract shape and range@digits"]
    assert shape.status == "failed" and "predict returned shape (2, 1, 1, 32, 32), expected (2, 3, 1, 32, 32)" in shape.message
    pure = out["model:writesinput:leaves its input unchanged@digits"]
    assert pure.status == "failed" and "wrote into its input" in pure.message
    assert out["model:writesinput:predicts the contract shape and range@digits"].status == "passed"
    grey = out["model:greyonly:never sees the future@rgb"]
    assert grey.status == "skipped" and "grey frames only" in grey.message
    assert out["model:greyonly:never sees the future@digits"].status == "passed"


def test_a_metric_with_the_wrong_direction_fails(harness):
    mse = _PixelSum("mse_up", 2, "mean")
    mse.higher_is_better = True  # wrong: lower MSE is better
    _plugin(harness, "metricbug", metrics=[mse])
    out = _outcomes(harness, "metricbug")
    best = out["metric:mse_up:scores identical frames best@1ch"]
    assert best.status == "failed" and "identical frames score worse" in best.message
    assert out["metric:mse_up:scores every frame@3ch"].status == "passed"


def test_a_plugin_that_failed_to_load_is_one_failing_case_not_an_empty_suite(harness):
    record = harness.add_plugin(types.SimpleNamespace(vpbench_register_models=lambda register: None),
                                PluginRecord("nohooks", "vpbench-nohooks", "1"))
    record.error = "import of vpbench_nohooks failed: ModuleNotFoundError: No module named 'torchvision'"
    (case,) = testing.cases("vpbench-nohooks", harness=harness)
    o = testing.outcome(case)
    assert o.status == "failed" and "could not be loaded" in o.message and "torchvision" in o.message


def test_vpbench_check_cli_on_an_installed_plugin(tmp_path):
    """`vpbench check` finds the example plugin by its entry-point name; a broken one exits 1."""
    write_dist_info(tmp_path, "vpbench-example", "0.1.0", {"example": "vpbench_example"})
    (tmp_path / "vpbench_broken.py").write_text("raise RuntimeError('boom at import')\n")
    write_dist_info(tmp_path, "vpbench-broken", "9.9", {"broken": "vpbench_broken"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(EXAMPLE_PLUGIN), str(ROOT)]), COLUMNS="200")
    env.pop("VPBENCH_DISABLE_PLUGIN_AUTOLOAD", None)
    ok = subprocess.run([sys.executable, "-m", "vpbench", "check", "example"], capture_output=True, text=True,
                        env=env, cwd=tmp_path, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "10 passed, 0 failed, 0 skipped (1 objects)" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "vpbench", "check", "vpbench-broken"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=300)
    assert bad.returncode == 1 and "could not be loaded" in bad.stdout and "boom at import" in bad.stdout
    assert "0 passed, 1 failed" in bad.stdout


def test_checks_of_a_colour_model_run_on_colour_frames(harness):
    seen = []

    class Spy(TwoStage):
        name = "spy"

        def predict(self, context, n_out):
            seen.append(tuple(context.shape))
            return super().predict(context, n_out)

    _plugin(harness, "spy", models=[Spy])
    testing.outcome(next(c for c in testing.cases("spy", harness=harness) if c.on == "rgb" and "shape" in c.check))
    assert seen == [(2, 4, 3, 32, 32)]


def test_models_are_checked_on_their_own_plugins_dataset(harness):
    """A plugin that brings a dataset gets its models checked on that dataset's layout."""
    from dataclasses import dataclass

    from vpbench import Dataset, DataSpec

    @dataclass(frozen=True)
    class TwoChannelConfig:
        n_clips: int = 3

    class TwoChannel(Dataset):
        name, version, Config = "twochannel", "1", TwoChannelConfig

        def __init__(self, config, root):
            self.config = config

        @property
        def spec(self):
            return DataSpec(3, 2, 2, 16, 24)

        def split(self, name):
            gen = torch.Generator().manual_seed(len(name))
            return [(torch.rand(3, 2, 16, 24, generator=gen), torch.rand(2, 2, 16, 24, generator=gen))
                    for _ in range(self.config.n_clips)]

        def info(self):
            return {"source": "generated", "licence": "CC0", "citation": "-", "protocol": "3 -> 2"}

    seen = []

    class Spy(TwoStage):
        name = "spyown"

        def predict(self, context, n_out):
            seen.append((tuple(context.shape), n_out))
            return super().predict(context, n_out)

    _plugin(harness, "own", models=[Spy], datasets=[TwoChannel])
    out = _outcomes(harness, "own")
    assert {o.status for o in out.values()} == {"passed"}, {k: o.message for k, o in out.items() if o.status != "passed"}
    assert {c.split("@")[1] for c in out if c.startswith("model:")} == {"digits", "twochannel", "rgb"}
    assert "dataset:twochannel:indexes deterministically" in out
    assert ((2, 3, 2, 16, 24), 2) in seen


def test_new_plugin_refuses_bad_names_and_never_overwrites(tmp_path):
    from vpbench.errors import ConfigError
    from vpbench.scaffold import new_plugin

    with pytest.raises(ConfigError, match="use a lower-case identifier"):
        new_plugin("My-Plugin", tmp_path)
    target = new_plugin("demo", tmp_path)
    (target / "README.md").write_text("my notes")
    with pytest.raises(ConfigError, match="already exists"):
        new_plugin("demo", tmp_path)
    assert (target / "README.md").read_text() == "my notes"
    assert '[project.entry-points.vpbench]\ndemo = "vpbench_demo"' in (target / "pyproject.toml").read_text()


def _pip_install_flags() -> list[str]:
    """Build without isolation where this Python's setuptools builds wheels (offline, fast; the nested
    environment sees the same packages), else let pip fetch setuptools and wheel."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("setuptools")
    builds_wheels = spec is not None and spec.origin is not None and (
        (Path(spec.origin).parent / "command" / "bdist_wheel.py").is_file() or importlib.util.find_spec("wheel") is not None)
    return ["--no-build-isolation"] if builds_wheels else []


def _nested_venv(env_dir) -> str:
    """A new virtual environment that sees the packages this interpreter sees (torch, vpbench's
    dependencies, setuptools), in a venv or not, its own installs first; its python.

    ``venv --system-site-packages`` would not do: from inside a venv it shows the base
    interpreter's packages, not the venv's."""
    import site

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    seen = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if p in sys.path and os.path.isdir(p)]
    (site_dir,) = (env_dir / "lib").glob("python3*/site-packages")
    (site_dir / "outer_site_packages.pth").write_text("".join(f"{p}\n" for p in seen))
    return str(env_dir / "bin" / "python")


@pytest.mark.slow
def test_new_plugin_installs_and_passes_check_in_a_fresh_virtual_environment(tmp_path):
    """`vpbench new-plugin demo && pip install ./demo && vpbench check demo`, with vpbench itself
    installed from its wheel into the new environment (torch comes from this interpreter's site)."""
    env_dir = tmp_path / "env"
    python = _nested_venv(env_dir)
    pip = [python, "-m", "pip", "install", "-q", "--no-deps", *_pip_install_flags()]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VPBENCH_DISABLE_PLUGIN_AUTOLOAD",
                                                           "VPBENCH_LOAD_PLUGINS")}
    env["COLUMNS"] = "200"

    def sh(*cmd, cwd=tmp_path):
        out = subprocess.run(list(cmd), capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
        assert out.returncode == 0, f"{' '.join(cmd)}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
        return out.stdout

    sh(*pip, str(ROOT))
    assert str(env_dir) in sh(python, "-c", "import vpbench.testing; print(vpbench.testing.__file__)")
    sh(str(env_dir / "bin" / "vpbench"), "new-plugin", "demo")
    sh(*pip, "./demo")
    out = sh(str(env_dir / "bin" / "vpbench"), "check", "demo")
    assert "18 passed, 0 failed, 0 skipped (2 objects)" in out
    assert "passed" in sh(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=tmp_path / "demo")
