"""Sliding windows over a block and the smooth blending of their per-pixel probabilities.

Windows of `size` px step by `size - overlap`; the last window of a row or column is placed flush with the
block's edge (so it overlaps its neighbour more), and a block smaller than a window is one window, padded.
Each window's probabilities are weighted by a separable ramp that rises linearly over the `overlap` pixels
next to a window edge (from 1/(overlap+1) to 1), except on edges that lie on the block's own border, which
no other window covers. Overlapping windows thus cross-fade, with no seam where one window's border context
is poorer than its neighbour's centre; the blended probability is Σ w·p / Σ w at every pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def window_starts(length: int, size: int, overlap: int) -> list[int]:
    """Start offsets of windows of `size` covering [0, length): stride size - overlap, the last flush."""
    if length <= size:
        return [0]
    stride = size - overlap
    starts = list(range(0, length - size, stride))
    starts.append(length - size)
    return starts


@dataclass(frozen=True)
class Window:
    row: int
    col: int
    height: int  # the part inside the block (less than size only when the block is smaller than a window)
    width: int


def block_windows(height: int, width: int, size: int, overlap: int) -> list[Window]:
    rows, cols = window_starts(height, size, overlap), window_starts(width, size, overlap)
    return [Window(r, c, min(size, height - r), min(size, width - c)) for r in rows for c in cols]


def _ramp(n: int, overlap: int, fade_start: bool, fade_end: bool) -> np.ndarray:
    w = np.ones(n, np.float32)
    if overlap <= 0:
        return w
    k = min(overlap, n // 2)
    ramp = np.arange(1, k + 1, dtype=np.float32) / (overlap + 1)
    if fade_start:
        w[:k] = ramp
    if fade_end:
        w[n - k :] = ramp[::-1]
    return w


def window_weights(win: Window, height: int, width: int, overlap: int) -> np.ndarray:
    """(win.height, win.width) blending weights of a window (see the module docstring)."""
    wr = _ramp(win.height, overlap, win.row > 0, win.row + win.height < height)
    wc = _ramp(win.width, overlap, win.col > 0, win.col + win.width < width)
    return wr[:, None] * wc[None, :]


class BlendedProbability:
    """Accumulates window probabilities of one block: add(window, prob), then result()."""

    def __init__(self, height: int, width: int, overlap: int):
        self.height, self.width, self.overlap = height, width, overlap
        self.weighted = np.zeros((height, width), np.float32)
        self.weight = np.zeros((height, width), np.float32)

    def add(self, win: Window, prob: np.ndarray) -> None:
        w = window_weights(win, self.height, self.width, self.overlap)
        sl = (slice(win.row, win.row + win.height), slice(win.col, win.col + win.width))
        self.weighted[sl] += w * prob[: win.height, : win.width]
        self.weight[sl] += w

    def result(self) -> np.ndarray:
        """(H, W) float32 probability; NaN where no window has been added."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.weight > 0, self.weighted / self.weight, np.nan).astype(np.float32)
