"""`mapper labels import raster`: a georeferenced image + polygons -> labelled chips on the image's own grid."""

import json
import math
import warnings

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from rasterio.features import rasterize
from rasterio.transform import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from mapper.cli.labels import labels
from mapper.labels.chips import read_labelled_chip
from mapper.labels.import_raster import import_raster
from mapper.labels.store import LabelError

UTM = "EPSG:32650"
X0, Y0, PX = 500_000.0, 4_400_000.0, 0.5  # top-left corner and pixel size of the test image
W, H, CHIP = 700, 600, 256
NODATA = (slice(0, 100), slice(600, W))  # the image's top-right corner has no imagery
CODES = {10: 1, 11: 1, 20: 0, 30: 0, 99: 255}  # lc value -> mask value (rice, wheat, water, road, unsure)
CLASS_ARGS = ["--class-field", "lc", "--cropland-values", "10,11", "--ignore-values", "99"]


def _utm(*xy):
    """A polygon from (metres east of X0, metres south of Y0) pairs: not on the pixel grid."""
    return shapely.Polygon([(X0 + x, Y0 - y) for x, y in xy])


def write_image(path, crs=UTM, transform=None, width=W, height=H, count=3, dtype="uint8", nodata=NODATA, alpha=False):
    transform = transform or Affine(PX, 0, X0, 0, -PX, Y0)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (count, height, width)).astype(dtype)
    valid = np.ones((height, width), bool)
    if nodata is not None:
        valid[nodata] = False
    extra = {"photometric": "RGB"} if count == 3 and dtype == "uint8" else {}
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype=dtype, crs=crs,
                       transform=transform, **extra) as dst:  # fmt: skip
        if alpha:
            data[3] = np.where(valid, 255, 0)
            dst.colorinterp = [rasterio.enums.ColorInterp.red, rasterio.enums.ColorInterp.green,
                               rasterio.enums.ColorInterp.blue, rasterio.enums.ColorInterp.alpha]  # fmt: skip
        dst.write(data)
        if nodata is not None and not alpha:
            dst.write_mask(valid.astype(np.uint8) * 255)
    return path


def label_polygons() -> gpd.GeoDataFrame:
    rows = [
        (10, _utm((20.3, 19.3), (190.1, 24.8), (200.4, 149.1), (15.6, 139.7))),  # a rice field across chips
        (20, _utm((60.7, 50.2), (90.9, 48.1), (95.3, 80.6), (58.2, 77.4))),  # a pond inside it
        (11, _utm((140.2, 4.7), (349.9, 3.3), (348.1, 60.2), (150.6, 70.9))),  # wheat, into the no-data corner
        (99, _utm((260.1, 30.4), (300.8, 30.9), (299.7, 90.3), (255.2, 88.8))),  # unsure, over the wheat
        (30, _utm((10.4, 160.2), (230.7, 165.9), (231.2, 171.6), (10.9, 166.3))),  # a road
        (11, _utm((30.6, 190.4), (120.3, 200.7), (110.8, 280.2), (40.1, 270.9))),  # wheat in the south
    ]
    return gpd.GeoDataFrame({"lc": [r[0] for r in rows]}, geometry=[r[1] for r in rows], crs=UTM)


def extent_polygons() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(geometry=[_utm((5.2, 2.1), (240.7, 2.9), (238.3, 295.9), (4.6, 290.2))], crs=UTM)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("raster")
    image = write_image(d / "ortho.tif")
    polygons = d / "labels.gpkg"
    label_polygons().to_file(polygons)
    extent = d / "extent.gpkg"
    extent_polygons().to_file(extent)
    return {"dir": d, "image": image, "polygons": polygons, "extent": extent}


def run(*args):
    return CliRunner().invoke(labels, ["import", "raster", *map(str, args)])


def mosaic(out, width=W, height=H):
    """The chips' masks put back on the whole image's grid by the window each label.json records."""
    full = np.full((height, width), 255, np.uint8)
    for f in sorted(out.glob("*/label.json")):
        win = json.loads(f.read_text())["window"]
        chip = read_labelled_chip(f.parent)
        full[win["row"] : win["row"] + win["height"], win["col"] : win["col"] + win["width"]] = chip.mask
    return full


