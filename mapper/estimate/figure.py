"""One figure of an estimate: a value with its unit and the basis it rests on (None: not known, and why)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Figure:
    key: str  # stable name for --json readers: "blocks", "tiles.mapbox", "storage", ...
    label: str  # as printed
    value: float | None  # None: not estimated; `missing` says how it reads, `basis` why
    unit: str  # blocks, km2, tiles, USD, s, bytes, core-hours, GPU-hours
    basis: str
    missing: str = "not estimated"

    def to_dict(self) -> dict:
        return asdict(self)
