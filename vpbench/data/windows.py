"""Cutting clips from annotated frame ranges."""

from __future__ import annotations

from typing import Iterable


def window_starts(ranges: Iterable[tuple[int, int]], clip_len: int, stride: int, n_frames: int | None = None) -> list[int]:
    """0-based start frames of every ``clip_len`` window inside the 1-based inclusive ``ranges``.

    Windows advance by ``stride`` inside each range and never cross its end (nor the video's
    ``n_frames`` when given). Ranges may be out of order or overlap; identical starts are kept
    once, and the result is sorted.
    """
    starts: set[int] = set()
    for first, last in ranges:
        begin, end = first - 1, last  # 0-based [begin, end)
        if n_frames is not None:
            end = min(end, n_frames)
        start = begin
        while start + clip_len <= end:
            starts.add(start)
            start += stride
    return sorted(starts)