def reference(gdf, extent=None, classes=True):
    """One independent rasterize per class over the whole image, combined by the documented rules."""
    transform = Affine(PX, 0, X0, 0, -PX, Y0)
    values = [CODES[v] for v in gdf["lc"]] if classes else [1] * len(gdf)

    def burn(geoms):
        geoms = list(geoms)
        if not geoms:
            return np.zeros((H, W), bool)
        return rasterize(geoms, (H, W), transform=transform, all_touched=False, dtype="uint8").astype(bool)

    labelled = burn([*gdf.geometry, *([] if extent is None else extent.geometry)])
    of = {v: burn(g for g, c in zip(gdf.geometry, values, strict=True) if c == v) for v in (1, 0, 255)}
    ref = np.where(labelled, 0, 255).astype(np.uint8)
    ref[of[1]] = 1
    ref[of[0]] = 0  # precedence: ignore > not cropland > cropland
    ref[of[255]] = 255
    ref[NODATA] = 255
    return ref


# ---------------------------------------------------------------------------------------------- done when
@pytest.mark.parametrize("with_extent", [True, False])
def test_import_matches_rasterize_of_the_whole_image(base, tmp_path, with_extent):
    out = tmp_path / "chips"
    extent = ["--extent", base["extent"]] if with_extent else []
    r = run("--image", base["image"], "--polygons", base["polygons"], *CLASS_ARGS, *extent, "--chip", CHIP,
            "--out", out, "--dataset", "test")  # fmt: skip
    assert r.exit_code == 0, r.output
    expected = reference(label_polygons(), extent_polygons() if with_extent else None)
    assert np.array_equal(mosaic(out), expected)
    assert {0, 1, 255} <= set(np.unique(expected))
    chips = sorted(p.name for p in out.iterdir())
    assert len(chips) < 9 and "skipped as unlabelled" in r.output  # 3 × 3 on the grid, the far south unlabelled
    meta = json.loads((out / "ortho_r0_c0" / "label.json").read_text())
    assert meta["class_map"]["cropland"] == ["10", "11"] and meta["class_map"]["ignore"] == ["99"]
    assert meta["class_map"]["not_cropland"] == ["20", "30"] and meta["dataset"] == "test"
    assert meta["origin"] == "import raster" and len(meta["source_files"]["polygons_sha256"]) == 64


def test_chip_georeference_size_and_gsd(base, tmp_path):
    out = tmp_path / "chips"
    r = run("--image", base["image"], "--polygons", base["polygons"], *CLASS_ARGS, "--chip", CHIP, "--out", out)
    assert r.exit_code == 0, r.output
    with rasterio.open(base["image"]) as src:
        crs, transform = src.crs, src.transform
    assert "0.5 m from the transform" in r.output and UTM in r.output
    for d in sorted(out.iterdir()):
        meta = json.loads((d / "label.json").read_text())
        win = meta["window"]
        assert d.name == f"ortho_r{win['row']}_c{win['col']}"
        assert win["width"] == min(CHIP, W - win["col"]) and win["height"] == min(CHIP, H - win["row"])  # not padded
        assert meta["gsd_m"] == PX and meta["georeferenced"]
        for name in ("image_chip.tif", "mask.tif"):
            with rasterio.open(d / name) as chip:
                assert chip.crs == crs and (chip.width, chip.height) == (win["width"], win["height"])
                window = Window(win["col"], win["row"], win["width"], win["height"])
                assert chip.transform == window_transform(window, transform)
    # the chip's pixels are the image's, and no-data is the image's mask
    chip = read_labelled_chip(out / "ortho_r0_c512")
    with rasterio.open(base["image"]) as src:
        window = Window(512, 0, W - 512, CHIP)
        assert np.array_equal(chip.rgb, np.moveaxis(src.read([1, 2, 3], window=window), 0, -1))
        assert np.array_equal(chip.valid, src.dataset_mask(window=window) > 0)
    assert not chip.valid[:100, 88:].any() and (chip.mask[:100, 88:] == 255).all()


