"""Selection over the rounds of a campaign (mapper.al.rounds.step_select, mapper.al.select): k-center remembers
the blocks earlier rounds picked, the random and negative shares hold over the campaign, a negative is never
rich in cropland, the shortlist leaves the score a say on a small pool, and a pool of one source can be selected
from."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mapper.al.campaign import CampaignLayout, Ledger, write_sample
from mapper.al.pool import SelectionError
from mapper.al.rounds import Campaign, step_select
from mapper.al.select import select_blocks
from mapper.al.strategies.combined import quotas
from mapper.config.models import AlConfig, SelectionSettings
from tests.test_al_select import pool_table

FEATURES = SelectionSettings().diversity_features
BY_ERROR = {"error": 1.0, "uncertainty": 0.0, "disagreement": 0.0}  # the combined score ranks by the error alone
PURE = {"random_share": 0.0, "negative_share": 0.0, "min_distance_km": 0.0, "weights": BY_ERROR}


def usable(table: pd.DataFrame) -> pd.DataFrame:
    table["status"] = "done"
    table["a_coverage"] = table["b_coverage"] = "Planting"
    return table


def scored(n: int, score, feature, seed: int = 0) -> pd.DataFrame:
    """n usable blocks whose error score is `score` (Merge, p_FP of both sources) and whose diversity features
    all equal `feature`."""
    table = usable(pool_table(n, seed=seed, width=n))
    for s in "ab":
        table[f"{s}_p_FP"] = score
        table[f"{s}_p_Noise"] = table[f"{s}_p_Artifact"] = 0.0
    table["decision"] = "Merge"
    for column in FEATURES:
        table[column] = np.asarray(feature, dtype=float)
    return table


# ---------------------------------------------------------------------------------------------- a campaign's rounds
def open_campaign(root, table: pd.DataFrame, round_blocks: int, settings: SelectionSettings) -> Campaign:
    """A campaign as step_select sees it, its ledger loaded from disk (as every `mapper al` command does)."""
    layout = CampaignLayout(root)
    if not layout.ledger_file.exists():
        write_sample(layout, "pool", table["block_id"])
        write_sample(layout, "validation", [])
        write_sample(layout, "decision", [])
        Ledger.new(layout, {"segmentation": "seg-default"}).save()
    identity = {"strategy": "combined", "sources": ["a", "b"], "provinces": sorted(set(table["province"])),
                "province_of": dict(zip(table["block_id"], table["province"], strict=True))}  # fmt: skip
    config = SimpleNamespace(al=AlConfig(round_blocks=round_blocks, selection=settings))
    return Campaign(layout, identity, config, region=None, executor_factory=None)


def label_round(c: Campaign, k: int, table: pd.DataFrame) -> pd.DataFrame:
    """Round k: a pool run that predicts the blocks not labelled yet (as step_pool asks), the selection, and every
    pick ingested."""
    pool_dir = c.layout.run_dir(k, "pool")
    pool_dir.mkdir(parents=True)
    table[~table["block_id"].isin(c.ledger.labelled_blocks())].to_parquet(pool_dir / "blocks.parquet")
    c.ledger.rounds.append({"round": k, "steps": {}, "done": False})
    c.ledger.record(k, "pool", {"dir": str(pool_dir)})
    c.ledger.record(k, "select", step_select(c, k))
    chosen = pd.read_parquet(c.ledger.round(k)["steps"]["select"]["file"])
    c.ledger.record(k, "ingest", {"ingested": chosen["block_id"].tolist()})
    c.ledger.round(k)["done"] = True
    c.ledger.save()
    return chosen


def test_k_center_is_seeded_with_the_blocks_earlier_rounds_picked(tmp_path):
    # block 0 is round 1's pick; block 1 its twin in features, block 2 far from it, the rest in between
    score = [0.99, 0.98, 0.97, *np.linspace(0.6, 0.4, 17)]
    feature = [0.0, 0.0, 10.0, *[5.0] * 17]
    table = scored(20, score, feature)
    settings = SelectionSettings(**PURE)
    round_1 = label_round(open_campaign(tmp_path, table, 1, settings), 1, table)
    assert round_1["block_id"].tolist() == [table["block_id"][0]]  # nothing labelled yet: the best score
    round_2 = label_round(open_campaign(tmp_path, table, 1, settings), 2, table)
    # round 2's pool table lacks block 0, yet k-center keeps away from it: its twin is not preferred
    assert round_2["block_id"].tolist() == [table["block_id"][2]]
    std = np.std(feature[1:])  # block 0's row standardised with round 2's table's mean and std
    assert round_2["feature_distance"].iloc[0] == pytest.approx(np.sqrt(len(FEATURES)) * 10.0 / std)


def test_labelled_features_seed_k_center_only_for_labelled_blocks_the_table_lacks():
    table = scored(20, [0.99, 0.98, 0.97, *np.linspace(0.6, 0.4, 17)], [0.0, 0.0, 10.0, *[5.0] * 17]).iloc[1:]
    seeds = pd.DataFrame({"block_id": ["5800_2200"], **{c: [0.0] for c in FEATURES}})
    settings = SelectionSettings(**PURE)
    seeded = select_blocks(table, 1, "combined", settings=settings, labelled=["5800_2200"], labelled_features=seeds)
    assert seeded["block_id"].tolist() == ["5802_2200"]
    unlabelled = select_blocks(table, 1, "combined", settings=settings, labelled_features=seeds)
    assert unlabelled["block_id"].tolist() == ["5801_2200"]  # a row of a block that is not labelled is no seed
    spacing_only = select_blocks(table, 1, "combined", settings=settings, labelled=["5800_2200"])
    assert spacing_only["block_id"].tolist() == ["5801_2200"]  # labelled, but no feature row anywhere


def test_the_random_and_negative_shares_hold_over_the_campaign(tmp_path):
    table = usable(pool_table(300, seed=3))
    settings = SelectionSettings(random_share=0.2, negative_share=0.3, min_distance_km=0)
    parts = []
    for k in range(1, 6):  # 5 rounds of 2 blocks, the ledger reloaded each round
        chosen = label_round(open_campaign(tmp_path, table, 2, settings), k, table)
        parts.append(chosen["strategy"].value_counts().to_dict())
    assert parts == [{"combined score": 2}, {"combined score": 1, "negative quota": 1},
                     {"combined score": 1, "random share": 1}, {"combined score": 1, "negative quota": 1},
                     {"negative quota": 1, "random share": 1}]  # fmt: skip
    total = pd.DataFrame(parts).sum().to_dict()
    assert total == {"combined score": 5, "negative quota": 3, "random share": 2}  # per round: 0 random, 5 negatives


def test_quotas_carry_the_remainder_and_what_a_short_part_owes():
    shares = SelectionSettings(random_share=0.2, negative_share=0.3)
    assert quotas(shares, 2, {}) == (0, 0)
    assert quotas(shares, 50, {}) == (10, 15)  # one selection alone: the shares of n
    assert quotas(shares, 2, {"combined score": 2}) == (0, 1)
    # an earlier round found no negative: it is still due, within n and after the random share
    assert quotas(shares, 2, {"combined score": 10}) == (2, 0)
    assert quotas(shares, 4, {"combined score": 10, "random share": 2}) == (1, 3)  # 3 random, 4 negatives due
    assert quotas(SelectionSettings(random_share=0.29, negative_share=0), 100, {}) == (29, 0)  # 0.29 · 100 < 29


# ---------------------------------------------------------------------------------------------- negatives
def test_a_block_judged_fp_but_rich_in_cropland_is_never_a_negative():
    table = usable(pool_table(400, seed=4))
    rich, poor = 7, 8  # both judged FP by both sources, with the best negative scores
    table.loc[[rich, poor], ["a_pred_semantic", "b_pred_semantic"]] = "FP"
    table.loc[[rich, poor], ["a_p_FP", "b_p_FP"]] = [[0.99, 0.99], [0.98, 0.98]]
    table.loc[[rich, poor], "cropland_fraction"] = [0.6, 0.05]
    settings = SelectionSettings(random_share=0, negative_share=1, min_distance_km=0)
    chosen = select_blocks(table, 40, "combined", settings=settings)
    negatives = chosen[chosen["strategy"] == "negative quota"]
    assert len(negatives) == 40
    assert table["block_id"][rich] not in set(negatives["block_id"])
    assert negatives["block_id"].iloc[0] == table["block_id"][poor]
    assert negatives["reason"].iloc[0] == "negative: source A and B judged FP, final map 5.0% cropland"
    fraction = table.set_index("block_id").loc[negatives["block_id"], "cropland_fraction"]
    assert (fraction <= 0.1).all()
    # the FP route's limit is a setting
    loose = SelectionSettings(random_share=0, negative_share=1, min_distance_km=0, negative_fp_max_cropland_fraction=1)
    assert select_blocks(table, 1, "combined", settings=loose)["block_id"].iloc[0] == table["block_id"][rich]


# ---------------------------------------------------------------------------------------------- the shortlist
def test_the_shortlist_is_a_share_of_a_small_pool_and_weighs_score_with_distance():
    # blocks 0 and 1 have the best scores and near features; 2..4 follow, near them too; the 15 others are far
    score = [0.99, 0.98, 0.97, 0.96, 0.95, *np.linspace(0.3, 0.1, 15)]
    feature = [0.0, 0.4, 0.5, 0.45, 0.3, *[10.0] * 15]
    chosen = select_blocks(scored(20, score, feature), 2, "combined", settings=SelectionSettings(**PURE))
    # shortlist: max(2, min(10 · 2, 0.25 · 20)) = blocks 0..4. After block 0, preference = score rank among 1..4
    # + distance / the largest: block 1 1.0 + 0.8, block 2 0.75 + 1.0, block 3 0.5 + 0.9, block 4 0.25 + 0.6
    assert chosen["block_id"].tolist() == ["5800_2200", "5801_2200"]  # not a far block of score 0.3
    feature[2] = 10.0  # now block 2 is far: 0.75 + 1.0 against block 1's 1.0 + 0.04
    chosen = select_blocks(scored(20, score, feature), 2, "combined", settings=SelectionSettings(**PURE))
    assert chosen["block_id"].tolist() == ["5800_2200", "5802_2200"]
    wide = SelectionSettings(**PURE, shortlist_share=1.0)  # the whole pool: a far block of the lowest score
    assert select_blocks(scored(20, score, feature), 2, "combined", settings=wide)["block_id"].iloc[1] != "5801_2200"


# ---------------------------------------------------------------------------------------------- one source
def one_source(n: int = 300, seed: int = 5, correctness: bool = True) -> pd.DataFrame:
    """A pool table of source A alone (real chips, or a run of one imagery source): no b_* columns, no
    integration outputs, no consistency between sources; with or without A's correctness judgement."""
    table = pool_table(n, seed=seed)
    table["status"] = "done"
    table["a_coverage"] = "Planting"
    table["a_consistency_iou"] = np.nan
    drop = [c for c in table.columns if c.startswith(("b_", "p_")) or c == "decision"]
    if not correctness:
        drop += [c for c in table.columns if c.startswith("a_p_") or c == "a_pred_semantic"]
    return table.drop(columns=drop)


