"""vpbench import openstl: OpenSTL's state-dict layouts (../shared/data/openstl) map key by key
onto vpbench's models; mismatches are one-line errors; the result is an ordinary run."""

from __future__ import annotations

import ast
import json

import pytest
import torch

from tests.cli_helpers import invoke
from tests.conftest import shared_data_dir
from vpbench import config as C
from vpbench.errors import RunError
from vpbench.importer import fit, read_state_dict
from vpbench.plugins import get_harness
from vpbench.protocols import DataSpec, implements

HARNESS = get_harness()
LAYOUTS = shared_data_dir() / "openstl"
MMNIST, KTH = DataSpec(10, 10, 1, 64, 64), DataSpec(10, 20, 1, 128, 128)
# layout file -> vpbench model, preset, extra settings, spec
CASES = {
    "convlstm-mmnist": ("convlstm", "paper", [], MMNIST),
    "convlstm-kth": ("convlstm", "paper@kth", [], KTH),
    "predrnn-mmnist": ("predrnn", "paper", [], MMNIST),
    "predrnn-kth": ("predrnn", "paper@kth", [], KTH),
    "predrnnv2-mmnist": ("predrnnv2", "paper", [], MMNIST),
    "predrnnpp-mmnist": ("predrnnpp", "paper", [], MMNIST),
    "mau-mmnist": ("mau", "paper", [], MMNIST),
    "mim-mmnist": ("mim", "paper", [], MMNIST),
    "e3dlstm-mmnist": ("e3dlstm", "paper", [], MMNIST),
    "phydnet-mmnist": ("phydnet", "paper", [], MMNIST),
    "simvp-incepu-mmnist": ("simvp", "paper", [], MMNIST),
    "simvp-incepu-nt6-kth": ("simvp", "paper@kth", [], KTH),
    "simvp-incepu-kth": ("simvp", "paper@kth", ["model.n_t=4"], KTH),
    "simvp-gsta-mmnist": ("gsta", "paper", [], MMNIST),
    "simvp-gsta-kth": ("gsta", "paper@kth", [], KTH),
    "tau-mmnist": ("tau", "paper", [], MMNIST),
    "tau-kth": ("tau", "paper@kth", [], KTH),
}


def layout(name: str) -> list:
    path = LAYOUTS / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"OpenSTL layouts not found at {LAYOUTS}")
    tensors = json.loads(path.read_text())["tensors"]
    return tensors if isinstance(tensors, list) else ast.literal_eval(tensors)


def numbered_state(tensors: list) -> dict[str, torch.Tensor]:
    """A state dict of the listed keys and shapes, tensor ``i`` filled with ``i`` (to trace the mapping)."""
    dtypes = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64}
    return {key: torch.full(shape, float(i), dtype=dtypes[dtype]) for i, (key, shape, dtype) in enumerate(tensors)}


def build(name: str):
    model, preset, sets, spec = CASES[name]
    cls = HARNESS.models.get(model)
    dataset = "kth" if spec is KTH else "mmnist"
    cfg = C.resolve(model, cls, HARNESS.datasets.get, dataset=dataset, preset=preset.split("@")[0], sets=sets).model
    return cls, cfg, cls(cfg, spec)


@pytest.mark.parametrize("name", sorted(CASES))
def test_openstl_layout_maps_one_to_one_onto_the_vpbench_model(name):
    tensors = layout(name)
    state = numbered_state(tensors)
    cls, cfg, model = build(name)
    mapped = cls.import_state_dict("openstl", state, cfg)
    fit(model, mapped, "openstl")
    ours = model.state_dict()
    sources = {}  # every vpbench tensor holds exactly one OpenSTL tensor's number: a bijection
    for key, value in ours.items():
        number = int(value.flatten()[0]) if value.numel() else None
        assert value.numel() == 0 or bool((value == value.flatten()[0]).all()), key
        sources.setdefault(number, []).append(key)
    own = {"iteration"} & set(ours)  # the recurrent models' schedule counter: set past the schedule
    aliases = len(json.loads((LAYOUTS / f"{name}.json").read_text()).get("aliases") or [])
    buffers = sum(1 for k, _, _ in tensors if k.startswith("k2m."))  # PhyDNet's constant moment matrices
    assert len(ours) == len(tensors) - aliases - buffers + len(own)
    assert all(len(v) == 1 for v in sources.values() if v != ["iteration"])
    if own and hasattr(cfg, "sampling_stop_iter"):
        assert int(ours["iteration"]) >= cfg.sampling_stop_iter


