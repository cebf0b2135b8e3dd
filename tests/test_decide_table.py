"""Decision labels from ground truth (semantic correctness, integration, final mask) and the feature tables."""

from __future__ import annotations

import json
import logging
import math
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from affine import Affine

from mapper.decide.table import (
    INTEGRATION_FEATURES,
    SOURCE_FEATURES,
    TERRAIN,
    TableError,
    build_tables,
    image_features,
    read_table,
    terrain_source,
    write_table,
)
from mapper.decide.truth import (
    CORRECTNESS_CLASSES,
    INTEGRATION_CLASSES,
    block_score,
    correctness_class,
    final_mask,
    integration_choice,
    integration_errors,
)
from mapper.features.terrain import TERRAIN_FEATURES, DemArray
from mapper.grid.blocks import Block
from mapper.imagery.mosaic import BlockMosaic
from mapper.labels.store import write_labelled_block
from mapper.seg.predict import SegResult, write_prediction
from mapper.world.conditions import COVERAGE_NAMES

N = 100  # 100 × 100 px, every pixel 1 m²: shares are pixel counts / 10,000
ONES = np.ones(N)


def grid(count: int = 0, value: int = 1, fill: int = 0) -> np.ndarray:
    """An N × N uint8 mask of `fill` whose first `count` pixels (row-major) are `value`."""
    a = np.full(N * N, fill, np.uint8)
    a[:count] = value
    return a.reshape(N, N)


# ---------------------------------------------------------------------------------------------- correctness
def test_each_correctness_rule():
    field = grid(2000)
    assert correctness_class(grid(), grid(), "Planting", ONES) == "TN"
    assert correctness_class(field, field, "Planting", ONES) == "TP"
    assert correctness_class(grid(), field, "Cloudy", ONES) == "Artifact"
    assert correctness_class(grid(), grid(300), "Planting", ONES) == "Noise"  # 3 % of the block missed
    assert correctness_class(grid(2000), grid(), "Planting", ONES) == "FP"  # commission
    assert correctness_class(grid(), grid(2000), "Non-planting", ONES) == "FP"  # omission
    assert set(CORRECTNESS_CLASSES) == {"TP", "TN", "FP", "Noise", "Artifact"}


def test_rules_apply_in_order():
    field = grid(2000)
    assert correctness_class(field, field, "Snow/Ice", ONES) == "TP"  # right despite the snow
    assert correctness_class(grid(), grid(), "Nodata", ONES) == "TN"  # nothing to find, nothing mapped
    assert correctness_class(grid(), grid(300), "Cloudy", ONES) == "Artifact"  # small error, bad imagery
    assert correctness_class(grid(2000), grid(), None, ONES) == "FP"  # unknown coverage: usable imagery


@pytest.mark.parametrize(
    ("pred", "truth", "expected"),
    [
        (grid(), grid(49), "TN"),  # t = 0.0049
        (grid(), grid(50), "Noise"),  # t = 0.005: not empty
        (grid(49), grid(), "TN"),  # p = 0.0049
        (grid(50), grid(), "Noise"),
        (grid(60), grid(100), "TP"),  # IoU = 0.6
        (grid(59), grid(100), "Noise"),  # IoU = 0.59, e = 0.0041
        (grid(), grid(499), "Noise"),  # e = 0.0499
        (grid(), grid(500), "FP"),  # e = 0.05
    ],
)
def test_thresholds(pred, truth, expected):
    assert correctness_class(pred, truth, "Planting", ONES) == expected


def test_score_is_area_weighted_over_imaged_and_labelled_pixels():
    truth = grid()
    truth[0, :] = 1  # cropland in the first row, which weighs 3 × each other row
    pred = truth.copy()
    pred[1, :50] = 1  # commission in row 1
    pred[2:, :] = 255  # no imagery below row 1 ...
    truth[:, -1] = 255  # ... and one column unlabelled
    areas = np.r_[3.0, np.ones(N - 1)]
    s = block_score(pred, truth, areas)
    assert s.area_m2 == pytest.approx(99 * 4)
    assert s.t == pytest.approx(99 * 3 / (99 * 4))
    assert s.e == pytest.approx(50 / (99 * 4))
    assert s.iou == pytest.approx(297 / 347)
    assert set(s.as_dict()) == {"t", "p", "e", "iou", "area_m2"}


