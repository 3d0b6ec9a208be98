"""The embedded digits data set and the Moving-MNIST dynamics."""

from __future__ import annotations

import numpy as np
import pytest

from vpbench.builtin.digits import Digits, DigitsConfig, clip_seed, glyph_bank
from vpbench.data.moving import compose, trajectory
from vpbench.errors import ConfigError


@pytest.mark.parametrize("seed", range(20))
def test_trajectory_stays_inside_and_bounces(seed):
    limit = 36
    path = trajectory(np.random.default_rng(seed), 200, limit, step=0.1)
    assert path.min() >= 0 and path.max() <= limit
    velocity = np.diff(path, axis=0)
    # constant speed between bounces: every velocity component keeps its size (up to
    # integer truncation) and only flips sign at a wall
    for axis in range(2):
        flips = np.nonzero(np.sign(velocity[1:, axis]) * np.sign(velocity[:-1, axis]) < 0)[0] + 1
        for f in flips:
            assert path[f, axis] in (0, limit)
        assert np.abs(velocity[:, axis]).max() <= np.ceil(0.1 * limit) + 1


def test_compose_uses_pixelwise_max():
    g = np.full((2, 2), 100, np.uint8)
    h = np.full((2, 2), 200, np.uint8)
    video = compose([g, h], [np.array([[0, 0]]), np.array([[1, 1]])], 4)
    assert video[0, 0, 0] == 100 and video[0, 1, 1] == 200 and video[0, 2, 2] == 200 and video[0, 3, 3] == 0


def test_same_seed_same_clips_and_splits_differ():
    a = Digits(DigitsConfig(n_train=8, n_test=8)).split("train")
    b = Digits(DigitsConfig(n_train=8, n_test=8)).split("train")
    assert all(np.array_equal(a.clip(i), b.clip(i)) for i in range(8))
    other = Digits(DigitsConfig(n_train=8, seed=99)).split("train")
    assert not np.array_equal(a.clip(0), other.clip(0))
    test = Digits(DigitsConfig(n_train=8, n_test=8)).split("test")
    assert not any(np.array_equal(a.clip(i), test.clip(i)) for i in range(8))


def test_split_seeds_and_glyph_banks_are_disjoint():
    seeds = {split: {clip_seed(1234, split, i) for i in range(1000)} for split in ("train", "val", "test")}
    assert not (seeds["train"] & seeds["val"]) and not (seeds["train"] & seeds["test"])
    assert not (seeds["val"] & seeds["test"])
    train, _ = glyph_bank(1234, "train", 64, 28)
    test, _ = glyph_bank(1234, "test", 64, 28)
    train_set = {g.tobytes() for g in train}
    assert not any(g.tobytes() in train_set for g in test)


def test_clip_shapes_range_and_content():
    cfg = DigitsConfig(n_test=4, n_in=5, n_out=7)
    split = Digits(cfg).split("test")
    context, future = split[3]
    assert context.shape == (5, 1, 64, 64) and future.shape == (7, 1, 64, 64)
    assert context.dtype.is_floating_point and 0 <= context.min() and future.max() <= 1
    assert context.max() == 1.0  # digits are drawn at full intensity
    ink = (context > 0.5).float().mean().item()
    assert 0.02 < ink < 0.3  # two digits, not an empty or a full canvas
    with pytest.raises(IndexError):
        split.clip(4)


def test_glyph_labels_cover_all_digits():
    _, labels = glyph_bank(1234, "train", 256, 28)
    assert set(labels.tolist()) == set(range(10))


def test_bad_config():
    with pytest.raises(ConfigError, match="glyph_size"):
        DigitsConfig(glyph_size=64)
    with pytest.raises(ConfigError, match="n_out must be > 0"):
        DigitsConfig(n_out=0)
