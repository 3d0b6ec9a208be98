"""Video decoding with PyAV (FFmpeg inside the wheel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vpbench.errors import DataError


def decode_video(path: str | Path, grey: bool = True) -> np.ndarray:
    """All frames of ``path`` as uint8 ``(T, H, W)`` (grey: first channel) or ``(T, H, W, 3)``.

    A corrupt or truncated file raises :class:`DataError` naming the file.
    """
    import av

    path = Path(path)
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path} has no video stream")
            for frame in container.decode(video=0):
                rgb = frame.to_ndarray(format="rgb24")
                frames.append(rgb[..., 0] if grey else rgb)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path} is corrupt or unreadable ({type(exc).__name__}: {exc})") from None
    if not frames:
        raise DataError(f"{path} decoded to zero frames (corrupt or truncated?)")
    return np.stack(frames)


def resize_uint8(frames, height: int, width: int) -> np.ndarray:
    """Float ``(T, C, H, W)`` pixel values (0-255) -> uint8 ``(T, C, height, width)``, bilinear
    with half-pixel centres (OpenCV's INTER_LINEAR), rounded."""
    import torch
    import torch.nn.functional as F

    y = F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8).numpy()
