"""Label campaigns over a pool of chips (mapper.al.chips, mapper.al.chip_rounds): masks hidden until a chip is
selected, the labeller's files (labelled chips) in and out, and the rounds recorded like a block campaign's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mapper.al.campaign import CampaignError
from mapper.al.rounds import advance
from mapper.al.setup import init_chip_campaign, open_campaign
from mapper.config import load_config
from mapper.labels.chips import chip_dirs, read_labelled_chip, write_labelled_chip
from mapper.labels.store import LabelError
from mapper.seg.samples import find_samples

SIZE = 64


def chips(root, n: int, seed: int, prefix: str) -> list[str]:
    """n labelled chips of SIZE px at 4 m: green fields (cropland) on grey or brown ground, a few without any."""
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n):
        rgb = np.full((SIZE, SIZE, 3), rng.integers(90, 150), np.uint8)
        rgb[..., 2] //= 2
        mask = np.zeros((SIZE, SIZE), np.uint8)
        if i % 3:
            r, c = rng.integers(0, SIZE // 2, 2)
            mask[r : r + SIZE // 2, c : c + SIZE // 2] = 1
            rgb[mask == 1] = (40, 140 + rng.integers(0, 40), 50)
        rgb = np.clip(rgb.astype(int) + rng.integers(-8, 9, rgb.shape), 0, 255).astype(np.uint8)
        ids.append(f"{prefix}_{i:02d}")
        write_labelled_chip(root, ids[-1], rgb, mask, gsd_m=4.0, origin="test", dataset="synthetic")
    return ids


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("chips")
    return root, chips(root / "pool", 9, 1, "p"), chips(root / "val", 4, 2, "v")


def config(strategy: str = "combined", seed: int = 0):
    return load_config([], {"al.strategy": strategy, "al.round_blocks": 2, "al.finetune_steps": 2, "al.seed": seed})


def test_the_pool_holds_images_only_and_bad_pools_are_named(data, tmp_path):
    root, pool, _ = data
    layout = init_chip_campaign(tmp_path / "camp", config(), root / "pool", root / "val", annotator="simulated")
    copied = sorted(p.name for p in (layout.root / "pool").iterdir())
    assert copied == pool
    assert all(not (layout.pool_chip(c) / "mask.tif").exists() for c in pool)  # masks hidden
    identity = json.loads(layout.identity_file.read_text())
    assert identity["kind"] == "chips" and identity["samples"]["pool"]["blocks"] == 9
    with pytest.raises(CampaignError, match="both the pool and the validation"):
        init_chip_campaign(tmp_path / "overlap", config(), root / "pool", root / "pool")
    assert not (tmp_path / "overlap").exists()  # refused before anything was written
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.tif").write_bytes((root / "pool" / pool[0] / "image_chip.tif").read_bytes())
    with pytest.raises(LabelError, match="--gsd"):
        init_chip_campaign(tmp_path / "plain-camp", config(), plain, root / "val")
    with pytest.raises(CampaignError, match="labelled chips"):
        init_chip_campaign(tmp_path / "sim-plain", config(), plain, root / "val", gsd_m=4.0, annotator="simulated")


def test_two_rounds_with_the_simulated_annotator(data, tmp_path):
    root, pool, _ = data
    layout = init_chip_campaign(tmp_path / "camp", config(), root / "pool", root / "val", annotator="simulated")
    c = open_campaign(layout.root, None)
    zero = advance(c)
    assert zero["steps"]["validate"]["overall"]["iou_ci95"] is not None  # intervals on chips too
    for k in (1, 2):
        c = open_campaign(layout.root, None)
        entry = advance(c)
        steps = entry["steps"]
        picked = steps["select"]["blocks"]
        assert len(picked) == 2 and set(picked) <= set(pool)
        for chip in picked:  # the returned files are the pool's own masks, as labelled chips
            back, truth = read_labelled_chip(layout.round_dir(k) / "returned" / chip), read_labelled_chip(
                root / "pool" / chip)
            assert np.array_equal(back.mask, truth.mask)
            assert json.loads((layout.labels("train") / chip / "label.json").read_text())["al"]["round"] == k
        assert steps["train"]["trained"] and "candidate_numbers" in steps["validate"]
        assert (layout.export_dir(k) / "README.txt").exists()
    first, second = (c.ledger.round(k)["steps"]["select"]["blocks"] for k in (1, 2))
    assert not set(first) & set(second)
    # round 2's k-center was seeded with round 1's chips: their rows are in round 1's pool table
    table = pd.read_parquet(layout.run_dir(1, "pool") / "blocks.parquet")
    assert set(first) <= set(table["block_id"])
    samples = find_samples([layout.labels("train")], None)
    assert sorted(s.al_round for s in samples) == [1, 1, 2, 2]  # chips carry their round into the fine-tune


def test_a_person_labels_the_round_and_ingest_takes_what_is_back(data, tmp_path):
    root, _, _ = data
    layout = init_chip_campaign(tmp_path / "camp", config("random"), root / "pool", root / "val")
    c = open_campaign(layout.root, None)
    advance(c)
    c = open_campaign(layout.root, None)
    with pytest.raises(CampaignError, match="returned"):
        advance(c)
    entry = c.ledger.rounds[-1]
    assert set(entry["steps"]) == {"pool", "select", "export"}
    table = pd.read_parquet(entry["steps"]["pool"]["dir"] + "/blocks.parquet")
    assert table["a_uncertain_fraction"].isna().all()  # random reads no prediction: none was made
    picked = entry["steps"]["select"]["blocks"]
    truth = read_labelled_chip(root / "pool" / picked[0])
    write_labelled_chip(layout.round_dir(1) / "returned", picked[0], truth.rgb, truth.mask, gsd_m=4.0, origin="human")
    c = open_campaign(layout.root, None)
    entry = advance(c)
    ingest = entry["steps"]["ingest"]
    assert ingest["ingested"] == [picked[0]] and ingest["todo"] == [picked[1]]
    assert [p.name for p in chip_dirs(layout.labels("train"))] == [picked[0]]
    # round 2 as the README says: masks painted beside the exported images, taken back by `labels import chips`
    from PIL import Image

    from mapper.cli import cli

    c = open_campaign(layout.root, None)
    with pytest.raises(CampaignError):
        advance(c)
    export = layout.export_dir(2)
    masks = tmp_path / "masks"
    masks.mkdir()
    for image in sorted((export / "images").iterdir()):
        Image.fromarray(read_labelled_chip(root / "pool" / image.stem).mask).save(masks / f"{image.stem}.png")
    args = ["labels", "import", "chips", "--images", str(export / "images"), "--masks", str(masks), "--gsd", "4",
            "--out", str(layout.round_dir(2) / "returned")]  # fmt: skip
    assert CliRunner().invoke(cli, args).exit_code == 0
    entry = advance(open_campaign(layout.root, None))
    assert sorted(entry["steps"]["ingest"]["ingested"]) == sorted(entry["steps"]["select"]["blocks"])


def test_cli_init_of_a_chip_campaign(data, tmp_path):
    from mapper.cli import cli

    root, _, _ = data
    runner = CliRunner()
    out = runner.invoke(cli, ["al", "init", str(tmp_path / "c"), "--pool-chips", str(root / "pool"),
                               "--validation-chips", str(root / "val"), "--round-blocks", "3"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "over chips" in out.output
    from mapper.serve.campaignview import CampaignView, ServeError

    with pytest.raises(ServeError, match="al report"):  # chips have no place on the web map: said, not blank
        CampaignView(tmp_path / "c")
    bad = runner.invoke(cli, ["al", "init", str(tmp_path / "d"), "--pool-chips", str(root / "pool")])
    assert bad.exit_code != 0 and "--validation-chips" in bad.output


def test_each_campaign_seed_and_round_fine_tunes_with_its_own_crops(monkeypatch, tmp_path):
    """al.seed and the round seed the fine-tune: seeds of a campaign whose selection draws no random number
    (uncertainty) are still different campaigns."""
    import mapper.seg.finetune as finetune
    from mapper.al.rounds import fine_tune

    seen = []
    monkeypatch.setattr(finetune, "fine_tune_seg", lambda init, labels, out, cfg, recent_round: seen.append(
        (cfg.seed, cfg.gsd_m)) or type("R", (), {"seconds": 0.0})())  # fmt: skip
    for seed, k in ((0, 1), (0, 2), (1, 1)):
        fine_tune("seg-default", [], tmp_path / f"m{seed}{k}", config(seed=seed).al, k, 2.0)
    assert [s for s, _ in seen] == [1, 2, 1001] and {g for _, g in seen} == {2.0}
