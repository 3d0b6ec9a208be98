"""Seeds, devices, and RNG state capture for exact resume."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import numpy as np
import torch

from vpbench.errors import ConfigError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def select_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device '{name}' is not valid; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but CUDA is not available; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device '{name}' is not supported; use auto, cpu, cuda or cuda:N")
    return device


def rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch random states as tensors and plain values (a checkpoint holding
    them loads with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, keys.tolist(), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (or the NumPy array form that checkpoints before it stored)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def legacy_rng_globals() -> list[Any]:
    """What a checkpoint that pickled ``np.random.get_state()`` as NumPy objects needs to load with
    ``weights_only=True``: a uint32 array rebuilt from its bytes, nothing that runs other code
    (named as NumPy 1 and NumPy 2 pickle them)."""
    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    return [np.ndarray, np.dtype, type(np.dtype(np.uint32)),
            (reconstruct, "numpy.core.multiarray._reconstruct"), (reconstruct, "numpy._core.multiarray._reconstruct")]


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX tiles or AVX512-BF16); elsewhere oneDNN
    emulates bf16 and autocast is ~30x *slower* than float32 (measured on a prior step)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # older torch without the probes
        return False


def amp_mode(device: torch.device, amp: str) -> tuple[bool, torch.dtype]:
    """``(enabled, dtype)`` of autocast for ``train.amp`` on ``device``. ``auto``: CUDA only
    (bf16 where supported, else fp16 with a gradient scaler). ``on``: CUDA, and bf16 on CPUs
    with native bf16 (2.5x faster S-HR-VQVAE prior steps on 2 AMX cores); float32 elsewhere."""
    if amp == "off":
        return False, torch.float32
    if device.type == "cuda":
        return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and amp == "on" and native_bf16_cpu():
        return True, torch.bfloat16
    return False, torch.float32


def autocast_off(device: torch.device):
    """A float32 region under any autocast (meta tensors, used for FLOP counting, have none)."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()