def test_a_checkpoint_of_another_configuration_is_refused_naming_the_key():
    tensors = layout("tau-mmnist")
    cls, cfg, model = build("tau-mmnist")
    state = numbered_state(tensors)
    wrong = dict(state)
    wrong["hid.enc.1.block.norm1.weight"] = torch.zeros(7)
    with pytest.raises(RunError, match=r"'hid\.blocks\.1\.norm1\.weight' has shape \(7,\), the model's is \(512,\)"):
        fit(model, cls.import_state_dict("openstl", wrong, cfg), "openstl")
    missing = {k: v for k, v in state.items() if k != "dec.readout.bias"}
    with pytest.raises(RunError, match="no tensor for 'readout.bias'"):
        fit(model, cls.import_state_dict("openstl", missing, cfg), "openstl")
    extra = dict(state, **{"hid.enc.8.block.layer_scale_1": torch.zeros(512)})
    with pytest.raises(RunError, match="1 tensor\\(s\\) the vpbench model lacks, e.g. 'hid.blocks.8.layer_scale_1'"):
        fit(model, cls.import_state_dict("openstl", extra, cfg), "openstl")


def test_checkpoint_wrappers_and_prefixes_are_unwrapped(tmp_path):
    weights = {"module.a.weight": torch.ones(2), "module.b": torch.zeros(1)}
    torch.save({"state_dict": weights, "epoch": 3}, tmp_path / "c.pth")
    assert set(read_state_dict(tmp_path / "c.pth")) == {"a.weight", "b"}
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    from vpbench.errors import DataError

    with pytest.raises(DataError, match="bad.pth is not a readable PyTorch checkpoint"):
        read_state_dict(tmp_path / "bad.pth")


def test_an_unknown_source_is_refused_before_the_file_is_read(in_tmp):
    """Every importing model declares its sources (``import_sources``); the importer checks the
    source once for all of them, before it reads the file."""
    importing = [n for n in HARNESS.models.names() if implements(HARNESS.models.get(n), "import_state_dict")]
    assert len(importing) == 12  # every baseline but the floors
    for name in importing:
        assert HARNESS.models.get(name).import_sources, name
    (in_tmp / "weights.pth").write_bytes(b"never read")
    result = invoke("import", "caffe", "weights.pth", "--model", "convlstm", "--dataset", "digits")
    assert result.exit_code == 2
    assert "model 'convlstm' imports checkpoints from openstl, not 'caffe'" in result.output
    assert "vpbench import openstl FILE --model convlstm" in result.output and "Traceback" not in result.output
    both = invoke("import", "tf", "weights.pth", "--model", "predformer", "--dataset", "digits")
    assert "imports checkpoints from openstl or predformer, not 'tf'" in both.output


