"""Sentinel-2 L2A reading (three layouts, header checks), compositing onto the series' steps, parcel series."""

import datetime as dt
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from rasterio.windows import Window

from mapper.croptype import series
from mapper.croptype.composite import CompositeError, composite, composite_bands
from mapper.croptype.parcels import parcel_series, pixel_membership
from mapper.croptype.s2read import MissingBandsError, S2ReadError, S2Stack, read_s2, require_bands

SHARED = Path(__file__).resolve().parents[2] / "shared"
FTW = SHARED / "data" / "imagery" / "ftw_austria" / "inference-img.tif"
FTW_BANDS = ("B2", "B3", "B4", "B8")
ORIGIN = (500000.0, 5300000.0)  # UTM 33N
DATES = [dt.date(2020, 5, 3), dt.date(2020, 5, 8), dt.date(2020, 6, 12)]


def write_tif(path, data, crs="EPSG:32633", res=10.0, origin=ORIGIN, descriptions=None, tags=None, nodata=0):
    data = np.asarray(data)
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype)
    with rasterio.open(path, "w", **profile, crs=crs, transform=from_origin(*origin, res, res), nodata=nodata) as ds:
        ds.write(data)
        for i, d in enumerate(descriptions or []):
            ds.set_band_description(i + 1, d)
        if tags:
            ds.update_tags(**tags)
    return path


def world_like(folder, n_dates=3, h=6, w=7, seed=0, scl=None):
    """Files as the simulated world writes them: S2_YYYYMMDD.tif, B2…B12 then SCL, ACQUISITION_DATE."""
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    cubes = rng.integers(1, 10000, size=(n_dates, len(series.BANDS), h, w), dtype=np.uint16)
    scls = np.full((n_dates, h, w), 4, np.uint16) if scl is None else scl
    for d, when in enumerate(DATES[:n_dates]):
        write_tif(folder / f"S2_{when:%Y%m%d}.tif", np.concatenate([cubes[d], scls[d][None]]),
                  descriptions=[*series.BANDS, "SCL"], tags={"ACQUISITION_DATE": when.isoformat()})  # fmt: skip
    return cubes, scls


# ---- the real FTW stack (layout c) -------------------------------------------------------------------------


@pytest.mark.skipif(not FTW.exists(), reason="shared reference data not present")
def test_ftw_stack_reads_like_rasterio(tmp_path):
    stack = read_s2(FTW, bands=FTW_BANDS, dates=["2021-05-01", "2021-07-15"])
    assert stack.data.shape == (2, 4, 379, 578) and stack.data.dtype == np.uint16
    assert stack.crs.to_epsg() == 32633 and stack.bands == FTW_BANDS and stack.layout == "stack"
    with rasterio.open(FTW) as ds:
        direct = ds.read().reshape(2, 4, 379, 578)
        transform = ds.transform
    assert np.array_equal(stack.data, direct) and stack.transform == transform
    assert np.array_equal(stack.valid, (direct > 0).all(axis=1))
    (tmp_path / "dates.txt").write_text("# FTW window dates\n2021-07-15\n\n2021-05-01\n")
    with pytest.raises(S2ReadError, match=r"repeat|duplicate"):
        read_s2(FTW, bands=FTW_BANDS, dates=["2021-05-01", "2021-05-01"])
    # A dates file in the stack's order; the result is sorted by date.
    flipped = read_s2(FTW, bands=FTW_BANDS, dates_file=tmp_path / "dates.txt")
    assert flipped.dates == [dt.date(2021, 5, 1), dt.date(2021, 7, 15)]
    assert np.array_equal(flipped.data, direct[::-1])
    # A block's part of the file: a Window or bounds in the file's CRS.
    part = read_s2(FTW, bands=FTW_BANDS, dates=["2021-05-01", "2021-07-15"], window=Window(100, 50, 40, 30))
    assert np.array_equal(part.data, direct[:, :, 50:80, 100:140])
    left, top = transform @ (100, 50)
    by_bounds = read_s2(FTW, bands=FTW_BANDS, dates=["2021-05-01", "2021-07-15"],
                        window=(left + 3, top - 300, left + 400, top - 1))  # fmt: skip
    assert np.array_equal(by_bounds.data, part.data) and by_bounds.transform == part.transform


