"""mapper.maps.polygons: cropland polygons of a block are exact (pixels, area, holes), cut by units with their
area apportioned, and gathered into one GeoPackage per unit."""

from __future__ import annotations

import cv2
import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
from affine import Affine
from rasterio.features import rasterize, shapes

from mapper.grid.area import equal_area_m2, masked_area_m2, row_pixel_areas
from mapper.grid.blocks import Block
from mapper.grid.tilegrid import PixelWindow, global_pixel_to_lonlat, lonlat_to_mercator
from mapper.maps.polygons import (
    _repair,
    ascii_safe,
    block_polygons,
    cut_by_units,
    read_block_polygons,
    unit_geopackage_path,
    write_block_polygons,
    write_unit_geopackages,
)

GUANGZHOU = Block(5866, 2262).window()  # z16, 23.1°N


def small_window(dc: int = 0, dr: int = 0, w: int = 200, h: int = 180) -> PixelWindow:
    c, r = GUANGZHOU.col0 + 37 + dc, GUANGZHOU.row0 + 51 + dr
    return PixelWindow(16, c, r, c + w, r + h)


def blob_mask(shape, seed: int = 0, sigma: float = 2.5) -> np.ndarray:
    """uint8 0/1/255: smoothed-noise blobs (holes, diagonal contacts, islands), a nodata corner, and
    hand-placed cases: a ring with a hole, a diagonal chain, a pinched shell, a hole touching the outside
    at a corner."""
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    m = (field > 0).astype(np.uint8)
    m[::7, ::5] ^= 1  # single pixels and diagonal contacts
    m[-30:, -40:] = 255  # no imagery
    m[2:9, 2:9] = 1
    m[4:7, 4:7] = 0  # a ring with a hole
    m[5, 5] = 1  # an island in the hole (its own component)
    m[0:12, 10:22] = 0
    for k in range(6):  # a diagonal chain: one 8-connected component
        m[1 + k, 11 + k] = 1
    m[12:18, 0:8] = 0
    m[12:14, 0:2] = m[14:16, 2:4] = 1  # pinched shell
    m[20:25, 0:5] = 1
    m[22, 2] = 0
    m[23, 3] = 0  # hole pixel diagonal to another hole pixel
    return m


def to_mercator(geoms):
    return shapely.transform(np.asarray(geoms), lambda xy: np.column_stack(lonlat_to_mercator(xy[:, 0], xy[:, 1])))


def rasterize_back(gdf: gpd.GeoDataFrame, window: PixelWindow, values=None) -> np.ndarray:
    geoms = to_mercator(gdf.geometry.values)
    vals = np.ones(len(geoms), np.int32) if values is None else values
    if len(geoms) == 0:
        return np.zeros(window.shape, np.int32)
    return rasterize(
        zip(geoms, vals, strict=True), out_shape=window.shape, transform=window.transform, fill=0, dtype="int32"
    )


@pytest.fixture(scope="module")
def case():
    window = small_window()
    mask = blob_mask(window.shape)
    return window, mask, block_polygons(mask, window, "b0")


# ------------------------------------------------------------------------------------------------ one block
def test_columns_crs_and_one_row_per_8_connected_component(case):
    window, mask, gdf = case
    assert list(gdf.columns) == ["block_id", "area_m2", "geometry"]
    assert gdf.crs.to_epsg() == 4326
    n, _ = cv2.connectedComponents((mask == 1).astype(np.uint8), connectivity=8)
    assert len(gdf) == n - 1
    assert (gdf["block_id"] == "b0").all()
    assert set(gdf.geom_type) <= {"Polygon", "MultiPolygon"}
    assert "MultiPolygon" in set(gdf.geom_type)  # the diagonal contacts
    assert shapely.is_valid(gdf.geometry.values).all()
    w, s, e, n_ = gdf.total_bounds
    west, north = global_pixel_to_lonlat(window.col0, window.row0, 16)
    east, south = global_pixel_to_lonlat(window.col1, window.row1, 16)
    assert w >= west - 1e-12 and e <= east + 1e-12 and s >= south - 1e-12 and n_ <= north + 1e-12


