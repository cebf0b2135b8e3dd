"""`mapper validate`: the three-level validation of a run directory, its stop verdict, and the ratio estimator
of a province's cropland from a sample of its blocks."""

from __future__ import annotations

import json
import shutil
import sqlite3
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from conftest import WORLD_RUN_BLOCK
from mapper.validation.pixels import pixel_counts, pixel_metrics
from mapper.validation.provinces import province_comparison
from mapper.validation.sampling import ratio_estimate, t_quantile
from mapper.validation.semantic import final_model_class
from mapper.validation.stop import STOP_THRESHOLDS, stop_verdict
from mapper.validation.truth import grid_problem
from mapper.validation.validate import ValidationInputError

from mapper.cli.validate import validate
from mapper.decide.pipeline import _area_counts
from mapper.grid.area import row_pixel_areas
from mapper.grid.blocks import Block
from mapper.imagery.mosaic import BlockMosaic
from mapper.labels.store import write_labelled_block
from mapper.maps.statistics import Statistic, StatisticsError
from mapper.world.truth import block_truth
from mapper.world.world import get_world

BLOCK = Block.parse(WORLD_RUN_BLOCK)  # the block of the shared `world_run` (conftest.py)


# ---------------------------------------------------------------------------------------------- ratio estimator
def test_ratio_estimate_matches_the_formula_by_hand():
    y = np.array([10.0, 0.0, 30.0, 5.0])
    x = np.array([100.0, 50.0, 100.0, 80.0])
    est = ratio_estimate(y, x, population_x=2000.0, population_n=20)
    r = 45.0 / 330.0
    s2 = np.sum((y - r * x) ** 2) / 3
    se = np.sqrt(2000.0**2 * (1 - 4 / 20) * s2 / (4 * x.mean() ** 2))
    assert est.ratio == pytest.approx(r) and est.total == pytest.approx(2000 * r)
    assert est.se == pytest.approx(se) and est.fpc == pytest.approx(0.8)
    assert est.ci95[1] == pytest.approx(est.total + 3.182446305 * se, rel=2e-3)  # t(0.975, 3 df)


def test_a_census_has_no_sampling_error_and_one_block_no_interval():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.0, 50)
    y = x * rng.uniform(0, 0.6, 50)
    est = ratio_estimate(y, x, x.sum(), 50)
    assert est.total == pytest.approx(y.sum()) and est.se == 0.0 and est.ci95[0] == est.ci95[1]
    one = ratio_estimate(y[:1], x[:1], x.sum(), 50)
    assert one.se is None and one.ci95 is None and one.total == pytest.approx(x.sum() * y[0] / x[0])
    assert ratio_estimate([0.0], [0.0], 10.0, 5) is None  # no land sampled: nothing to scale from
    with pytest.raises(ValueError, match="population"):
        ratio_estimate(y, x, x.sum(), 10)


def test_the_95_percent_interval_covers_the_true_total_95_percent_of_the_time():
    """Simple random samples of a synthetic province: full blocks and border blocks (less land), a cropland
    share that trends across the province plus skewed block-to-block noise."""
    rng = np.random.default_rng(1)
    n_blocks = 2000
    x = np.full(n_blocks, 28e6)
    border = rng.random(n_blocks) < 0.15
    x[border] *= rng.random(border.sum())
    share = np.clip(0.2 + 0.15 * np.sin(np.arange(n_blocks) / 150) + rng.beta(0.8, 3, n_blocks) * 0.5 - 0.1, 0, 1)
    y = share * x
    for n, reps in ((20, 2000), (60, 1000)):
        covered = 0
        for _ in range(reps):
            idx = rng.choice(n_blocks, n, replace=False)
            lo, hi = ratio_estimate(y[idx], x[idx], x.sum(), n_blocks).ci95
            covered += lo <= y.sum() <= hi
        assert 0.93 <= covered / reps <= 0.97, (n, covered / reps)


def test_t_quantile_matches_scipy():
    from scipy import stats

    for df in (1, 2, 3, 5, 7, 12, 30, 200):
        assert t_quantile(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), abs=5e-3 if df == 3 else 1e-3)


# ---------------------------------------------------------------------------------------------- verdict
def test_stop_verdict_names_the_failing_criteria():
    ok = stop_verdict(0.9, 0.9, 0.95)
    assert ok["stop"] and ok["failing"] == [] and ok["waived"] == []
    v = stop_verdict(0.70, 0.90, 0.75)
    assert not v["stop"] and v["failing"] == ["iou", "pcs"] and v["waived"] == []
    assert v["criteria"]["iou"]["reason"] == "IoU 0.700 < 0.85" and v["criteria"]["semantic_correctness"]["met"]
    assert stop_verdict(0.85, 0.85, 0.80)["stop"]  # the thresholds are inclusive
    assert stop_verdict(0.9, 0.84, 1.0)["failing"] == ["semantic_correctness"]


