"""Checks of a config dataclass's numeric fields, for ``__post_init__``: each raises
:class:`~vpbench.errors.ConfigError` naming the first field out of range and its value."""

from __future__ import annotations

from typing import Any

from vpbench.errors import ConfigError, short


def positive(obj: Any, *names: str) -> None:
    """Every field ``names`` of ``obj`` is > 0."""
    for name in names:
        if getattr(obj, name) <= 0:
            raise ConfigError(f"{name} must be > 0, got {short(getattr(obj, name))}")


def non_negative(obj: Any, *names: str) -> None:
    """Every field ``names`` of ``obj`` is >= 0."""
    for name in names:
        if getattr(obj, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {short(getattr(obj, name))}")


def at_most(obj: Any, limit: int, *names: str) -> None:
    """Every field ``names`` of ``obj`` is <= ``limit``."""
    for name in names:
        if getattr(obj, name) > limit:
            raise ConfigError(f"{name} must be at most {limit:,}, got {short(getattr(obj, name))}")


def in_range(obj: Any, low: float, high: float, *names: str, closed: bool = True) -> None:
    """Every field ``names`` of ``obj`` is in ``[low, high]`` (``[low, high)`` with ``closed=False``)."""
    for name in names:
        value = getattr(obj, name)
        if not (low <= value <= high if closed else low <= value < high):
            raise ConfigError(f"{name} must be in [{low}, {high}{']' if closed else ')'}, got {short(value)}")