def test_area_is_true_ground_area_of_the_pixels(case):
    window, mask, gdf = case
    assert gdf["area_m2"].sum() == pytest.approx(masked_area_m2(mask == 1, window), rel=1e-12)
    # Per polygon: its own pixels, counted back by rasterising it alone.
    labels = rasterize_back(gdf, window, np.arange(1, len(gdf) + 1, dtype=np.int32))
    per_row = row_pixel_areas(window)
    expected = np.bincount(labels.ravel(), weights=np.repeat(per_row, window.width), minlength=len(gdf) + 1)[1:]
    np.testing.assert_allclose(gdf["area_m2"].to_numpy(), expected, rtol=1e-12)
    # And the polygons' ellipsoidal area (equal-area projection) is the same number.
    np.testing.assert_allclose(equal_area_m2(gdf.geometry.values), expected, rtol=1e-8)


def test_rasterising_the_polygons_gives_the_mask_back(case):
    window, mask, gdf = case
    back = rasterize_back(gdf, window)
    np.testing.assert_array_equal(back == 1, mask == 1)
    # No polygon overlaps another: rasterised one by one, the counts add up to the mask.
    geoms = to_mercator(gdf.geometry.values)
    total = sum(
        rasterize([(g, 1)], out_shape=window.shape, transform=window.transform, dtype="uint8").astype(int)
        for g in geoms
    )
    assert total.max() == 1


def test_holes_diagonals_and_islands_on_hand_made_shapes():
    window = small_window(w=12, h=10)
    m = np.zeros(window.shape, np.uint8)
    m[1:6, 1:6] = 1
    m[2:5, 2:5] = 0
    m[3, 3] = 1  # ring + hole + island
    m[7, 7] = m[8, 8] = 1  # diagonal pair: one component, two squares touching at a corner
    m[0:3, 8:11] = 1
    m[1, 10] = 0  # notch open to the outside: no hole
    gdf = block_polygons(m, window, "x")
    assert len(gdf) == 4
    kinds = sorted(
        (g.geom_type, shapely.get_num_interior_rings(g) if g.geom_type == "Polygon" else -1) for g in gdf.geometry
    )
    assert kinds == [("MultiPolygon", -1), ("Polygon", 0), ("Polygon", 0), ("Polygon", 1)]
    np.testing.assert_array_equal(rasterize_back(gdf, window), m)


def test_repair_equals_shapely_make_valid():
    """The fast repair of diagonal self-contacts gives make_valid's geometry, on many random components."""
    rng = np.random.default_rng(3)
    checked = 0
    for seed in range(4):
        field = cv2.GaussianBlur(rng.standard_normal((160, 170)).astype(np.float32), (0, 0), 1.2 + seed * 0.6)
        m = (field > 0.1 * seed).astype(np.uint8)
        m[::3, ::4] ^= 1
        _, labels = cv2.connectedComponents(m, connectivity=8, ltype=cv2.CV_32S)
        for geom, value in shapes(labels, mask=labels > 0, connectivity=8, transform=Affine.identity()):
            poly = shapely.geometry.shape(geom)
            if poly.is_valid:
                continue
            fast = _repair(poly, labels, int(value))
            assert fast.is_valid
            assert shapely.equals(fast, shapely.make_valid(poly, method="structure"))
            assert fast.area == pytest.approx(poly.area, abs=1e-9)
            checked += 1
    assert checked > 20


def test_empty_mask_and_bad_shape():
    window = small_window(w=20, h=10)
    empty = block_polygons(np.zeros(window.shape, np.uint8), window, "e")
    assert len(empty) == 0 and list(empty.columns) == ["block_id", "area_m2", "geometry"]
    assert empty.crs.to_epsg() == 4326
    with_units = block_polygons(np.full(window.shape, 255, np.uint8), window, "e", units=units_split(window, 10))
    assert list(with_units.columns) == ["block_id", "unit_code", "unit_name", "area_m2", "geometry"]
    with pytest.raises(ValueError, match="does not match the block grid"):
        block_polygons(np.zeros((3, 3), np.uint8), window, "e")


def test_bool_mask_is_the_same_as_uint8(case):
    window, mask, gdf = case
    other = block_polygons(mask == 1, window, "b0")
    np.testing.assert_allclose(np.sort(other["area_m2"]), np.sort(gdf["area_m2"]))


