"""H1 and L1 of the 2026-12 security review: every ``.pt`` file loads with ``weights_only=True``,
so a crafted checkpoint is refused with one line and runs nothing."""

from __future__ import annotations

import ast
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.cli_helpers import invoke, register
from tests.conftest import ROOT
from tests.models import TwoStage
from tests.test_trainer import assert_same_weights, interrupt, make
from vpbench.errors import MetricUnavailable
from vpbench.metrics import lpips as L

FAST = ["--preset", "smoke", "--set", "eval.metrics=mse", "--set", "eval.speed=false", "--set", "eval.examples=0",
        "--set", "eval.bootstrap=20", "--set", "eval.profile=false", "--set", "data.n_test=4"]
TWOSTAGE = [*FAST, "--set", "data.n_train=16", "--set", "data.n_val=4", "--set", "train.batch_size=4"]
REFUSED = "holds objects other than tensors and plain values (io.open)"


class Payload:
    """Unpickling this creates ``marker``, as a payload calling ``os.system`` would run its command."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def read(path: Path):
    """A checkpoint's contents: tensors and plain values (and the NumPy array of an older RNG state)."""
    core = getattr(np, "_core", None) or np.core
    with torch.serialization.safe_globals([np.ndarray, np.dtype, type(np.dtype(np.uint32)), core.multiarray._reconstruct]):
        return torch.load(path, map_location="cpu", weights_only=True)


def plant(path: Path, marker: Path) -> None:
    """``path`` keeps what it held and gains a payload beside it."""
    state = read(path)
    if isinstance(state, dict):
        state["extra"] = Payload(marker)
    else:
        state = {"state": state, "extra": Payload(marker)}
    torch.save(state, path)


def assert_refused(result, path: Path, marker: Path, fix: str = "--fresh") -> None:
    assert not marker.exists(), "the payload ran"
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "weights_only=False" not in result.output
    lines = [line for line in result.output.splitlines() if REFUSED in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0] and fix in lines[0], result.output


def copylast_run(in_tmp: Path) -> Path:
    result = invoke("run", "copylast", *FAST, "--out", "r")
    assert result.exit_code == 0, result.output
    return in_tmp / "r"


# -- the rule, everywhere ----------------------------------------------------------------------

def _torch_loads(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = ast.unparse(node.func)
            if name in ("torch.load", "torch.serialization.load", "torch.hub.load_state_dict_from_url"):
                yield name, node


def test_every_torch_load_in_the_tree_is_weights_only():
    files = [p for top in ("vpbench", "plugins", "examples", "tests", "tools") if (ROOT / top).is_dir()
             for p in sorted((ROOT / top).rglob("*.py"))]
    assert len(files) > 50
    unsafe, outside = [], []
    for path in files:
        source = path.read_text()
        if "load" not in source:
            continue
        for name, call in _torch_loads(ast.parse(source, str(path))):  # multi-line calls included
            where = f"{path.relative_to(ROOT)}:{call.lineno} ({name})"
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in call.keywords)
            if not safe:
                unsafe.append(where)
            if path.parts[len(ROOT.parts)] in ("vpbench", "plugins") and path != ROOT / "vpbench" / "safeload.py":
                outside.append(where)
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"
    assert not outside, f"load .pt files with vpbench.safeload.load_pt: {outside}"


# -- each loading path, with a planted payload ---------------------------------------------------

@pytest.mark.parametrize("command", [["eval", "r", "--set", "eval.metrics=mse"], ["predict", "r"],
                                     ["run", "copylast", *FAST, "--out", "r"]])
def test_a_payload_in_model_pt_is_refused_by_eval_predict_and_run(in_tmp, command):
    run_dir = copylast_run(in_tmp)
    plant(run_dir / "model.pt", in_tmp / "PWNED")
    assert_refused(invoke(*command), Path("r") / "model.pt", in_tmp / "PWNED")


def test_a_payload_in_last_pt_is_refused_on_resume(in_tmp, with_test_models):
    args = ["run", "twostage", *TWOSTAGE, "--out", "r"]
    assert invoke(*args).exit_code == 0
    (in_tmp / "r" / "model.pt").unlink()  # unfinished: resumed from checkpoints/last.pt
    plant(in_tmp / "r" / "checkpoints" / "last.pt", in_tmp / "PWNED")
    assert_refused(invoke(*args, "--resume"), Path("r") / "checkpoints" / "last.pt", in_tmp / "PWNED")


