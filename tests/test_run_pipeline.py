"""`mapper run` end to end on the simulated world: the outputs, kill -9 and resume, and the loss of a Ray node.

One uninterrupted in-process run is the reference; the interrupted-and-resumed run and the Ray run on a
simulated multi-node cluster must end with the same outputs. Torch runs one thread everywhere here
(run.torch_threads: 1): the last bits of a float reduction depend on the thread count, and equality is
asserted bit for bit.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ARGS = ["--province", "Guangdong", "--source", "demo", "--max-blocks", "2"]
ENV = dict(os.environ)
TASKS = 2 * (2 * 3 + 3)  # blocks × (sources × source stages + block stages)


def mapper(*args, check=True, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mapper.cli", *map(str, args)]
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def one_thread(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "one-thread.yaml"
    path.write_text("run:\n  torch_threads: 1\n")
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread) -> Path:
    root = tmp_path_factory.mktemp("reference") / "run"
    mapper("run", *ARGS, "--config", one_thread, "--in-process", "--out", root, "-q")
    return root


def _done_tasks(root: Path) -> dict:
    with sqlite3.connect(root / "state.sqlite") as conn:
        rows = conn.execute("SELECT block_id, source, stage, attempts, updated FROM tasks WHERE status = 'done'")
        return {(b, s, st): (a, u) for b, s, st, a, u in rows}


def assert_same_outputs(a: Path, b: Path) -> None:
    """Final masks bit-equal; block table, areas and polygons equal (timings and paths aside)."""
    import geopandas as gpd
    import pandas as pd
    import rasterio

    finals = sorted(p.name for p in (a / "final").glob("*.tif"))
    assert finals and finals == sorted(p.name for p in (b / "final").glob("*.tif"))
    for name in finals:
        with rasterio.open(a / "final" / name) as x, rasterio.open(b / "final" / name) as y:
            assert x.transform == y.transform
            assert np.array_equal(x.read(), y.read()), name
    pd.testing.assert_frame_equal(gpd.read_parquet(a / "blocks.parquet"), gpd.read_parquet(b / "blocks.parquet"))
    assert (a / "area.csv").read_text() == (b / "area.csv").read_text()
    gpkgs = sorted(p.name for p in (a / "polygons").glob("*.gpkg"))
    assert gpkgs == sorted(p.name for p in (b / "polygons").glob("*.gpkg"))
    for name in gpkgs:
        pa, pb = gpd.read_file(a / "polygons" / name), gpd.read_file(b / "polygons" / name)
        pd.testing.assert_frame_equal(pa.drop(columns="geometry"), pb.drop(columns="geometry"))
        assert pa.geometry.geom_equals_exact(pb.geometry, 0).all()


def test_a_run_leaves_a_map_polygons_table_areas_and_pngs(reference):
    import geopandas as gpd
    import pandas as pd
    import rasterio

    summary = json.loads((reference / "summary.json").read_text())
    assert (summary["blocks"], summary["finished"], summary["failed"]) == (2, 2, 0)
    table = gpd.read_parquet(reference / "blocks.parquet")
    assert list(table["status"]) == ["done", "done"] and table.crs.to_epsg() == 4326
    assert set(table["decision"]) <= {"Neither", "Only A", "Only B", "Merge"}
    assert {"a_p_TP", "b_pred_semantic", "p_Merge", "cropland_m2", "slope_median_deg"} <= set(table.columns)
    with rasterio.open(reference / "map" / "cropland.vrt") as vrt:
        assert vrt.crs.to_epsg() == 3857 and vrt.nodata == 255
        for block_id in table["block_id"]:
            with rasterio.open(reference / "final" / f"{block_id}.tif") as blk:
                assert blk.overviews(1), "zoomed-out views of the map read the block COGs' overviews"
                window = rasterio.windows.from_bounds(*blk.bounds, transform=vrt.transform)
                assert np.array_equal(vrt.read(1, window=window.round_offsets().round_lengths()), blk.read(1))
    area = pd.read_csv(reference / "area.csv")
    (row,) = area.to_dict("records")
    assert row["province"] == "Guangdong" and row["estimate"]  # a 2-block sample: an estimate, labelled so
    assert row["statistic_source"].startswith("simulated world") and row["pcs"] > 0
    cropland = table["cropland_m2"].sum() / 1e4
    assert row["cropland_ha_in_mapped_blocks"] == pytest.approx(cropland, rel=1e-9)
    polygons = pd.concat([gpd.read_file(p) for p in (reference / "polygons").glob("*.gpkg")])
    assert polygons["area_m2"].sum() / 1e4 == pytest.approx(cropland, rel=1e-6)
    for png in ("area_fraction.png", "map_preview.png", "blocks.png"):
        assert (reference / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "planned 2 blocks" in (reference / "run.log").read_text()


def test_kill_9_at_a_random_moment_then_resume_redoes_nothing_and_ends_identical(reference, one_thread, tmp_path):
    root = tmp_path / "run"
    cmd = [sys.executable, "-m", "mapper.cli", "run", *ARGS, "--config", str(one_thread), "--in-process", "--out",
           str(root), "-q"]  # fmt: skip
    kill_after = random.Random(os.environ.get("PYTEST_SEED", "mapper")).randint(1, TASKS - 2)
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if (root / "run.json").exists() and len(_done_tasks(root)) >= kill_after:  # run.json: the schema is there
                break
            time.sleep(0.05)
        time.sleep(random.Random(kill_after).random())  # somewhere inside the next task
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _done_tasks(root)
    assert 0 < len(before) < TASKS, "the kill should land mid-run"
    mapper("run", "--resume", root, "--in-process", "-q")
    after = _done_tasks(root)
    assert len(after) == TASKS
    assert all(after[k] == v for k, v in before.items()), "a task finished before the kill was run again"
    assert not list(root.rglob(".*.tmp")), "a half-written file was left behind"
    assert_same_outputs(reference, root)


def test_resume_with_other_options_is_refused_naming_the_difference(reference, tmp_path):
    out = mapper("run", "--resume", reference, "--world-seed", "1", "--in-process", check=False)
    assert out.returncode == 2
    assert "world_seed: 0 in the run directory, 1 now" in out.stderr


def test_losing_a_ray_node_mid_run_loses_nothing(reference, one_thread, tmp_path):
    import ray
    from mapper.pipelines.ray_executor import RayExecutor
    from ray.cluster_utils import Cluster

    from mapper.config import load_config
    from mapper.run.plan import resolve_region
    from mapper.run.session import RunRequest, run

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    root = tmp_path / "run"
    removed = []
    try:
        executors = []

        def factory(ctx):
            executors.append(RayExecutor(ctx))
            return executors[-1]

        def remove_segment_node():
            """When the first mask is done, take away the node running the segmentation actor."""
            while not removed:
                if (root / "run.json").exists() and any(k[2] == "segment" for k in _done_tasks(root)):
                    node_id = ray.get(executors[0].pools["segment"][0].node_id.remote())
                    node = next((w for w in workers if w.node_id == node_id), None)
                    if node is None:  # it runs on the head: take away a worker node anyway
                        node = workers[0]
                    cluster.remove_node(node)
                    removed.append(node_id)
                time.sleep(0.1)

        watcher = threading.Thread(target=remove_segment_node, daemon=True)
        watcher.start()
        region = resolve_region(province="Guangdong")
        request = RunRequest(load_config([one_thread]), region, "demo", out=root, max_blocks=2, quiet=True)
        summary = run(request, factory)
        watcher.join(timeout=5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert removed, "the run finished before a node could be removed"
    assert (summary["finished"], summary["failed"]) == (2, 0)
    assert_same_outputs(reference, root)


# ---------------------------------------------------------------------------------------------- a real cluster
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes() -> list[tuple[int, int, int, str]]:
    """(pid, ppid, pgid, command line) of every process."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            pid = int(proc.name)
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            out.append((pid, ppid, os.getpgid(pid), cmd))
        except (OSError, ProcessLookupError, ValueError, IndexError):
            continue
    return out


