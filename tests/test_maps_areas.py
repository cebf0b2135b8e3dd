"""Cropland per administrative unit: pixel-centre labels, true ground m², nothing counted twice or lost."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import Polygon, box

from mapper.grid.admin import prefectures_frame, resolve_province
from mapper.grid.area import masked_area_m2, row_pixel_areas
from mapper.grid.blocks import Block
from mapper.grid.region import blocks_of_polygon
from mapper.grid.tilegrid import PixelWindow, global_pixel_to_lonlat, lonlat_to_global_pixel, mercator_to_lonlat
from mapper.maps.areas import cropland_by_unit, unit_areas_m2, unit_labels, window_area_m2

GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def small():
    """A 60 × 50 px z16 window near Guangzhou and three units given in global pixel coordinates."""
    c, r = (int(v) for v in lonlat_to_global_pixel(113.3, 23.1, 16))
    window = PixelWindow(16, c, r, c + 60, r + 50)
    rect_a = [(c - 5.3, r + 4.3), (c + 30.3, r + 4.3), (c + 30.3, r + 41.7), (c - 5.3, r + 41.7)]
    rect_b = [(c + 30.3, r + 4.3), (c + 70.0, r + 4.3), (c + 70.0, r + 41.7), (c + 30.3, r + 41.7)]  # touches A
    triangle = [(c + 40.2, r - 8.1), (c + 55.7, r + 30.4), (c + 20.6, r + 52.9)]  # overlaps A and B
    pixel_polys = [rect_a, rect_b, triangle]
    geoms = [Polygon(np.column_stack(global_pixel_to_lonlat(*np.array(p).T, 16))) for p in pixel_polys]
    rng = np.random.default_rng(7)
    mask = rng.choice(np.array([0, 1, 255], dtype=np.uint8), size=window.shape, p=[0.4, 0.5, 0.1])
    return window, geoms, pixel_polys, mask


def _brute_labels(window: PixelWindow, pixel_polys) -> np.ndarray:
    """Pixel-centre rule in global pixel space, one pixel at a time; later polygons win."""
    polys = [Polygon(p) for p in pixel_polys]
    out = np.zeros(window.shape, dtype=np.uint16)
    for i in range(window.height):
        for j in range(window.width):
            centre = shapely.Point(window.col0 + j + 0.5, window.row0 + i + 0.5)
            for k, poly in enumerate(polys):
                if poly.contains(centre):
                    out[i, j] = k + 1
    return out


def _pixel_ground_area(window: PixelWindow, i: int) -> float:
    """Geodesic area of one pixel of row i, independently of mapper.grid.area."""
    col, row = window.col0, window.row0 + i
    lon, lat = global_pixel_to_lonlat(
        np.array([col, col + 1, col + 1, col]), np.array([row, row, row + 1, row + 1]), 16
    )
    return abs(GEOD.polygon_area_perimeter(lon, lat)[0])


def test_labels_and_areas_match_a_per_pixel_loop(small):
    window, geoms, pixel_polys, mask = small
    labels = unit_labels(window, geoms)
    assert labels.dtype == np.uint16 and labels.shape == window.shape
    expected = _brute_labels(window, pixel_polys)
    np.testing.assert_array_equal(labels, expected)
    assert set(np.unique(labels)) == {0, 1, 2, 3}  # the triangle overlaps both rectangles and the outside

    crop = np.zeros(3)
    total = np.zeros(3)
    for i in range(window.height):
        a = _pixel_ground_area(window, i)
        for j in range(window.width):
            k = expected[i, j]
            if k:
                total[k - 1] += a
                crop[k - 1] += a if mask[i, j] == 1 else 0.0
    np.testing.assert_allclose(cropland_by_unit(mask, window, labels, 3), crop, rtol=1e-7)
    np.testing.assert_allclose(unit_areas_m2(window, labels, 3), total, rtol=1e-7)


def test_no_data_and_non_cropland_pixels_do_not_count(small):
    window, geoms, _, _ = small
    labels = unit_labels(window, geoms)
    for value in (0, 255):
        mask = np.full(window.shape, value, dtype=np.uint8)
        assert cropland_by_unit(mask, window, labels, 3).tolist() == [0.0, 0.0, 0.0]
    everything = np.ones(window.shape, dtype=np.uint8)
    np.testing.assert_allclose(cropland_by_unit(everything, window, labels, 3), unit_areas_m2(window, labels, 3))
    as_bool = cropland_by_unit(everything.astype(bool), window, labels, 3)
    np.testing.assert_array_equal(as_bool, cropland_by_unit(everything, window, labels, 3))


def test_two_adjacent_units_covering_a_block_count_every_pixel_once():
    block = Block.containing(113.3, 23.1)
    window = block.window(16)
    w, s, e, n = block.bounds
    pad = 0.01
    # A shared diagonal edge with vertices off the pixel lattice: units touch but do not overlap.
    cut = [(w - pad, s + 0.0123), (w + 0.0271, s + 0.0317), (e + pad, n - 0.0089)]
    south_east = Polygon([*cut, (e + pad, s - pad), (w - pad, s - pad)])
    north_west = Polygon([*cut[::-1], (w - pad, n + pad), (e + pad, n + pad)])
    assert south_east.touches(north_west)
    labels = unit_labels(window, [south_east, north_west])
    assert labels.min() == 1 and labels.max() == 2  # no pixel left out, both units present

    rng = np.random.default_rng(3)
    mask = rng.choice(np.array([0, 1, 255], dtype=np.uint8), size=window.shape)
    per_unit = cropland_by_unit(mask, window, labels, 2)
    assert (per_unit > 0).all()
    # one pixel is ~5 m² of the block's 28 km² (2e-7): rel=1e-9 leaves room for float summation only
    assert per_unit.sum() == pytest.approx(masked_area_m2(mask == 1, window), rel=1e-9)
    assert unit_areas_m2(window, labels, 2).sum() == pytest.approx(window_area_m2(window), rel=1e-9)
    assert np.bincount(labels.ravel(), minlength=3)[1:].sum() == labels.size
    # the same geometries in the other order label the same pixels: nothing lies in both
    swapped = unit_labels(window, [north_west, south_east])
    np.testing.assert_array_equal(swapped, np.where(labels == 1, 2, 1))


def test_real_prefectures_share_a_block_without_gap_or_overlap():
    """Block 5812_2229 lies inside Guangdong across the Zhanjiang / Maoming boundary of the packaged ADM2 data."""
    prefectures = prefectures_frame().set_index("ADM2_PCODE").geometry
    geoms = [prefectures["CN044180"], prefectures["CN044090"]]
    block = Block.parse("5812_2229")
    window = block.window(16)
    labels = unit_labels(window, geoms)
    assert labels.min() == 1  # every pixel in exactly one prefecture
    areas = unit_areas_m2(window, labels, 2)
    assert areas.sum() == pytest.approx(window_area_m2(window), rel=1e-9)
    expected = shapely.area(shapely.intersection(block.polygon, geoms)) / shapely.area(block.polygon)
    np.testing.assert_allclose(areas / areas.sum(), expected, atol=0.01)
    mask = np.zeros(window.shape, dtype=np.uint8)
    mask[::3] = 1
    assert cropland_by_unit(mask, window, labels, 2).sum() == pytest.approx(masked_area_m2(mask == 1, window), rel=1e-9)


def test_all_cropland_polygon_area_matches_its_geodesic_area():
    window = Block.containing(113.3, 23.1).window(16)
    # ~8 km² irregular pentagon inside the block 113.30-113.35 E, 23.10-23.15 N
    poly = Polygon(
        [(113.3071, 23.1093), (113.3262, 23.1041), (113.3393, 23.1208), (113.3315, 23.1362), (113.3103, 23.1297)]
    )
    geodesic_m2 = abs(GEOD.geometry_area_perimeter(poly)[0])
    assert 1e6 < geodesic_m2 < 1e7
    labels = unit_labels(window, [poly])
    mapped = cropland_by_unit(np.ones(window.shape, dtype=np.uint8), window, labels, 1)[0]
    assert mapped == pytest.approx(geodesic_m2, rel=1e-3)


def test_border_block_fraction_matches_blocks_of_polygon():
    guangdong = resolve_province("Guangdong").geometry
    blocks = blocks_of_polygon(guangdong)
    border = blocks[(blocks["frac_inside"] > 0.2) & (blocks["frac_inside"] < 0.8)].head(3)
    assert len(border) == 3
    for row in border.itertuples():
        window = Block(int(row.ix), int(row.iy)).window(16)
        labels = unit_labels(window, [guangdong])
        frac = unit_areas_m2(window, labels, 1)[0] / window_area_m2(window)
        assert frac == pytest.approx(row.frac_inside, abs=0.01), row.block_id


def test_window_inside_one_unit_is_filled_and_agrees_with_rasterizing(small):
    window = small[0]
    west, south, east, north = window.mercator_bounds
    (lon0, lon1), (lat0, lat1) = mercator_to_lonlat([west, east], [south, north])
    big = box(lon0 - 0.01, lat0 - 0.01, lon1 + 0.01, lat1 + 0.01)
    assert (unit_labels(window, [big]) == 1).all()  # fast path
    tiny = box(lon0 + 1e-5, lat0 + 1e-5, lon0 + 2e-5, lat0 + 2e-5)
    assert (unit_labels(window, [tiny, big]) == 2).all()  # rasterized, the later unit covers the tiny one


def test_units_away_from_the_window_are_absent(small):
    window, geoms, _, _ = small
    far = box(100.0, 30.0, 100.1, 30.1)
    labels = unit_labels(window, [far, None, Polygon(), *geoms])
    assert not np.isin(labels, [1, 2, 3]).any()
    np.testing.assert_array_equal(labels, np.where(unit_labels(window, geoms) > 0, unit_labels(window, geoms) + 3, 0))
    assert unit_labels(window, []).sum() == 0
    areas = unit_areas_m2(window, labels, 6)
    assert areas[:3].tolist() == [0.0, 0.0, 0.0]


def test_unit_areas_sum_rows_of_exact_pixel_areas(small):
    window = small[0]
    labels = np.ones(window.shape, dtype=np.uint16)
    assert unit_areas_m2(window, labels, 1)[0] == pytest.approx(row_pixel_areas(window).sum() * window.width)


def test_bad_inputs_name_the_problem(small):
    window, geoms, _, mask = small
    labels = unit_labels(window, geoms)
    with pytest.raises(ValueError, match="mask shape"):
        cropland_by_unit(mask[:-1], window, labels, 3)
    with pytest.raises(ValueError, match="uint8"):
        cropland_by_unit(mask.astype(np.float32), window, labels, 3)
    with pytest.raises(ValueError, match="labels shape"):
        cropland_by_unit(mask, window, labels[:, :-1], 3)
    with pytest.raises(ValueError, match="integer"):
        unit_areas_m2(window, labels.astype(np.float64), 3)
    with pytest.raises(ValueError, match="n_units"):
        cropland_by_unit(mask, window, labels, 2)
    mercator = shapely.box(*window.mercator_bounds)
    with pytest.raises(ValueError, match="EPSG:4326"):
        unit_labels(window, [mercator])