def test_unmeasured_criteria_fail_and_the_extra_rounds_exception_waives_only_pcs():
    v = stop_verdict(None, 0.9, 1.0, unmeasured={"iou": "no labelled block"})
    assert v["failing"] == ["iou"] and "not measured: no labelled block" in v["criteria"]["iou"]["reason"]
    cloudy = {"poor_imagery_share": 0.5}
    assert stop_verdict(0.9, 0.9, 0.6, extra_rounds=2, **cloudy)["failing"] == ["pcs"]
    waived = stop_verdict(0.9, 0.9, 0.6, extra_rounds=3, **cloudy)
    assert waived["stop"] and waived["waived"] == ["pcs"] and waived["failing"] == []
    assert "50% of its blocks have poor imagery" in waived["criteria"]["pcs"]["reason"]
    assert stop_verdict(0.7, 0.9, 0.6, extra_rounds=3, **cloudy)["failing"] == ["iou"]  # IoU is never waived
    assert stop_verdict(0.9, 0.9, None, extra_rounds=5, **cloudy)["failing"] == ["pcs"]  # no statistic: no waiver


def test_the_pcs_waiver_is_only_for_provinces_with_poor_imagery():
    """Defect g: three extra rounds waive a short PCS only where clouds or poor imagery explain it."""
    clear = stop_verdict(0.9, 0.9, 0.7, extra_rounds=3, poor_imagery_share=0.05)
    assert not clear["stop"] and clear["failing"] == ["pcs"] and clear["waived"] == []
    assert "not waived after 3 extra rounds: 5% of its blocks" in clear["criteria"]["pcs"]["reason"]
    cloudy = stop_verdict(0.9, 0.9, 0.7, extra_rounds=3, poor_imagery_share=0.45)
    assert cloudy["stop"] and cloudy["waived"] == ["pcs"]
    unknown = stop_verdict(0.9, 0.9, 0.7, extra_rounds=3)
    assert not unknown["stop"] and "share of poor imagery is unknown" in unknown["criteria"]["pcs"]["reason"]
    assert stop_verdict(0.9, 0.9, 0.7, extra_rounds=3, poor_imagery_share=0.3)["stop"]  # the threshold is inclusive
    stricter = {**STOP_THRESHOLDS, "waiver_min_poor_imagery_share": 0.6}
    assert not stop_verdict(0.9, 0.9, 0.7, 3, stricter, poor_imagery_share=0.45)["stop"]


def test_the_lower_bound_rule_asks_the_interval_to_clear_the_threshold():
    intervals = {"iou": [0.84, 0.93], "semantic_correctness": [0.86, 0.95], "pcs": [0.82, 1.1]}
    point = stop_verdict(0.9, 0.9, 0.95, intervals=intervals)
    assert point["stop"] and point["rule"] == "point" and "(95 % CI 0.840-0.930)" in point["criteria"]["iou"]["reason"]
    low = stop_verdict(0.9, 0.9, 0.95, intervals=intervals, rule="lower_bound")
    assert not low["stop"] and low["failing"] == ["iou"]
    assert low["criteria"]["iou"]["reason"] == "IoU 0.900 (95 % CI 0.840-0.930): lower end 0.840 < 0.85"
    assert low["criteria"]["iou"]["decided_on"] == "lower end" and low["criteria"]["pcs"]["met"]
    # a criterion without an interval falls back to its point value, and says so
    fallback = stop_verdict(0.9, 0.9, 0.95, intervals={**intervals, "iou": None}, rule="lower_bound")
    assert fallback["stop"] and fallback["criteria"]["iou"]["decided_on"] == "point"
    assert "no interval: decided on the point value" in fallback["criteria"]["iou"]["reason"]
    with pytest.raises(ValueError, match="stop rule"):
        stop_verdict(0.9, 0.9, 0.9, rule="median")


def test_the_stop_thresholds_are_defined_once_in_the_config():
    from mapper.config.models import AlConfig, StopThresholds

    assert StopThresholds().model_dump() == STOP_THRESHOLDS
    assert AlConfig.model_fields["stop_rule"].default == "lower_bound"
    assert StopThresholds().waiver_min_poor_imagery_share == 0.3