@pytest.mark.parametrize("correctness", [True, False])
def test_a_pool_of_one_source_selects_with_uncertainty_diversity_random_and_negatives(caplog, correctness):
    table = one_source(correctness=correctness)
    u = select_blocks(table, 10, "uncertainty", settings=SelectionSettings(min_distance_km=0))
    area = table["a_uncertain_fraction"] * table["a_valid_fraction"] * table["land_m2"]
    assert u["uncertainty_m2"].tolist() == pytest.approx(sorted(area.dropna(), reverse=True)[:10])
    assert u["reason"].str.contains("source A").all()
    assert len(select_blocks(table, 10, "random")) == 10
    with caplog.at_level(logging.INFO, logger="mapper.al"):
        chosen = select_blocks(table, 10, "combined", settings=SelectionSettings(min_distance_km=0))
    assert chosen["strategy"].value_counts().to_dict() == {"combined score": 5, "negative quota": 3, "random share": 2}
    assert "one source: the combined score ranks by uncertainty only, its weights renormalised" in caplog.text
    assert chosen["combined_score"].max() <= 1.0 and chosen["error_score"].isna().all()
    combined = chosen[chosen["strategy"] == "combined score"]
    assert np.isfinite(combined["feature_distance"].iloc[1:]).all()  # k-center on source A's features and terrain
    fraction = table.set_index("block_id").loc[chosen["block_id"][chosen["strategy"] == "negative quota"]]
    assert (fraction["cropland_fraction"] <= (0.1 if correctness else 0.02)).all()


@pytest.mark.parametrize(("strategy", "weights"), [("error", None), ("disagreement", None), ("combined", BY_ERROR)])
def test_scores_of_two_sources_say_so_on_a_pool_of_one(strategy, weights):
    settings = SelectionSettings(weights=weights) if weights else None
    with pytest.raises(SelectionError, match=r"needs? two sources.*source A only"):
        select_blocks(one_source(), 5, strategy, settings=settings)
