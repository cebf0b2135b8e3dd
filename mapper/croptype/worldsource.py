"""The simulated world's Sentinel-2 as what the reader returns (an S2Stack), and its truth per pixel.

The world computes the acquisitions in memory (mapper.world.sentinel2); everything after this point —
cloud masking from SCL, compositing, parcel series — is the code that serves a user's downloaded files.
`mapper croptype export-s2` writes the same acquisitions as per-date GeoTIFFs (s2write) for QGIS or for a
round trip through the file reader.
"""

from __future__ import annotations

import numpy as np
from rasterio.crs import CRS

from mapper.croptype.s2read import SCL_INVALID, S2Stack
from mapper.world.sentinel2 import SimulatedS2, simulate_block


def world_stack(sim: SimulatedS2) -> S2Stack:
    valid = ~np.isin(sim.scl, SCL_INVALID) & (sim.data[:, 0] > 0)
    return S2Stack(
        data=sim.data,
        valid=valid,
        dates=list(sim.dates),
        bands=tuple(sim.bands),
        crs=CRS.from_wkt(sim.crs.to_wkt()),
        transform=sim.transform,
        sources=(),
        cloud_masked=True,
        layout="world",
    )


def simulate_stack(world, bounds, year: int | None = None) -> tuple[S2Stack, SimulatedS2]:
    sim = simulate_block(world, bounds) if year is None else simulate_block(world, bounds, year=year)
    return world_stack(sim), sim