# ---------------------------------------------------------------------------------------------- pieces
def test_pixel_counts_agree_with_integrated_iou_and_count_no_imagery_as_not_cropland():
    rng = np.random.default_rng(3)
    pred = rng.choice(np.array([0, 1, 255], np.uint8), (40, 30), p=[0.5, 0.4, 0.1])
    truth = rng.choice(np.array([0, 1, 255], np.uint8), (40, 30), p=[0.5, 0.4, 0.1])
    areas = rng.uniform(4.0, 5.0, 40)
    counts = pixel_counts(pred, truth, areas)
    assert np.allclose(counts[:3], _area_counts(pred == 1, truth, areas), rtol=1e-12)
    labelled = truth != 255
    assert counts[3] == pytest.approx((areas[:, None] * labelled).sum())
    assert counts[4] == pytest.approx((areas[:, None] * (labelled & (pred == 255))).sum())
    m = pixel_metrics(counts)
    assert m["iou"] == pytest.approx(counts[0] / counts[:3].sum())
    assert pixel_metrics(np.zeros(5))["iou"] is None  # no cropland anywhere: undefined, not 1


def test_final_map_class_from_the_model():
    assert final_model_class("Only A", ["FP", "TP"]) == "FP"
    assert final_model_class("Only B", ["FP", "TP"]) == "TP"
    assert final_model_class("Merge", ["TP", "TN"]) == "TP"
    assert final_model_class("Merge", ["TP", "Noise"]) == "Noise"
    assert final_model_class("Neither", ["Artifact", "Noise"]) == "TN"
    assert final_model_class("Neither", ["TP", "Artifact"]) == "FP"  # an empty map misses what A found


def test_province_comparison_cases():
    stat = Statistic("Guangdong", 1000.0, "user table s.csv", 2019)
    rng = np.random.default_rng(2)
    x = rng.uniform(2e7, 2.8e7, 30)
    y = x * rng.uniform(0.0, 0.1, 30)
    common = {"mapped_m2": y.sum(), "land_m2": x.sum(), "sample_y": y, "sample_x": x, "province_area_m2": 3e9,
              "blocks_in_province": 120}  # fmt: skip
    est = province_comparison(**common, complete=False, spread_sample=True, statistic=stat)
    expected = ratio_estimate(y, x, 3e9, 120)
    assert est["comparison"] == "sample estimate of the province" and est["estimate"]
    assert est["mapped_ha"] == pytest.approx(expected.total / 1e4) and est["pcs"] == pytest.approx(
        est["mapped_ha"] / 1e3
    )
    assert est["ci95"] == pytest.approx([v / 1e4 for v in expected.ci95])
    assert est["pcs_ci95"][0] < est["pcs"] < est["pcs_ci95"][1]
    whole = province_comparison(**common, complete=True, spread_sample=False, statistic=stat)
    assert whole["comparison"] == "whole province" and whole["mapped_ha"] == pytest.approx(y.sum() / 1e4)
    bbox = province_comparison(**common, complete=False, spread_sample=False, statistic=stat)
    assert bbox["comparison"] == "none" and bbox["pcs"] is None and "bbox" in bbox["note"]
    same = province_comparison(**common, complete=False, spread_sample=True, statistic=None,
                               same_area_truth_m2=y.sum() / 1.05, truth_label="world")  # fmt: skip
    assert same["comparison"] == "same area (world truth)" and same["pcs"] == pytest.approx(1.05)
    assert same["within_10pct"] and same["province_estimate"]["estimate_ha"] == pytest.approx(expected.total / 1e4)
    none = province_comparison(**{**common, "sample_y": [], "sample_x": []}, complete=False, spread_sample=True,
                               statistic=stat)  # fmt: skip
    assert none["comparison"] == "none" and none["pcs"] is None


def test_labels_on_another_zoom_are_refused_with_the_reason():
    lb = SimpleNamespace(mask=np.zeros(BLOCK.window(15).shape, np.uint8),
                         images={"demo-a": SimpleNamespace(window=BLOCK.window(15))})  # fmt: skip
    why = grid_problem(lb, BLOCK, 16)
    assert "another grid" in why and "z15" in why and "z16" in why
    ok = SimpleNamespace(
        mask=np.zeros(BLOCK.window().shape, np.uint8), images={"a": SimpleNamespace(window=BLOCK.window())}
    )
    assert grid_problem(ok, BLOCK, 16) is None