def test_no_pixel_imaged_and_labelled_is_an_artifact():
    s = block_score(grid(fill=255), grid(2000), ONES)
    assert s.area_m2 == 0 and math.isnan(s.t) and math.isnan(s.iou)
    assert correctness_class(grid(fill=255), grid(2000), "Planting", ONES) == "Artifact"
    assert correctness_class(grid(), grid(fill=255), "Planting", ONES) == "Artifact"


def test_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match="uint8"):
        correctness_class(grid().astype(bool), grid(), "Planting", ONES)
    with pytest.raises(ValueError, match="shape"):
        correctness_class(grid(), np.zeros((N, N + 1), np.uint8), "Planting", ONES)
    with pytest.raises(ValueError, match="row_pixel_areas"):
        correctness_class(grid(), grid(), "Planting", np.ones(N + 1))
    with pytest.raises(ValueError, match="one of"):
        final_mask("Both", grid(), grid())


# ---------------------------------------------------------------------------------------------- integration
def halves():
    left, right = grid(), grid()
    left[10:40, 5:45] = 1
    right[60:90, 55:95] = 1
    return left, right


def test_integration_picks_the_closest_candidate():
    left, right = halves()
    both = left | right
    assert integration_choice(left, right, left, ONES) == "Only A"
    assert integration_choice(left, right, right, ONES) == "Only B"
    assert integration_choice(left, right, both, ONES) == "Merge"
    assert integration_choice(left, right, grid(), ONES) == "Neither"  # both wrong: map nothing
    errors = integration_errors(left, right, both, ONES)
    assert list(errors) == list(INTEGRATION_CLASSES)
    assert errors == {"Neither": 2400.0, "Only A": 1200.0, "Only B": 1200.0, "Merge": 0.0}


def test_ties_go_to_the_simpler_map():
    left, _ = halves()
    assert integration_choice(grid(), grid(), grid(), ONES) == "Neither"
    assert integration_choice(left, left, left, ONES) == "Only A"  # A, B and Merge equal
    assert integration_choice(grid(), left, left, ONES) == "Only B"  # B and Merge equal


def test_integration_with_nodata_in_one_source():
    left, right = halves()
    truth = left | right
    a = left.copy()
    a[:, 50:] = 255  # A has no imagery over the right half, where B's field is
    assert integration_choice(a, right, truth, ONES) == "Merge"  # B fills A's gap
    assert integration_choice(a, truth, truth, ONES) == "Only B"  # B alone is right; Merge ties with it
    assert integration_choice(a, grid(fill=255), left, ONES) == "Only A"  # no imagery in B: not cropland
    unlabelled = truth.copy()
    unlabelled[:, 50:] = 255  # what is not labelled does not count
    assert integration_choice(a, right, unlabelled, ONES) == "Only A"


def test_final_mask():
    a = np.array([[1, 0, 255, 1]], np.uint8)
    b = np.array([[0, 1, 1, 255]], np.uint8)
    gap = np.array([[1, 0, 255, 255]], np.uint8)
    assert final_mask("Neither", a, b).tolist() == [[0, 0, 0, 0]]
    assert final_mask("Only A", a, b).tolist() == [[1, 0, 0, 1]]
    assert final_mask("Only B", a, b).tolist() == [[0, 1, 1, 0]]
    assert final_mask("Merge", a, b).tolist() == [[1, 1, 1, 1]]
    assert final_mask("Merge", gap, gap).tolist() == [[1, 0, 255, 255]]  # neither has imagery: 255
    assert final_mask("Neither", gap, gap).dtype == np.uint8


# ---------------------------------------------------------------------------------------------- features
BLOCK = Block.containing(10.02, 0.02)  # at the equator: 2330 × 2330 px
SECOND = Block(BLOCK.ix + 1, BLOCK.iy)


class StubCoverage:
    """A coverage model: Planting unless the view shows no imagery; records its batches."""

    size = 8
    classes = tuple(COVERAGE_NAMES)

    def __init__(self):
        self.batches = []

    def classify_views(self, views, any_valid=None, batch_size=64):
        self.batches.append(len(views))
        out = []
        for v, ok in zip(views, any_valid, strict=True):
            p = np.zeros(5, np.float32)
            p[4 if not ok or v[..., 3].mean() > 100 else 0] = 1.0  # Nodata beyond ~40 % without imagery
            out.append((COVERAGE_NAMES[int(p.argmax())], p))
        return out


def fields(shape, boxes) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    for r, c, h, w in boxes:
        m[r : r + h, c : c + w] = 1
    return m


