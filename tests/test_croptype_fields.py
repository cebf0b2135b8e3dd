"""Crop types per field (croptype.unit field): the 2 m pieces of the fields stage classified by the mean of their
pure 10 m pixels, on a 700 m window of the simulated world (its truth fields as the pieces, its Sentinel-2, the
packaged model): each field one crop, crop areas that add up to the cropland, the per-field table and polygons;
purity as exact as the polygon test; refused without fields."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio

from mapper.grid.area import masked_area_m2
from mapper.grid.blocks import Block
from mapper.grid.tilegrid import PixelWindow, global_pixel_to_lonlat

BLOCK = Block.parse("5886_2256")  # conftest.WORLD_RUN_BLOCK: Huizhou / Shenzhen, world seed 0
_BW = BLOCK.window(16)
SUB = PixelWindow(16, _BW.col0 + 1200, _BW.row0 + 1050, _BW.col0 + 1500, _BW.row0 + 1350)  # ~85 % cropland


@pytest.fixture(scope="module")
def scene():
    """The window's truth fields and crops, its composite and the packaged crop-type model."""
    from mapper.croptype.composite import composite_bands
    from mapper.croptype.kinds import load_model
    from mapper.croptype.worldsource import simulate_stack
    from mapper.fields.regions import label_regions
    from mapper.fields.truth import window_truth
    from mapper.models.registry import resolve_checkpoint
    from mapper.world import crops
    from mapper.world.world import get_world

    world = get_world(0)
    fields = window_truth(world, SUB).labels
    p = world.landscape.patch(np.arange(SUB.col0, SUB.col1), np.arange(SUB.row0, SUB.row1))
    truth = crops.crop_codes(world.landscape, p.cover, p.zone_key, p.field_rand, crops.YEAR, False)
    lon0, lat1 = global_pixel_to_lonlat(SUB.col0, SUB.row0, 16)
    lon1, lat0 = global_pixel_to_lonlat(SUB.col1, SUB.row1, 16)
    stack = simulate_stack(world, (float(lon0), float(lat0), float(lon1), float(lat1)))[0]
    model = load_model(resolve_checkpoint("croptype-default"))
    comp = composite_bands(stack, tuple(model.bands), steps=np.asarray(model.steps))
    final = (fields > 0).astype(np.uint8)
    pieces = fields.copy()
    pieces[:, 150:153] = 0  # a cropland strip outside every piece: slivers take the 10 m map's crop
    pieces, _ = label_regions(pieces)
    return {"final": final, "labels": pieces.astype(np.uint32), "truth": truth, "comp": comp, "model": model}


def _worker(root, model):
    import geopandas as gpd

    from mapper.config.models import CropTypeConfig
    from mapper.croptype.stage import CropTypeWorker
    from mapper.run.stage import RunContext, Worker

    w = CropTypeWorker.__new__(CropTypeWorker)  # the worker without its S2 source: the test gives the composite
    Worker.__init__(w, RunContext({"run": {}, "zoom": 16}, str(root), ("demo-a", "demo-b"), {}))
    w.cfg = {**CropTypeConfig().model_dump(mode="json"), "unit": "field"}
    w.model, w.taxonomy, w.truth = model, model.taxonomy, False
    frame = lambda code: gpd.GeoDataFrame({"code": [code], "name": [code]}, geometry=[BLOCK.polygon], crs=4326)  # noqa: E731
    w.units = {"region": frame("region"), "provinces": frame("CN044"), "prefectures": frame("CN044130")}
    return w


@pytest.fixture(scope="module")
def mapped(scene, tmp_path_factory):
    import geopandas as gpd
    import shapely

    root = tmp_path_factory.mktemp("fieldunit")
    w = _worker(root, scene["model"])
    seen = {}
    areas = w._areas

    def spy(codes2m, cropland, window, block):
        seen["codes2m"] = codes2m.copy()
        return areas(codes2m, cropland, window, block)

    w._areas = spy
    lon, lat = global_pixel_to_lonlat([SUB.col0, SUB.col1], [SUB.row1, SUB.row0], 16)
    box = shapely.box(lon[0], lat[0], lon[1], lat[1])
    polygons = gpd.GeoDataFrame({"block_id": [BLOCK.id]}, geometry=[box], crs=4326)  # one cropland polygon
    out = w._field_unit(BLOCK, SUB, scene["final"], polygons, scene["labels"], scene["comp"], {})
    return {"root": root, "out": out, **seen}