def _node_actors(node_pgid: int) -> list[str]:
    """Command lines of the stage actors of one node (started with `ray start --block` in its own process
    group): Ray's worker processes have process groups of their own, but their parent is the node's raylet."""
    procs = _processes()
    raylets = {pid for pid, _, pgid, cmd in procs if pgid == node_pgid and "raylet/raylet" in cmd}
    return [cmd for _, ppid, _, cmd in procs if ppid in raylets and cmd.startswith("ray::StageActor")]


def _ray_command() -> str:
    """The `ray` program of this Python's installation (a venv's bin may not be on PATH)."""
    import shutil

    found = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    assert found, "the `ray` command is not installed beside this Python; install mapper (it depends on ray)"
    return found


class RayNodes:
    """A Ray head and a worker started with the `ray` command on loopback, as the README says, each in its own
    temp dir and process group, with token authentication (the default of `ray start` where a token exists)."""

    def __init__(self, root: Path):
        import secrets

        self.root = root
        self.token = root / "auth_token"
        self.token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token)}
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        log = open(self.root / f"node-{len(self.procs)}.log", "w")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen([_ray_command(), "start", *args, "--num-cpus", "2", "--disable-usage-stats", "--block"],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.procs.append(proc)
        return proc

    def wait_for_nodes(self, n: int, timeout: float = 120) -> None:
        dead = [i for i, p in enumerate(self.procs) if p.poll() is not None]
        if dead:
            raise AssertionError("a Ray node did not start: " + (self.root / f"node-{dead[0]}.log").read_text()[-2000:])
        code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                "print(sum(1 for x in ray.nodes() if x['Alive']))")  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-c", code, self.address], env=self.env, capture_output=True,
                                 text=True, timeout=60)  # fmt: skip
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(n)]:
                return
            time.sleep(1)
        raise AssertionError(f"the cluster did not reach {n} nodes: " + (self.root / "node-0.log").read_text()[-2000:])

    def kill(self, proc: subprocess.Popen) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue

    def stop(self) -> None:
        for proc in reversed(self.procs):
            self.kill(proc)


