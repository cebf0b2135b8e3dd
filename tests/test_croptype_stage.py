"""Pieces of the crop-type stage: fields delineated inside a cropland polygon by their series, areas per unit
and crop in true ground area, per-zone VRTs over block rasters."""

import numpy as np
import pytest
import rasterio
from affine import Affine

from mapper.croptype.fields import delineate_fields
from mapper.croptype.stage import area_by_unit_and_code
from mapper.croptype.taxonomy import packaged_taxonomy
from mapper.grid.area import row_pixel_areas
from mapper.grid.tilegrid import PixelWindow

BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")


def _composite(ndvi_by_pixel: np.ndarray, t: int = 43) -> np.ndarray:
    """(10, T, H, W) reflectance whose NDVI (B8 vs B4) is the given (T, H, W) series."""
    h, w = ndvi_by_pixel.shape[1:]
    values = np.full((10, t, h, w), 0.1, np.float32)
    red = 0.05
    values[2] = red
    values[6] = red * (1 + ndvi_by_pixel) / (1 - ndvi_by_pixel)
    return values


def test_two_crops_in_one_polygon_become_two_fields_and_the_mixed_edge_joins_one():
    days = np.arange(43)
    early = 0.2 + 0.6 * np.exp(-0.5 * ((days - 10) / 4) ** 2)
    late = 0.2 + 0.6 * np.exp(-0.5 * ((days - 30) / 4) ** 2)
    ndvi = np.empty((43, 6, 9), np.float32)
    ndvi[:, :, :4] = early[:, None, None]
    ndvi[:, :, 5:] = late[:, None, None]
    ndvi[:, :, 4] = (0.5 * early + 0.5 * late)[:, None]  # a column of mixed edge pixels
    rng = np.random.default_rng(0)
    ndvi += rng.normal(0, 0.01, ndvi.shape).astype(np.float32)
    polygon = np.zeros((6, 9), np.int64)
    polygon[0, 0] = -1  # a pixel outside every polygon
    fields = delineate_fields(_composite(ndvi), BANDS, polygon)
    assert fields[0, 0] == -1
    left, right = np.unique(fields[:, :4][polygon[:, :4] >= 0]), np.unique(fields[:, 5:])
    assert len(left) == 1 and len(right) == 1 and left[0] != right[0]
    assert set(np.unique(fields[:, 4])) <= {left[0], right[0]}  # edge pixels go to a neighbouring field
    assert fields.max() == 1


def test_fields_never_cross_polygons():
    ndvi = np.full((43, 4, 6), 0.5, np.float32)
    polygon = np.zeros((4, 6), np.int64)
    polygon[:, 3:] = 1  # identical series, two polygons
    fields = delineate_fields(_composite(ndvi), BANDS, polygon)
    assert set(fields[:, :3].ravel()) & set(fields[:, 3:].ravel()) == set()


def test_area_by_unit_and_code_is_true_ground_area():
    window = PixelWindow(16, 53000, 28000, 53010, 28004)
    codes = np.zeros(window.shape, np.uint8)
    codes[:, :5] = 6
    codes[:, 5:] = 3
    mask = np.ones(window.shape, bool)
    mask[0] = False
    labels = np.ones(window.shape, np.uint16)
    labels[:, 8:] = 2
    table = area_by_unit_and_code(codes, mask, window, labels, 2)
    rows = row_pixel_areas(window)
    assert table[0, 6] == pytest.approx(5 * rows[1:].sum())
    assert table[0, 3] == pytest.approx(3 * rows[1:].sum())
    assert table[1, 3] == pytest.approx(2 * rows[1:].sum())
    assert table.sum() == pytest.approx(10 * rows[1:].sum())


def test_zone_vrt_places_blocks_at_their_offsets(tmp_path):
    from mapper.croptype.outputs import zone_vrts

    blocks = tmp_path / "blocks"
    blocks.mkdir()
    paths = []
    for k, (x0, y1) in enumerate([(500000, 2500000), (500300, 2499800)]):
        p = blocks / f"b{k}.tif"
        data = np.full((6, 20, 30), k + 1, np.uint8)
        with rasterio.open(p, "w", driver="GTiff", width=30, height=20, count=6, dtype="uint8", crs="EPSG:32650",
                           transform=Affine(10, 0, x0, 0, -10, y1), nodata=0) as dst:  # fmt: skip
            dst.write(data)
        paths.append(p)
    (vrt,) = zone_vrts(paths, tmp_path, packaged_taxonomy())
    with rasterio.open(vrt) as src:
        assert src.crs.to_epsg() == 32650 and src.res == (10, 10) and src.count == 6
        assert (src.width, src.height) == (60, 40)
        band = src.read(1)
    assert (band[:20, :30] == 1).all() and (band[20:, 30:] == 2).all() and band[30, 5] == 0
    assert vrt.with_suffix(".qml").read_text().count("paletteEntry") == 25


def test_a_field_takes_its_pixels_commonest_crop():
    from mapper.croptype.stage import field_majority

    tax = packaged_taxonomy()
    px = {"code": np.array([6, 6, 3, 0, 3, 3, 3]), "prob": np.array([0.9, 0.7, 0.5, 0.0, 0.6, 0.8, 1.0])}
    owner = np.array([0, 0, 0, 1, 2, 2, 2])
    out = field_majority(px, owner, 3, tax)
    assert out["code"].tolist() == [6, 0, 3]  # field 1: only an unclassified (all-cloud) pixel
    assert out["prob"][0] == pytest.approx(0.8) and out["prob"][2] == pytest.approx(0.8)
    assert out["levels"][0].tolist() == tax.paths[tax.leaf_index(6)].tolist() and (out["levels"][1] == -1).all()
