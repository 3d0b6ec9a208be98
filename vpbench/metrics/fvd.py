"""FVD (Unterthiner et al. 2018): the Frechet distance between I3D embeddings of two sets of clips.

A set-level metric (:class:`vpbench.protocols.SetMetric`): ``features`` embeds each clip as the
400 Kinetics logits of I3D (:mod:`vpbench.metrics.i3d`), ``score`` is the Frechet distance of
the two sets of features in float64. The protocol choices (context frames included or not,
clip length, resizing, clips per draw, repeated draws) are the evaluator's ``eval.fvd_*``
options and are recorded with every result (see README "Metric conventions").

Weights: ``i3d_pretrained_400.pt``, the Kinetics-400 I3D converted from TensorFlow and
published by VideoGPT (Yan et al. 2021; Google Drive id ``1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT``),
the file VideoGPT, TATS and MCVD load. It is a plain state dict whose keys are this module's
(``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_mean``, ``logits.conv3d.bias``...):
loaded with every key's presence and shape checked (``num_batches_tracked`` may be absent).
Its sha256 is not pinned (no public source of it could be checked here); the hash of the
file actually used is recorded in the result set. Looked for at ``$VPBENCH_FVD_WEIGHTS``,
then in the torch hub cache (``$TORCH_HOME/hub/checkpoints/i3d_pretrained_400.pt``), else
downloaded there when online; ``VPBENCH_OFFLINE=1`` forbids downloads. Without it the metric
is ``n/a`` with one line saying which file to put where. StyleGAN-V's TorchScript export
(``i3d_torchscript.pt``) is not read: its key layout could not be checked here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vpbench.errors import MetricUnavailable
from vpbench.hookspecs import hookimpl
from vpbench.metrics.i3d import I3D, MIN_FRAMES
from vpbench.metrics.lpips import _sha256, hub_checkpoints, offline
from vpbench.protocols import SetMetric
from vpbench.safeload import load_pt

WEIGHTS_FILE = "i3d_pretrained_400.pt"
WEIGHTS_URLS = (
    # a copy pinned to one commit of the Open-Sora-Plan Hugging Face space, then VideoGPT's Google Drive file
    "https://huggingface.co/spaces/LanguageBind/Open-Sora-Plan-v1.0.0/resolve/"
    "810fa8c4bdb3a4c8eec9bd57375c29bde6fb46de/opensora/eval/fvd/videogpt/i3d_pretrained_400.pt",
    "https://drive.google.com/uc?export=download&id=1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT",
)
WEIGHTS_ENV = "VPBENCH_FVD_WEIGHTS"


def weights_path() -> Path:
    configured = os.environ.get(WEIGHTS_ENV, "")
    return Path(configured) if configured else hub_checkpoints() / WEIGHTS_FILE


def _where() -> str:
    return f"put {WEIGHTS_FILE} ({WEIGHTS_URLS[0]}) at {weights_path()} (or point ${WEIGHTS_ENV} at it)"


def load_weights(net: I3D) -> str:
    """Load ``i3d_pretrained_400.pt`` into ``net`` (every key and shape checked); its sha256."""
    from vpbench.data import download as dl
    from vpbench.errors import DataError

    path = weights_path()
    if not path.is_file():
        if offline() or os.environ.get(WEIGHTS_ENV):
            raise MetricUnavailable(f"FVD needs the I3D Kinetics-400 weights: {_where()}")
        try:
            dl.fetch(dl.RemoteFile(WEIGHTS_FILE, WEIGHTS_URLS), path.parent)
        except (DataError, OSError) as exc:
            raise MetricUnavailable(f"FVD needs the I3D Kinetics-400 weights ({type(exc).__name__} downloading "
                                    f"them): {_where()}") from None
    try:
        state = load_pt(path, f"delete it; {_where()}", error=MetricUnavailable)
    except MetricUnavailable:
        raise
    except Exception as exc:
        raise MetricUnavailable(f"{path} is not a readable state dict ({type(exc).__name__}); {_where()}") from None
    check_state_dict(net, state, path)
    net.load_state_dict(state, strict=False)
    return _sha256(path)


def check_state_dict(net: I3D, state: dict, path: Path | str = "the I3D weights") -> None:
    """Every parameter and buffer of ``net`` present in ``state`` with its shape, and nothing else."""
    if not isinstance(state, dict):
        raise MetricUnavailable(f"{path} holds a {type(state).__name__}, not a state dict; {_where()}")
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        what = "; ".join(filter(None, [f"missing {', '.join(missing[:3])}" if missing else "",
                                       f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
                                       f"shape {', '.join(wrong[:3])}" if wrong else ""]))
        raise MetricUnavailable(f"{path} is not the Kinetics-400 I3D state dict ({what}); {_where()}")


# -- the Frechet distance, float64 -----------------------------------------------------------------
def _sqrt_psd(mat: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((mat + mat.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`` for covariance matrices S1, S2.

    The trace of the square root is computed without a general matrix square root:
    ``(S1 S2)^(1/2)`` has the eigenvalues of ``(S1^(1/2) S2 S1^(1/2))^(1/2)``, a symmetric PSD
    matrix (eigendecomposition, negative round-off eigenvalues clipped to 0)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root = _sqrt_psd(s1)
    inner = np.linalg.eigvalsh(root @ s2 @ root)
    trace_sqrt = float(np.sqrt(np.clip(inner, 0, None)).sum())
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)
    return max(value, 0.0)


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """The Frechet distance between Gaussians fitted to the rows of ``x`` and ``y`` ``(N, D)``
    (unbiased covariances), float64; exactly 0 when the two sets are identical.

    With fewer clips than dimensions, ``tr((Sx Sy)^(1/2))`` is the nuclear norm of the
    ``Nx x Ny`` cross product of the centred sets divided by ``sqrt((Nx-1)(Ny-1))`` (the
    non-zero eigenvalues of ``A'A B'B`` are the squared singular values of ``A B'``): one small
    SVD instead of two D x D eigendecompositions."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with the same D, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("the Frechet distance needs at least 2 clips per set")
    if x.shape == y.shape and np.array_equal(x, y):
        return 0.0
    mx, my = x.mean(0), y.mean(0)
    if max(len(x), len(y)) >= x.shape[1]:
        return frechet_from_stats(mx, np.cov(x, rowvar=False), my, np.cov(y, rowvar=False))
    a, b = x - mx, y - my
    trace_sqrt = float(np.linalg.svd(a @ b.T, compute_uv=False).sum()) / np.sqrt((len(x) - 1) * (len(y) - 1))
    value = float(((mx - my) ** 2).sum() + (a * a).sum() / (len(x) - 1) + (b * b).sum() / (len(y) - 1)
                  - 2 * trace_sqrt)
    return max(value, 0.0)


def to_i3d_input(clips: torch.Tensor) -> torch.Tensor:
    """``(B, T, C, H, W)`` in [0, 1] -> ``(B, 3, T, H, W)`` in [-1, 1], grey repeated to three channels."""
    if clips.dim() != 5 or clips.shape[2] not in (1, 3):
        raise MetricUnavailable(f"FVD takes (B, T, 1 or 3, H, W) clips, got shape {tuple(clips.shape)}")
    x = clips.float().clamp(0, 1) * 2 - 1
    if x.shape[2] == 1:
        x = x.expand(-1, -1, 3, -1, -1)
    return x.permute(0, 2, 1, 3, 4).contiguous()


class FVD(SetMetric):
    name = "fvd"
    version = "1-i3d-k400"
    higher_is_better = False
    unit = ""
    description = "FVD: Frechet distance of I3D (Kinetics-400) logits of predicted vs true clips, float64"
    min_frames = MIN_FRAMES

    def __init__(self, net: I3D | None = None):
        self._net = net
        self._error: str | None = None
        self._sha256 = "" if net is None else "not loaded from a file"

    def network(self, device: torch.device) -> I3D:
        if self._net is None:
            if self._error:
                raise MetricUnavailable(self._error)
            try:
                net = I3D()
                self._sha256 = load_weights(net)
            except MetricUnavailable as exc:
                self._error = str(exc)
                raise
            self._net = net.requires_grad_(False).eval()
        return self._net.to(device)

    @torch.no_grad()
    def features(self, clips: torch.Tensor) -> torch.Tensor:
        x = to_i3d_input(clips)
        net = self.network(clips.device)
        try:
            return net(x).float()
        except ValueError as exc:
            raise MetricUnavailable(str(exc)) from None

    def score(self, pred_feats: torch.Tensor, true_feats: torch.Tensor) -> float:
        return frechet_distance(torch.as_tensor(pred_feats).double().cpu().numpy(),
                                torch.as_tensor(true_feats).double().cpu().numpy())

    def details(self) -> dict[str, str]:
        return {"weights": str(weights_path()) if self._sha256 != "not loaded from a file" else "given in code",
                "sha256": self._sha256 or "not loaded yet"}


def resize_clips(clips: torch.Tensor, size: int) -> torch.Tensor:
    """Every frame of ``(B, T, C, H, W)`` resized to ``size x size`` (bilinear, align_corners=False)."""
    b, t, c, h, w = clips.shape
    if size <= 0 or (h, w) == (size, size):
        return clips
    out = F.interpolate(clips.reshape(b * t, c, h, w).float(), size=(size, size), mode="bilinear", align_corners=False)
    return out.reshape(b, t, c, size, size)


@hookimpl
def vpbench_register_metrics(register):
    register(FVD())