def test_each_field_gets_one_crop_and_the_areas_add_up_to_the_cropland(scene, mapped):
    from mapper.croptype.fieldunit import FIELD_CROP_COLUMNS, field_pieces
    from mapper.croptype.stage import block_parcels_path, block_raster_path
    from mapper.fields.paths import field_crops_path

    labels, final, codes2m = scene["labels"].astype(np.int64), scene["final"], mapped["codes2m"]
    table = pd.read_parquet(field_crops_path(mapped["root"], BLOCK.id))
    assert list(table.columns) == FIELD_CROP_COLUMNS and len(table) == labels.max() == mapped["out"]["parcels"]
    assert table["label"].tolist() == list(range(1, len(table) + 1))
    classified = table["crop_code"].to_numpy() > 0
    assert classified.mean() > 0.8 and (table["crop"][~classified] == "unclassified").all()
    # Every 2 m cropland pixel of a classified piece carries the piece's crop: one crop per field.
    inside = (labels > 0) & (final == 1)
    lut = np.concatenate([[0], table["crop_code"].to_numpy()])
    has = inside & (lut[labels] > 0)
    assert np.array_equal(codes2m[has], lut[labels[has]])
    assert (codes2m[(final == 1) & ~has] > 0).all()  # slivers: the 10 m map's crop, else their polygon's main one
    # The piece's area is its 2 m pixels' true ground area; the crop areas add up to the cropland area.
    assert table["area_m2"].to_numpy()[5] == pytest.approx(masked_area_m2(labels == 6, SUB))
    cropland_m2 = masked_area_m2(final == 1, SUB)
    for kind in ("region", "provinces", "prefectures"):
        assert sum(sum(per.values()) for per in mapped["out"]["areas"][kind].values()) == pytest.approx(cropland_m2)
    # The world's truth: the window's fields are its own, so nearly all the cropland gets its true crop.
    agree = masked_area_m2((codes2m == scene["truth"]) & (final == 1), SUB) / cropland_m2
    assert agree > 0.9
    # The 10 m map: each pixel the crop of the piece holding its centre (where it is cropland).
    with rasterio.open(block_raster_path(mapped["root"], BLOCK.id)) as src:
        leaf = src.read(1)
    centre = field_pieces(scene["comp"], scene["labels"], SUB).centre
    on = leaf > 0
    assert on.sum() > 1000 and np.array_equal(leaf[on], lut[centre[on] + 1])
    # The polygons: one per piece, the exact pixel outlines, with the crop columns.
    polys = pd.read_parquet(block_parcels_path(mapped["root"], BLOCK.id))
    assert len(polys) == len(table) and (polys["crop_code"].to_numpy() == table["crop_code"].to_numpy()).all()
    assert (polys["unit_code"] == "CN044130").all()


def test_purity_is_the_polygon_tests_up_to_a_strict_rim(scene):
    """The raster purity (footprint corners on the 2 m grid) against the exact polygon test of crop-type parcels
    (mapper.croptype.parcels.pixel_membership on the traced pieces): the same centres, no pixel pure that is not,
    and at most a few percent fewer pure pixels (the footprint's bounding box is a little wider)."""
    import geopandas as gpd
    import shapely
    from rasterio.features import shapes

    from mapper.croptype.fieldunit import field_pieces
    from mapper.croptype.parcels import pixel_membership, polygonal_geoms

    labels, comp = scene["labels"], scene["comp"]
    pieces = field_pieces(comp, labels, SUB)
    parts: dict[int, list] = {}
    for g, v in shapes(labels.astype(np.int32), mask=labels > 0, connectivity=4, transform=SUB.transform):
        parts.setdefault(int(v), []).append(shapely.geometry.shape(g))
    geoms = [shapely.union_all(parts[k]) for k in range(1, int(labels.max()) + 1)]
    utm = gpd.GeoSeries(geoms, crs="EPSG:3857").to_crs(comp.crs.to_wkt())
    centre, pure = pixel_membership(polygonal_geoms(utm.to_numpy()), comp.transform, comp.values.shape[2:])
    assert np.array_equal(centre, pieces.centre)
    assert not (pieces.pure & ~pure).any()
    assert pieces.pure.sum() >= 0.95 * pure.sum() and pure.sum() > 500
    # The series: a piece with pure pixels is their mean; one without, the mean of its centre pixels.
    k = int(np.argmax(pieces.n_pure))
    assert pieces.series[k] == pytest.approx(np.nanmean(comp.values[:, :, pieces.pure & (pieces.centre == k)], axis=2))
    assert pieces.fallback[pieces.n_pure == 0].all() and not pieces.fallback[pieces.n_pure > 0].any()


def test_unit_field_without_fields_is_refused_naming_the_fix(tmp_path, scene):
    from mapper.cli.croptype import CropTypeUsageError, _preflight
    from mapper.config import load_config
    from mapper.croptype.fieldunit import fields_missing_message, read_field_labels

    with pytest.raises(FileNotFoundError, match=r"mapper fields .*fields\.enabled: true"):
        read_field_labels(tmp_path, BLOCK.id, SUB)
    config = load_config([], {"croptype.unit": "field"})
    with pytest.raises(CropTypeUsageError, match=f"run `mapper fields {tmp_path}` first"):
        _preflight(config, tmp_path)
    assert fields_missing_message(tmp_path, {"fields": {"enabled": True}}) is None  # the run makes them first
    tif = tmp_path / "fields" / "blocks" / f"{BLOCK.id}.tif"
    tif.parent.mkdir(parents=True)
    with rasterio.open(tif, "w", driver="GTiff", width=SUB.width, height=SUB.height, count=1, dtype="uint32",
                       crs="EPSG:3857", transform=SUB.transform) as dst:  # fmt: skip
        dst.write(scene["labels"], 1)
    assert fields_missing_message(tmp_path, {}) is None
    assert np.array_equal(read_field_labels(tmp_path, BLOCK.id, SUB), scene["labels"])
    with pytest.raises(ValueError, match="not on block"):
        read_field_labels(tmp_path, BLOCK.id, _BW)


def test_a_block_without_fields_gets_no_crops_and_does_not_fail(scene, tmp_path):
    import geopandas as gpd

    from mapper.fields.paths import field_crops_path

    w = _worker(tmp_path, scene["model"])
    polygons = gpd.GeoDataFrame({"block_id": []}, geometry=[], crs=4326)
    empty = np.zeros_like(scene["labels"])
    out = w._field_unit(BLOCK, SUB, np.zeros_like(scene["final"]), polygons, empty, scene["comp"], {})
    assert out["parcels"] == out["classified"] == 0
    assert len(pd.read_parquet(field_crops_path(tmp_path, BLOCK.id))) == 0
