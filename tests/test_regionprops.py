"""mapper.features.regionprops against scikit-image (benchmarks/regionprops.py holds the block reference).

Reference: `skimage.measure.label(m, connectivity=2)` (8-connected cropland, 4-connected background) and
`regionprops` (`area`, `area_convex`, `solidity`, `euler_number`) per component; `convex_hull_image(m)` and
`euler_number(m, connectivity=2)` for the whole block; numpy for ground areas and edges.

Tolerances: components, areas, convex areas and Euler numbers exact (==), so per-component solidity is the
same float; means over components within 1e-12 relative (summation order); ground areas within 1e-9
relative of mapper.grid.area.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from skimage.measure import euler_number, label, regionprops
from skimage.morphology import convex_hull_image

from benchmarks.regionprops import skimage_block_properties, synthetic_mask
from mapper.features.regionprops import (
    PROPERTY_NAMES,
    block_properties,
    block_properties_for_window,
    component_table,
    mask_iou,
)
from mapper.grid.area import band_integral, masked_area_m2, row_pixel_areas
from mapper.grid.blocks import Block
from mapper.grid.tilegrid import PixelWindow, global_pixel_to_lonlat, pixel_size
from mapper.world.truth import block_truth
from mapper.world.world import get_world

REL = 1e-12
FARMLAND = Block.containing(113.5, 21.5)  # world seed 0: ~22 % cropland in 47 components, some with holes


# ------------------------------------------------------------------------------------------------ helpers
def assert_matches_skimage(mask: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Every component, and the block's totals, exactly as scikit-image has them."""
    m = mask.astype(bool) if valid is None else mask.astype(bool) & valid
    ref_labels = label(m, connectivity=2)
    props = regionprops(ref_labels)
    ours = component_table(mask, valid)
    assert ours.n == len(props)
    # the same partition of the pixels: our label of each reference component's first pixel, everywhere
    ours_of_ref = np.zeros(len(props) + 1, np.int64)
    for p in props:
        ours_of_ref[p.label] = ours.labels[tuple(p.coords[0])]
    assert (ours_of_ref[ref_labels] == ours.labels).all() and len(set(ours_of_ref[1:])) == ours.n
    for p in props:
        k = ours_of_ref[p.label] - 1
        assert (ours.area[k], ours.convex_area[k], ours.euler[k]) == (p.area, p.area_convex, p.euler_number), p.bbox
        assert ours.solidity[k] == p.solidity
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # convex_hull_image of an empty mask
        assert ours.total_convex_area == (convex_hull_image(m).sum() if m.any() else 0)
    assert ours.euler.sum() == euler_number(m, connectivity=2)

    rows = np.linspace(1.0, 2.0, mask.shape[0])  # any positive per-row areas
    assert_same_properties(block_properties(mask, rows, valid), skimage_block_properties(mask, rows, valid))


def assert_same_properties(ours: dict, ref: dict) -> None:
    assert tuple(ours) == PROPERTY_NAMES and set(ref) == set(PROPERTY_NAMES)
    assert ours["n_components"] == ref["n_components"] and ours["euler_total"] == ref["euler_total"]
    assert isinstance(ours["n_components"], int) and isinstance(ours["euler_total"], int)
    for key in PROPERTY_NAMES:
        if isinstance(ref[key], float) and math.isnan(ref[key]):
            assert math.isnan(ours[key]), key
        else:
            assert isinstance(ours[key], float | int), key
            assert ours[key] == pytest.approx(ref[key], rel=REL, abs=1e-12), key


def ring(size: int = 7, thickness: int = 1) -> np.ndarray:
    r = np.ones((size, size), np.uint8)
    r[thickness:-thickness, thickness:-thickness] = 0
    return r


def props_of(mask, rows=None, valid=None) -> dict:
    mask = np.asarray(mask)
    return block_properties(mask, np.ones(mask.shape[0]) if rows is None else rows, valid)


