"""Moving-MNIST dynamics (Srivastava, Mansimov, Salakhutdinov, ICML 2015).

Each glyph starts at a uniform position with a uniform direction and moves ``step`` of the
free range per frame; on reaching a wall its position is clamped and that velocity component
flips (the original generator's bounce). Glyphs are combined with a pixel-wise maximum.
"""

from __future__ import annotations

import numpy as np


def trajectory(rng: np.random.Generator, n_frames: int, limit: int, step: float = 0.1) -> np.ndarray:
    """Top-left positions ``(n_frames, 2)`` as integer (row, col) in ``[0, limit]``."""
    pos = rng.random(2)  # (row, col) in [0, 1)
    theta = rng.random() * 2 * np.pi
    vel = np.array([np.sin(theta), np.cos(theta)])
    out = np.empty((n_frames, 2), dtype=np.int64)
    for t in range(n_frames):
        out[t] = (pos * limit).astype(np.int64)
        pos = pos + vel * step
        for axis in range(2):
            if pos[axis] <= 0.0:
                pos[axis], vel[axis] = 0.0, -vel[axis]
            elif pos[axis] >= 1.0:
                pos[axis], vel[axis] = 1.0, -vel[axis]
    return out


def compose(glyphs: list[np.ndarray], paths: list[np.ndarray], canvas: int) -> np.ndarray:
    """Draw each glyph along its path; ``(T, canvas, canvas)`` uint8, max-combined."""
    n_frames = len(paths[0])
    video = np.zeros((n_frames, canvas, canvas), dtype=np.uint8)
    for glyph, path in zip(glyphs, paths):
        h, w = glyph.shape
        for t, (r, c) in enumerate(path):
            view = video[t, r : r + h, c : c + w]
            np.maximum(view, glyph, out=view)
    return video


def moving_clip(
    rng: np.random.Generator, glyphs: list[np.ndarray], n_frames: int, canvas: int, step: float
) -> np.ndarray:
    """One clip of the given glyphs moving independently: ``(T, canvas, canvas)`` uint8."""
    paths = [trajectory(rng, n_frames, canvas - g.shape[0], step) for g in glyphs]
    return compose(glyphs, paths, canvas)


class MovingGlyphs:
    """Clips of ``n_digits`` glyphs (drawn from ``glyphs``) moving on a canvas, on demand.

    Clip ``i`` is a pure function of ``entropy + (i,)``: the glyph choice and the
    trajectories come from ``np.random.default_rng(entropy + (i,))``. Items are
    ``(context, future)`` float tensors in [0, 1], ``(T, 1, size, size)``.
    """

    def __init__(self, glyphs: np.ndarray, length: int, n_in: int, n_out: int, size: int, n_digits: int,
                 step: float, entropy: tuple[int, ...]):
        self.glyphs, self.length, self.n_in, self.n_out = glyphs, length, n_in, n_out
        self.size, self.n_digits, self.step, self.entropy = size, n_digits, step, tuple(entropy)

    def __len__(self) -> int:
        return self.length

    def clip(self, index: int) -> np.ndarray:
        """Clip ``index`` as ``(n_in + n_out, 1, size, size)`` uint8."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng(self.entropy + (index,))
        chosen = [self.glyphs[i] for i in rng.integers(0, len(self.glyphs), self.n_digits)]
        return moving_clip(rng, chosen, self.n_in + self.n_out, self.size, self.step)[:, None]

    def __getitem__(self, index: int):
        import torch

        frames = torch.from_numpy(self.clip(index)).float().div_(255.0)
        return frames[: self.n_in], frames[self.n_in :]