def test_reprojected_polygons_give_the_same_chips(base, tmp_path):
    lonlat = tmp_path / "labels_4326.gpkg"
    label_polygons().to_crs("EPSG:4326").to_file(lonlat)
    native, reprojected = tmp_path / "native", tmp_path / "reprojected"
    for polygons, out in ((base["polygons"], native), (lonlat, reprojected)):
        r = run("--image", base["image"], "--polygons", polygons, *CLASS_ARGS, "--chip", CHIP, "--out", out)
        assert r.exit_code == 0, r.output
    assert sorted(p.name for p in native.iterdir()) == sorted(p.name for p in reprojected.iterdir())
    a, b = mosaic(native), mosaic(reprojected)
    assert np.count_nonzero(a != b) <= 0.001 * np.count_nonzero(a != 255)  # edge pixels at most


def test_geoparquet_geojson_and_shapefile_inputs(base, tmp_path):
    results = []
    for name in ("labels.parquet", "labels.geojson", "labels.shp"):
        path, out = tmp_path / name, tmp_path / name.replace(".", "_")
        gdf = label_polygons()
        if name.endswith("parquet"):
            gdf.to_parquet(path)
        else:  # GeoJSON in lon/lat, as its standard says; the Shapefile in the image's CRS
            (gdf.to_crs("EPSG:4326") if name.endswith("json") else gdf).to_file(path)
        r = run("--image", base["image"], "--polygons", path, *CLASS_ARGS, "--extent", base["extent"],
                "--chip", CHIP, "--out", out)  # fmt: skip
        assert r.exit_code == 0, r.output
        results.append(mosaic(out))
    expected = reference(label_polygons(), extent_polygons())
    assert np.array_equal(results[0], expected)
    assert np.count_nonzero(results[1] != expected) <= 0.001 * np.count_nonzero(expected != 255)  # via lon/lat
    assert np.array_equal(results[2], expected)


def test_cropland_polygons_alone_warn_that_nothing_is_negative(base, tmp_path):
    out = tmp_path / "chips"
    r = run("--image", base["image"], "--polygons", base["polygons"], "--chip", CHIP, "--out", out)
    assert r.exit_code == 0, r.output
    assert "no not-cropland pixel" in r.output and "--extent" in r.output
    assert np.array_equal(mosaic(out), reference(label_polygons(), classes=False))
    # with an extent, the rest of it is not cropland
    r = run("--image", base["image"], "--polygons", base["polygons"], "--extent", base["extent"], "--chip", CHIP,
            "--out", tmp_path / "with_extent")  # fmt: skip
    assert r.exit_code == 0 and "no not-cropland pixel" not in r.output
    assert np.array_equal(mosaic(tmp_path / "with_extent"), reference(label_polygons(), extent_polygons(), False))