# -------------------------------------------------------------------------------------- against skimage
@pytest.mark.parametrize("density", [0.05, 0.3, 0.5, 0.7, 0.95])
@pytest.mark.parametrize("seed", range(6))
def test_random_masks_match_skimage(seed, density):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(20, 90, 2))
    assert_matches_skimage((rng.random(shape) < density).astype(np.uint8))


@pytest.mark.parametrize("seed", range(3))
def test_random_masks_with_nodata_match_skimage(seed):
    rng = np.random.default_rng(100 + seed)
    mask = rng.random((60, 70)) < 0.6
    valid = rng.random((60, 70)) > 0.2  # invalid pixels are background: they open and close holes
    assert_matches_skimage(mask, valid)


def test_blobby_mask_with_many_holes_matches_skimage():
    mask = synthetic_mask((300, 280), seed=3, sigma=2.5, quantile=0.6)
    table = component_table(mask)
    assert table.n > 100 and (table.holes > 0).sum() > 5 and (table.holes > 1).any()
    assert_matches_skimage(mask)


def test_holes_and_diagonal_leaks():
    one = ring(7)
    assert component_table(one).euler.tolist() == [0]
    two = ring(9)
    two[4, 1:8] = 1  # a bar splits the hole in two
    assert component_table(two).euler.tolist() == [-1]
    leak = ring(7)
    leak[0, 3] = 0  # the gap in the wall is a 4-neighbour of the outside: no hole
    assert component_table(leak).euler.tolist() == [1]
    corner = ring(7)
    corner[0, 0] = 0  # a missing corner: the hole touches the outside only diagonally, still a hole
    assert component_table(corner).euler.tolist() == [0]
    for m in (one, two, leak, corner):
        assert_matches_skimage(m)


def test_nested_components_in_holes():
    m = np.zeros((17, 17), np.uint8)
    m[1:16, 1:16] = ring(15)  # outer ring
    m[4:13, 4:13] = ring(9)  # a ring inside its hole
    m[7:10, 7:10] = 1  # an island inside that
    m[6, 6] = 1  # and a pixel touching the island diagonally: the same component
    table = component_table(m)
    assert sorted(table.euler.tolist()) == [0, 0, 1]  # each ring has one hole; nested parts do not split it
    assert sorted(table.area.tolist()) == [10, 32, 56]
    assert props_of(m)["euler_total"] == 1 == euler_number(m, connectivity=2)
    assert_matches_skimage(m)


def test_diagonal_touching_is_one_component():
    m = np.zeros((6, 6), np.uint8)
    m[0:2, 0:2] = 1
    m[2:4, 2:4] = 1  # touches the first square at a corner
    m[4, 4] = 1  # and a pixel touching the second diagonally
    table = component_table(m)
    assert table.n == 1 and table.area.tolist() == [9]
    assert table.euler.tolist() == [1]
    assert_matches_skimage(m)


def test_components_touching_the_border():
    m = np.zeros((8, 10), np.uint8)
    m[:, 0] = 1  # a full column on the left border
    m[0, 3:10] = 1  # a top row to the right edge
    m[3:8, 4:9] = ring(5)  # a ring sitting on the bottom border: its hole is enclosed
    m[7, 6] = 0  # ... until its bottom wall opens onto the border
    assert_matches_skimage(m)
    m[7, 6] = 1
    assert component_table(m).holes.sum() == 1
    assert_matches_skimage(m)
    assert_matches_skimage(np.ones((5, 4), np.uint8))  # the whole image
    assert_matches_skimage(np.ones((1, 9), np.uint8))  # one row
    assert_matches_skimage(np.ones((9, 1), np.uint8))  # one column


@pytest.mark.parametrize(
    "pixels",
    [
        [(3, 3)],  # one pixel
        [(0, 0), (1, 1), (2, 2), (3, 3)],  # a diagonal line
        [(0, 0), (1, 1), (2, 2), (9, 2)],  # two far components: total hull spans empty rows
        [(1, 0), (1, 1), (1, 2), (0, 3), (5, 7)],
        [(0, 5), (1, 4), (2, 3), (3, 2), (4, 1), (4, 2), (4, 3), (4, 4), (4, 5)],  # a triangle outline
    ],
)
def test_thin_shapes_solidity_matches_skimage(pixels):
    m = np.zeros((10, 9), np.uint8)
    m[tuple(np.array(pixels).T)] = 1
    assert_matches_skimage(m)


