"""mapper.fields.polygons: tracing on the block grid, stitching across block edges (world truth and the model
rule), slivers, holes, simplification without topology errors, ids, georeference."""

import numpy as np
import pytest
import shapely

from mapper.fields.polygons import (
    block_fields,
    field_polygons,
    instances_from_probabilities,
    pixel_area_m2,
    simplify_coverage,
    stitch,
)
from mapper.fields.regions import label_regions
from mapper.fields.truth import field_keys
from mapper.grid.blocks import Block
from mapper.grid.tilegrid import PixelWindow
from mapper.world.world import get_world

BLOCK = Block.parse("5886_2256")
W = BLOCK.window()
# 300 × 300 px of small southern fields inside that block (world seed 0)
AREA = PixelWindow(16, W.col0, W.row0 + 300, W.col0 + 300, W.row0 + 600)


@pytest.fixture(scope="module")
def area_truth():
    """(instance labels, key per label) of AREA from the world."""
    keys, _ = field_keys(get_world(0), AREA)
    labels, n = label_regions(keys, keys >= 0)
    per_label = np.full(n + 1, -1, np.int64)
    per_label[labels.ravel()] = keys.ravel()
    per_label[0] = -1
    return labels, per_label


def split(window: PixelWindow, rows: int, cols: int) -> list[PixelWindow]:
    """The window cut into 4 pseudo-blocks at an uneven row and column."""
    r, c = window.row0 + rows, window.col0 + cols
    return [
        PixelWindow(16, window.col0, window.row0, c, r), PixelWindow(16, c, window.row0, window.col1, r),
        PixelWindow(16, window.col0, r, c, window.row1), PixelWindow(16, c, r, window.col1, window.row1),
    ]  # fmt: skip


def pieces(labels, keys, windows, with_keys=True):
    out = []
    for k, w in enumerate(windows):
        sub = labels[w.row0 - AREA.row0 : w.row1 - AREA.row0, w.col0 - AREA.col0 : w.col1 - AREA.col0]
        out.append(block_fields(sub, w, f"q{k}", keys if with_keys else None))
    return out


def test_traced_on_the_global_pixel_grid_and_georeferenced():
    from pyproj import Transformer

    labels = np.zeros(W.shape, np.int32)
    labels[100:130, 200:260] = 1  # a 60 × 30 px rectangle
    bf = block_fields(labels, W, BLOCK.id)
    assert bf.n == 1 and tuple(bf.first[0]) == (W.row0 + 100, W.col0 + 200)
    assert shapely.bounds(bf.geometry[0]).tolist() == [W.col0 + 200, W.row0 + 100, W.col0 + 260, W.row0 + 130]
    fields = field_polygons([bf])
    assert fields["id"].tolist() == [f"f{W.col0 + 200}_{W.row0 + 100}"]
    # the corners through the block's own rasterio transform and PROJ: the same lon/lat
    t = W.transform
    x, y = t.c + t.a * np.array([200.0, 260.0]), t.f + t.e * np.array([130.0, 100.0])
    lon, lat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True).transform(x, y)
    assert shapely.bounds(fields.geometry.iloc[0]) == pytest.approx([lon[0], lat[0], lon[1], lat[1]], abs=1e-9)
    assert fields["area_m2"].iloc[0] == pytest.approx(1800 * pixel_area_m2(np.array([W.row0 + 115]))[0])


def test_stitching_world_truth_gives_the_whole_windows_fields(area_truth):
    labels, keys = area_truth
    whole = stitch([block_fields(labels, AREA, "whole", keys)])
    stitched = stitch(pieces(labels, keys, split(AREA, 137, 163)))
    assert stitched["id"].tolist() == whole["id"].tolist()
    assert (stitched["n_blocks"] > 1).sum() > 5
    assert shapely.equals(stitched.geometry.values, whole.geometry.values).all()
    assert (stitched["key"].to_numpy() == whole["key"].to_numpy()).all()


def test_stitching_without_keys_follows_the_shared_border_rule(area_truth):
    labels, keys = area_truth
    whole = stitch([block_fields(labels, AREA, "whole")])
    stitched = stitch(pieces(labels, keys, split(AREA, 137, 163), with_keys=False))
    same = set(stitched["id"]) & set(whole["id"])
    assert len(same) >= 0.97 * len(whole)  # only pieces touching the border by < 3 px stay apart


