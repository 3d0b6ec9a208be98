"""LPIPS (Zhang et al., CVPR 2018), AlexNet backbone, version 0.1 linear heads, per frame.

No torchvision: the AlexNet feature trunk is defined here with the same module layout (and so
the same state-dict keys, ``features.0`` ... ``features.10``) as torchvision's
``alexnet-owt-7be5be79.pth``, which is read from the torch hub cache
(``$TORCH_HOME/hub/checkpoints/``) or downloaded there with its hash checked. The linear heads
are the official LPIPS v0.1 ``alex.pth``: read from the ``lpips`` package's data files when that
package is installed (without importing it), else from the torch hub cache, else downloaded
(sha256 checked).

Convention (PROTOCOLS.md / OpenSTL): predictions clipped to [0, 1], both frames mapped to
[-1, 1], grey frames repeated to three channels; the v0.1 scaling layer; features of the five
ReLU taps normalised to unit length over channels; squared differences weighted by the linear
heads, averaged over space and summed over taps. ``LPIPS(x, x) = 0``.

Without the weights (offline, nothing cached) the metric reports "n/a" and one line says
which file to put where. ``VPBENCH_OFFLINE=1`` forbids any download attempt.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from vpbench.errors import MetricUnavailable
from vpbench.hookspecs import hookimpl
from vpbench.safeload import load_pt

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/" + ALEXNET_FILE
ALEXNET_SHA256_PREFIX = "7be5be79"  # all of the digest torchvision publishes (in the file name)
LIN_FILE = "lpips-v0.1-alex-df73285e.pth"
LIN_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth"
LIN_SHA256 = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
TAPS = (1, 4, 7, 9, 11)  # ReLU outputs of the five conv layers in AlexNet.features
CHANNELS = (64, 192, 384, 256, 256)


class AlexNetFeatures(nn.Module):
    """torchvision's AlexNet ``features`` (same indices, so the same state-dict keys)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        )

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                out.append(x)
            if i == TAPS[-1]:
                break
        return out


class LPIPSNet(nn.Module):
    """AlexNet trunk + v0.1 linear heads; ``forward(a, b)`` on [-1, 1] RGB -> ``(N,)``."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = AlexNetFeatures()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def load_official(self, alexnet: dict, lin: dict) -> None:
        trunk = {k: v for k, v in alexnet.items() if k.startswith("features.")}
        self.trunk.load_state_dict(trunk)
        for i, layer in enumerate(self.lins):
            layer.weight.copy_(lin[f"lin{i}.model.1.weight"])

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa = self.trunk.taps((a - self.shift) / self.scale)
        fb = self.trunk.taps((b - self.shift) / self.scale)
        total = 0.0
        for lin, x, y in zip(self.lins, fa, fb):
            x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            y = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((x - y) ** 2).mean(dim=(2, 3))
        return total.flatten()


def hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def offline() -> bool:
    return os.environ.get("VPBENCH_OFFLINE", "") not in ("", "0")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_alexnet() -> dict:
    """The AlexNet weights: the cached file, or downloaded into the cache; either way its sha256
    is checked before it is read, and it is read as tensors only."""
    path = hub_checkpoints() / ALEXNET_FILE
    downloaded = not path.is_file()
    if downloaded:
        if offline():
            raise MetricUnavailable(f"LPIPS needs AlexNet weights: put {ALEXNET_URL} at {path}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(ALEXNET_URL, str(path), progress=False)  # to a temporary file, then moved
        except Exception as exc:
            raise MetricUnavailable(
                f"LPIPS needs AlexNet weights ({type(exc).__name__} downloading them): put {ALEXNET_URL} at {path}"
            ) from None
    if not _sha256(path).startswith(ALEXNET_SHA256_PREFIX):
        if downloaded:
            path.unlink()
            raise MetricUnavailable(f"{ALEXNET_URL} sent a file with the wrong sha256 (expected {ALEXNET_SHA256_PREFIX}...); "
                                    f"it was discarded: put the real file at {path}")
        raise MetricUnavailable(f"{path} has the wrong sha256 (expected {ALEXNET_SHA256_PREFIX}...); delete it and retry")
    return _load(path)


def _load(path: Path) -> dict:
    return load_pt(path, "delete it and retry", error=MetricUnavailable)


def lin_weights_path() -> Path | None:
    """The v0.1 ``alex.pth`` shipped inside an installed ``lpips`` package (not imported)."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "alex.pth"
    return path if path.is_file() else None


def load_lin() -> dict:
    from vpbench.data import download as dl
    from vpbench.errors import DataError

    cached = hub_checkpoints() / LIN_FILE
    for path in (lin_weights_path(), cached):
        if path is not None and path.is_file():
            if _sha256(path) != LIN_SHA256:
                raise MetricUnavailable(f"{path} is not the LPIPS v0.1 alex.pth (sha256 mismatch)")
            return _load(path)
    if offline():
        raise MetricUnavailable(f"LPIPS needs its v0.1 linear weights: put {LIN_URL} at {cached}")
    try:
        dl.fetch(dl.RemoteFile(LIN_FILE, (LIN_URL,), LIN_SHA256), cached.parent)
    except DataError:
        raise MetricUnavailable(f"LPIPS needs its v0.1 linear weights: put {LIN_URL} at {cached}") from None
    return _load(cached)


def to_lpips_input(frames: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` in [0, 1] -> 3-channel [-1, 1]."""
    x = frames.float().clamp(0, 1) * 2 - 1
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


class LPIPS:
    name = "lpips"
    version = "0.1-alex"
    higher_is_better = False
    unit = ""
    description = "LPIPS v0.1, AlexNet, per frame, inputs in [-1, 1], grey repeated to RGB"
    min_size = 32

    def __init__(self, net: LPIPSNet | None = None):
        self._net = net
        self._error: str | None = None

    def network(self, device: torch.device) -> LPIPSNet:
        if self._net is None:
            if self._error:
                raise MetricUnavailable(self._error)
            try:
                net = LPIPSNet()
                net.load_official(load_alexnet(), load_lin())
            except MetricUnavailable as exc:
                self._error = str(exc)
                raise
            self._net = net
        return self._net.to(device)

    @torch.no_grad()
    def per_frame(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = pred.shape
        if min(h, w) < self.min_size:
            raise MetricUnavailable(f"LPIPS (AlexNet) needs frames of at least {self.min_size}x{self.min_size}, got {h}x{w}")
        if c not in (1, 3):
            raise MetricUnavailable(f"LPIPS needs 1 or 3 channels, got {c}")
        net = self.network(pred.device)
        a = to_lpips_input(pred.reshape(b * t, c, h, w))
        y = to_lpips_input(target.reshape(b * t, c, h, w))
        return net(a, y).reshape(b, t).float()



@hookimpl
def vpbench_register_metrics(register):
    register(LPIPS())