def mosaic(block, truth, nodata_cols=0) -> BlockMosaic:
    """Brown striped fields on green; no imagery in the first `nodata_cols` columns."""
    w = block.window()
    rgb = np.empty((*w.shape, 3), np.uint8)
    rgb[:] = (60, 100, 50)
    rgb[truth == 1] = (150, 120, 80)
    rgb[::3] //= 2  # stripes: a gradient at 2 rows in 3, so the median sharpness is not 0
    valid = np.ones(w.shape, bool)
    valid[:, :nodata_cols] = False
    rgb[~valid] = 0
    return BlockMosaic(w, rgb, valid, block_id=block.id)


def prediction(mask, valid) -> SegResult:
    prob = np.where(valid, mask.astype(np.float32) * 0.9 + 0.05, np.nan).astype(np.float32)
    return SegResult(prob, valid)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Two world-like labelled blocks and their predictions, one more block without predictions.

    Block 1: A maps the fields exactly, B maps nothing (→ A TP, B FP, Only A).
    Block 2: A has no imagery over its left 1200 columns, where one of the two fields lies, and misses the
    other; B maps both fields → A Artifact (Cloudy), B TP, Only B (Merge ties with it)."""
    root = tmp_path_factory.mktemp("decide")
    labels, preds = root / "labels", root / "preds"
    shape = BLOCK.window().shape
    truth1 = fields(shape, [(100, 100, 600, 800), (1500, 1200, 500, 700)])
    truth2 = fields(shape, [(200, 100, 700, 900), (1400, 1300, 600, 600)])
    first_only = fields(shape, [(200, 100, 700, 900)])  # the field under A's gap
    cases = [
        (BLOCK, truth1, 0, {"a": "Planting", "b": "Planting"}, {"a": truth1, "b": np.zeros(shape, np.uint8)}),
        (SECOND, truth2, 1200, {"a": "Cloudy", "b": "Planting"}, {"a": first_only, "b": truth2}),
    ]
    for block, truth, gap, coverage, masks in cases:
        images = {"a": mosaic(block, truth, gap), "b": mosaic(block, truth)}
        write_labelled_block(labels, block, images, truth, coverage, "world seed 7", extra={"world": {"seed": 7}})
        for s, m in masks.items():
            write_prediction(prediction(m, images[s].valid), block.window(), preds / block.id / f"image_{s}.tif")
    third = Block(BLOCK.ix + 2, BLOCK.iy)
    small = fields(shape, [(0, 0, 10, 10)])
    write_labelled_block(labels, third, {"a": mosaic(third, small), "b": mosaic(third, small)}, small,
                         {"a": "Planting", "b": "Planting"}, "human")  # fmt: skip
    (labels / "9999_1").mkdir()  # an interrupted write: no label.json
    return labels, preds


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def tables(roots):
    model = StubCoverage()
    logger, collect = logging.getLogger("mapper.decide.table"), Collect()
    logger.addHandler(collect)
    try:
        correctness, integration = build_tables(*roots, dem=None, coverage_model=model, batch_blocks=1)
    finally:
        logger.removeHandler(collect)
    model.warnings = collect.messages
    return correctness, integration, model


def test_image_features():
    w = BLOCK.window()
    truth = fields(w.shape, [(100, 1100, 600, 800)])
    m = mosaic(BLOCK, truth, nodata_cols=1000)
    pred = np.where(m.valid, truth, 255).astype(np.uint8)
    probs = [0.1, 0.7, 0.1, 0.05, 0.05]
    f = image_features(pred, m, probs, w, other_mask=truth)
    assert tuple(f) == SOURCE_FEATURES
    assert f["iqa_class"] == 1 and f["p_non_planting"] == pytest.approx(0.7)
    assert f["n_components"] == 1 and f["euler_total"] == 1 and f["solidity_total"] == 1.0
    assert f["cropland_m2"] == pytest.approx(600 * 800 * 2.3887**2, rel=0.01)
    assert f["valid_fraction"] == pytest.approx(1 - 1000 / w.shape[1])
    assert f["consistency_iou"] == 1.0  # equal where both imaged
    assert f["sharpness"] > 0 and 0 <= f["hue_median"] < 360
    g = image_features(pred, m, None, w)
    assert g["iqa_class"] == -1 and math.isnan(g["p_planting"]) and math.isnan(g["consistency_iou"])


def test_build_tables(tables):
    correctness, integration, model = tables
    assert list(correctness["block_id"]) == [BLOCK.id, BLOCK.id, SECOND.id, SECOND.id]
    assert list(correctness["source"]) == ["a", "b", "a", "b"]
    assert list(correctness["label"]) == ["TP", "FP", "Artifact", "TP"]
    assert set(SOURCE_FEATURES) <= set(correctness.columns)
    assert correctness["world_seed"].tolist() == [7] * 4
    assert correctness.crs.to_epsg() == 4326
    assert correctness.geometry.iloc[0].equals(BLOCK.polygon)
    assert correctness["iqa_class"].tolist() == [0, 0, 4, 0]  # A of block 2 is half without imagery
    assert correctness["p_nodata"].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert correctness["consistency_iou"].tolist() == [0.0] * 4  # one source maps nothing where both image
    assert correctness["truth_coverage"].tolist() == ["Planting", "Planting", "Cloudy", "Planting"]
    assert correctness["truth_iou"].iloc[0] == 1.0
    assert correctness["n_components"].dtype == np.int64

    assert list(integration["label"]) == ["Only A", "Only B"]
    assert list(integration.columns[:2]) == ["block_id", "world_seed"]
    assert set(INTEGRATION_FEATURES) <= set(integration.columns)
    assert integration[list(TERRAIN_FEATURES)].isna().all().all() and integration["terrain_missing"].all()
    row = integration.iloc[1]
    assert row["a_valid_fraction"] < 1 and row["b_valid_fraction"] == 1
    assert row["truth_error_m2_only_b"] == row["truth_error_m2_merge"] == 0

    build = correctness.attrs["mapper_build"]
    assert build["blocks"] == 2
    assert build["skipped"] == {"incomplete": 1, "missing_prediction": 1, "missing_source": 0}
    assert model.batches == [2, 2]  # one block's two images per batch (batch_blocks=1)
    assert model.warnings == [
        "decision tables: skipped 1 block(s), incomplete: 9999_1",
        f"decision tables: skipped 1 block(s), missing prediction: {BLOCK.ix + 2}_{BLOCK.iy}",
    ]


def test_terrain_sources():
    class Labelled:  # what terrain needs of a labelled block
        block = BLOCK
        meta: ClassVar[dict] = {"world": {"seed": 7}}

    with terrain_source(None) as terrain:
        t = terrain(Labelled())
    assert list(t) == list(TERRAIN) and t["terrain_missing"] and math.isnan(t["elevation_median"])
    res = 1 / 3600
    z = np.full((400, 400), 120.0, np.float32)
    dem = DemArray(z, Affine(res, 0, 10.0 - 0.01, 0, -res, 0.06))
    with terrain_source(dem) as terrain:
        t = terrain(Labelled())
    assert t["elevation_median"] == 120.0 and t["slope_median_deg"] == 0.0 and not t["terrain_missing"]


def test_table_roundtrip(tables, tmp_path):
    correctness, integration, _ = tables
    for df, kind in ((correctness, "correctness"), (integration, "integration")):
        path = write_table(df, tmp_path / f"{kind}.parquet")
        back = read_table(path, kind=kind)
        assert back.attrs["mapper_table"]["schema"] == "mapper-decide-table/1"
        assert back.attrs["mapper_table"]["sources"] == ["a", "b"]
        assert back.crs.to_epsg() == 4326
        pd.testing.assert_frame_equal(pd.DataFrame(back), pd.DataFrame(df))
        assert pq.read_schema(path).metadata[b"geo"]  # GeoParquet
    with pytest.raises(TableError, match="not a integration table"):
        read_table(tmp_path / "correctness.parquet", kind="integration")


def test_a_table_of_another_version_is_refused(tables, tmp_path):
    correctness, _, _ = tables
    path = write_table(correctness, tmp_path / "c.parquet")
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"mapper_table"])
    old = table.replace_schema_metadata({**table.schema.metadata, b"mapper_table": json.dumps(
        {**meta, "schema": "mapper-decide-table/0"}).encode()})  # fmt: skip
    pq.write_table(old, tmp_path / "old.parquet")
    with pytest.raises(TableError, match=r"another mapper version.*rebuild it"):
        read_table(tmp_path / "old.parquet")
    plain = table.replace_schema_metadata({k: v for k, v in table.schema.metadata.items() if k != b"mapper_table"})
    pq.write_table(plain, tmp_path / "plain.parquet")
    with pytest.raises(TableError, match="not a mapper decision table"):
        read_table(tmp_path / "plain.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(TableError, match="not a Parquet file"):
        read_table(tmp_path / "junk.parquet")