def test_not_a_run_directory(tmp_path):
    res = CliRunner().invoke(validate, [str(tmp_path)])
    assert isinstance(res.exception, ValidationInputError) and "not a run directory" in str(res.exception)
    res = CliRunner().invoke(validate, [str(tmp_path / "nope")])
    assert isinstance(res.exception, ValidationInputError) and "does not exist" in str(res.exception)


# ---------------------------------------------------------------------------------------------- a real run
@pytest.fixture(scope="module")
def run_dir(world_run):
    return world_run


@pytest.fixture(scope="module")
def report(run_dir):
    res = CliRunner().invoke(validate, [str(run_dir), "--json", "-q"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def truth():
    return block_truth(get_world(0), BLOCK)


@pytest.mark.slow
def test_json_report_of_a_world_run(run_dir, report, truth):
    assert {"pixel_iou", "semantic_correctness", "provinces", "missing"} <= set(report)
    assert report["complete"] and report["missing"] == {"blocks_pending": [], "blocks_failed": [], "files": []}
    assert json.loads((run_dir / "validation.json").read_text()) == {k: v for k, v in report.items() if k != "written"}

    # pooled IoU of the final map, recomputed by hand from final/BLOCK.tif and the world's truth
    with rasterio.open(run_dir / "final" / f"{BLOCK.id}.tif") as src:
        final = src.read(1)
    t = truth.cropland
    p = final == 1
    w = row_pixel_areas(BLOCK.window())[:, None]
    tp, fp, fn = (w * (p & t)).sum(), (w * (p & ~t)).sum(), (w * (~p & t)).sum()
    px = report["pixel_iou"]
    assert px["truth"] == "world seed 0" and px["blocks"] == 1 and px["maps"] == ["demo-a", "demo-b", "final"]
    assert px["final"]["iou"] == pytest.approx(tp / (tp + fp + fn), rel=1e-9)
    assert px["final"]["precision"] == pytest.approx(tp / (tp + fp), rel=1e-9)
    assert px["final"]["recall"] == pytest.approx(tp / (tp + fn), rel=1e-9)
    for name in ("demo-a", "demo-b"):
        assert 0 <= px[name]["iou"] <= 1 and px[name]["blocks"] == 1
    block = report["blocks"][0]
    assert block["block_id"] == BLOCK.id and block["maps"]["final"]["iou"] == pytest.approx(px["final"]["iou"])
    areas = [block["maps"]["final"][k] for k in ("tp_ha", "fp_ha", "fn_ha")]  # what paired acceptance reads
    assert areas == pytest.approx([tp / 1e4, fp / 1e4, fn / 1e4], rel=1e-9)

    sc = report["semantic_correctness"]
    assert sc["from"] == "truth" and sc["truth"] == "world seed 0"
    for name in ("demo-a", "demo-b", "final"):
        assert 0 <= sc[name]["rate"] <= 1 and sc[name]["n"] == 1 and sc[name]["from"] == "truth"
        assert block["maps"][name]["truth_class"] in sc[name]["classes"]

    # the run is a bbox over part of Guangdong: compared with the world's truth of exactly the mapped pixels
    (prov,) = report["provinces"]
    assert prov["province"] == "Guangdong" and prov["comparison"] == "same area (world truth)"
    assert prov["statistic_ha"] == pytest.approx(truth.cropland_m2 / 1e4, rel=1e-9)  # the block lies inside
    assert prov["mapped_ha"] == pytest.approx((w * p).sum() / 1e4, rel=1e-9)
    assert prov["pcs"] == pytest.approx(prov["mapped_ha"] / prov["statistic_ha"])
    assert prov["within_10pct"] == (abs(prov["pcs"] - 1) <= 0.1)
    assert "province_estimate" not in prov  # a bbox is no sample of the province
    stop = prov["stop"]
    assert set(stop["criteria"]) == {"iou", "semantic_correctness", "pcs"}
    assert stop["stop"] == (not stop["failing"])
    assert stop["criteria"]["iou"]["value"] == pytest.approx(px["final"]["iou"])
    assert {p["code"] for p in report["prefectures"]} <= {"CN044060", "CN044150"}  # Huizhou, Shenzhen
    assert sum(p["statistic_ha"] for p in report["prefectures"]) == pytest.approx(prov["statistic_ha"], rel=1e-9)


@pytest.mark.slow
def test_text_report_and_statistics_override(run_dir, tmp_path):
    res = CliRunner().invoke(validate, [str(run_dir), "-q"])
    assert res.exit_code == 0, res.output
    for part in ("Pixel level (truth: world seed 0", "semantic correctness", "Guangdong: same area", "Stop ("):
        assert part in res.stdout
    table = tmp_path / "stats.csv"
    table.write_text("province,cropland_ha\nGuangdong,2600000\n")
    res = CliRunner().invoke(validate, [str(run_dir), "--statistics", str(table), "--json", "-q"])
    (prov,) = json.loads(res.stdout)["provinces"]
    assert prov["statistic_source"] == "user table stats.csv" and prov["statistic_ha"] == 2600000
    assert prov["comparison"] == "none" and prov["pcs"] is None and prov["stop"]["failing"][-1] == "pcs"
    table.write_text("province,cropland_ha\nAtlantis,5\n")
    res = CliRunner().invoke(validate, [str(run_dir), "--statistics", str(table)])
    assert isinstance(res.exception, StatisticsError) and "Atlantis" in str(res.exception)


def _write_labels(root, truth_mask) -> None:
    """A labelled block of the run's block (blank images; the world's truth as the mask) and a block elsewhere."""
    window = BLOCK.window()
    image = BlockMosaic(window, np.zeros((*window.shape, 3), np.uint8), np.ones(window.shape, bool), block_id=BLOCK.id)
    write_labelled_block(root, BLOCK, {"demo-a": image, "demo-b": image}, truth_mask,
                         {"demo-a": "Non-planting", "demo-b": "Non-planting"}, "human")  # fmt: skip
    (root / "5000_2000").mkdir()  # a block the run does not hold: ignored, counted


@pytest.mark.slow
def test_labels_are_used_and_a_block_on_another_grid_is_refused(run_dir, report, truth, tmp_path):
    good = tmp_path / "labels"
    _write_labels(good, truth.cropland.astype(np.uint8))
    res = CliRunner().invoke(validate, [str(run_dir), "--labels", str(good), "--json", "-q"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    px = got["pixel_iou"]
    assert px["truth"] == f"labels {good}" and px["blocks"] == 1
    assert px["labels"]["used"] == 1 and px["labels"]["outside_run"] == 1 and px["labels"]["refused"] == []
    assert px["final"]["iou"] == pytest.approx(report["pixel_iou"]["final"]["iou"], rel=1e-12)  # same truth

    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    mask_path = bad / BLOCK.id / "mask.tif"
    with rasterio.open(mask_path) as src:
        data, profile = src.read(1), src.profile
    profile["transform"] = profile["transform"] @ Affine.translation(10, 0)  # ten pixels east
    with rasterio.open(mask_path, "w", **profile) as dst:
        dst.write(data[None])
    res = CliRunner().invoke(validate, [str(run_dir), "--labels", str(bad), "--json", "-q"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    (refused,) = got["pixel_iou"]["labels"]["refused"]
    assert refused["block_id"] == BLOCK.id and "not on the grid" in refused["reason"]
    assert got["pixel_iou"]["blocks"] == 0 and got["pixel_iou"]["final"]["iou"] is None
    assert got["semantic_correctness"]["from"] == "model"  # no truth left: the run's correctness model
    assert got["provinces"][0]["stop"]["failing"][0] == "iou"


@pytest.mark.slow
def test_an_incomplete_run_reports_what_is_missing(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "blocks.parquet").unlink()
    with sqlite3.connect(copy / "state.sqlite") as conn:
        conn.execute("DELETE FROM tasks WHERE stage = 'final'")  # the block is pending again
    res = CliRunner().invoke(validate, [str(copy), "--json", "-q"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert not got["complete"] and got["missing"]["blocks_pending"] == [BLOCK.id]
    assert any(f.startswith("blocks.parquet") for f in got["missing"]["files"])
    assert got["pixel_iou"]["blocks"] == 0 and got["provinces"][0]["mapped_ha"] is None
    text = CliRunner().invoke(validate, [str(copy), "-q"]).stdout
    assert "1 block(s) pending" in text and "mapper run --resume" in text

    with sqlite3.connect(copy / "state.sqlite") as conn:  # now the block failed for good
        conn.execute("INSERT INTO tasks VALUES (?, '', 'final', 'failed', 3, 'OSError: disk full', NULL, NULL, 0)",
                     (BLOCK.id,))  # fmt: skip
    got = json.loads(CliRunner().invoke(validate, [str(copy), "--json", "-q"]).stdout)
    assert got["missing"]["blocks_pending"] == []
    assert got["missing"]["blocks_failed"] == [
        {"block_id": BLOCK.id, "stage": "final", "source": "", "error": "OSError: disk full"}
    ]
