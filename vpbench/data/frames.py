"""Reading a user's frames: a folder of images, a ``.npy`` array or a video file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vpbench.data.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, decode_video
from vpbench.errors import DataError
from vpbench.protocols import DataSpec


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 or float array ``(T, H, W)``, ``(T, H, W, C)`` or ``(T, C, H, W)`` -> float (T, C, H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(array))
    x = x.float() / 255.0 if array.dtype == np.uint8 else x.float()
    if x.dim() == 3:
        x = x[:, None]
    elif x.dim() == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.dim() != 4:
        raise DataError(f"frames must be (T, H, W), (T, H, W, C) or (T, C, H, W); got {tuple(array.shape)}")
    return x


def fit_to_spec(frames: torch.Tensor, spec: DataSpec) -> torch.Tensor:
    """Resize (bilinear) and convert channels (grey <-> RGB) to the dataset's frame shape."""
    if frames.shape[1] != spec.channels:
        if spec.channels == 1:
            frames = frames.mean(1, keepdim=True)
        elif frames.shape[1] == 1:
            frames = frames.repeat(1, spec.channels, 1, 1)
        else:
            raise DataError(f"cannot convert {frames.shape[1]} channels to {spec.channels}")
    if frames.shape[-2:] != (spec.height, spec.width):
        frames = F.interpolate(frames, size=(spec.height, spec.width), mode="bilinear", align_corners=False)
    return frames.clamp(0, 1)


def load_frames(path: str | Path, spec: DataSpec) -> torch.Tensor:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if path.is_dir():
        from PIL import Image

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        try:
            array = np.stack([np.asarray(Image.open(f).convert("L" if spec.channels == 1 else "RGB")) for f in files])
        except Exception as exc:
            raise DataError(f"cannot read the images in {path}: {exc}") from None
    elif path.suffix == ".npy":
        try:
            array = np.load(path)
        except Exception as exc:
            raise DataError(f"{path} is not a readable .npy file: {exc}") from None
        if array.dtype.kind not in "buif":  # strings, dates, records
            raise DataError(f"{path} holds {array.dtype} values, not pixels; give uint8 (0..255) or float (0..1) frames")
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        array = decode_video(path, grey=spec.channels == 1)
    else:
        raise DataError(f"{path}: use a folder of images, a .npy file or a video ({', '.join(sorted(VIDEO_SUFFIXES))})")
    return fit_to_spec(_to_tensor(array), spec)
