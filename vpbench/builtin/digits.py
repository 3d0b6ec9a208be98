"""``digits``: the embedded Moving-MNIST-like dataset (no download).

Two digit glyphs move on a 64x64 canvas with Moving-MNIST dynamics
(:mod:`vpbench.data.moving`). The glyphs are the digits 0-9 rendered with the FreeType font
that ships inside Pillow (``ImageFont.load_default(size=...)``), each with a random size,
stroke width, rotation and shear, so no file is downloaded. Every clip is a pure function of
``(data seed, split, clip index)``: train, val and test draw from disjoint random streams and
from disjoint glyph banks (a digit image seen in training never appears in the test split).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vpbench.data.moving import MovingGlyphs
from vpbench.errors import ConfigError
from vpbench.hookspecs import hookimpl
from vpbench.protocols import SPLITS, DataSpec
from vpbench.validate import positive

SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
GLYPH_STREAM, CLIP_STREAM = 0, 1
MAX_CLIPS = 10_000_000  # clips of a split (generated on demand, but indexed and scored one by one)


@dataclass(frozen=True)
class DigitsConfig:
    n_train: int = 4000  # training clips (generated on demand, deterministic)
    n_val: int = 200  # validation clips
    n_test: int = 500  # test clips
    n_in: int = 10  # context frames
    n_out: int = 10  # frames to predict
    size: int = 64  # canvas height and width in pixels
    glyph_size: int = 28  # glyph box in pixels (MNIST's 28)
    n_digits: int = 2  # digits per clip
    step: float = 0.1  # motion per frame as a fraction of the free range (Moving MNIST: 0.1)
    glyph_bank: int = 512  # distinct rendered glyphs per split
    seed: int = 1234  # data seed (independent of the run seed, so splits never change)

    def __post_init__(self) -> None:
        positive(self, "n_train", "n_val", "n_test", "n_in", "n_out", "n_digits", "glyph_bank")
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) > MAX_CLIPS:
                raise ConfigError(f"{name} must be at most {MAX_CLIPS:,} clips, got {getattr(self, name)}")
        if not 8 <= self.glyph_size < self.size:
            raise ConfigError("glyph_size must be >= 8 and smaller than size")
        if not 0 < self.step <= 1:
            raise ConfigError(f"step must be in (0, 1] (a fraction of the free range per frame), got {self.step}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")


def clip_seed(seed: int, split: str, index: int) -> tuple[int, ...]:
    """The entropy of clip ``index`` of ``split``: distinct for every (split, index)."""
    return (seed, SPLIT_CODE[split], CLIP_STREAM, index)


def render_glyph(digit: int, rng: np.random.Generator, box: int) -> np.ndarray:
    """Digit ``digit`` with random size, stroke, rotation and shear, ``(box, box)`` uint8."""
    big = box * 2
    font = ImageFont.load_default(size=int(big * rng.uniform(0.62, 0.85)))
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    stroke = int(rng.integers(1, 4))
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font, stroke_width=stroke)
    xy = ((big - (right - left)) / 2 - left, (big - (bottom - top)) / 2 - top)
    draw.text(xy, str(digit), fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    shear = rng.uniform(-0.3, 0.3)
    c = big / 2
    img = img.transform((big, big), Image.AFFINE, (1, shear, -shear * c, 0, 1, 0), Image.BILINEAR)
    img = img.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR)
    img = img.resize((box, box), Image.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


@functools.lru_cache(maxsize=16)
def glyph_bank(seed: int, split: str, count: int, box: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` glyphs for one split (and their digit labels), deterministic per seed."""
    glyphs, labels = [], []
    for i in range(count):
        rng = np.random.default_rng((seed, SPLIT_CODE[split], GLYPH_STREAM, i))
        digit = int(rng.integers(0, 10))
        glyphs.append(render_glyph(digit, rng, box))
        labels.append(digit)
    return np.stack(glyphs), np.array(labels)


class Digits:
    """Embedded Moving-MNIST-like digits, 1x64x64, 10 -> 10."""

    name = "digits"
    version = "1"
    description = "embedded moving digits (Pillow font glyphs, Moving-MNIST dynamics), no download"
    Config = DigitsConfig

    def __init__(self, config: DigitsConfig | None = None, root: str | None = None):
        self.config = config or DigitsConfig()

    @property
    def spec(self) -> DataSpec:
        c = self.config
        return DataSpec(c.n_in, c.n_out, 1, c.size, c.size)

    def split(self, name: str) -> MovingGlyphs:
        if name not in SPLITS:
            raise ConfigError(f"unknown split '{name}'; use one of {', '.join(SPLITS)}")
        c = self.config
        length = {"train": c.n_train, "val": c.n_val, "test": c.n_test}[name]
        bank, _ = glyph_bank(c.seed, name, c.glyph_bank, c.glyph_size)
        return MovingGlyphs(bank, length, c.n_in, c.n_out, c.size, c.n_digits, c.step, clip_seed(c.seed, name, 0)[:-1])

    def info(self) -> dict[str, str]:
        c = self.config
        return {
            "source": "generated on the fly; glyphs rendered from Pillow's bundled FreeType font",
            "licence": "generated data, no licence restrictions (Pillow: MIT-CMU; its font: OFL)",
            "citation": "dynamics after Srivastava et al., ICML 2015 (Moving MNIST)",
            "protocol": f"{c.n_digits} digits, {c.size}x{c.size}, {c.n_in} -> {c.n_out}, "
            f"step {c.step}; train/val/test {c.n_train}/{c.n_val}/{c.n_test} clips from "
            f"disjoint seed streams and glyph banks (data seed {c.seed})",
            "status": "embedded (always present)",
        }


@hookimpl
def vpbench_register_datasets(register):
    register(Digits)