def test_import_writes_a_run_that_eval_scores(in_tmp, shared_data):
    tensors = layout("tau-mmnist")
    state = numbered_state(tensors)
    g = torch.Generator().manual_seed(0)
    for key, value in state.items():  # small random weights: a network that runs
        if value.dtype.is_floating_point:
            value.copy_(torch.randn(value.shape, generator=g) * 0.02 + (1.0 if "running_var" in key else 0.0))
    torch.save(state, in_tmp / "mmnist_tau_one_ep200.pth")
    args = ["import", "openstl", "mmnist_tau_one_ep200.pth", "--model", "tau", "--dataset", "mmnist",
            "--data-dir", str(shared_data), "--out", "imported"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    meta = json.loads((in_tmp / "imported" / "imported.json").read_text())
    assert meta["source"] == "openstl" and len(meta["sha256"]) == 64 and meta["tensors"] == len(tensors)
    again = invoke(*args)
    assert again.exit_code == 2 and "already holds a trained model" in again.output
    scored = invoke("eval", "imported", "--set", "eval.max_clips=2", "--set", "eval.profile=false",
                    "--set", "eval.examples=0", "--data-dir", str(shared_data))
    assert scored.exit_code == 0, scored.output
    from vpbench import runs

    run = runs.load_run(HARNESS, in_tmp / "imported", data_dir=shared_data)
    model = runs.load_trained(run, runs.build_dataset(run))
    assert torch.equal(model.state_dict()["readout.weight"], state["dec.readout.weight"])
    bad = invoke("import", "openstl", "mmnist_tau_one_ep200.pth", "--model", "gsta", "--dataset", "mmnist",
                 "--data-dir", str(shared_data), "--out", "wrong")
    assert bad.exit_code == 2 and "checkpoint" in bad.output and not (in_tmp / "wrong" / "model.pt").exists()


def test_predformer_keys_of_the_authors_code_map_onto_the_model():
    from vpbench_baselines.predformer import PredFormer

    theirs = {  # names as the authors' PredFormer_Model (Quadruplet-TSST) registers them
        "to_patch_embedding.1.weight": "to_patch_embedding.weight",
        "blocks.0.ts_temporal_transformer.layers.0.0.norm.weight": "blocks.0.parts.0.attn_norms.0.weight",
        "blocks.2.st_space_transformer.layers.0.0.fn.to_qkv.weight": "blocks.2.parts.2.attns.0.to_qkv.weight",
        "blocks.5.st_temporal_transformer.layers.0.0.fn.to_out.0.bias": "blocks.5.parts.3.attns.0.to_out.bias",
        "blocks.1.ts_space_transformer.layers.0.1.norm.bias": "blocks.1.parts.1.mlp_norms.0.bias",
        "blocks.1.ts_space_transformer.layers.0.1.fn.fc1_g.weight": "blocks.1.parts.1.mlps.0.fc1_g.weight",
        "blocks.3.ts_space_transformer.norm.weight": "blocks.3.parts.1.norm.weight",
        "mlp_head.0.weight": "head_norm.weight", "mlp_head.1.bias": "head.bias",
    }
    cfg = PredFormer.Config()
    mapped = PredFormer.import_state_dict("openstl", {k: torch.zeros(1) for k in theirs}, cfg)
    assert sorted(mapped) == sorted(theirs.values())
    keys = set(PredFormer(cfg, MMNIST).state_dict())
    assert set(theirs.values()) <= keys


# OpenSTL's patch layout, written from its public definition (openstl/utils/predrnn_utils.py:
# reshape_patch / reshape_patch_back) and not from vpbench's code: a (B, T, H, W, C) clip is cut
# into p x p patches whose p*p*C values are laid out in (p, p, C) order; its recurrent models then
# permute the patched clip to (B, T, p*p*C, H/p, W/p).
def openstl_reshape_patch(frames: torch.Tensor, p: int) -> torch.Tensor:
    b, t, c, h, w = frames.shape
    x = frames.permute(0, 1, 3, 4, 2).reshape(b, t, h // p, p, w // p, p, c).transpose(3, 4)
    return x.reshape(b, t, h // p, w // p, p * p * c).permute(0, 1, 4, 2, 3)


def openstl_reshape_patch_back(patches: torch.Tensor, p: int) -> torch.Tensor:
    b, t, cpp, hp, wp = patches.shape
    c = cpp // (p * p)
    x = patches.permute(0, 1, 3, 4, 2).reshape(b, t, hp, wp, p, p, c).transpose(3, 4)
    return x.reshape(b, t, hp * p, wp * p, c).permute(0, 1, 4, 2, 3)


# model -> OpenSTL layout (for its key names), data spec (TaxiBJ-like 2 channels, KITTI / BAIR-like 3), patch
MULTI_CHANNEL = {
    "convlstm": ("convlstm-mmnist", DataSpec(4, 4, 2, 16, 16), 2),
    "predrnn": ("predrnn-mmnist", DataSpec(4, 4, 3, 16, 16), 4),
    "predrnnv2": ("predrnnv2-mmnist", DataSpec(4, 4, 2, 16, 16), 4),
    "predrnnpp": ("predrnnpp-mmnist", DataSpec(4, 4, 3, 16, 16), 2),
    "mim": ("mim-mmnist", DataSpec(4, 4, 2, 16, 16), 2),
    "e3dlstm": ("e3dlstm-mmnist", DataSpec(4, 4, 3, 16, 16), 4),
}


@pytest.mark.parametrize("model_name", sorted(MULTI_CHANNEL))
def test_openstl_checkpoint_on_multi_channel_data_runs_openstls_network(model_name):
    """An OpenSTL checkpoint trained on C > 1 channels: the imported model predicts what OpenSTL's
    network (the same weights fed clips patched in OpenSTL's (p, p, C) order) predicts."""
    name, spec, p = MULTI_CHANNEL[model_name]
    tensors = layout(name)
    cls = HARNESS.models.get(model_name)
    paper = C.resolve(model_name, cls, HARNESS.datasets.get, dataset="mmnist", preset="paper").model
    numbers = {int(v.flatten()[0]): k for k, v in cls.import_state_dict("openstl", numbered_state(tensors), paper).items()}
    vpbench_key = {key: numbers[i] for i, (key, _, _) in enumerate(tensors) if i in numbers}  # OpenSTL key -> ours

    small = C.resolve(model_name, cls, HARNESS.datasets.get, dataset="mmnist", preset="paper",
                      sets=["model.hidden=8", "model.filter_size=3", f"model.patch_size={p}"]).model
    torch.manual_seed(0)
    reference = cls(small, spec).eval()  # OpenSTL's network: these weights on OpenSTL-patched clips
    with torch.no_grad():
        for value in reference.parameters():
            value.add_(torch.randn_like(value) * 0.1)
    reference.patch = lambda frames: openstl_reshape_patch(frames, p)
    reference.unpatch = lambda patches: openstl_reshape_patch_back(patches, p)
    weights = reference.state_dict()
    checkpoint = {key: weights[ours].clone() for key, ours in vpbench_key.items() if ours != "iteration"}

    imported = cls(small, spec).eval()
    fit(imported, cls.import_state_dict("openstl", checkpoint, small), "openstl")
    clip = torch.rand(2, spec.n_in + spec.n_out, spec.channels, spec.height, spec.width)
    n_in, n_total = spec.n_in, spec.n_in + spec.n_out
    with torch.no_grad():
        expected = reference.unpatch(reference.rollout(reference.patch(clip), n_in, n_total))
        got = imported.unpatch(imported.rollout(imported.patch(clip), n_in, n_total))
    scale = expected.abs().max().item()
    assert scale > 1e-2  # a network whose outputs say something
    assert (got - expected).abs().max().item() <= 1e-5 * max(1.0, scale)
