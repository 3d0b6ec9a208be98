"""The one way vpbench reads ``.pt`` files: ``torch.load`` with ``weights_only=True``.

Such a file may hold tensors and plain Python values only; anything else would be built by
running code named in the file, so a crafted checkpoint is refused instead of run.
"""

from __future__ import annotations

import contextlib
import pickle
from pathlib import Path
from typing import Any, Sequence

import torch

from vpbench.errors import RunError, VPBenchError


def load_pt(path: str | Path, fix: str, *, allow: Sequence[Any] = (), error: type[VPBenchError] = RunError) -> Any:
    """The contents of ``path`` on the CPU, unpickled with ``weights_only=True`` and the extra
    globals in ``allow`` (``torch.serialization.safe_globals`` entries).

    A file naming other globals is refused with one ``error`` that names the file and ends in
    ``fix``; any other failure (a truncated or garbled file) is raised as torch raised it, an
    unpickling error without torch's advice to turn the check off."""
    path = Path(path)
    try:
        with _allowed(allow):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
    # raised outside the handler, so that torch's message is not chained to ours
    culprits = _culprits(path, allow)
    if culprits or "Unsupported global" in message:
        named = f" ({', '.join(culprits[:3])})" if culprits else ""
        raise error(f"{path} holds objects other than tensors and plain values{named}; loading them would run code "
                    f"from the file, so vpbench refuses it (it may have been tampered with): {fix}")
    inner = message.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0] \
        if "WeightsUnpickler error:" in message else "not a PyTorch file"
    raise pickle.UnpicklingError(" ".join(inner.split()))


def _allowed(allow: Sequence[Any]):
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    return safe_globals(list(allow)) if allow and safe_globals else contextlib.nullcontext()


def _culprits(path: Path, allow: Sequence[Any]) -> list[str]:
    """The globals the file names that are not allowed (read without running anything)."""
    allowed = {a[1] if isinstance(a, tuple) else f"{a.__module__}.{a.__qualname__}" for a in allow}
    try:
        return [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(path) if n not in allowed]
    except Exception:  # a garbled file, or a torch without this reader
        return []