def test_a_payload_in_a_best_stage_file_reached_on_resume_is_refused(in_tmp, with_test_models):
    args = ["run", "twostage", *TWOSTAGE, "--out", "r"]
    assert invoke(*args).exit_code == 0
    (in_tmp / "r" / "model.pt").unlink()
    last = in_tmp / "r" / "checkpoints" / "last.pt"
    ckpt = read(last)
    # back to the start of stage 'b' with a best step that is not the last one: the stage's end restores it
    ckpt.update(stage_index=1, step=0, optimizer=None, scheduler=None, scaler=None, best={"loss": -1.0, "step": 1})
    torch.save(ckpt, last)
    best = in_tmp / "r" / "checkpoints" / "best-stage1.pt"
    plant(best, in_tmp / "PWNED")
    assert_refused(invoke(*args, "--resume"), Path("r") / "checkpoints" / "best-stage1.pt", in_tmp / "PWNED")


def test_a_payload_in_a_reused_run_of_compare_is_refused(in_tmp):
    args = ["compare", "copylast", "blank", *FAST, "--out", "cmp"]
    assert invoke(*args).exit_code == 0
    run_dir = Path(json.loads((in_tmp / "cmp" / "results.json").read_text())["runs"]["copylast"])
    plant(run_dir / "model.pt", in_tmp / "PWNED")
    assert_refused(invoke(*args[:-1], "cmp2"), run_dir / "model.pt", in_tmp / "PWNED")


class LateHead(TwoStage):
    """TwoStage whose ``steps_b`` only affects stage 'b': an ablation of it shares stage 'a'."""

    name = "latehead"
    late_fields = {"a": ("steps_a", "steps_b"), "b": ("steps_b",)}


def test_a_payload_in_the_shared_base_of_an_ablation_is_refused(in_tmp):
    register("security", models=(LateHead,))
    args = ["ablate", "-m", "latehead", *TWOSTAGE, "--out", "abl"]
    result = invoke(*args, "--grid", "steps_b=2,3")
    assert result.exit_code == 0, result.output
    [base] = (in_tmp / "abl").glob("base-until-b*")
    plant(base / "checkpoints" / "last.pt", in_tmp / "PWNED")
    # a new variant starts from the shared base's checkpoint
    assert_refused(invoke(*args, "--grid", "steps_b=2,4"), base.relative_to(in_tmp) / "checkpoints" / "last.pt",
                   in_tmp / "PWNED")


def test_a_payload_in_the_run_of_the_generation_benchmark_is_refused(in_tmp, monkeypatch, capsys):
    from vpbench_shrvqvae import benchmarks

    run_dir = copylast_run(in_tmp)  # refused while loading model.pt, before anything S-HR-VQVAE's
    plant(run_dir / "model.pt", in_tmp / "PWNED")
    monkeypatch.setattr(sys, "argv", ["benchmarks", "--run", "r", "--batch", "1"])
    with pytest.raises(SystemExit) as exited:
        benchmarks.main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and not (in_tmp / "PWNED").exists()
    assert err.count("\n") == 1 and err.startswith(f"error: {Path('r') / 'model.pt'} {REFUSED}") and "--fresh" in err


def test_import_refuses_a_payload_without_torchs_advice_to_disable_the_check(in_tmp):
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": Payload(in_tmp / "PWNED")}, in_tmp / "x.pth")
    result = invoke("import", "openstl", "x.pth", "--model", "simvp", "--preset", "smoke")
    assert result.exit_code == 2 and not (in_tmp / "PWNED").exists()
    assert "x.pth " + REFUSED in result.output and "weights_only" not in result.output


def test_a_garbled_file_is_unreadable_not_tampered_and_gets_no_advice_to_turn_the_check_off(in_tmp):
    (in_tmp / "x.pth").write_bytes(b"\x00garbage")
    result = invoke("import", "openstl", "x.pth", "--model", "simvp", "--preset", "smoke")
    assert result.exit_code == 2 and "x.pth is not a readable PyTorch checkpoint (UnpicklingError: Unsupported operand 0)" \
        in result.output
    assert "weights_only" not in result.output and "tampered" not in result.output


