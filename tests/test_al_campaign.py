"""Label campaigns (`mapper al`): the ledger feeds the stop rule's extra rounds, a worse model is never adopted,
and a round killed with -9 resumes to the end, redoing nothing recorded; the round's files are the real ones
(selection from the pool run's table, the QGIS folder, ingested labels, the fine-tuned checkpoint)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mapper.al.campaign import CampaignLayout, Ledger
from mapper.al.verdict import accept, verdicts


def mapper(*args, check=True, timeout=1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "mapper.cli", *map(str, args)], capture_output=True, text=True,
                         env=env, timeout=timeout)  # fmt: skip
    if check and out.returncode != 0:
        raise AssertionError(f"mapper {' '.join(map(str, args))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


# ---------------------------------------------------------------------------------------------- units
def _ledger(tmp_path, ingests: list[dict]) -> Ledger:
    ledger = Ledger.new(CampaignLayout(tmp_path), {"iqa": "i", "segmentation": "s", "decisions": "d"})
    for k, provinces in enumerate(ingests, start=1):
        ledger.rounds.append({"round": k, "done": True, "steps": {"ingest": {"ingested": [f"b{k}"],
                                                                            "provinces": provinces}}})  # fmt: skip
    return ledger


def test_the_ledger_counts_extra_rounds_per_province_and_waives_pcs_after_three(tmp_path):
    ledger = _ledger(tmp_path, [{"Guizhou": 2}, {"Guizhou": 1, "Hunan": 2}, {"Guizhou": 2}, {"Guizhou": 1}])
    assert ledger.extra_rounds("Guizhou") == 3 and ledger.extra_rounds("Hunan") == 0
    assert ledger.extra_rounds("Yunnan") == 0
    cloudy = {"iou": 0.9, "semantic_correctness": 0.9, "pcs": 0.6, "poor_imagery_share": 0.5}
    v = verdicts({"Guizhou": cloudy, "Hunan": cloudy}, ledger, ["Guizhou", "Hunan"])
    assert v["Guizhou"]["stop"] and v["Guizhou"]["waived"] == ["pcs"] and v["Guizhou"]["extra_rounds"] == 3
    assert not v["Hunan"]["stop"] and v["Hunan"]["failing"] == ["pcs"]
    clear = {**cloudy, "poor_imagery_share": 0.1}  # three extra rounds, but its imagery is fine: no waiver
    assert not verdicts({"Guizhou": clear}, ledger, ["Guizhou"])["Guizhou"]["stop"]
    fewer = _ledger(tmp_path, [{"Guizhou": 2}, {"Guizhou": 1}, {"Guizhou": 2}])
    assert not verdicts({"Guizhou": cloudy}, fewer, ["Guizhou"])["Guizhou"]["stop"], "two extra rounds: not yet"
    assert ledger.labelled_blocks() == ["b1", "b2", "b3", "b4"]


def test_a_worse_candidate_is_not_adopted():
    assert accept({"iou": 0.80}, None, 0.0)[0], "the starting models are in force"
    assert accept({"iou": 0.86}, {"iou": 0.85}, 0.0)[0]
    assert not accept({"iou": 0.85}, {"iou": 0.85}, 0.0)[0], "better on no level: the models in force stay"
    adopted, why = accept({"iou": 0.849}, {"iou": 0.85}, 0.0)
    assert not adopted and "kept" in why
    assert accept({"iou": 0.849, "pcs": 0.99}, {"iou": 0.85, "pcs": 0.95}, 0.002)[0], "IoU within the tolerance"
    assert not accept({"iou": None}, {"iou": 0.85}, 0.0)[0]


# ---------------------------------------------------------------------------------------------- a campaign
@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    """A tiny campaign on world seed 1 (the packaged models never saw it) whose fine-tune is made destructive
    (lr 0.05, no warm-up), so that its candidate must be refused; round 1 is killed with -9 once its labels are
    ingested (inside the training step) and then resumed."""
    root = tmp_path_factory.mktemp("al")
    recipe = root / "wreck.yaml"
    recipe.write_text("steps: 3\nlr: 0.05\nwarmup_steps: 0\nbatch_size: 2\nval_fraction: 0\nval_every: 3\n"
                      "recent_weight: 3\n")  # fmt: skip
    config = root / "al.yaml"
    # The packaged models already meet the paper's criteria on this sample, so the test asks for more.
    config.write_text(f"run:\n  torch_threads: 1\nal:\n  finetune_config: {recipe}\n  stop:\n    iou: 0.999\n")
    camp = root / "camp"
    mapper("al", "init", camp, "--province", "Guangdong", "--pool", 2, "--validation", 2, "--decision", 2,
           "--round-blocks", 1, "--world-seed", 1, "--config", config)  # fmt: skip
    cmd = [sys.executable, "-m", "mapper.cli", "al", "loop", str(camp), "--rounds", "1", "--in-process", "-q"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    killed_after: list[str] = []
    try:
        deadline = time.monotonic() + 900
        while proc.poll() is None and time.monotonic() < deadline:
            steps = _steps(camp, 1)
            if "ingest" in steps:
                time.sleep(1.0)  # inside the training step
                proc.send_signal(signal.SIGKILL)
                killed_after.extend(steps)
                break
            time.sleep(0.2)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = json.loads((camp / "ledger.json").read_text())
    (root / "before.json").write_text(json.dumps({"ledger": before, "killed_after": killed_after,
                                                  "pool": _done(camp / "runs" / "001-pool")}))  # fmt: skip
    mapper("al", "loop", camp, "--rounds", "1", "--in-process", "-q")
    return camp


def _steps(camp: Path, k: int) -> dict:
    try:
        ledger = json.loads((camp / "ledger.json").read_text())
    except (OSError, ValueError):
        return {}
    return next((r["steps"] for r in ledger["rounds"] if r["round"] == k), {})


def _done(run: Path) -> dict:
    if not (run / "state.sqlite").exists():
        return {}
    with sqlite3.connect(run / "state.sqlite") as conn:
        rows = conn.execute("SELECT block_id, source, stage, attempts, updated FROM tasks WHERE status = 'done'")
        return {f"{b}|{s}|{st}": [a, u] for b, s, st, a, u in rows}


@pytest.mark.slow
def test_a_round_killed_with_minus_9_resumes_and_redoes_nothing_recorded(campaign):
    before = json.loads((campaign.parent / "before.json").read_text())
    assert before["killed_after"] and "train" not in before["killed_after"], "the kill landed inside training"
    ledger = json.loads((campaign / "ledger.json").read_text())
    round1 = next(r for r in ledger["rounds"] if r["round"] == 1)
    assert round1["done"] and list(round1["steps"]) == ["pool", "select", "export", "label", "ingest", "train",
                                                        "validate"]  # fmt: skip
    old = next(r for r in before["ledger"]["rounds"] if r["round"] == 1)["steps"]
    for step in before["killed_after"]:
        assert round1["steps"][step]["at"] == old[step]["at"], f"{step} was redone after the kill"
    after_pool = _done(campaign / "runs" / "001-pool")
    assert all(after_pool[k] == v for k, v in before["pool"].items()), "a pool task finished before was run again"
    assert (campaign / "models" / "001" / "seg" / "checkpoint.json").exists()
    assert not list(campaign.rglob(".*.tmp")), "no half-written file left"


@pytest.mark.slow
def test_the_selection_is_the_pool_tables_and_the_labels_are_the_returned_files(campaign):
    import geopandas as gpd
    import pandas as pd

    from mapper.al.select import select_blocks
    from mapper.labels.store import read_label_json

    steps = _steps(campaign, 1)
    pool = gpd.read_parquet(Path(steps["pool"]["dir"]) / "blocks.parquet")
    assert not [c for c in pool.columns if c == "label" or c.startswith("truth_")], "the pool table holds no truth"
    validation = (campaign / "samples" / "validation.txt").read_text().split()
    decision = (campaign / "samples" / "decision.txt").read_text().split()
    again = select_blocks(pool, 1, "combined", excluded=set(validation) | set(decision), seed=1)
    chosen = pd.read_parquet(steps["select"]["file"])
    assert chosen["block_id"].tolist() == again["block_id"].tolist() == steps["select"]["blocks"]
    (block,) = steps["ingest"]["ingested"]
    meta = read_label_json(campaign / "labels" / "train" / block)
    assert meta["al"]["round"] == 1 and meta["campaign"]["round"] == 1
    assert (campaign / "rounds" / "001" / "export" / "round.qgz").exists()
    assert json.loads((campaign / "rounds" / "001" / "export" / "annotator_cost.json").read_text())["polygons"] >= 0


@pytest.mark.slow
def test_the_wrecked_candidate_was_refused_and_the_status_says_so(campaign):
    ledger = Ledger.load(CampaignLayout(campaign))
    validate = ledger.round(1)["steps"]["validate"]
    assert validate["adopted"] is False
    assert validate["candidate_numbers"]["overall"]["iou"] < ledger.round(0)["steps"]["validate"]["overall"]["iou"]
    assert ledger.current["round"] == 0 and ledger.current["models"]["segmentation"] == "seg-default"
    assert set(validate["verdicts"]) == {"Guangdong"}
    out = mapper("al", "status", campaign).stdout
    assert "round 1: 1 blocks labelled" in out and "not adopted" in out and "Guangdong: IoU" in out


@pytest.mark.slow
def test_the_campaign_report_has_learning_curves_and_the_selected_blocks(campaign):
    mapper("al", "report", campaign)
    page = (campaign / "report" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "round" in page
    for png in ("learning_curves.png", "selected_blocks.png"):
        assert (campaign / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