def border_case():
    """Block A, B east of it and C south of A. a1 fills A but its bottom right corner; across the east edge it
    is b1 (rows 0-5) and b2 (rows 6-9), a different split; C's piece touches a1 over 2 px."""
    a = np.ones((10, 4), np.int32)
    a[9, 2:] = 0
    b = np.zeros((10, 4), np.int32)
    b[0:6, :2], b[6:10, :2] = 1, 2
    wa, wb = PixelWindow(16, 1000, 2000, 1004, 2010), PixelWindow(16, 1004, 2000, 1008, 2010)
    below = np.zeros((4, 4), np.int32)
    below[:, 0:2] = 1  # a contact of 2 px with a1
    wc = PixelWindow(16, 1000, 2010, 1004, 2014)
    return [block_fields(a, wa, "A"), block_fields(b, wb, "B"), block_fields(below, wc, "C")]


def test_model_rule_mutual_majority_and_minimum_contact():
    fields = stitch(border_case())
    # a1 + b1 (6 of a1's 9 border pixels, all 6 of b1's); b2 alone (3 of 9); C's piece alone (2 px < 3)
    assert sorted(fields["n_blocks"].tolist()) == [1, 1, 2]
    joined = fields[fields["n_blocks"] == 2].geometry.iloc[0]
    assert joined.area == 38 + 12 and joined.geom_type == "Polygon"
    assert stitch(border_case(), min_shared_px=1)["n_blocks"].max() == 3  # 2 px contact joins C's piece then


def test_ids_do_not_depend_on_block_order(area_truth):
    labels, keys = area_truth
    blocks = pieces(labels, keys, split(AREA, 137, 163))
    a = field_polygons(blocks)
    b = field_polygons(blocks[::-1])
    assert a["id"].tolist() == b["id"].tolist() and a["id"].is_unique
    assert shapely.equals(a.geometry.values, b.geometry.values).all()


def test_clean_polygons_valid_simplified_without_gaps_or_overlaps(area_truth):
    labels, keys = area_truth
    blocks = pieces(labels, keys, split(AREA, 137, 163))
    fields = field_polygons(blocks, min_area_ha=0.02)
    assert shapely.is_valid(fields.geometry.values).all()
    assert (fields["area_m2"] >= 200).all()
    raw = stitch(blocks)
    assert len(fields) < len(raw)  # fragments at zone corners are gone
    # simplified together: still a coverage (no overlaps, shared edges shared), far fewer vertices
    pixel = np.asarray(raw.geometry.values, dtype=object)
    simple = simplify_coverage(pixel)
    assert shapely.coverage_is_valid(simple)
    assert shapely.get_num_coordinates(simple).sum() < 0.6 * shapely.get_num_coordinates(pixel).sum()
    assert shapely.area(simple).sum() == pytest.approx(shapely.area(pixel).sum(), rel=2e-3)


def test_holes_are_kept():
    labels = np.zeros((40, 40), np.int32)
    labels[5:35, 5:35] = 1
    labels[15:21, 15:21] = 0  # a farm pond inside the field
    w = PixelWindow(16, 7000, 9000, 7040, 9040)
    fields = field_polygons([block_fields(labels, w, "x")], min_area_ha=0.0)
    poly = fields.geometry.iloc[0]
    assert len(poly.interiors) == 1


def test_instances_from_probabilities_separates_at_the_boundary():
    interior = np.zeros((20, 30), np.float32)
    boundary = np.zeros((20, 30), np.float32)
    interior[2:18, 2:28] = 1.0
    boundary[:, 14:16] = 1.0  # a ridge across the field
    interior[:, 14:16] = 0.0
    extent = np.zeros((20, 30), bool)
    extent[2:18, 2:28] = True
    labels = instances_from_probabilities(interior, boundary, extent)
    assert labels.max() == 2
    assert ((labels > 0) == extent).all()  # the ridge is flooded: fields cover the whole extent
    assert len(np.unique(labels[:, :14])) == 2 and len(np.unique(labels[:, 16:])) == 2


def test_blocks_without_fields():
    empty = block_fields(np.zeros((5, 5), np.int32), PixelWindow(16, 10, 10, 15, 15), "none")
    assert empty.n == 0 and empty.borders["east"].tolist() == [0] * 5
    for blocks in ([], [empty]):
        fields = field_polygons(blocks)
        assert len(fields) == 0 and fields.crs.to_epsg() == 4326 and "id" in fields.columns
