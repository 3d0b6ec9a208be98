"""Writing small real video files with PyAV for tests."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_video(path: Path, frames: np.ndarray, fps: int = 25, codec: str = "mpeg4") -> Path:
    """``frames``: uint8 ``(T, H, W)`` grey or ``(T, H, W, 3)`` RGB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    t, h, w, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"qscale": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def moving_square(n_frames: int, h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """A bright square drifting over a grey background: ``(T, H, W)`` uint8."""
    rng = np.random.default_rng(seed)
    side = max(4, min(h, w) // 4)
    frames = np.full((n_frames, h, w), 60, np.uint8)
    y, x = rng.integers(0, h - side), rng.integers(0, w - side)
    for t in range(n_frames):
        xx = (x + 2 * t) % (w - side)
        frames[t, y : y + side, xx : xx + side] = 220
    return frames