def test_world_truth_block_matches_skimage():
    truth = block_truth(get_world(0), FARMLAND)
    mask = truth.cropland
    table = component_table(mask)
    assert table.n > 20 and (table.holes > 0).any()
    assert_matches_skimage(mask)
    props = block_properties_for_window(mask, FARMLAND.window())
    assert props["cropland_m2"] == pytest.approx(truth.cropland_m2, rel=1e-12)


# ----------------------------------------------------------------------------------------------- areas
def test_cropland_area_is_per_row_weighted_count():
    window = FARMLAND.window()
    rng = np.random.default_rng(7)
    mask = rng.random(window.shape) < 0.3
    areas = row_pixel_areas(window)
    props = block_properties_for_window(mask, window)
    assert props["cropland_m2"] == pytest.approx(float(mask.sum(axis=1) @ areas), rel=1e-12)
    assert props["cropland_m2"] == pytest.approx(masked_area_m2(mask, window), rel=1e-12)
    assert props["valid_m2"] == pytest.approx(float(areas.sum() * window.shape[1]), rel=1e-12)
    assert props["area_fraction"] == pytest.approx(props["cropland_m2"] / props["valid_m2"], rel=1e-15)


def test_full_mask_is_the_block_area_on_the_ellipsoid():
    window = FARMLAND.window()
    props = block_properties_for_window(np.ones(window.shape, bool), window)
    # the cell's area in closed form: Δλ · (F(φ_north) − F(φ_south)) over the block's pixel columns
    lats = global_pixel_to_lonlat(np.zeros(2), np.array([window.row0, window.row1], float), window.zoom)[1]
    dlon = window.shape[1] * pixel_size(window.zoom) / 6378137.0
    block_m2 = dlon * float(band_integral(lats[0]) - band_integral(lats[1]))
    assert props["cropland_m2"] == pytest.approx(block_m2, rel=1e-9)
    assert props["area_fraction"] == 1.0 and props["n_components"] == 1 and props["solidity_total"] == 1.0
    assert props["edge_density_m_per_ha"] == 0.0  # the block border is not an edge


def test_nodata_is_left_out_of_the_denominator():
    mask = np.zeros((10, 10), np.uint8)
    mask[:, :3] = 1
    valid = np.ones((10, 10), bool)
    valid[:, 5:] = False
    mask[:, 8] = 1  # cropland under nodata does not count
    props = props_of(mask, valid=valid)
    assert props["cropland_m2"] == 30.0 and props["valid_m2"] == 50.0 and props["area_fraction"] == 0.6
    assert props["n_components"] == 1


# ----------------------------------------------------------------------------------------- edge density
def test_edge_density_of_a_square():
    m = np.zeros((20, 30), np.uint8)
    m[5:9, 10:14] = 1
    props = props_of(m, rows=np.full(20, 4.0))  # 2 m sides
    assert props["edge_density_m_per_ha"] == pytest.approx(16 * 2.0 / (600 * 4.0 / 10_000), rel=1e-15)


def test_edges_on_the_border_or_against_nodata_do_not_count():
    m = np.zeros((10, 10), np.uint8)
    m[0:3, 0:3] = 1  # in the corner: two sides on the block border
    valid = np.ones((10, 10), bool)
    valid[:, 3] = False  # the right side faces nodata
    props = props_of(m, valid=valid)
    assert props["edge_density_m_per_ha"] == pytest.approx(3.0 / (90 / 10_000), rel=1e-15)  # the bottom side only


def test_edge_density_between_rows_of_different_area():
    m = np.zeros((2, 3), np.uint8)
    m[0, 1] = 1
    rows = np.array([4.0, 9.0])  # sides 2 m and 3 m
    props = props_of(m, rows=rows)
    edge_m = 2.0 + 2.0 + (2.0 + 3.0) / 2  # left, right (row 0), and the side between the rows
    assert props["edge_density_m_per_ha"] == pytest.approx(edge_m / (3 * 13.0 / 10_000), rel=1e-15)


