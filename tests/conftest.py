import os
import subprocess
import sys

import pytest

# Tests never touch the user's real tile cache.
os.environ.setdefault("MAPPER_CACHE_DIR", "/tmp/mapper-test-cache-unused")

# One block of Guangdong (5886_2256, Huizhou / Shenzhen) with about a quarter cropland in world seed 0, so IoU,
# PCS and the comparison's area fraction and edge density are not degenerate.
WORLD_RUN_BBOX = "114.31,22.81,114.34,22.84"
WORLD_RUN_BLOCK = "5886_2256"


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MAPPER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def world_run(tmp_path_factory):
    """One block mapped end to end by `mapper run` (a subprocess, in-process executor, world seed 0), shared
    by the validate, compare and report tests; they read it and may add their own outputs, never change it."""
    out = tmp_path_factory.mktemp("world_run") / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "mapper.cli", "run", "--bbox", WORLD_RUN_BBOX, "--source", "demo",
                          "--in-process", "--out", str(out), "-q"], capture_output=True, text=True, env=env,
                         timeout=400)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def run_croptype_map(run, *extra, timeout=600):
    """`mapper croptype map RUN` in a subprocess (in-process executor, one thread)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mapper.cli", "croptype", "map", str(run), "--in-process", "-q",
                           *extra], capture_output=True, text=True, env=env, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="session")
def croptype_run(world_run, tmp_path_factory):
    """A copy of world_run with its crop types mapped, shared by the crop-type map and allocation tests."""
    import shutil

    run = tmp_path_factory.mktemp("croptype") / "run"
    shutil.copytree(world_run, run)
    res = run_croptype_map(run)
    assert res.returncode == 0, res.stderr[-3000:]
    return run
