"""LPIPS: torchvision-compatible trunk, invariants with fixed weights, weights handling, n/a."""

from __future__ import annotations

import pytest
import torch

from vpbench.errors import MetricUnavailable
from vpbench.metrics import lpips as L

TORCHVISION_ALEXNET_FEATURES = {  # torchvision.models.alexnet().features, keys and shapes
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
}


def fixed_net(seed=0) -> L.LPIPSNet:
    torch.manual_seed(seed)
    net = L.LPIPSNet()
    for lin in net.lins:  # the official heads are non-negative too
        lin.weight.copy_(torch.rand_like(lin.weight))
    return net


def test_trunk_state_dict_matches_torchvision_keys():
    state = L.AlexNetFeatures().state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == TORCHVISION_ALEXNET_FEATURES


def test_official_format_loads_and_ignores_the_classifier():
    src = fixed_net(1)
    alexnet = {**src.trunk.state_dict(), "classifier.1.weight": torch.zeros(4096, 9216)}
    lin = {f"lin{i}.model.1.weight": layer.weight.clone() for i, layer in enumerate(src.lins)}
    net = L.LPIPSNet()
    net.load_official(alexnet, lin)
    a, b = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(net(a, b), src(a, b))


def test_identity_is_zero_and_noise_is_monotone():
    metric = L.LPIPS(fixed_net())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 2, 1, 64, 64, generator=g)
    assert metric.per_frame(x, x).abs().max().item() < 1e-6
    noise = torch.randn(x.shape, generator=g)
    scores = [metric.per_frame((x + s * noise).clamp(0, 1), x).mean().item() for s in (0.02, 0.05, 0.1, 0.2, 0.4)]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores


def test_grey_frames_are_repeated_to_rgb_and_mapped_to_minus_one_one():
    metric = L.LPIPS(fixed_net())
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, 1, 48, 48, generator=g), torch.rand(2, 3, 1, 48, 48, generator=g)
    grey = metric.per_frame(a, b)
    rgb = metric.per_frame(a.repeat(1, 1, 3, 1, 1), b.repeat(1, 1, 3, 1, 1))
    assert torch.allclose(grey, rgb)
    x = L.to_lpips_input(torch.tensor([[[[0.0, 0.5, 1.0, 2.0]]]]))
    assert x.shape[1] == 3 and x[0, 0, 0].tolist() == [-1.0, 0.0, 1.0, 1.0]  # clipped to [0, 1] first


def test_offline_without_weights_is_unavailable_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("VPBENCH_OFFLINE", "1")
    metric = L.LPIPS()
    with pytest.raises(MetricUnavailable) as err:
        metric.per_frame(torch.rand(1, 1, 1, 64, 64), torch.rand(1, 1, 1, 64, 64))
    assert L.ALEXNET_URL in str(err.value) and str(tmp_path / "hub" / "checkpoints" / L.ALEXNET_FILE) in str(err.value)


def test_lpips_package_weights_are_found_without_importing_it(tmp_path, monkeypatch):
    pkg = tmp_path / "lpips"
    (pkg / "weights" / "v0.1").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('lpips must not be imported')\n")
    (pkg / "weights" / "v0.1" / "alex.pth").write_bytes(b"not the official weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert L.lin_weights_path() == pkg / "weights" / "v0.1" / "alex.pth"
    with pytest.raises(MetricUnavailable, match="not the LPIPS v0.1 alex.pth"):
        L.load_lin()


def test_small_frames_are_unavailable_not_a_crash():
    with pytest.raises(MetricUnavailable, match="at least 32x32"):
        L.LPIPS(fixed_net()).per_frame(torch.rand(1, 1, 1, 16, 16), torch.rand(1, 1, 1, 16, 16))


def test_parity_with_the_lpips_package():
    lpips = pytest.importorskip("lpips", reason="the lpips package (and torchvision) does not import here")
    ref = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    ours = L.LPIPSNet()
    ours.trunk.load_state_dict({f"features.{k.split('.', 1)[1]}": v for k, v in
                                _torchvision_features(ref).items()})
    for i, layer in enumerate(ours.lins):
        layer.weight.copy_(getattr(ref, f"lin{i}").model[-1].weight)
    a, b = torch.rand(3, 3, 64, 64) * 2 - 1, torch.rand(3, 3, 64, 64) * 2 - 1
    assert torch.allclose(ours(a, b), ref(a, b).flatten(), atol=1e-5)


def _torchvision_features(ref) -> dict:
    # lpips splits torchvision's alexnet.features into slices whose children keep their indices
    out = {}
    for s in range(1, 6):
        for name, tensor in getattr(ref.net, f"slice{s}").state_dict().items():
            out[f"x.{name}"] = tensor
    return out