def test_import_again_writes_nothing_and_keeps_earlier_chips(base, tmp_path):
    out = tmp_path / "chips"
    args = ["--image", base["image"], "--polygons", base["polygons"], *CLASS_ARGS, "--out", out]
    r = run(*args, "--chip", CHIP)
    assert r.exit_code == 0, r.output
    first = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/label.json")}
    r = run(*args, "--chip", CHIP)
    assert r.exit_code == 0 and f"0 written, {len(first)} unchanged" in r.output, r.output
    assert {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/label.json")} == first
    r = run(*args, "--chip", 300)  # another grid: its chips are added, the earlier ones kept and counted
    assert r.exit_code == 0, r.output
    assert all((out / name / "label.json").exists() for name in first) and "of an earlier import" in r.output
    # changed labels: the chips are written again
    r = run("--image", base["image"], "--polygons", base["polygons"], "--class-field", "lc", "--cropland-values", "10",
            "--out", out, "--chip", CHIP)  # fmt: skip
    assert r.exit_code == 0 and ", 0 unchanged" in r.output, r.output


def test_chips_of_another_image_of_the_same_name_are_not_overwritten(base, tmp_path):
    out = tmp_path / "chips"
    assert run("--image", base["image"], "--polygons", base["polygons"], "--out", out).exit_code == 0
    other = write_image(tmp_path / "ortho.tif", nodata=None)
    r = run("--image", other, "--polygons", base["polygons"], "--out", out)
    assert r.exit_code == 2 and "another image" in r.output and "another --out" in r.output


def test_alpha_band_is_no_imagery(base, tmp_path):
    image = write_image(tmp_path / "rgba.tif", count=4, alpha=True)
    r = run("--image", image, "--polygons", base["polygons"], *CLASS_ARGS, "--chip", CHIP, "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    got = mosaic(tmp_path / "o")
    assert (got[NODATA] == 255).all() and np.array_equal(got, reference(label_polygons()))


# ---------------------------------------------------------------------------------------------- GSD
def _lonlat_image(path, square_on_ground=True):
    lat0, lon0 = 40.0, 117.0
    dy = 0.5 / 111_035.0  # degrees of latitude per 0.5 m at 40° N
    dx = dy / math.cos(math.radians(lat0)) if square_on_ground else dy
    return write_image(path, "EPSG:4326", Affine(dx, 0, lon0, 0, -dy, lat0 + 0.001), 200, 200, nodata=None)


def _polygons_over(image, path):
    with rasterio.open(image) as src:
        west, south, east, north = src.bounds
        crs = src.crs
    box = shapely.box(west + (east - west) * 0.2, south + (north - south) * 0.3, west + (east - west) * 0.7, north)
    gdf = gpd.GeoDataFrame(geometry=[box], crs=crs)
    gdf.to_file(path)
    return path


def test_geographic_image_gsd_is_measured_and_said(tmp_path):
    image = _lonlat_image(tmp_path / "geo.tif")
    out = tmp_path / "chips"
    r = run("--image", image, "--polygons", _polygons_over(image, tmp_path / "p.gpkg"), "--chip", 128, "--out", out)
    assert r.exit_code == 0, r.output
    assert "geodesically" in r.output and "EPSG:4326 is in degrees" in r.output
    meta = json.loads(next(out.glob("*/label.json")).read_text())
    assert meta["gsd_m"] == pytest.approx(0.5, rel=0.01)
    assert meta["import_raster"]["gsd_source"] == "geodesic" and "geodesically" in meta["import_raster"]["gsd_note"]
    # a --gsd that agrees is accepted; degree-square pixels at 40° N are not square on the ground
    assert run("--image", image, "--polygons", tmp_path / "p.gpkg", "--gsd", 0.5, "--out", out).exit_code == 0
    skewed = _lonlat_image(tmp_path / "skewed.tif", square_on_ground=False)
    r = run("--image", skewed, "--polygons", tmp_path / "p.gpkg", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "not square" in r.output and "gdalwarp -t_srs EPSG:32650" in r.output
    assert not (tmp_path / "x").exists()


def test_web_mercator_gsd_is_the_ground_size(tmp_path):
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(117.0, 40.0)
    image = write_image(tmp_path / "merc.tif", "EPSG:3857", Affine(0.5, 0, x, 0, -0.5, y), 100, 100, nodata=None)
    with pytest.raises(LabelError, match="disagrees"):
        import_raster(image, _polygons_over(image, tmp_path / "p.gpkg"), tmp_path / "o", gsd=0.5)
    summary = import_raster(image, tmp_path / "p.gpkg", tmp_path / "o", chip=64)
    assert summary.gsd_m == pytest.approx(0.5 * math.cos(math.radians(40.0)), rel=0.005)
    assert "not ground metres" in summary.gsd_note and summary.written


# ---------------------------------------------------------------------------------------------- bad input
def _write(gdf, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pyogrio warns when writing a file without a CRS
        gdf.to_file(path)
    return path


ROTATED = Affine(0.5, 0.1, X0, 0.1, -0.5, Y0)

BAD = {
    "polygons without a CRS": (
        lambda d, b: ["--polygons", _write(label_polygons().set_crs(None, allow_override=True), d / "nocrs.gpkg")],
        ["nocrs.gpkg", "no coordinate reference system"],
    ),
    "polygons outside the image": (
        lambda d, b: ["--polygons", _write(label_polygons().translate(5000, 0), d / "far.gpkg")],
        ["far.gpkg", "do not overlap image", "ortho.tif", "(500000, 4.3997e+06, 500350, 4.4e+06)"],
    ),
    "an invalid geometry": (
        lambda d, b: ["--polygons", _write(pd_concat_bowtie(), d / "bowtie.gpkg")],
        ["bowtie.gpkg", "invalid", "fid 7", "Self-intersection", "make_valid", "--make-valid"],
    ),
    "points": (
        lambda d, b: ["--polygons", _write(label_polygons().set_geometry(label_polygons().centroid), d / "pts.gpkg")],
        ["pts.gpkg", "Point", "must be polygons"],
    ),
    "a class field that does not exist": (
        lambda d, b: ["--polygons", b["polygons"], "--class-field", "klass", "--cropland-values", "10"],
        ["labels.gpkg", "'klass' is not a column", "'lc'"],
    ),
    "cropland values not in the column": (
        lambda d, b: ["--polygons", b["polygons"], "--class-field", "lc", "--cropland-values", "12"],
        ["labels.gpkg", "none of --cropland-values", "'10', '11', '20', '30', '99'"],
    ),
    "a class field without cropland values": (
        lambda d, b: ["--polygons", b["polygons"], "--class-field", "lc"],
        ["labels.gpkg", "needs --cropland-values"],
    ),
    "an image that is not RGB uint8": (
        lambda d, b: ["--polygons", b["polygons"], "--image", write_image(d / "u16.tif", dtype="uint16", nodata=None)],
        ["u16.tif", "RGB uint8", "gdal_translate"],
    ),
    "a rotated image": (
        lambda d, b: [
            "--polygons",
            b["polygons"],
            "--image",
            write_image(d / "rot.tif", transform=ROTATED, nodata=None),
        ],
        ["rot.tif", "rotated", "gdalwarp"],
    ),
    "an image without a CRS": (
        lambda d, b: ["--polygons", b["polygons"], "--image", write_image(d / "nogeo.tif", crs=None, nodata=None)],
        ["nogeo.tif", "no CRS"],
    ),
    "a --gsd that disagrees": (
        lambda d, b: ["--polygons", b["polygons"], "--gsd", "0.6"],
        ["ortho.tif", "--gsd 0.6 m disagrees", "0.5 m"],
    ),
    "too small chips": (lambda d, b: ["--polygons", b["polygons"], "--chip", "16"], ["--chip 16", "at least 32"]),
}


def pd_concat_bowtie():
    bowtie = shapely.Polygon([(X0 + 10, Y0 - 10), (X0 + 50, Y0 - 50), (X0 + 50, Y0 - 10), (X0 + 10, Y0 - 50)])
    gdf = label_polygons()
    return gpd.GeoDataFrame({"lc": [*gdf["lc"], 10]}, geometry=[*gdf.geometry, bowtie], crs=UTM)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exit_2_naming_the_file_and_writing_nothing(base, tmp_path, case):
    make, expected = BAD[case]
    args = make(tmp_path, base)
    if "--image" not in args:
        args = ["--image", base["image"], *args]
    out = tmp_path / "out"
    r = run(*args, "--out", out)
    assert r.exit_code == 2, r.output
    for text in expected:
        assert text in r.output, (text, r.output)
    assert not out.exists()


def test_some_polygons_outside_are_counted_and_invalid_ones_repaired_on_request(base, tmp_path):
    gdf = pd_concat_bowtie()
    west, east = _utm((-500, 0), (-400, 0), (-400, 100)), _utm((2000, 0), (2100, 0), (2100, 50))
    far = gpd.GeoDataFrame({"lc": [10, 10]}, geometry=[west, east], crs=UTM)
    path = _write(gpd.GeoDataFrame(pd_concat(gdf, far), crs=UTM), tmp_path / "mixed.gpkg")
    out = tmp_path / "out"
    r = run("--image", base["image"], "--polygons", path, *CLASS_ARGS, "--make-valid", "--chip", CHIP, "--out", out)
    assert r.exit_code == 0, r.output
    assert "2 of 9 polygons in" in r.output and "mixed.gpkg lie outside image" in r.output
    assert "1 invalid polygon(s) repaired" in r.output


def pd_concat(*frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)
