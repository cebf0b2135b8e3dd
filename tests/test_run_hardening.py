"""`mapper run` hardened against what a new user met: models checked before any work, a run in which no
block finishes, two drivers on one run directory, a full disk, and the --bbox range message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BBOX = "113.31,23.11,113.34,23.14"  # inside one block of Guangdong (5866_2262)
TWO_BLOCKS = "113.31,23.11,113.39,23.14"  # 5866_2262 and 5867_2262


def mapper(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mapper.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)  # fmt: skip


# ---------------------------------------------------------------------------------------------- models
def _copy_packaged(name: str, dest: Path) -> Path:
    from mapper.models.registry import resolve_checkpoint

    shutil.copytree(resolve_checkpoint(name), dest)
    return dest


def _config(tmp_path, **models) -> Path:
    lines = ["run:", "  models:"] + [f"    {k}: {v}" for k, v in models.items()]
    path = tmp_path / "models.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_corrupt_segmentation_checkpoint_fails_before_any_work_naming_the_file(tmp_path):
    ckpt = _copy_packaged("seg-default", tmp_path / "seg")
    weights = ckpt / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    out = mapper("run", "--bbox", BBOX, "--in-process", "--config", _config(tmp_path, segmentation=ckpt),
                 "--out", tmp_path / "run")  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert f"{weights} is corrupt" in out.stderr and "run.models.segmentation" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists(), "nothing is fetched or planned with a bad model"


def test_an_iqa_checkpoint_with_another_taxonomy_is_refused(tmp_path):
    ckpt = _copy_packaged("iqa-default", tmp_path / "iqa")
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    meta["classes"] = list(reversed(meta["classes"]))
    (ckpt / "checkpoint.json").write_text(json.dumps(meta))
    out = mapper("run", "--bbox", BBOX, "--in-process", "--config", _config(tmp_path, iqa=ckpt),
                 "--out", tmp_path / "run")  # fmt: skip
    assert out.returncode == 2 and "coverage classes" in out.stderr and "run.models.iqa" in out.stderr
    assert not (tmp_path / "run").exists()


def test_a_decision_model_directory_without_its_integration_model_is_refused(tmp_path):
    models = _copy_packaged("decide-default", tmp_path / "decide")
    shutil.rmtree(models / "integration")
    out = mapper("run", "--bbox", BBOX, "--in-process", "--config", _config(tmp_path, decisions=models),
                 "--out", tmp_path / "run")  # fmt: skip
    assert out.returncode == 2 and "integration" in out.stderr and "run.models.decisions" in out.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------- no block done
class FailingSegmenter:
    """A segmentation stage whose every item fails (as a broken GPU or model would)."""

    def __init__(self, ctx):
        pass

    def __call__(self, items):
        return [{"error": "RuntimeError: CUDA error: an illegal memory access was encountered"} for _ in items]


def test_a_run_in_which_no_block_finishes_writes_its_summary_and_lists_the_failures(tmp_path):
    from mapper.config import load_config
    from mapper.run.executor import InProcessExecutor
    from mapper.run.plan import resolve_region
    from mapper.run.session import RunRequest, run

    config = load_config([], {"run.max_attempts": 1})
    request = RunRequest(config, resolve_region(bbox=TWO_BLOCKS), "demo", out=tmp_path / "run", quiet=True)
    workers = {"segment": FailingSegmenter}
    summary = run(request, lambda ctx: InProcessExecutor(ctx, workers=workers))
    assert (summary["finished"], summary["failed"]) == (0, 2)
    assert len(summary["failures"]) >= 2 and "illegal memory access" in summary["text"]
    assert "no block finished" in summary["text"]
    root = tmp_path / "run"
    assert json.loads((root / "summary.json").read_text())["failed"] == 2
    import geopandas as gpd

    table = gpd.read_parquet(root / "blocks.parquet")
    assert list(table["status"]) == ["failed", "failed"] and table["cropland_fraction"].isna().all()
    assert (root / "area.csv").exists() and (root / "report" / "area_fraction.png").exists()
    assert not (root / "map").exists(), "no map of no blocks"


# ---------------------------------------------------------------------------------------------- bbox
def test_a_bbox_outside_the_longitude_range_says_the_range(tmp_path):
    out = mapper("run", "--bbox=200,0,201,1", "--in-process", "--out", tmp_path / "run")
    assert out.returncode == 2
    assert "west 200, east 201 out of range" in out.stderr and "longitudes lie in -180…180" in out.stderr


# ---------------------------------------------------------------------------------------------- one driver
def _lock_file(root: Path, **fields) -> Path:
    from mapper.store.run_lock import LOCK_FILE, this_process

    root.mkdir(parents=True, exist_ok=True)
    info = {**this_process(), "token": "old", "what": "mapper run", "started": "2026-01-01T00:00:00+00:00",
            "heartbeat": __import__("time").time(), **fields}  # fmt: skip
    (root / LOCK_FILE).write_text(json.dumps(info))
    return root / LOCK_FILE


def test_a_second_driver_is_refused_naming_the_first(tmp_path):
    from mapper.store.run_lock import RunLock, RunLockedError

    with RunLock.acquire(tmp_path) as lock:
        with pytest.raises(RunLockedError, match=rf"PID {os.getpid()} on .*started"):
            RunLock.acquire(tmp_path)
        assert json.loads(lock.path.read_text())["token"] == lock.info["token"]
    assert not (tmp_path / "driver.lock").exists(), "released on exit"


def test_a_lock_of_a_dead_process_is_taken_over_and_said(tmp_path, caplog):
    from mapper.store.run_lock import RunLock

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock_file(tmp_path, pid=dead.pid)
    with caplog.at_level("WARNING"), RunLock.acquire(tmp_path) as lock:
        assert lock.info["pid"] == os.getpid()
    assert "took over the lock" in caplog.text and "no longer running" in caplog.text


def test_a_reused_pid_does_not_hold_the_lock(tmp_path, caplog):
    from mapper.store.run_lock import RunLock

    _lock_file(tmp_path, pid=os.getpid(), pid_start="1")  # this PID, but a process that started at another time
    with caplog.at_level("WARNING"), RunLock.acquire(tmp_path):
        pass
    assert "another process" in caplog.text


def test_a_lock_from_another_host_is_taken_over_only_after_its_heartbeat_stops(tmp_path):
    import time

    from mapper.store.run_lock import RunLock, RunLockedError

    _lock_file(tmp_path, host="node-17", pid=1, heartbeat=time.time())
    with pytest.raises(RunLockedError, match="node-17"):
        RunLock.acquire(tmp_path, heartbeat_s=0.2, stale_after_s=5)
    _lock_file(tmp_path, host="node-17", pid=1, heartbeat=time.time() - 60)
    t0 = time.monotonic()
    with RunLock.acquire(tmp_path, heartbeat_s=0.2, stale_after_s=5) as lock:
        assert lock.info["host"] != "node-17"
    assert time.monotonic() - t0 >= 0.4, "it watched the silent lock for two heartbeats first"


def test_a_driver_whose_lock_was_taken_over_stops(tmp_path):
    import time

    from mapper.store.run_lock import LockLostError, RunLock

    lock = RunLock.acquire(tmp_path, heartbeat_s=0.05)
    try:
        _lock_file(tmp_path, token="someone-else")
        deadline = time.monotonic() + 5
        while not lock.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LockLostError, match="took over"):
            lock.check()
    finally:
        lock.release()
    assert json.loads((tmp_path / "driver.lock").read_text())["token"] == "someone-else", "not removed: not ours"


@pytest.mark.slow
def test_resume_while_another_driver_works_is_refused_then_takes_over_after_kill_9(tmp_path):
    import signal
    import time

    root = tmp_path / "run"
    cmd = [sys.executable, "-m", "mapper.cli", "run", "--bbox", TWO_BLOCKS, "--in-process", "--out", str(root), "-q"]
    first = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (root / "run.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert first.poll() is None, "the first driver should still be working"
        second = mapper("run", "--resume", root, "--in-process", "-q", timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"PID {first.pid}" in second.stderr and "is being worked on by mapper run" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    third = mapper("run", "--resume", root, "--in-process", "-q")
    assert third.returncode == 0, third.stderr
    log = (root / "run.log").read_text()
    assert "took over the lock" in log and f"PID {first.pid}" in log
    assert not (root / "driver.lock").exists()


# ---------------------------------------------------------------------------------------------- disk full
class DiskFullSegmenter(FailingSegmenter):
    calls = 0

    def __call__(self, items):
        import errno

        DiskFullSegmenter.calls += 1
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_stops_the_run_with_one_error_and_counts_no_attempt(tmp_path):
    import sqlite3

    from mapper.config import load_config
    from mapper.run.executor import InProcessExecutor
    from mapper.run.plan import resolve_region
    from mapper.run.session import RunDiskFullError, RunRequest, run

    request = RunRequest(load_config([]), resolve_region(bbox=BBOX), "demo", out=tmp_path / "run", quiet=True)
    workers = {"segment": DiskFullSegmenter}
    with pytest.raises(RunDiskFullError, match=r"is full.*`mapper run --resume .*run`"):
        run(request, lambda ctx: InProcessExecutor(ctx, workers=workers))
    assert DiskFullSegmenter.calls == 1, "the run stops at the first full-disk error"
    with sqlite3.connect(tmp_path / "run" / "state.sqlite") as conn:
        stages = {s for (s,) in conn.execute("SELECT stage FROM tasks")}
        failed = conn.execute("SELECT COUNT(*) FROM tasks WHERE status != 'done'").fetchone()[0]
    assert "segment" not in stages and failed == 0, "a full disk is not the block's failure"
    assert not (tmp_path / "run" / "driver.lock").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MB tmpfs (a two-block run needs 34) (root only: the CI machine runs as root); unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {res.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_run_on_a_disk_that_fills_up_stops_cleanly_and_resumes_once_there_is_room(small_disk, tmp_path):
    import sqlite3

    root = small_disk / "run"
    config = tmp_path / "keep.yaml"
    config.write_text("run:\n  min_free_mb: 4\n")
    out = mapper("run", "--bbox", TWO_BLOCKS, "--in-process", "--config", config, "--out", root, "-q")
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the disk holding the run directory"), out.stderr
    assert f"mapper run --resume {root}" in lines[0]
    for noise in ("_tiffWriteProc", "Traceback", "Logging error", "GDAL signalled"):
        assert noise not in out.stderr
    with sqlite3.connect(root / "state.sqlite") as conn:
        before = dict(((b, s, st), a) for b, s, st, a in conn.execute(
            "SELECT block_id, source, stage, attempts FROM tasks WHERE status = 'done'"))  # fmt: skip
    assert before, "some work was done before the disk filled"
    subprocess.run(["mount", "-o", "remount,size=400m", str(small_disk)], check=True)
    again = mapper("run", "--resume", root, "--in-process", "-q")
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(root / "state.sqlite") as conn:
        after = dict(((b, s, st), a) for b, s, st, a in conn.execute(
            "SELECT block_id, source, stage, attempts FROM tasks WHERE status = 'done'"))  # fmt: skip
    assert all(after[k] == v for k, v in before.items()), "finished work was not redone"
    assert json.loads((root / "summary.json").read_text())["finished"] == 2


def test_a_mosaic_that_gdal_could_not_write_whole_is_never_renamed_into_place(small_disk):
    from mapper.grid.blocks import Block
    from mapper.imagery.mosaic import write_block_mosaic
    from mapper.store.space import is_disk_full
    from mapper.world.source import WorldTileSource

    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # leave ~2 MB: a block mosaic needs about 5
        f.write(b"\0" * (30 * 1024 * 1024))
    target = small_disk / "mosaic.tif"
    with pytest.raises(Exception) as caught:
        write_block_mosaic(WorldTileSource("demo-a", 0, "a"), Block.parse("5866_2262"), target)
    assert is_disk_full(caught.value), caught.value
    assert not target.exists() and not list(small_disk.glob(".*.tmp"))
