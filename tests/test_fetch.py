import json

from mapper.config import load_config
from mapper.imagery import fetch as fetch_mod
from mapper.imagery.fetch import fetch_blocks, spread_sample


def test_spread_sample_is_deterministic_and_spread():
    ids = [str(i) for i in range(100)]
    assert spread_sample(ids, 4) == ["12", "37", "62", "87"]
    assert spread_sample(ids, 500) == ids


def test_a_failing_block_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    real = fetch_mod.write_block_mosaic

    def flaky(source, block, path, **options):
        if block.id == "5871_2243":
            raise OSError("disk hiccup")
        return real(source, block, path, **options)

    monkeypatch.setattr(fetch_mod, "write_block_mosaic", flaky)
    config = load_config()
    ids = ["5871_2242", "5871_2243"]  # two small Macao blocks
    summary = fetch_blocks(config, "demo-a", ids, tmp_path, progress=False)
    assert (summary.written, summary.failed) == (1, 1)
    assert (tmp_path / "demo-a" / "5871_2242.tif").exists()
    assert not (tmp_path / "demo-a" / "5871_2243.tif").exists()
    failures = json.loads((tmp_path / "demo-a" / "failures.json").read_text())
    assert failures == {"5871_2243": "OSError: disk hiccup"}
    # Next run: the failed block is retried, the finished one kept.
    monkeypatch.setattr(fetch_mod, "write_block_mosaic", real)
    again = fetch_blocks(config, "demo-a", ids, tmp_path, progress=False)
    assert (again.written, again.skipped, again.failed) == (1, 1, 0)
    assert not (tmp_path / "demo-a" / "failures.json").exists()
