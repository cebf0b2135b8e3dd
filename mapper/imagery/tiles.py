"""The tile types every imagery source speaks: a tile's key, its result, and the `TileSource` interface.

A source returns, per tile, either RGB pixels with a validity mask or the reason the tile is missing.
Missing is a normal outcome (no imagery there, a server that kept failing); the mosaic records it as
nodata and the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mapper.grid.tilegrid import TILE_SIZE

TileKey = tuple[int, int, int]  # (z, x, y)


@dataclass
class TileResult:
    """One tile: `rgb` (256, 256, 3) uint8 and `valid` (256, 256) bool, or `missing` with the reason."""

    rgb: np.ndarray | None = None
    valid: np.ndarray | None = None
    missing: str | None = None

    @classmethod
    def absent(cls, reason: str) -> TileResult:
        return cls(missing=reason)

    @classmethod
    def image(cls, rgb: np.ndarray, valid: np.ndarray | None = None) -> TileResult:
        if rgb.shape != (TILE_SIZE, TILE_SIZE, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"tile pixels must be ({TILE_SIZE}, {TILE_SIZE}, 3) uint8, got {rgb.shape} {rgb.dtype}")
        return cls(rgb=rgb, valid=valid)

    @property
    def ok(self) -> bool:
        return self.missing is None


class TileSource(Protocol):
    """What the mosaic and the pipeline need from an imagery source."""

    name: str

    def get_tiles(self, keys: Iterable[TileKey]) -> dict[TileKey, TileResult]:
        """Fetch a batch of tiles (concurrently where the source can)."""
        ...

    def close(self) -> None: ...