# --------------------------------------------------------------------------------------------- empty
def test_no_cropland_does_not_crash():
    props = props_of(np.zeros((5, 6), np.uint8))
    assert props["n_components"] == 0 and props["euler_total"] == 0
    assert props["cropland_m2"] == 0.0 and props["area_fraction"] == 0.0 and props["edge_density_m_per_ha"] == 0.0
    for key in ("solidity_mean", "solidity_total", "euler_mean"):
        assert math.isnan(props[key]), key
    json.dumps(props)  # plain Python numbers


def test_no_valid_pixel_gives_nan_fractions():
    props = props_of(np.ones((5, 6), np.uint8), valid=np.zeros((5, 6), bool))
    assert props["n_components"] == 0 and props["valid_m2"] == 0.0
    assert math.isnan(props["area_fraction"]) and math.isnan(props["edge_density_m_per_ha"])


def test_values_are_json_serialisable():
    props = block_properties_for_window(synthetic_mask((40, 50), seed=1), PixelWindow(16, 0, 30000, 50, 30040))
    assert json.loads(json.dumps(props)).keys() == set(PROPERTY_NAMES)
    assert all(type(v) in (int, float) for v in props.values())


# ------------------------------------------------------------------------------------------------- IoU
def test_mask_iou():
    a = np.zeros((4, 5), np.uint8)
    b = np.zeros((4, 5), np.uint8)
    a[0, :4] = 1
    b[0, 2:] = 1  # 2 shared of 5
    assert mask_iou(a, b) == pytest.approx(2 / 5)
    assert mask_iou(a, a) == 1.0 and mask_iou(a, 1 - a) == 0.0
    valid = np.ones((4, 5), bool)
    valid[0, 4] = False
    assert mask_iou(a, b, valid) == pytest.approx(2 / 4)
    assert mask_iou(a == 1, b == 1) == pytest.approx(2 / 5)


def test_mask_iou_of_empty_masks():
    empty = np.zeros((3, 3), np.uint8)
    assert mask_iou(empty, empty) == 1.0  # both sources agree: no cropland
    assert math.isnan(mask_iou(np.ones((3, 3), bool), empty, valid=np.zeros((3, 3), bool)))  # nothing to compare


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "mask, match",
    [
        (np.zeros((4, 4), np.float32), r"dtype float32.*>= 0\.5"),
        (np.full((4, 4), 255, np.uint8), r"values other than 0 and 1.*255.*valid=False"),
        (np.full((4, 4), -1, np.int16), "values other than 0 and 1"),
        (np.zeros((4, 4, 3), np.uint8), r"2-D.*one band"),
        (np.zeros((0, 4), np.uint8), "empty"),
    ],
)
def test_bad_masks_name_the_fix(mask, match):
    with pytest.raises(ValueError, match=match):
        block_properties(mask, np.ones(max(mask.shape[0], 1)))
    with pytest.raises(ValueError, match=match):
        mask_iou(mask, mask)


def test_mismatched_shapes_name_the_fix():
    mask = np.zeros((4, 5), np.uint8)
    with pytest.raises(ValueError, match=r"valid has shape .*same grid"):
        block_properties(mask, np.ones(4), valid=np.ones((5, 4), bool))
    with pytest.raises(ValueError, match=r"valid .*dtype float64"):
        block_properties(mask, np.ones(4), valid=np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"shape \(3,\) but the mask has 4 rows.*row_pixel_areas"):
        block_properties(mask, np.ones(3))
    with pytest.raises(ValueError, match="finite and positive"):
        block_properties(mask, np.array([1.0, np.nan, 1.0, 1.0]))
    with pytest.raises(ValueError, match="finite and positive"):
        block_properties(mask, np.array([1.0, -1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"window is .*Block.window"):
        block_properties_for_window(mask, FARMLAND.window())
    with pytest.raises(ValueError, match="differ in shape"):
        mask_iou(mask, np.zeros((5, 4), np.uint8))
