"""Block selection of an active-learning round (mapper.al.select) on synthetic pool tables shaped like the
blocks.parquet of `mapper run`."""

from __future__ import annotations

import logging
import math
import time

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mapper.al.pool import SelectionError, haversine_km
from mapper.al.select import OUTPUT_COLUMNS, select_blocks
from mapper.al.strategies import strategy_names
from mapper.config.models import SelectionSettings
from mapper.decide.table import SOURCE_FEATURES, TERRAIN
from mapper.grid.region import block_boxes

CORRECTNESS = ("TP", "TN", "FP", "Noise", "Artifact")
DECISIONS = ("Neither", "Only A", "Only B", "Merge")
COVERAGES = ("Planting", "Non-planting", "Cloudy", "Snow/Ice", "Nodata")
PROVINCES = ("Guangdong", "Guangxi", "Hunan", "Jiangxi")
CHINA_BLOCKS = 383_267
NO_SPACING = {"min_distance_km": 0.0}


# ---------------------------------------------------------------------------------------------- synthetic pools
def pool_table(n: int, seed: int = 0, width: int = 60, x0: int = 5800, y0: int = 2200, geometry: bool = True):
    """A pool like `block_table` writes: n blocks on a width-wide grid, mostly done, with features, IQA
    coverage, correctness and integration outputs, final areas and truth columns."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    ix, iy = x0 + k % width, y0 + k // width
    t = {"block_id": [f"{a}_{b}" for a, b in zip(ix, iy, strict=True)], "ix": ix, "iy": iy,
         "province": np.asarray(PROVINCES, dtype=object)[(k % width) * len(PROVINCES) // width],
         "status": rng.choice(["done", "failed", "pending"], n, p=[0.94, 0.03, 0.03])}  # fmt: skip
    lat = (iy + 0.5) / 20 - 90
    land = (111_195 * 0.05) ** 2 * np.cos(np.radians(lat)) * rng.uniform(0.6, 1.0, n)
    for s in "ab":
        t.update(source_columns(rng, n, s))
    t.update(terrain_columns(rng, n))
    t.update(decision_columns(rng, n))
    fraction = np.where(rng.random(n) < 0.35, rng.uniform(0, 0.01, n), rng.beta(2, 4, n))
    t.update({"cropland_m2": fraction * land, "land_m2": land, "cropland_fraction": fraction})
    t.update({"label": rng.choice(CORRECTNESS, n), "truth_iou": rng.random(n), "truth_t": rng.random(n)})
    table = pd.DataFrame(t)
    table["b_consistency_iou"] = table["a_consistency_iou"]
    undone = table["status"] != "done"
    for column in table.columns.difference(["block_id", "ix", "iy", "province", "status", "terrain_missing"]):
        table.loc[undone, column] = None if table[column].dtype == object else np.nan
    if geometry:
        return gpd.GeoDataFrame(table, geometry=block_boxes(ix, iy), crs="EPSG:4326")
    return table


def source_columns(rng, n: int, s: str) -> dict:
    cols = {f"{s}_{f}": rng.random(n) for f in SOURCE_FEATURES}
    cols[f"{s}_edge_density_m_per_ha"] = rng.gamma(2, 50, n)
    cols[f"{s}_valid_fraction"] = rng.uniform(0.7, 1.0, n)
    cols[f"{s}_consistency_iou"] = np.where(rng.random(n) < 0.05, np.nan, rng.random(n))
    cols[f"{s}_coverage"] = rng.choice(COVERAGES, n, p=[0.6, 0.2, 0.1, 0.05, 0.05]).astype(object)
    cols[f"{s}_uncertain_fraction"] = np.where(rng.random(n) < 0.05, np.nan, rng.beta(1, 6, n))
    p = rng.dirichlet([3, 3, 1, 1, 0.5], n)
    cols.update({f"{s}_p_{c}": p[:, j] for j, c in enumerate(CORRECTNESS)})
    cols[f"{s}_pred_semantic"] = np.asarray(CORRECTNESS, dtype=object)[p.argmax(axis=1)]
    return cols


def terrain_columns(rng, n: int) -> dict:
    cols = {"elevation_median": rng.gamma(2, 300, n), "slope_median_deg": rng.gamma(2, 4, n),
            "tri_median": rng.gamma(2, 2, n), "roughness_median": rng.gamma(2, 6, n)}  # fmt: skip
    cols["terrain_missing"] = np.zeros(n, dtype=bool)
    assert set(cols) == set(TERRAIN)
    return cols


def decision_columns(rng, n: int) -> dict:
    p = rng.dirichlet([4, 2, 2, 2], n)
    cols = {f"p_{c.replace(' ', '_')}": p[:, j] for j, c in enumerate(DECISIONS)}
    cols["decision"] = np.asarray(DECISIONS, dtype=object)[p.argmax(axis=1)]
    return cols


def set_row(table: pd.DataFrame, i: int, **values) -> None:
    for column, value in values.items():
        table.loc[i, column] = value


def usable_done(table: pd.DataFrame) -> pd.Series:
    bad = {"Cloudy", "Snow/Ice", "Nodata"}
    return (table["status"] == "done") & ~(table["a_coverage"].isin(bad) & table["b_coverage"].isin(bad))


def pairwise_km(lon, lat) -> np.ndarray:
    """Independent of the module: the spherical law of cosines (fine above a few metres)."""
    lon, lat = np.radians(lon), np.radians(lat)
    c = np.sin(lat[:, None]) * np.sin(lat[None]) + np.cos(lat[:, None]) * np.cos(lat[None]) * np.cos(
        lon[:, None] - lon[None]
    )
    return 6371.0088 * np.arccos(np.clip(c, -1, 1))


def block_centres(block_ids) -> tuple[np.ndarray, np.ndarray]:
    ix, iy = np.array([[int(v) for v in b.split("_")] for b in block_ids]).T
    return (ix + 0.5) * 0.05 - 180, (iy + 0.5) * 0.05 - 90


@pytest.fixture(scope="module")
def pool():
    return pool_table(3000)


# ---------------------------------------------------------------------------------------------- every strategy
@pytest.mark.parametrize("strategy", strategy_names())
def test_truth_columns_never_change_the_selection(pool, strategy):
    chosen = select_blocks(pool, 40, strategy, seed=3)
    shuffled = pool.copy()
    rng = np.random.default_rng(9)
    for column in ("label", "truth_iou", "truth_t"):
        shuffled[column] = rng.permutation(shuffled[column].to_numpy())
    shuffled["truth_error_m2_merge"] = rng.random(len(shuffled))  # a truth column the pool never had
    pd.testing.assert_frame_equal(select_blocks(shuffled, 40, strategy, seed=3), chosen)
    assert list(chosen.columns) == list(OUTPUT_COLUMNS)
    assert len(chosen) == 40 and chosen["rank"].tolist() == list(range(1, 41))


def test_truth_columns_are_gone_before_any_score_reads_them(pool):
    settings = SelectionSettings(diversity_features=("a_area_fraction", "truth_iou"))
    with pytest.raises(SelectionError, match="'truth_iou'"):
        select_blocks(pool, 5, "combined", settings=settings)


@pytest.mark.parametrize("strategy", strategy_names())
def test_labelled_excluded_and_unusable_never_chosen(pool, strategy):
    usable = pool[usable_done(pool)]
    labelled, excluded = set(usable["block_id"][:400]), set(usable["block_id"][400:800])
    chosen = select_blocks(pool, 60, strategy, labelled=labelled, excluded=excluded, settings=SelectionSettings(
        **NO_SPACING))  # fmt: skip
    assert len(chosen) == 60
    assert not set(chosen["block_id"]) & (labelled | excluded)
    assert set(chosen["block_id"]) <= set(usable["block_id"])
    assert chosen["block_id"].is_unique


@pytest.mark.parametrize("strategy", ["error", "uncertainty", "disagreement", "combined"])
def test_unusable_blocks_with_the_best_scores_are_still_never_chosen(strategy):
    table = pool_table(400, seed=1)
    tempting = dict(a_p_FP=0.99, b_p_FP=0.99, a_p_TP=0.0, b_p_TP=0.0, a_uncertain_fraction=0.9,
                    b_uncertain_fraction=0.9, a_consistency_iou=0.0, b_consistency_iou=0.0, a_pred_semantic="FP",
                    b_pred_semantic="FP", decision="Merge", land_m2=3e7, a_valid_fraction=1.0,
                    b_valid_fraction=1.0)  # fmt: skip
    cloudy = list(range(0, 40))
    failed = list(range(40, 80))
    for i in cloudy:
        set_row(table, i, status="done", a_coverage="Cloudy", b_coverage=COVERAGES[2 + i % 3], **tempting)
    for i in failed:
        set_row(table, i, status=("failed", "pending")[i % 2], a_coverage="Planting", b_coverage="Planting", **tempting)
    one_usable = 80  # one source cloudy, the other fine: still a candidate, and the best one
    set_row(table, one_usable, status="done", a_coverage="Snow/Ice", b_coverage="Planting", **tempting)
    chosen = select_blocks(table, 30, strategy, settings=SelectionSettings(**NO_SPACING))
    assert not set(chosen["block_id"]) & set(table["block_id"][cloudy + failed])
    assert table["block_id"][one_usable] in set(chosen["block_id"])


def test_fewer_candidates_than_asked_returns_them_all_and_says_so(caplog):
    table = pool_table(50, seed=2)
    n_usable = int(usable_done(table).sum())
    with caplog.at_level(logging.INFO, logger="mapper.al.select"):
        chosen = select_blocks(table, 500, "random", settings=SelectionSettings(**NO_SPACING))
    assert len(chosen) == n_usable
    assert f"{n_usable} of 500 blocks chosen" in caplog.text
    assert len(select_blocks(table, 0, "combined")) == 0


# ---------------------------------------------------------------------------------------------- the scores
def small_table() -> pd.DataFrame:
    """Four done blocks with hand-set correctness outputs and areas."""
    table = pool_table(4, seed=4, geometry=False)
    table["status"] = "done"
    table["a_coverage"] = table["b_coverage"] = "Planting"
    zero = {f"{s}_p_{c}": 0.0 for s in "ab" for c in CORRECTNESS}
    rows = [  # (decision, A's p_FP, p_Noise, p_Artifact; B's p_FP, p_Noise, p_Artifact)
        ("Only A", (0.5, 0.1, 0.0), (0.9, 0.0, 0.0)),  # uses A only: e = 0.6
        ("Only B", (0.9, 0.0, 0.0), (0.1, 0.1, 0.1)),  # uses B only: e = 0.3
        ("Merge", (0.2, 0.0, 0.0), (0.1, 0.3, 0.4)),  # both, the worse: e = 0.8
        ("Neither", (0.3, 0.0, 0.1), (0.1, 0.0, 0.0)),  # both: e = 0.4
    ]
    for i, (decision, a, b) in enumerate(rows):
        set_row(table, i, decision=decision, **zero)
        set_row(table, i, **{f"a_p_{c}": v for c, v in zip(("FP", "Noise", "Artifact"), a, strict=True)})
        set_row(table, i, **{f"b_p_{c}": v for c, v in zip(("FP", "Noise", "Artifact"), b, strict=True)})
    return table


def test_error_score_uses_the_sources_of_the_decision():
    chosen = select_blocks(small_table(), 4, "error", settings=SelectionSettings(**NO_SPACING))
    got = dict(zip(chosen["block_id"], chosen["error_score"], strict=True))
    ids = small_table()["block_id"].tolist()
    assert got == pytest.approx({ids[0]: 0.6, ids[1]: 0.3, ids[2]: 0.8, ids[3]: 0.4})
    assert chosen["block_id"].tolist() == [ids[2], ids[0], ids[3], ids[1]]


def test_error_score_skips_an_unusable_source_and_weighs_low_pcs():
    table = small_table()
    table.loc[2, "b_coverage"] = "Cloudy"  # Merge, but B is cloudy: A's 0.2 counts
    table["province"] = ["Guangdong", "Guangxi", "Guangxi", "Hunan"]
    pcs = {"Guangdong": 0.4, "Guangxi": 1.3}  # Hunan: no PCS → weight 1
    chosen = select_blocks(table, 4, "error", province_pcs=pcs, settings=SelectionSettings(**NO_SPACING))
    got = dict(zip(chosen["block_id"], chosen["error_score"], strict=True))
    ids = table["block_id"].tolist()
    w = 1 + 2.0 * (0.8 - 0.4) / 0.8  # the default pcs_weight 2 and threshold 0.8
    assert got == pytest.approx({ids[0]: 0.6 * w, ids[1]: 0.3, ids[2]: 0.2, ids[3]: 0.4})
    assert chosen["reason"].iloc[0].endswith("Guangdong PCS 0.40")


def test_error_prefers_fp_noise_artifact_and_low_pcs_provinces(pool):
    chosen = select_blocks(pool, 50, "error")
    done = pool[usable_done(pool)]
    judged = [done[f"{s}_pred_semantic"].isin(["FP", "Noise", "Artifact"]) for s in "ab"]
    share_pool = (judged[0] | judged[1]).mean()
    picked = done.set_index("block_id").loc[chosen["block_id"]]
    share_picked = (picked["a_pred_semantic"].isin(["FP", "Noise", "Artifact"])
                    | picked["b_pred_semantic"].isin(["FP", "Noise", "Artifact"])).mean()  # fmt: skip
    assert share_picked > 0.95 > share_pool
    assert chosen["error_score"].is_monotonic_decreasing
    assert "judged" in chosen["reason"].iloc[0] and "error p" in chosen["reason"].iloc[0]
    random_picks = select_blocks(pool, 50, "random")
    assert chosen["error_score"].mean() > random_picks["error_score"].mean() + 0.2

    low = select_blocks(pool, 50, "error", province_pcs={"Hunan": 0.3, "Guangdong": 0.95, "Guangxi": 1.0})
    assert (low["province"] == "Hunan").mean() > 0.8 > (chosen["province"] == "Hunan").mean()


def test_uncertainty_is_uncertain_area_and_disagreement_skips_nan():
    table = small_table()
    table[["a_valid_fraction", "b_valid_fraction"]] = [[1.0, 0.5], [0.8, 0.8], [1.0, 1.0], [1.0, 1.0]]
    table[["a_uncertain_fraction", "b_uncertain_fraction"]] = [[0.1, 0.4], [0.2, np.nan], [np.nan, np.nan], [0.3, 0.0]]
    table["land_m2"] = [1e6, 2e6, 3e6, 1e6]
    table.loc[3, "a_coverage"] = "Nodata"  # A's 0.3 does not count
    table["a_consistency_iou"] = [0.9, np.nan, 0.2, 0.5]
    settings = SelectionSettings(**NO_SPACING)
    u = select_blocks(table, 4, "uncertainty", settings=settings)
    ids = table["block_id"].tolist()
    assert u["block_id"].tolist() == [ids[1], ids[0], ids[3]]  # block 2 has no uncertain fraction
    assert u["uncertainty_m2"].tolist() == pytest.approx([0.32e6, 0.2e6, 0.0])
    assert "32.0 ha" in u["reason"].iloc[0] and "source A" in u["reason"].iloc[0]
    d = select_blocks(table, 4, "disagreement", settings=settings)
    assert d["block_id"].tolist() == [ids[2], ids[3], ids[0]]
    assert d["score"].tolist() == pytest.approx([0.8, 0.5, 0.1])


# ---------------------------------------------------------------------------------------------- combined
def test_combined_honours_the_negative_quota_and_the_random_share(pool):
    settings = SelectionSettings(random_share=0.2, negative_share=0.3, min_distance_km=0)
    chosen = select_blocks(pool, 50, "combined", settings=settings)
    counts = chosen["strategy"].value_counts().to_dict()
    assert counts == {"combined score": 25, "negative quota": 15, "random share": 10}
    rows = pool.set_index("block_id").loc[chosen["block_id"][chosen["strategy"] == "negative quota"]]
    bad = {"Cloudy", "Snow/Ice", "Nodata"}
    judged_fp = ((rows["a_pred_semantic"] == "FP") & ~rows["a_coverage"].isin(bad)) | (
        (rows["b_pred_semantic"] == "FP") & ~rows["b_coverage"].isin(bad))  # fmt: skip
    assert ((rows["cropland_fraction"] <= 0.02) | (judged_fp & (rows["cropland_fraction"] <= 0.1))).all()
    assert chosen["reason"][chosen["strategy"] == "negative quota"].str.startswith("negative: ").all()
    # the random share is not the best-scored: its combined scores spread like the pool's
    randoms = chosen["combined_score"][chosen["strategy"] == "random share"]
    assert randoms.mean() < chosen["combined_score"][chosen["strategy"] == "combined score"].mean()


def test_combined_fills_a_short_negative_quota_from_the_combined_score(caplog):
    table = pool_table(600, seed=5)
    table["cropland_fraction"] = 0.5
    table["a_pred_semantic"] = table["b_pred_semantic"] = "TP"
    table.loc[[10, 20, 30], ["status", "a_coverage", "b_coverage", "b_pred_semantic", "cropland_fraction"]] = [
        "done", "Planting", "Planting", "FP", 0.05]  # fmt: skip
    settings = SelectionSettings(random_share=0, negative_share=0.5, min_distance_km=0)
    with caplog.at_level(logging.INFO, logger="mapper.al"):
        chosen = select_blocks(table, 20, "combined", settings=settings)
    assert len(chosen) == 20
    assert chosen["strategy"].value_counts().to_dict() == {"combined score": 17, "negative quota": 3}
    assert "only 3 of the 10 negative-quota blocks" in caplog.text


@pytest.mark.parametrize("strategy", ["combined", "error", "random"])
def test_min_distance_is_honoured_between_picks_and_from_labelled_blocks(strategy):
    table = pool_table(2500, seed=6, width=50)
    usable = table["block_id"][usable_done(table)].tolist()
    labelled = [*usable[::97], "5700_2100"]  # the last is outside the table: its id gives its place
    chosen = select_blocks(table, 25, strategy, labelled=labelled, settings=SelectionSettings(min_distance_km=30))
    assert len(chosen) == 25
    lon, lat = block_centres([*chosen["block_id"], *labelled])
    d = pairwise_km(lon, lat)[: len(chosen)]
    d[np.arange(len(chosen)), np.arange(len(chosen))] = np.inf
    assert d.min() >= 30
    assert chosen["nearest_km"].to_numpy() == pytest.approx(d.min(axis=1), rel=1e-6)
    no_spacing = select_blocks(table, 25, strategy, labelled=labelled, settings=SelectionSettings(**NO_SPACING))
    lon, lat = block_centres(no_spacing["block_id"])
    assert (pairwise_km(lon, lat) + np.eye(25) * 1e9).min() < 30  # the rule, not luck, kept them apart


def test_haversine_matches_known_distances():
    assert haversine_km(0, 0, 0, 1) == pytest.approx(111.195, rel=1e-4)
    assert haversine_km(116.4, 39.9, 121.5, 31.2) == pytest.approx(1067, rel=0.01)  # Beijing–Shanghai


def two_cluster_table() -> pd.DataFrame:
    """60 blocks of feature cluster 1 with the best scores, 340 of cluster 2 with lower ones."""
    table = pool_table(400, seed=7, geometry=False)
    table["status"] = "done"
    table["a_coverage"] = table["b_coverage"] = "Planting"
    high = np.arange(400) < 60
    rng = np.random.default_rng(0)
    for column in SelectionSettings().diversity_features:
        table[column] = np.where(high, 10.0, 0.0) + rng.normal(0, 0.1, 400)
    table["a_p_FP"] = table["b_p_FP"] = np.where(high, 0.9, 0.3) + rng.uniform(0, 0.05, 400)
    table["a_consistency_iou"] = np.where(high, 0.1, 0.6) + rng.uniform(0, 0.05, 400)
    table["a_uncertain_fraction"] = table["b_uncertain_fraction"] = np.where(high, 0.5, 0.1)
    return table


def test_k_center_spreads_picks_over_feature_clusters():
    table = two_cluster_table()
    cluster_1 = set(table["block_id"][:60])
    settings = SelectionSettings(random_share=0, negative_share=0, min_distance_km=0)
    for strategy in ("error", "uncertainty", "disagreement"):  # pure top score: cluster 1 only
        assert set(select_blocks(table, 10, strategy, settings=settings)["block_id"]) <= cluster_1
    combined = select_blocks(table, 10, "combined", settings=settings)
    in_1 = combined["block_id"].isin(cluster_1)
    assert in_1.any() and not in_1.all()
    assert combined["block_id"].iloc[0] in cluster_1  # nothing labelled yet: the best score comes first
    assert combined["block_id"].iloc[1] not in cluster_1  # then the farthest


def test_k_center_is_seeded_with_the_labelled_blocks():
    table = two_cluster_table()
    settings = SelectionSettings(random_share=0, negative_share=0, min_distance_km=0)
    labelled = table["block_id"][:5].tolist()  # cluster 1 is known already
    chosen = select_blocks(table, 10, "combined", settings=settings, labelled=labelled)  # shortlist: 98 blocks
    assert not chosen["block_id"].isin(table["block_id"][:60]).iloc[0]
    assert chosen["feature_distance"].iloc[0] > 10


# ---------------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("strategy", strategy_names())
def test_deterministic_per_seed_and_independent_of_row_order(pool, strategy):
    chosen = select_blocks(pool, 30, strategy, seed=11)
    pd.testing.assert_frame_equal(select_blocks(pool, 30, strategy, seed=11), chosen)
    reordered = pool.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(select_blocks(reordered, 30, strategy, seed=11), chosen)


def test_random_differs_across_seeds(pool):
    a, b = (select_blocks(pool, 30, "random", seed=s)["block_id"] for s in (0, 1))
    assert len(set(a) & set(b)) < 10
    a, b = (select_blocks(pool, 50, "combined", seed=s) for s in (0, 1))
    assert set(a["block_id"][a["strategy"] == "random share"]) != set(b["block_id"][b["strategy"] == "random share"])


# ---------------------------------------------------------------------------------------------- bad input
def test_unknown_strategy_names_the_known_ones(pool):
    known = "combined, disagreement, error, random, uncertainty"
    with pytest.raises(ValueError, match=f"unknown selection strategy 'entropy'; known: {known}"):
        select_blocks(pool, 5, "entropy")
    with pytest.raises(ValueError, match="n must be 0 or more"):
        select_blocks(pool, -1, "random")


@pytest.mark.parametrize(("strategy", "drop", "writer"), [
    ("error", "b_p_Artifact", "decide stage"),
    ("error", "decision", "decide stage"),
    ("uncertainty", "a_uncertain_fraction", "segment stage"),
    ("uncertainty", "land_m2", "final stage"),
    ("disagreement", "a_consistency_iou", "features stage"),
    ("combined", "a_sharpness", "features stage"),
    ("combined", "cropland_fraction", "final stage"),
    ("random", "a_coverage", "IQA stage"),  # without b_coverage it is a one-source table (test_al_selection_campaign)
    ("random", "status", "final stage"),
])  # fmt: skip
def test_a_missing_column_is_named_with_what_writes_it(pool, strategy, drop, writer):
    with pytest.raises(SelectionError, match=rf"'{drop}' \(the {writer}"):
        select_blocks(pool.drop(columns=[drop]), 5, strategy)


def test_a_strategy_does_not_need_the_columns_of_others(pool):
    chosen = select_blocks(pool.drop(columns=["a_uncertain_fraction", "a_consistency_iou"]), 5, "error")
    assert len(chosen) == 5 and chosen["uncertainty_m2"].isna().all()
    weights = {"error": 1.0, "uncertainty": 0.0, "disagreement": 0.0}
    settings = SelectionSettings(weights=weights)
    assert len(select_blocks(pool.drop(columns=["a_uncertain_fraction"]), 5, "combined", settings=settings)) == 5


def test_settings_are_strict():
    with pytest.raises(ValidationError, match="extra"):
        SelectionSettings(random_shares=0.1)
    with pytest.raises(ValidationError, match="at most 1"):
        SelectionSettings(random_share=0.6, negative_share=0.6)
    with pytest.raises(ValidationError, match="above 0"):
        SelectionSettings(weights={"error": 0, "uncertainty": 0, "disagreement": 0})
    with pytest.raises(ValueError, match="not a block id"):
        select_blocks(pool_table(10), 2, "random", labelled=["somewhere"])


# ---------------------------------------------------------------------------------------------- speed
@pytest.mark.slow
def test_a_china_size_pool_selects_in_seconds():
    table = pool_table(CHINA_BLOCKS, seed=8, width=1240, x0=5060, y0=2160, geometry=False)
    labelled = table["block_id"][usable_done(table)].iloc[::350].tolist()  # ~1,000, like the paper's labels
    t0 = time.perf_counter()
    chosen = select_blocks(table, 100, "combined", labelled=labelled, province_pcs={"Hunan": 0.7})
    seconds = time.perf_counter() - t0
    assert len(chosen) == 100 and not chosen["block_id"].isin(labelled).any()
    assert seconds < 10, f"{seconds:.1f} s"
    assert math.isfinite(chosen["nearest_km"].min()) and chosen["nearest_km"].min() >= 10