# ------------------------------------------------------------------------------------------------ unit cuts
def units_split(window: PixelWindow, col: int, slant: float = 0.0, codes=("U1", "U2")) -> gpd.GeoDataFrame:
    """Two units that split the window at pixel column `col` (a meridian), optionally slanted by `slant`
    pixels over the window's height; both reach well past the window."""
    lon_top = global_pixel_to_lonlat(window.col0 + col, window.row0, 16)[0]
    lon_bottom = global_pixel_to_lonlat(window.col0 + col + slant, window.row1, 16)[0]
    lon_w = global_pixel_to_lonlat(window.col0 - 50, 0, 16)[0]
    lon_e = global_pixel_to_lonlat(window.col1 + 50, 0, 16)[0]
    lat_n = global_pixel_to_lonlat(0, window.row0 - 50, 16)[1]
    lat_s = global_pixel_to_lonlat(0, window.row1 + 50, 16)[1]
    lat_top = global_pixel_to_lonlat(0, window.row0, 16)[1]
    lat_bottom = global_pixel_to_lonlat(0, window.row1, 16)[1]
    # The dividing line, extended to the units' outer edges along its own direction.
    dx = (lon_bottom - lon_top) / (lat_bottom - lat_top)
    x_n, x_s = lon_top + dx * (lat_n - lat_top), lon_top + dx * (lat_s - lat_top)
    west = shapely.Polygon([(lon_w, lat_n), (x_n, lat_n), (x_s, lat_s), (lon_w, lat_s)])
    east = shapely.Polygon([(x_n, lat_n), (lon_e, lat_n), (lon_e, lat_s), (x_s, lat_s)])
    return gpd.GeoDataFrame({"code": list(codes), "name": ["West Shì", "东"]}, geometry=[west, east], crs=4326)


def test_cut_on_a_pixel_column_is_exact(case):
    window, mask, _ = case
    units = units_split(window, 83)
    cut = block_polygons(mask, window, "b0", units=units)
    assert list(cut.columns) == ["block_id", "unit_code", "unit_name", "area_m2", "geometry"]
    by_unit = cut.groupby("unit_code")["area_m2"].sum()
    crop = mask == 1
    west = np.zeros_like(crop)
    west[:, :83] = crop[:, :83]
    assert by_unit["U1"] == pytest.approx(masked_area_m2(west, window), rel=1e-9)
    assert by_unit["U2"] == pytest.approx(masked_area_m2(crop & ~west, window), rel=1e-9)
    assert set(cut["unit_name"]) == {"West Shì", "东"}
    # Each unit's pieces rasterise to the mask's pixels on its side.
    np.testing.assert_array_equal(rasterize_back(cut[cut.unit_code == "U1"], window) == 1, west)
    assert shapely.is_valid(cut.geometry.values).all()


def test_cut_by_a_slanted_border_keeps_the_total(case):
    window, _, gdf = case
    units = units_split(window, 60, slant=90.0)
    cut = cut_by_units(gdf, units)
    total = gdf["area_m2"].sum()
    assert cut["area_m2"].sum() == pytest.approx(total, rel=1e-3)
    assert cut["area_m2"].sum() == pytest.approx(total, rel=1e-9)  # in fact to rounding
    assert len(cut) > len(gdf)  # polygons on the border were split
    # Polygons that lie in one unit keep their exact pixel area; the pieces of a split one add up to it.
    geoms = gdf.geometry.values
    inside = shapely.contains_properly(units.geometry.iloc[0], geoms) | shapely.contains_properly(
        units.geometry.iloc[1], geoms
    )
    assert 0 < inside.sum() < len(gdf)
    assert np.isin(gdf["area_m2"].to_numpy()[inside], cut["area_m2"].to_numpy()).all()


def test_pieces_outside_every_unit_are_dropped(case):
    window, mask, gdf = case
    west_only = units_split(window, 100).iloc[:1]
    cut = cut_by_units(gdf, west_only)
    crop = mask == 1
    west = np.zeros_like(crop)
    west[:, :100] = crop[:, :100]
    assert cut["area_m2"].sum() == pytest.approx(masked_area_m2(west, window), rel=1e-9)
    assert set(cut["unit_code"]) == {"U1"}


