"""Video decoding with PyAV (FFmpeg inside the wheel)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from vpbench.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif"}


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


def read_frames(source: str | Path, grey: bool = False) -> np.ndarray:
    """uint8 frames of a video file or of a folder of images (sorted by name): ``(T, H, W)``
    (grey: the first channel) or ``(T, H, W, 3)``; an unreadable source is a :class:`DataError`."""
    source = Path(source)
    if not source.is_dir():
        return decode_video(source, grey=grey)
    from PIL import Image

    files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    try:
        frames = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    except Exception as exc:
        raise DataError(f"cannot read the frames in {source}: {exc}") from None
    return frames[..., 0] if grey else frames


def decode_resized(source: str | Path, height: int, width: int, colour: Literal["first", "mean", "rgb"]) -> np.ndarray:
    """The frames of ``source`` (:func:`read_frames`) as uint8 ``(T, C, height, width)``:
    ``first`` keeps the first channel (grey content stored as RGB, like KTH's AVIs), ``mean``
    averages R, G and B, ``rgb`` keeps all three."""
    import torch

    x = torch.from_numpy(read_frames(source, grey=colour == "first"))
    x = (x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2)).float()  # (T, C, H, W)
    if colour == "mean":
        x = x.mean(1, keepdim=True)
    return resize_uint8(x, height, width)


def resize_uint8(frames, height: int, width: int) -> np.ndarray:
    """Float ``(T, C, H, W)`` pixel values (0-255) -> uint8 ``(T, C, height, width)``, bilinear
    with half-pixel centres (OpenCV's INTER_LINEAR), rounded."""
    import torch
    import torch.nn.functional as F

    y = F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8).numpy()
