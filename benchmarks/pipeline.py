"""`mapper run` benchmarks: nationwide planning, a dry run over all of China, and end-to-end runs in-process vs
Ray on the same blocks.

    python -m benchmarks.pipeline --record                 # all three (the Ray dry run of China takes minutes)
    python -m benchmarks.pipeline --only e2e --blocks 4

- **plan**: `plan_blocks` for China (383,267 blocks), median of repeats, in this process.
- **dry**: `mapper run --country China --dry-run` (trivial stages: no imagery, no models), in-process and on
  a local Ray, each a child process; wall time and the driver's peak RSS (wait4's ru_maxrss of the `mapper`
  process, not Ray's own processes).
- **e2e**: `mapper run --province Guangdong --max-blocks N` on the simulated world, in-process and on a
  local Ray, one after the other on the same blocks; blocks/min, the per-stage worker seconds from the state
  database (their sum over the wall time is the stages' busy fraction; for the segmentation pool that is its
  device's busy fraction: GPU when there is one).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import median
from mapper.run.stages import STAGES


def run_child(args: list[str], env: dict | None = None) -> dict:
    """Wall seconds, the process's own peak RSS (MiB, VmHWM polled from /proc while it runs: Ray's processes are
    not counted) and the parsed JSON stdout of one `mapper` child process."""
    cmd = [sys.executable, "-m", "mapper.cli", *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _vm_hwm_mib(proc.pid))
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        text, errors = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{errors[-3000:]}")
    return {"wall_s": wall, "rss_mib": peak, "summary": json.loads(text) if text.strip().startswith("{") else {}}


def _vm_hwm_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def bench_plan(repeats: int) -> dict:
    from mapper.run.plan import plan_blocks, resolve_region

    region = resolve_region(country="China")
    times, n = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = len(plan_blocks(region))
        times.append(time.perf_counter() - t0)
    return {"blocks": n, "median_s": median(times), "times": times}


def bench_dry(ray: bool, work: Path, region: tuple[str, ...] = ("--country", "China")) -> dict:
    out = work / ("dry-ray" if ray else "dry-inprocess")
    args = ["run", *region, "--dry-run", "--out", str(out), "-q", "--json"]
    r = run_child(args + ([] if ray else ["--in-process"]))
    planned = _planning_seconds(out / "run.log")
    return {"executor": "ray" if ray else "in-process", "blocks": r["summary"].get("blocks"),
            "finished": r["summary"].get("finished"), "wall_s": r["wall_s"], "planning_s": planned,
            "driver_rss_mib": r["rss_mib"]}  # fmt: skip


def _planning_seconds(log: Path) -> float | None:
    for line in log.read_text().splitlines():
        if "planned" in line and " in " in line:
            return float(line.rsplit(" in ", 1)[1].split()[0])
    return None


def stage_seconds(run_dir: Path) -> dict[str, float]:
    with sqlite3.connect(run_dir / "state.sqlite") as conn:
        rows = conn.execute("SELECT stage, SUM(seconds) FROM tasks WHERE status = 'done' GROUP BY stage")
        return {stage: float(s or 0) for stage, s in rows}


def bench_e2e(blocks: int, work: Path, threads: int | None) -> list[dict]:
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    rows = []
    for executor in ("in-process", "ray"):
        out = work / f"e2e-{executor}"
        args = ["run", "--province", "Guangdong", "--source", "demo", "--max-blocks", str(blocks), "--out", str(out),
                "-q", "--json"]  # fmt: skip
        r = run_child(args + (["--in-process"] if executor == "in-process" else []), env)
        s = r["summary"]
        stages = stage_seconds(out)
        rows.append({
            "executor": executor, "blocks": s["finished"], "wall_s": r["wall_s"], "driver_s": s["seconds"],
            "blocks_per_min": 60 * s["finished"] / r["wall_s"], "driver_rss_mib": r["rss_mib"],
            **{f"{k}_s": v for k, v in stages.items()},
            "segment_busy": stages.get("segment", 0) / s["seconds"] if s["seconds"] else None,
        })  # fmt: skip
    return rows


def report(results: dict, info: dict) -> list[str]:
    from benchmarks.run import table

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"## {when} — mapper run (pipeline) — {info['cpu']}, {info['cores']} cores, {info['ram']}", ""]
    if "plan" in results:
        p = results["plan"]
        lines += [f"**Planning China**: {p['blocks']:,} blocks in {p['median_s']:.1f} s (median of "
                  f"{len(p['times'])}: {', '.join(f'{t:.1f}' for t in p['times'])} s).", ""]  # fmt: skip
    if "dry" in results:
        lines += ["**Dry run** (trivial stages; every block × source × stage scheduled and recorded):", ""]
        lines += table(results["dry"], [("executor", "executor", ""), ("blocks", "blocks", ",d"),
                                        ("planning_s", "planning s", ".1f"), ("wall_s", "wall s", ".0f"),
                                        ("driver_rss_mib", "driver peak RSS MiB", ".0f")])  # fmt: skip
        lines.append("")
    if "e2e" in results:
        cols = [("executor", "executor", ""), ("blocks", "blocks", "d"), ("wall_s", "wall s", ".0f"),
                ("blocks_per_min", "blocks/min", ".2f"), ("driver_rss_mib", "driver RSS MiB", ".0f")]
        cols += [(f"{s}_s", f"{s} s", ".1f") for s in STAGES] + [("segment_busy", "segment busy", ".2f")]
        lines += ["**End to end**, Guangdong sample on the simulated world, the same blocks in-process and on a "
                  "local Ray (wall = the whole command: start-up, planning, stages, outputs; stage columns = "
                  "worker seconds summed over tasks; segment busy = segment seconds / driver seconds):", ""]
        lines += table(results["e2e"], cols)  # fmt: skip
        ip, ray = results["e2e"]
        lines += ["", f"Ray / in-process wall time: {ray['wall_s'] / ip['wall_s']:.2f}."]
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import append_results, machine_info

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=("plan", "dry", "e2e"), default=["plan", "dry", "e2e"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=4, help="blocks of the end-to-end runs (default 4)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the end-to-end runs")
    parser.add_argument("--no-ray-dry", action="store_true", help="skip the (minutes-long) Ray dry run of China")
    parser.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    info = machine_info()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="mapper-bench-") as tmp:
        work = Path(tmp)
        if "plan" in args.only:
            results["plan"] = bench_plan(args.repeats)
            print(results["plan"])
        if "dry" in args.only:
            results["dry"] = [bench_dry(False, work)] + ([] if args.no_ray_dry else [bench_dry(True, work)])
            print(results["dry"])
        if "e2e" in args.only:
            results["e2e"] = bench_e2e(args.blocks, work, args.threads)
            print(results["e2e"])
    lines = report(results, info)
    print("\n".join(lines))
    if args.record:
        append_results(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