@pytest.mark.skipif(not FTW.exists(), reason="shared reference data not present")
def test_ftw_stack_errors():
    with pytest.raises(S2ReadError, match="pass --dates or a dates file"):
        read_s2(FTW, bands=FTW_BANDS)
    with pytest.raises(S2ReadError, match="8 layers, not a multiple of the 3 bands"):
        read_s2(FTW, bands=("B2", "B3", "B4"), dates=["2021-05-01", "2021-07-15"])
    with pytest.raises(S2ReadError, match="pass the bands"):
        read_s2(FTW, dates=["2021-05-01", "2021-07-15"])
    with pytest.raises(S2ReadError, match="one year"):
        read_s2(FTW, bands=FTW_BANDS, dates=["2021-05-01", "2022-05-01"])


def test_require_bands_names_the_missing():
    with pytest.raises(MissingBandsError, match=r"missing B5, B6, B7, B8A, B11, B12:"):
        require_bands(FTW_BANDS, series.BANDS)
    assert require_bands(("B02", "B8", "B03"), ("B3", "B2")) == (2, 0)


# ---- layout (a): one file per date -------------------------------------------------------------------------


def test_per_date_files_read_back_exactly(tmp_path):
    scl = np.full((3, 6, 7), 4, np.uint16)
    scl[0, 0, 0], scl[1, 2, 3], scl[2, 5, 6], scl[0, 1, 1], scl[1, 4, 4] = 9, 3, 11, 10, 7  # 7: unclassified
    cubes, _ = world_like(tmp_path / "s2", scl=scl)
    cubes[2, 4, 3, 3] = 0  # nodata in one band
    write_tif(tmp_path / "s2" / "S2_20200612.tif", np.concatenate([cubes[2], scl[2][None]]),
              descriptions=[*series.BANDS, "SCL"], tags={"ACQUISITION_DATE": "2020-06-12"})  # fmt: skip
    stack = read_s2(tmp_path / "s2")
    assert stack.layout == "per-date" and stack.bands == series.BANDS and stack.dates == DATES
    assert np.array_equal(stack.data, cubes) and stack.cloud_masked
    expect = np.ones((3, 6, 7), bool)
    for d, r, c in [(0, 0, 0), (1, 2, 3), (2, 5, 6), (0, 1, 1), (2, 3, 3)]:
        expect[d, r, c] = False
    assert np.array_equal(stack.valid, expect)
    # Picking a model's bands; names like B02 normalised.
    some = read_s2(sorted((tmp_path / "s2").glob("*.tif")), bands=["B08", "B02"])
    assert some.bands == ("B8", "B2") and np.array_equal(some.data, cubes[:, [6, 0]])