# -- checkpoints written before the RNG states were stored as plain values -------------------------

def _numpy1_names(path: Path) -> None:
    """Rewrite ``path`` as NumPy 1 pickles arrays (``numpy.core`` where NumPy 2 writes ``numpy._core``)."""
    with zipfile.ZipFile(path) as zin:
        members = [(info, zin.read(info)) for info in zin.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        for info, data in members:
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(info, data)


@pytest.mark.parametrize("numpy1", [False, True])
def test_a_checkpoint_with_a_numpy_rng_state_of_the_old_format_resumes_exactly(tmp_path, numpy1):
    from vpbench.train import load_checkpoint

    full_trainer, full = make(tmp_path, "full")
    assert full_trainer.fit() is True
    trainer, _ = make(tmp_path, "old")
    interrupt(trainer, 4, False)
    last = tmp_path / "old" / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(last)
    name, keys, pos, has_gauss, cached = ckpt["rng"]["numpy"]
    ckpt["rng"]["numpy"] = (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)  # as np.random.get_state()
    torch.save(ckpt, last)
    if numpy1:
        _numpy1_names(last)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(last, weights_only=True)  # really the old format
    resumed, model = make(tmp_path, "old")
    assert resumed.fit(resume=True) is True
    assert_same_weights(full, model)
    # what it writes from then on loads as tensors and plain values only
    new = torch.load(last, map_location="cpu", weights_only=True)
    assert isinstance(new["rng"]["numpy"][1], list) and new["stage_index"] == 2


def test_the_rng_states_round_trip_exactly_through_a_weights_only_file(tmp_path):
    import random

    from vpbench.runtime import rng_state, set_rng_state

    random.seed(1), np.random.seed(2), torch.manual_seed(3), np.random.randn()  # a cached gaussian too
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.randn(), np.random.rand(), torch.rand(1))
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.randn(), np.random.rand(), torch.rand(1)) == expected


# -- L1: the LPIPS AlexNet download ---------------------------------------------------------------

def _served(tmp_path, obj, monkeypatch, *, expect_own_hash: bool) -> Path:
    """``obj`` saved as the AlexNet file behind a file:// URL; the cache is empty."""
    served = tmp_path / "served.pth"
    torch.save(obj, served)
    digest = L._sha256(served)
    url_file = served.rename(tmp_path / f"alexnet-owt-{digest[:8]}.pth")
    monkeypatch.setattr(L, "ALEXNET_URL", url_file.as_uri())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VPBENCH_OFFLINE", raising=False)
    if expect_own_hash:
        monkeypatch.setattr(L, "ALEXNET_SHA256_PREFIX", digest[:8])
    return L.hub_checkpoints() / L.ALEXNET_FILE


def test_lpips_download_is_checked_against_the_known_sha256_before_it_is_read(tmp_path, monkeypatch):
    marker = tmp_path / "PWNED"
    cached = _served(tmp_path, {"features.0.bias": torch.zeros(64), "x": Payload(marker)}, monkeypatch,
                     expect_own_hash=False)  # named with its own hash prefix, which torch's check accepts
    with pytest.raises(MetricUnavailable, match="sent a file with the wrong sha256 .*discarded"):
        L.load_alexnet()
    assert not marker.exists() and not cached.exists()


def test_lpips_download_with_the_right_hash_still_loads_tensors_only(tmp_path, monkeypatch):
    marker = tmp_path / "PWNED"
    _served(tmp_path, {"features.0.bias": torch.zeros(64), "x": Payload(marker)}, monkeypatch, expect_own_hash=True)
    with pytest.raises(MetricUnavailable, match=REFUSED.replace("(", r"\(").replace(")", r"\)")):
        L.load_alexnet()
    assert not marker.exists()


def test_lpips_download_of_real_weights_loads_and_is_cached(tmp_path, monkeypatch):
    trunk = L.AlexNetFeatures().state_dict()
    cached = _served(tmp_path, trunk, monkeypatch, expect_own_hash=True)
    loaded = L.load_alexnet()
    assert loaded.keys() == trunk.keys() and all(torch.equal(loaded[k], trunk[k]) for k in trunk)
    assert cached.is_file()
    monkeypatch.setenv("VPBENCH_OFFLINE", "1")  # the second time from the cache
    assert L.load_alexnet().keys() == trunk.keys()