def test_units_must_have_code_and_name(case):
    gdf = case[2]
    bad = gpd.GeoDataFrame({"ADM2_PCODE": ["x"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326)
    with pytest.raises(ValueError, match="units_from_prefectures"):
        cut_by_units(gdf, bad)


# ------------------------------------------------------------------------------------------------ files
def test_block_polygons_geoparquet_round_trip(case, tmp_path):
    gdf = case[2]
    path = write_block_polygons(gdf, tmp_path / "p" / "b0.parquet")
    back = read_block_polygons(path)
    assert back.crs.to_epsg() == 4326
    assert list(back.columns) == list(gdf.columns)
    assert shapely.equals_exact(back.geometry.values, gdf.geometry.values, tolerance=0).all()
    np.testing.assert_array_equal(back["area_m2"], gdf["area_m2"])
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["b0.parquet"]  # no temporary file left


def test_unit_geopackages(tmp_path):
    units = units_split(small_window(), 83)
    extra = gpd.GeoDataFrame({"code": ["U3"], "name": ["Nowhere"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326)
    units = gpd.GeoDataFrame(
        gpd.pd.concat([units, extra], ignore_index=True), geometry="geometry", crs=4326
    )  # U3 gets no polygons
    paths, expected = [], []
    for k, (dc, dr) in enumerate([(0, 0), (0, 180), (-200, 0)]):  # three blocks, one west of the split
        window = small_window(dc, dr)
        mask = blob_mask(window.shape, seed=k)
        uncut = block_polygons(mask, window, f"b{k}")
        expected.append(cut_by_units(uncut, units))
        stored = uncut if k == 1 else expected[-1]  # b1 is stored uncut and cut when gathered
        paths.append(write_block_polygons(stored, tmp_path / "blocks" / f"b{k}.parquet"))
    expected = gpd.pd.concat(expected, ignore_index=True)
    out = tmp_path / "polygons"
    out.mkdir()
    stale = unit_geopackage_path(out, "U3", "Nowhere")
    stale.write_bytes(b"old")
    written = write_unit_geopackages(paths, out, units, chunk_blocks=2)
    assert [p.name for p in written] == ["U1_West_Shi.gpkg", "U2_unit.gpkg"]
    assert not stale.exists()  # a unit without polygons has no file (an old one is removed)
    assert sorted(p.name for p in out.iterdir()) == ["U1_West_Shi.gpkg", "U2_unit.gpkg"]
    for path, code in zip(written, ["U1", "U2"], strict=True):
        assert pyogrio.list_layers(path).tolist() == [["cropland", "MultiPolygon"]]
        back = gpd.read_file(path, layer="cropland")
        assert back.crs.to_epsg() == 4326
        assert list(back.columns) == ["block_id", "unit_code", "unit_name", "area_m2", "geometry"]
        mine = expected[expected.unit_code == code]
        assert len(back) == len(mine)
        assert set(back["block_id"]) == set(mine["block_id"])
        assert back["area_m2"].sum() == pytest.approx(mine["area_m2"].sum(), rel=1e-12)
        assert (back["unit_code"] == code).all()
        assert back.geometry.is_valid.all()
    assert gpd.read_file(written[1])["unit_name"].iloc[0] == "东"


def test_ascii_safe_names():
    assert ascii_safe("Guangzhou Shi") == "Guangzhou_Shi"
    assert ascii_safe("Zhàoqìng/肇庆") == "Zhaoqing"
    assert ascii_safe("广州") == "unit"


@pytest.mark.slow
def test_a_realistic_block():
    """A full z16 block with ~3,000 components (one percolating): valid, exact area, mask round trip."""
    window = GUANGZHOU
    rng = np.random.default_rng(0)
    fine = cv2.GaussianBlur(rng.standard_normal(window.shape).astype(np.float32), (0, 0), 3.5)
    coarse = cv2.GaussianBlur(rng.standard_normal(window.shape).astype(np.float32), (0, 0), 21)
    field = fine / fine.std() + 0.8 * coarse / coarse.std()
    mask = (field > np.median(field)).astype(np.uint8)
    gdf = block_polygons(mask, window, "5866_2262")
    assert len(gdf) > 2000
    assert shapely.is_valid(gdf.geometry.values).all()
    assert gdf["area_m2"].sum() == pytest.approx(masked_area_m2(mask == 1, window), rel=1e-12)
    np.testing.assert_array_equal(rasterize_back(gdf, window) == 1, mask == 1)