def test_per_date_dates_from_names_tags_or_user(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(1, 9000, size=(4, 3, 3), dtype=np.uint16)
    b = rng.integers(1, 9000, size=(4, 3, 3), dtype=np.uint16)
    names = ["B02", "B03", "B04", "B08"]
    write_tif(tmp_path / "S2B_MSIL2A_20200708T101559_N0214_R065_T33UWP.tif", a, descriptions=names)
    write_tif(tmp_path / "x.tif", b, descriptions=names, tags={"TIFFTAG_DATETIME": "2020:05:03 10:15:59"})
    stack = read_s2([tmp_path / "S2B_MSIL2A_20200708T101559_N0214_R065_T33UWP.tif", tmp_path / "x.tif"])
    assert stack.dates == [dt.date(2020, 5, 3), dt.date(2020, 7, 8)] and not stack.cloud_masked
    assert np.array_equal(stack.data, np.stack([b, a])) and stack.bands == FTW_BANDS
    write_tif(tmp_path / "y.tif", b, descriptions=names)
    with pytest.raises(S2ReadError, match=r"y\.tif: no date found .* pass --dates or a dates file"):
        read_s2([tmp_path / "x.tif", tmp_path / "y.tif"])
    got = read_s2([tmp_path / "x.tif", tmp_path / "y.tif"], dates=["2020-08-01", "2020-06-01"])
    assert got.dates == [dt.date(2020, 6, 1), dt.date(2020, 8, 1)]


def test_per_date_files_with_separate_scl_files(tmp_path):
    dn = np.full((2, 2, 2), 100, np.uint16)
    for when, scl in [("20200503", [[4, 9], [4, 4]]), ("20200508", [[4, 4], [3, 4]])]:
        write_tif(tmp_path / f"S2_{when}.tif", dn, descriptions=["B4", "B8"])
        write_tif(tmp_path / f"SCL_{when}.tif", np.array([scl], np.uint16))
    stack = read_s2(tmp_path)
    assert stack.layout == "mixed" and stack.bands == ("B4", "B8") and stack.cloud_masked
    assert stack.valid.tolist() == [[[True, False], [True, True]], [[True, True], [False, True]]]
    (tmp_path / "SCL_20200508.tif").unlink()
    with pytest.raises(S2ReadError, match="SCL is given for 1 of 2 dates, not for 2020-05-08"):
        read_s2(tmp_path)


# ---- layout (b): one file per band -------------------------------------------------------------------------


def test_per_band_files_with_a_20m_band(tmp_path):
    rng = np.random.default_rng(2)
    when = ["2020-05-03", "2020-06-12"]
    cube = {b: rng.integers(1, 9000, size=(2, 4, 6), dtype=np.uint16) for b in ("B2", "B4", "B8")}
    for b, v in cube.items():
        write_tif(tmp_path / f"T33UWP_{b.replace('B', 'B0')}_10m.tif", v, descriptions=when)
    b5 = rng.integers(1, 9000, size=(2, 2, 3), dtype=np.uint16)  # 20 m over the same extent
    write_tif(tmp_path / "T33UWP_B05_20m.tif", b5, res=20.0, descriptions=when)
    scl = np.array([[[4, 9, 4], [4, 4, 3]], [[8, 4, 4], [4, 4, 4]]], np.uint16)
    write_tif(tmp_path / "T33UWP_SCL_20m.tif", scl, res=20.0, descriptions=when)
    stack = read_s2(tmp_path)
    assert stack.layout == "per-band" and stack.bands == ("B2", "B4", "B5", "B8")
    up = b5.repeat(2, axis=1).repeat(2, axis=2)
    expect = np.stack([cube["B2"], cube["B4"], up, cube["B8"]], axis=1)
    assert np.array_equal(stack.data, expect)
    clear = ~np.isin(scl, (3, 8, 9)).repeat(2, axis=1).repeat(2, axis=2)
    assert np.array_equal(stack.valid, clear)
    # Windowed from an odd pixel: the 20 m band still lines up.
    part = read_s2(tmp_path, window=Window(1, 1, 3, 2))
    assert np.array_equal(part.data, expect[:, :, 1:3, 1:4])
    # Without date descriptions: a dates file, one date per layer.
    (tmp_path / "plain").mkdir()
    for b, v in cube.items():
        write_tif(tmp_path / "plain" / f"{b}.tif", v)
    (tmp_path / "dates.txt").write_text("2020-05-03\n2020-06-12\n")
    with pytest.raises(S2ReadError, match="pass --dates or a dates file"):
        read_s2(tmp_path / "plain")
    plain = read_s2(tmp_path / "plain", dates_file=tmp_path / "dates.txt")
    assert np.array_equal(plain.data, expect[:, [0, 1, 3]]) and plain.valid.all()


# ---- header checks before any pixel is read ------------------------------------------------------------------


def test_header_errors_name_the_file_and_the_fix(tmp_path):
    ones, BANDS2 = np.ones((2, 3, 3), np.uint16), ["B2", "B3"]
    good = write_tif(tmp_path / "S2_20200503.tif", ones, descriptions=["B2", "B3"])
    geo = write_tif(tmp_path / "S2_20200508.tif", ones, crs="EPSG:4326", res=0.0001, origin=(15.0, 47.8),
                    descriptions=["B2", "B3"])  # fmt: skip
    with pytest.raises(S2ReadError, match=r"S2_20200508\.tif is in EPSG:4326, not a UTM .*gdalwarp -t_srs EPSG:32633"):
        read_s2([good, geo])
    shifted = write_tif(tmp_path / "S2_20200508.tif", ones, origin=(ORIGIN[0] + 5, ORIGIN[1]), descriptions=BANDS2)
    with pytest.raises(S2ReadError, match=r"S2_20200508\.tif .* another grid .*gdalwarp .* -tr 10 10 -tap"):
        read_s2([good, shifted])
    zone34 = write_tif(tmp_path / "S2_20200508.tif", ones, crs="EPSG:32634", descriptions=["B2", "B3"])
    with pytest.raises(S2ReadError, match=r"S2_20200508\.tif is in EPSG:32634 but .*gdalwarp -t_srs EPSG:32633"):
        read_s2([good, zone34])
    coarse = write_tif(tmp_path / "c_20200503.tif", ones, res=20.0, descriptions=["B2", "B3"])
    with pytest.raises(S2ReadError, match=r"20 m pixels .* gdalwarp -tr 10 10"):
        read_s2(coarse)
    same_day = write_tif(tmp_path / "other.tif", ones, descriptions=BANDS2, tags={"ACQUISITION_DATE": "2020-05-03"})
    with pytest.raises(S2ReadError, match="duplicate dates"):
        read_s2([good, same_day])
    other_year = write_tif(tmp_path / "S2_20210508.tif", ones, descriptions=["B2", "B3"])
    with pytest.raises(S2ReadError, match="span 2020-05-03 … 2021-05-08"):
        read_s2([good, other_year])
    fewer = write_tif(tmp_path / "S2_20200601.tif", ones[:1], descriptions=["B2"])
    with pytest.raises(S2ReadError, match="2020-06-01 lacks B3"):
        read_s2([good, fewer])
    floats = write_tif(tmp_path / "f_20200503.tif", ones.astype(np.float32) / 10, descriptions=["B2", "B3"])
    with pytest.raises(S2ReadError, match=r"float32.*gdal_translate -ot UInt16"):
        read_s2(floats)
    with pytest.raises(S2ReadError, match="not found"):
        read_s2(tmp_path / "nope")


# ---- compositing ---------------------------------------------------------------------------------------------


def tiny_stack(days, dn, valid, year=2020) -> S2Stack:
    """A stack of 1 band over (h, w) pixels from per-date DNs (D, h, w) and validity."""
    dates = [dt.date(year, 1, 1) + dt.timedelta(days=int(d) - 1) for d in days]
    data = np.asarray(dn, np.uint16)[:, None]
    return S2Stack(data, np.asarray(valid, bool), dates, ("B4",), rasterio.crs.CRS.from_epsg(32633),
                   from_origin(*ORIGIN, 10, 10), (), cloud_masked=True)  # fmt: skip


def test_composite_means_interpolates_and_takes_edges():
    # Steps 116 … 141; dates 120 and 122 fall in step 121, 126 is cloudy, 131 clear, nothing after.
    days = [120, 122, 126, 131]
    dn = np.array([1000, 2000, 9999, 4000]).reshape(4, 1, 1) * np.ones((1, 1, 2), int)
    valid = np.array([True, True, False, True]).reshape(4, 1, 1) & np.array([True, False]).reshape(1, 1, 2)
    comp = composite(tiny_stack(days, dn, valid), steps=[116, 121, 126, 131, 136, 141])
    v = comp.values[0, :, 0, 0]
    np.testing.assert_allclose(v, [0.15, 0.15, (0.15 + 0.4) / 2, 0.4, 0.4, 0.4], rtol=1e-6)
    assert comp.n_obs[:, 0, 0].tolist() == [0, 2, 0, 1, 0, 0]
    assert comp.filled[:, 0, 0].tolist() == [True, False, True, False, True, True]
    assert comp.all_cloud.tolist() == [[False, True]] and np.isnan(comp.values[0, :, 0, 1]).all()
    assert comp.all_cloud_share == 0.5 and not comp.filled[:, 0, 1].any()
    # Uneven gaps interpolate by day: a gap of two steps between 121 and 136.
    comp = composite(tiny_stack([121, 136], [[[1000]], [[4000]]], [[[True]], [[True]]]), steps=[121, 126, 131, 136])
    np.testing.assert_allclose(comp.values[0, :, 0, 0], [0.1, 0.2, 0.3, 0.4], rtol=1e-6)


def test_composite_default_steps_and_errors(tmp_path):
    cubes, _ = world_like(tmp_path / "s2", n_dates=3, h=2, w=2)
    stack = read_s2(tmp_path / "s2")
    comp = composite_bands(stack, ["B8", "B4"])
    assert comp.values.shape == (2, series.N_STEPS, 2, 2) and comp.bands == ("B8", "B4")
    day = [d.timetuple().tm_yday for d in DATES]  # 124, 129, 164 → steps 126, 131, 166
    for k, d in enumerate(day):
        t = int(np.flatnonzero((d >= series.STEP_DAYS_OF_YEAR - 2.5) & (d < series.STEP_DAYS_OF_YEAR + 2.5))[0])
        np.testing.assert_allclose(comp.values[1, t], cubes[k, 2] / 10000, rtol=1e-6)
    with pytest.raises(MissingBandsError, match="missing B1"):
        composite_bands(stack, ["B1", "B4"])
    world_like(tmp_path / "cloudy", n_dates=3, h=2, w=2, scl=np.full((3, 2, 2), 9, np.uint16))
    with pytest.raises(CompositeError, match=r"all 3 dates are cloud or nodata over this area \(SCL\)"):
        composite(read_s2(tmp_path / "cloudy"))
    winter = tiny_stack([20, 30], [[[1000]], [[2000]]], [[[True]], [[True]]])
    with pytest.raises(CompositeError, match="within the season"):
        composite(winter)


# ---- parcel series --------------------------------------------------------------------------------------------

GRID = from_origin(*ORIGIN, 10, 10)


def test_pure_pixels_match_shapely():
    x0, y0 = ORIGIN
    polys = [
        shapely.Polygon([(x0 + 13, y0 - 7), (x0 + 118, y0 - 22), (x0 + 96, y0 - 131), (x0 + 21, y0 - 104)]),
        shapely.box(x0 + 130, y0 - 60, x0 + 190, y0 - 10).difference(shapely.box(x0 + 147, y0 - 43, x0 + 171, y0 - 27)),
        shapely.box(x0 + 120, y0 - 150, x0 + 180, y0 - 90),  # edges on pixel edges: edge pixels are pure
        shapely.Polygon([(x0 + 3, y0 - 183), (x0 + 19, y0 - 181), (x0 + 8, y0 - 196)]),  # a sliver, no pure pixel
    ]
    centre, pure = pixel_membership(np.array(polys, dtype=object), GRID, (20, 20))
    rows, cols = np.indices((20, 20))
    for i, poly in enumerate(polys):
        cells = list(zip(rows.ravel(), cols.ravel(), strict=True))
        squares = [shapely.box(*(GRID @ (c, r + 1)), *(GRID @ (c + 1, r))) for r, c in cells]
        expect = np.array([s.within(poly) for s in squares]).reshape(20, 20)
        centres = np.array([poly.contains(shapely.Point(GRID @ (c + 0.5, r + 0.5))) for r, c in cells]).reshape(20, 20)
        assert np.array_equal(pure & (centre == i), expect), i
        assert np.array_equal(centre == i, centres), i
    assert (pure & (centre == 2)).sum() == 36 and not (pure & (centre == 3)).any()


def test_parcel_series_means_fallback_and_crs():
    x0, y0 = ORIGIN
    rng = np.random.default_rng(3)
    values = rng.random((2, 3, 8, 8)).astype(np.float32)
    values[:, :, 2, 2] = np.nan  # an all-cloud pixel inside parcel 0
    polys = [
        shapely.box(x0 + 5, y0 - 45, x0 + 45, y0 - 5),  # pure: rows/cols 1..3
        shapely.box(x0 + 52, y0 - 58, x0 + 58, y0 - 52),  # no whole pixel; holds the centre of (5, 5)
        shapely.box(x0 + 61, y0 - 64, x0 + 64, y0 - 61),  # neither
    ]
    parcels = gpd.GeoDataFrame({"field": ["a", "b", "c"]}, geometry=polys, crs="EPSG:32633").to_crs("EPSG:4326")
    got = parcel_series(values, GRID, rasterio.crs.CRS.from_epsg(32633), parcels, id_column="field")
    block = values[:, :, 1:4, 1:4].reshape(2, 3, -1)
    np.testing.assert_allclose(got.series[0], np.nanmean(block, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(got.series[1], values[:, :, 5, 5], rtol=1e-5)
    assert np.isnan(got.series[2]).all() and got.series.dtype == np.float32
    assert got.n_pure.tolist() == [9, 0, 0] and got.n_used.tolist() == [9, 1, 0]
    assert got.used_fallback.tolist() == [False, True, False] and got.no_pixels.tolist() == [False, False, True]
    assert got.ids.tolist() == ["a", "b", "c"]
