"""Pictures of predictions: a PNG strip (context / truth / prediction / error rows) and a
GIF (truth beside prediction, frame by frame)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vpbench import io

GAP = 2


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """``(T, C, H, W)`` in [0, 1] -> ``(T, H, W, 3)`` uint8 (grey repeated to RGB)."""
    x = frames.detach().float().clamp(0, 1).cpu()
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return (x.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def _row(frames: np.ndarray, width: int) -> np.ndarray:
    t, h, w, _ = frames.shape
    row = np.full((h, width, 3), 255, np.uint8)
    for i in range(t):
        x = i * (w + GAP)
        row[:, x : x + w] = frames[i]
    return row


def strip(context: torch.Tensor, truth: torch.Tensor | None, pred: torch.Tensor) -> np.ndarray:
    """One clip as rows: context, ground truth, prediction, |error| (when truth is known)."""
    rows = [to_uint8(context)]
    if truth is not None:
        rows.append(to_uint8(truth))
    rows.append(to_uint8(pred))
    if truth is not None:
        n = min(len(truth), len(pred))
        rows.append(to_uint8((pred[:n] - truth[:n]).abs()))
    h, w = rows[0].shape[1:3]
    width = max(len(r) for r in rows) * (w + GAP) - GAP
    blocks = []
    for r in rows:
        blocks += [_row(r, width), np.full((GAP, width, 3), 255, np.uint8)]
    return np.concatenate(blocks[:-1])


def save_strip(path: str | Path, context, truth, pred) -> None:
    _write_png(path, strip(context, truth, pred))


def _write_png(path: str | Path, pixels: np.ndarray) -> None:
    image = Image.fromarray(pixels)
    with io.atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def save_gif(path: str | Path, context: torch.Tensor, truth: torch.Tensor | None, pred: torch.Tensor,
             ms_per_frame: int = 200, scale: int = 2) -> None:
    """Context frames, then truth | prediction side by side (or prediction alone)."""
    ctx = to_uint8(context)
    prd = to_uint8(pred)
    tru = to_uint8(truth) if truth is not None else None
    panels = 2 if tru is not None else 1
    frames = []
    for f in ctx:
        frames.append(np.concatenate([f] * panels, axis=1))
    for i, f in enumerate(prd):
        if tru is None:
            frames.append(f)
        else:  # truth may be shorter than the prediction: blank panel where it is unknown
            known = tru[i] if i < len(tru) else np.zeros_like(f)
            frames.append(np.concatenate([known, f], axis=1))
    _write_gif(path, frames, ms_per_frame, scale)


def _write_gif(path: str | Path, frames: list[np.ndarray], ms_per_frame: int, scale: int) -> None:
    images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames]
    with io.atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)


def _label(text: str, width: int, height: int = 12) -> np.ndarray:
    from PIL import ImageDraw

    image = Image.new("RGB", (width, height), (255, 255, 255))
    ImageDraw.Draw(image).text((1, 0), text, fill=(0, 0, 0))
    return np.asarray(image)


def comparison_strip(context: torch.Tensor, truth: torch.Tensor, preds: dict[str, torch.Tensor]) -> np.ndarray:
    """One clip, one labelled row each: context, ground truth, then every model's prediction."""
    rows = [("context", to_uint8(context)), ("truth", to_uint8(truth))]
    rows += [(name, to_uint8(pred)) for name, pred in preds.items()]
    w = rows[0][1].shape[2]
    width = max(len(r) for _, r in rows) * (w + GAP) - GAP
    blocks = []
    for name, frames in rows:
        blocks += [_label(name, width), _row(frames, width), np.full((GAP, width, 3), 255, np.uint8)]
    return np.concatenate(blocks[:-1])


def save_comparison(png: str | Path, gif: str | Path, context: torch.Tensor, truth: torch.Tensor,
                    preds: dict[str, torch.Tensor], ms_per_frame: int = 250, scale: int = 2) -> None:
    """PNG strip of :func:`comparison_strip` and a GIF: truth beside every model, frame by frame."""
    _write_png(png, comparison_strip(context, truth, preds))
    panels = [("truth", to_uint8(torch.cat([context, truth])))]
    panels += [(name, to_uint8(torch.cat([context, pred]))) for name, pred in preds.items()]
    w = panels[0][1].shape[2]
    frames = []
    for i in range(len(panels[0][1])):
        tiles = [np.concatenate([_label(name[: max(1, w // 6)], w), frames_[i]]) for name, frames_ in panels]
        frames.append(np.concatenate(tiles, axis=1))
    _write_gif(gif, frames, ms_per_frame, scale)


def write_examples(folder: Path, split: Any, predictions: list[torch.Tensor]) -> None:
    """A PNG strip (context / truth / prediction / error) and a GIF in ``folder`` for each prediction of
    the first clips of ``split``."""
    for i, pred in enumerate(predictions):
        context, future = split[i]
        save_strip(folder / f"clip{i:05d}.png", context, future, pred)
        save_gif(folder / f"clip{i:05d}.gif", context, future, pred)
