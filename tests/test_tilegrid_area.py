import math

import mercantile
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pyproj import Geod

from mapper.grid.area import masked_area_m2, row_pixel_areas
from mapper.grid.blocks import Block
from mapper.grid.tilegrid import (
    TILE_SIZE,
    global_pixel_to_lonlat,
    lonlat_to_global_pixel,
    pixel_size,
)

GEOD = Geod(ellps="WGS84")


def test_pixel_size_z16():
    assert pixel_size(16) == pytest.approx(2.388657133911758, abs=1e-12)


@given(st.floats(-179.9, 179.9), st.floats(-84.9, 84.9))
def test_lonlat_pixel_round_trip(lon, lat):
    c, r = lonlat_to_global_pixel(lon, lat, 16)
    lon2, lat2 = global_pixel_to_lonlat(c, r, 16)
    assert lon2 == pytest.approx(lon, abs=1e-9)
    assert lat2 == pytest.approx(lat, abs=1e-9)


@given(st.floats(-179.9, 179.9), st.floats(-84.9, 84.9))
def test_tile_of_pixel_matches_mercantile(lon, lat):
    c, r = lonlat_to_global_pixel(lon, lat, 16)
    # Within floating-point noise of a tile edge either side is right (mercantile rounds with its own epsilon).
    assume(min(c % TILE_SIZE, TILE_SIZE - c % TILE_SIZE, r % TILE_SIZE, TILE_SIZE - r % TILE_SIZE) > 1e-6)
    t = mercantile.tile(lon, lat, 16)
    assert (int(c // TILE_SIZE), int(r // TILE_SIZE)) == (t.x, t.y)


def test_block_window_is_about_2330_by_2531_at_23n():
    w = Block.containing(113.3, 23.1).window(16)
    assert w.width in (2330, 2331)
    assert 2525 <= w.height <= 2540
    assert 100 <= len(w.tiles()) <= 120


def test_adjacent_blocks_partition_pixels():
    a = Block.containing(113.3, 23.1)
    east, north = Block(a.ix + 1, a.iy), Block(a.ix, a.iy + 1)
    wa, we, wn = a.window(), east.window(), north.window()
    assert wa.col1 == we.col0 and wa.row0 == wn.row1


@pytest.mark.parametrize("lat", [0.52, 23.1, 45.0, 60.0])
def test_block_pixel_area_equals_geodesic_area(lat):
    block = Block.containing(100.0, lat)
    w = block.window()
    west, south, east, north = block.bounds
    geodesic = abs(GEOD.polygon_area_perimeter([west, east, east, west], [south, south, north, north])[0])
    ours = masked_area_m2(np.ones(w.shape, bool), w)
    assert ours == pytest.approx(geodesic, rel=0.005)
    # The window covers the block by pixel centres: exact to a pixel row/column (< 0.1 %).
    assert ours == pytest.approx(geodesic, rel=1e-3)


def test_pixel_area_is_ellipsoidal_not_spherical():
    w = Block.containing(113.3, 23.1).window()
    lat = np.radians(w.row_center_latitudes()[0])
    spherical = (pixel_size(16) * math.cos(lat)) ** 2
    ours = row_pixel_areas(w)[0]
    assert ours == pytest.approx(spherical, rel=0.01)
    assert abs(ours / spherical - 1) > 0.003  # the ellipsoid correction is real at 23°N
    # Summing mercator pixels without the correction overstates ground area by ~18 % at 23°N.
    assert pixel_size(16) ** 2 / ours == pytest.approx(1 / math.cos(lat) ** 2, rel=0.01)
