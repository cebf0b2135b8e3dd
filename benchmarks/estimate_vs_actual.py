"""`mapper estimate` against what a real run then costs: the README's demo run, estimate and actual side by side.

    python -m benchmarks.estimate_vs_actual --out /tmp/estimate-vs-actual --record
    python -m benchmarks.estimate_vs_actual --out /tmp/eva --blocks 2 --executors in_process   # a quick check

For each executor (a local Ray, the default of `mapper run`, and `--in-process`) the benchmark runs, in a work
folder outside the repository:

1. `mapper estimate --province Guangdong --source demo --max-blocks N --json` (and its wall time);
2. `mapper run --province Guangdong --source demo --max-blocks N --out runs/EXECUTOR --json -q`, which writes the
   estimate it printed at its start to runs/EXECUTOR/estimate.json; the two estimates must agree;
3. the actual costs of the run: the command's wall time; its CPU seconds (user + system of the command and every
   process under it: Ray's workers and raylet are reaped by Ray, not into this process's usage, so /proc is sampled
   every 0.5 s while the command runs, and this process is made the subreaper of its descendants so that none
   leaves its tree); the z16 tiles under the block mosaics it wrote (read from their georeference, each source's
   tiles once per block); the bytes it left on disk.

Each figure is reported as estimate, actual and their ratio (estimate / actual: above 1, the estimate was high).
`--record` appends a dated section with the machine and load to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.readme_numbers import REPO, json_out, mapper_command, publish

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
EXECUTORS = ("ray", "in_process")
TICKS = os.sysconf("SC_CLK_TCK")


def become_subreaper() -> bool:
    """Orphaned descendants (Ray's processes once the driver stops them) become children of this process, so
    their CPU time reaches RUSAGE_CHILDREN when they are reaped. False where the platform does not allow it."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _processes() -> dict[int, tuple[int, int, float]]:
    """pid -> (parent pid, start time in ticks, CPU seconds: user + system of all its threads), from /proc."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        out[int(stat.parent.name)] = (int(fields[1]), int(fields[19]), (int(fields[11]) + int(fields[12])) / TICKS)
    return out


def _descendants(procs: dict[int, tuple[int, int, float]], root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class TreeCpu:
    """CPU seconds of the processes under this one, sampled from /proc while a command runs: Ray's processes are
    reaped by Ray, not into this process's RUSAGE_CHILDREN, so only sampling sees them. Each process counts with
    its last sample (what it spends in its last `interval` is missed)."""

    def __init__(self, interval: float = 0.5):
        self.last: dict[tuple[int, int], float] = {}  # (pid, start time) -> CPU seconds when last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            procs = _processes()
            for pid in _descendants(procs, os.getpid()):
                _, start, cpu = procs[pid]
                self.last[(pid, start)] = cpu

    def __enter__(self) -> TreeCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(self.last.values())


def reap_orphans(timeout_s: float = 30.0) -> list[int]:
    """Reap the adopted descendants as they end (waiting up to timeout_s); the pids still running after it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return []  # none left
        if pid == 0:
            if time.monotonic() > deadline:
                return _descendants(_processes(), os.getpid())
            time.sleep(0.2)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_mapper(args: list[str], cwd: Path) -> tuple[float, float, str, list[int]]:
    """Run `mapper ARGS`: wall seconds, CPU seconds of it and its descendants (the larger of what was reaped into
    this process's usage and what sampling saw), stdout, descendants left running."""
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    with TreeCpu() as sampled:
        proc = subprocess.run([*mapper_command(), *args], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    left = reap_orphans()
    if proc.returncode != 0:
        raise RuntimeError(f"mapper {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, max(cpu_seconds() - cpu0, sampled.seconds), proc.stdout, left


def mosaic_tiles(run_dir: Path, zoom: int = 16) -> int:
    """z16 tiles under the mosaics the run wrote, from each GeoTIFF's own transform and size (EPSG:3857)."""
    import rasterio

    from mapper.grid.tilegrid import ORIGIN_SHIFT, TILE_SIZE, pixel_size

    res, tiles = pixel_size(zoom), 0
    for path in sorted((run_dir / "mosaics").glob("*/*.tif")):
        with rasterio.open(path) as src:
            col0 = round((src.bounds.left + ORIGIN_SHIFT) / res)
            row0 = round((ORIGIN_SHIFT - src.bounds.top) / res)
            cols = (col0 + src.width - 1) // TILE_SIZE - col0 // TILE_SIZE + 1
            rows = (row0 + src.height - 1) // TILE_SIZE - row0 // TILE_SIZE + 1
            tiles += cols * rows
    return tiles


def disk_bytes(run_dir: Path) -> int:
    return sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file() and p.name != "estimate.json")


def figure(est: dict, key: str) -> float | None:
    return est["figures"][key]["value"]


def measure(work: Path, executor: str, blocks: int) -> dict:
    """The estimate, the run, and the run's actual costs, for one executor."""
    region = ["--province", "Guangdong", "--source", "demo", "--max-blocks", str(blocks)]
    flag = ["--in-process"] if executor == "in_process" else []
    est_wall, _, est_out, _ = timed_mapper(["estimate", *region, *flag, "--json"], work)
    alone = json_out(est_out)
    run_dir = work / "runs" / executor
    if run_dir.exists():
        raise RuntimeError(f"{run_dir} exists: give a fresh --out")
    wall, cpu, stdout, left = timed_mapper(["run", *region, *flag, "--out", str(run_dir), "--json", "-q"], work)
    summary = json_out(stdout)
    kept = json.loads((run_dir / "estimate.json").read_text())
    for key in ("blocks", "area", "tiles.demo-a", "tiles.demo-b", "storage", "time"):
        said, alone_said = figure(kept, key), figure(alone, key)
        if abs(said - alone_said) > 1e-6 * max(1.0, abs(alone_said)):
            raise RuntimeError(f"{key}: `mapper run` estimated {said}, `mapper estimate` {alone_said}")
    estimated = {
        "wall_s": figure(kept, "time"),
        "cpu_s": figure(kept, "cpu_hours") * 3600,
        "tiles": figure(kept, "tiles.demo-a") + figure(kept, "tiles.demo-b"),
        "bytes": figure(kept, "storage"),
    }
    actual = {"wall_s": wall, "cpu_s": cpu, "tiles": mosaic_tiles(run_dir), "bytes": disk_bytes(run_dir)}
    return {"executor": executor, "blocks": blocks, "finished": summary["finished"], "failed": summary["failed"],
            "estimate_wall_s": est_wall, "estimated": estimated, "actual": actual, "left_running": left,
            "stage_seconds": summary.get("stage_seconds", {}), "driver_s": summary.get("seconds")}  # fmt: skip


ROWS = (("wall_s", "wall time, s", "{:.0f}"), ("cpu_s", "CPU, s (user + system)", "{:.0f}"),
        ("tiles", "tiles (both sources)", "{:,.0f}"), ("bytes", "bytes on disk, MB", "{:.1f}"))  # fmt: skip


def report(results: list[dict], info: dict, state: dict) -> list[str]:
    when, load = state["started"], (state["load_before"], state["load_after"])
    lines = [f"## {when} — estimate vs actual (`python -m benchmarks.estimate_vs_actual`) — {info['cpu']}, "
             f"{info['cores']} cores, {info['ram']}, no GPU; load average {load[0]} before, {load[1]} after", "",
             "`mapper run --province Guangdong --source demo --max-blocks N` after `mapper estimate` of the same: the "
             "estimate the run printed at its start (RUN/estimate.json, equal to `mapper estimate`'s) against what the "
             "run then took. Ratio = estimate / actual.", "",
             "| executor | blocks | figure | estimate | actual | ratio |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        for key, label, fmt in ROWS:
            scale = 1e-6 if key == "bytes" else 1.0
            e, a = r["estimated"][key] * scale, r["actual"][key] * scale
            ratio = f"{e / a:.2f}" if a else "n/a"
            lines.append(f"| {r['executor']} | {r['blocks']} | {label} | {fmt.format(e)} | {fmt.format(a)} | {ratio} |")
    lines.append("")
    for r in results:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["stage_seconds"].items()))
        lines.append(f"- {r['executor']}: {r['finished']} of {r['blocks']} blocks mapped, {r['failed']} failed; driver "
                     f"{r['driver_s']:.0f} s; worker seconds per stage: {stages}; `mapper estimate` itself "
                     f"{r['estimate_wall_s']:.1f} s.")  # fmt: skip
    cpu_note = ("CPU: user + system seconds of the command and every process under it (the larger of what was reaped "
                "into this process's usage and what sampling /proc every 0.5 s saw: Ray's processes are reaped by Ray)")
    left = [r["executor"] for r in results if r["left_running"]]
    lines.append(f"- {cpu_note}{'; processes still running after ' + ', '.join(left) if left else ''}. Tiles: the "
                 "z16 tiles under the mosaics written. Bytes: every file of the run directory but estimate.json.")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import load_average, machine_info

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="work folder, outside the repository")
    parser.add_argument("--blocks", type=int, default=8, help="--max-blocks of the run (README: 8)")
    parser.add_argument("--executors", nargs="+", choices=EXECUTORS, default=list(EXECUTORS))
    parser.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    work = args.out.resolve()
    if work == REPO or REPO in work.parents:
        parser.error(f"--out {args.out}: give a folder outside the repository ({REPO})")
    work.mkdir(parents=True, exist_ok=True)
    become_subreaper()
    state = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": load_average()}
    results = []
    for executor in args.executors:
        print(f"[{time.strftime('%H:%M:%S')}] {executor} …", file=sys.stderr, flush=True)
        results.append(measure(work, executor, args.blocks))
        print(json.dumps(results[-1]), flush=True)
    state["load_after"] = load_average()
    (work / "estimate_vs_actual.json").write_text(json.dumps({**state, "results": results}, indent=1))
    return publish(report(results, machine_info(), state), args.record)


if __name__ == "__main__":
    sys.exit(main())