@pytest.fixture
def ray_nodes():
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths must stay < 108 bytes
    nodes = RayNodes(root)
    nodes.start("--head", "--port", str(nodes.port), "--node-ip-address", "127.0.0.1", "--include-dashboard",
                "false", "--temp-dir", str(root / "head"))  # fmt: skip
    try:
        yield nodes
    finally:
        nodes.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_cluster_started_with_ray_start_runs_the_job_and_survives_losing_its_worker(reference, one_thread,
                                                                                     ray_nodes, tmp_path):  # fmt: skip
    worker = ray_nodes.start("--address", ray_nodes.address, "--node-ip-address", "127.0.0.1",
                             "--temp-dir", str(ray_nodes.root / "worker"))  # fmt: skip
    ray_nodes.wait_for_nodes(2)
    # The driver gets only the token file, as a user who copied the head's token does; mapper turns token mode on.
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env["RAY_AUTH_TOKEN_PATH"] = str(ray_nodes.token)
    root = tmp_path / "run"
    cmd = [sys.executable, "-m", "mapper.cli", "run", *ARGS, "--config", str(one_thread), "--address",
           ray_nodes.address, "--out", str(root), "-q"]  # fmt: skip
    run = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = []
    try:
        deadline = time.monotonic() + 600
        while run.poll() is None and time.monotonic() < deadline and not killed:
            on_worker = _node_actors(worker.pid)
            busy = [c for c in on_worker if ".run" in c]
            if (root / "run.json").exists() and busy and any(k[2] == "fetch" for k in _done_tasks(root)):
                ray_nodes.kill(worker)  # the node goes while it runs a batch of the run
                killed.append(busy)
            time.sleep(0.2)
        _, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert killed, "the run finished before its worker node was seen running a batch"
    assert run.returncode == 0, stderr[-3000:]
    with sqlite3.connect(root / "state.sqlite") as conn:
        retried = conn.execute("SELECT COUNT(*) FROM tasks WHERE attempts > 1").fetchone()[0]
    assert retried, "the batch the lost node was running was retried"
    summary = json.loads((root / "summary.json").read_text())
    assert (summary["finished"], summary["failed"]) == (2, 0)
    assert_same_outputs(reference, root)


def test_joining_a_token_cluster_without_its_token_says_what_to_set(ray_nodes, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(home)  # no ~/.ray/auth_token either
    ray_nodes.wait_for_nodes(1)
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "mapper.cli", "run", *ARGS, "--address", ray_nodes.address, "--out",
                          str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 2 and time.monotonic() - t0 < 60
    assert "uses token authentication and no token was found" in out.stderr and "RAY_AUTH_TOKEN" in out.stderr
    assert ray_nodes.token.read_text() not in out.stderr + out.stdout
    env["RAY_AUTH_TOKEN"] = "0" * 64
    out = subprocess.run([sys.executable, "-m", "mapper.cli", "run", *ARGS, "--address", ray_nodes.address, "--out",
                          str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 2 and "is not the cluster's" in out.stderr and "0" * 64 not in out.stderr
    assert not (tmp_path / "run").exists()
