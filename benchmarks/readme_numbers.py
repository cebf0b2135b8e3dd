"""The README's numbers, measured by running the README's commands as a new user would.

    python -m benchmarks.readme_numbers --out /tmp/readme-numbers --record   # every step (long: 3 runs, a round)
    python -m benchmarks.readme_numbers --out /tmp/rn --only demo validate --max-blocks 2   # a quick check

Each step runs `mapper` as a child process (the installed command, as the README writes it) in a work folder
outside the repository, and reads the numbers from the commands' own `--json` output:

- **demo**: `mapper run --province Guangdong --source demo --max-blocks 8 --out runs/guangdong` (local Ray): wall
  time of the command (median of `--run-repeats`), blocks mapped, the sample's province estimate.
- **validate**: `mapper validate runs/guangdong --json` on that run: IoU, semantic correctness, PCS like for like,
  the stop verdict, and its wall time (median of `--repeats`); `mapper report runs/guangdong` and its wall time.
- **seed1**: the README's held-out check, `mapper run --province Guangdong --world-seed 1 --max-blocks N
  --in-process` then `mapper validate --json`, for each N of `--seed1-blocks` (the validation table: final-map
  IoU with each source's, semantic correctness, PCS of the same area, stop; the whole-province ratio estimate).
- **compare**: the largest seed-1 run's final map degraded to a 30 m product in UTM 50N (a 30 m cell is cropland
  when ≥ 30 % of it is, as tests/test_compare.py builds it per block), then `mapper compare RUN coarse.tif
  --json`: IoU and the median Div of area fraction and edge density over the blocks above 10 % cropland.
- **croptype**: `mapper croptype map runs/guangdong` on the demo run: its wall time and the area-weighted agreement
  with the world's crops per level (its `croptype/summary.json`).
- **area**: the georeference section's two figures, computed (no command): how far the spherical
  `(2.3887·cos φ)²` pixel area is from the ellipsoid's at latitudes 0-30°, and how much summing plain mercator
  area overstates Guangdong (its polygon's EPSG:3857 area over its geodesic area).
- **models**: the packaged models held out on world seed 1: `mapper labels make --world-seed 1` over the provinces
  of configs/train_iqa_default.yaml (`--models-per-province` blocks each; 25 in the README), then
  `mapper evaluate iqa --json` (top-1) and `mapper evaluate seg --max-images 40 --json` (pooled pixel IoU,
  precision, recall).
- **al**: the README's label round (`mapper labels make --n 16`, `al init`, `al loop --rounds 1 --in-process`,
  `al status`, `al report`): wall time of each command and of the whole round.

Times are wall seconds of whole commands (start-up included), so they depend on the machine and on what else it
runs; `--record` appends a dated section with the machine and load to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import median

STEPS = ("demo", "validate", "seed1", "compare", "croptype", "croptype_evaluate", "al", "area", "models", "decide")
# The held-out labels of the packaged IQA model (configs/train_iqa_default.yaml): world seed 1, these provinces.
HELD_OUT_PROVINCES = ("Heilongjiang", "Tibet", "Guangxi", "Shandong", "Gansu", "Hubei", "Xinjiang", "Yunnan", "Qinghai",
                      "Inner Mongolia")  # fmt: skip
REPO = Path(__file__).resolve().parent.parent
UTM50 = "EPSG:32650"  # one CRS for the whole coarse product: Guangdong lies in UTM zones 49-50
COARSE_M = 30.0
COARSE_SHARE = 0.3  # a 30 m cell is cropland when at least this share of it is (tests/test_compare.py)


def mapper_command() -> list[str]:
    """The installed `mapper` command of this interpreter's environment (what a user types), else the module."""
    exe = Path(sys.executable).parent / "mapper"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mapper.cli"]


def mapper(args: list[str], cwd: Path) -> tuple[float, str]:
    """Run `mapper ARGS` in `cwd`; its wall seconds and stdout. A failing command stops the benchmark with its
    stderr, since a number from a failed command would be wrong."""
    t0 = time.perf_counter()
    proc = subprocess.run([*mapper_command(), *args], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"mapper {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def json_out(stdout: str) -> dict:
    """The JSON object a `--json` command printed (log lines before it are skipped)."""
    return json.loads(stdout[stdout.index("{") :])


def province_numbers(report: dict) -> dict:
    """The numbers the README quotes from a `mapper validate --json` report: pixel IoU of each map, semantic
    correctness of each map, the (single) province's PCS like for like, its stop verdict and the ratio estimate
    of the whole province with its 95 % interval."""
    px, sc = report["pixel_iou"], report["semantic_correctness"]
    p = report["provinces"][0]

    def final_first(names: list[str]) -> list[str]:  # the final map, then each source's
        return sorted(names, key=lambda name: name != "final")

    out = {
        "blocks": report["run"]["blocks_done"],
        "iou": {name: px[name]["iou"] for name in final_first(px.get("maps", []))},
        "semantic": {name: sc[name]["rate"] for name in final_first(sc["maps"])},
        "pcs": p["pcs"],
        "comparison": p["comparison"],
        "stop": bool(p["stop"]["stop"]),
    }
    est = p.get("province_estimate") or {}
    if est.get("ci95") and est.get("statistic_ha"):
        out["province_estimate"] = {
            "ratio": est["estimate_ha"] / est["statistic_ha"],
            "ci95_mha": [v / 1e6 for v in est["ci95"]],
            "statistic_mha": est["statistic_ha"] / 1e6,
        }
    return out


def step_demo(work: Path, blocks: int, repeats: int) -> dict:
    """The main job of the README on a local Ray; later repeats go to fresh folders (each a whole first run)."""
    times, summary = [], {}
    for i in range(repeats):
        out = "runs/guangdong" if i == 0 else f"runs/guangdong-{i + 1}"
        wall, stdout = mapper(["run", "--province", "Guangdong", "--source", "demo", "--max-blocks", str(blocks),
                               "--out", out, "--json", "-q"], work)  # fmt: skip
        times.append(wall)
        summary = summary or json_out(stdout)
    prov = summary["provinces"][0]
    return {"blocks": blocks, "finished": summary["finished"], "failed": summary["failed"], "wall_s": median(times),
            "times_s": times, "estimate_ha": prov["mapped_cropland_ha"], "statistic_ha": prov["statistic_ha"],
            "pcs": prov["pcs"]}  # fmt: skip


def step_validate(work: Path, repeats: int) -> dict:
    """`mapper validate` (recomputed each time: `--json` never reuses) and `mapper report` on the demo run."""
    times, report = [], {}
    for _ in range(repeats):
        wall, stdout = mapper(["validate", "runs/guangdong", "--json", "-q"], work)
        times.append(wall)
        report = json_out(stdout)
    report_wall, _ = mapper(["report", "runs/guangdong", "-q"], work)
    return {**province_numbers(report), "wall_s": median(times), "times_s": times, "report_wall_s": report_wall}


def step_seed1(work: Path, sizes: list[int]) -> list[dict]:
    """The README's held-out check on world seed 1, in-process, for each sample size."""
    rows = []
    for n in sizes:
        run_dir = f"runs/gd-seed1-{n}"
        wall, _ = mapper(["run", "--province", "Guangdong", "--world-seed", "1", "--max-blocks", str(n),
                          "--in-process", "--out", run_dir, "--json", "-q"], work)  # fmt: skip
        _, stdout = mapper(["validate", run_dir, "--json", "-q"], work)
        rows.append({"run": run_dir, "run_wall_s": wall, **province_numbers(json_out(stdout))})
    return rows


def degrade_to_30m(run_dir: Path, path: Path) -> Path:
    """The run's final map as one 30 m product in UTM 50N: per block, the cropland share of each 30 m cell
    (average of the 0/1 map, no-imagery pixels left out), cropland (1) where the share is ≥ 0.3, 255 elsewhere
    without data. The cells lie on one 30 m grid; the file is sparse (only the blocks' tiles are written)."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.warp import Resampling, reproject, transform_bounds
    from rasterio.windows import Window

    finals = sorted((run_dir / "final").glob("*.tif"))
    if not finals:
        raise RuntimeError(f"{run_dir}/final has no block maps: run the seed1 step first")
    boxes = []
    for f in finals:
        with rasterio.open(f) as src:
            w, s, e, n = transform_bounds(src.crs, UTM50, *src.bounds)
        boxes.append((math.floor(w / COARSE_M), math.floor(s / COARSE_M), math.ceil(e / COARSE_M),
                      math.ceil(n / COARSE_M)))  # fmt: skip
    x0, y1 = min(b[0] for b in boxes), max(b[3] for b in boxes)  # grid origin: top-left, in 30 m cells
    width, height = max(b[2] for b in boxes) - x0, y1 - min(b[1] for b in boxes)
    grid = Affine(COARSE_M, 0.0, x0 * COARSE_M, 0.0, -COARSE_M, y1 * COARSE_M)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "uint8", "crs": UTM50,
               "transform": grid, "nodata": 255, "tiled": True, "blockxsize": 256, "blockysize": 256,
               "compress": "deflate", "sparse_ok": True}  # fmt: skip
    with rasterio.open(path, "w+", **profile) as dst:
        for f, (bw, bs, be, bn) in zip(finals, boxes, strict=True):
            with rasterio.open(f) as src:
                data = src.read(1)
                share = np.where(data == 255, np.nan, data.astype(np.float32))
                win = Window(bw - x0, y1 - bn, be - bw, bn - bs)
                out = np.full((int(win.height), int(win.width)), np.nan, np.float32)
                reproject(share, out, src_transform=src.transform, src_crs=src.crs, src_nodata=np.nan,
                          dst_transform=grid @ Affine.translation(win.col_off, win.row_off), dst_crs=UTM50,
                          dst_nodata=np.nan, resampling=Resampling.average)  # fmt: skip
            coarse = np.where(np.isnan(out), 255, np.where(out >= COARSE_SHARE, 1, 0)).astype(np.uint8)
            current = dst.read(1, window=win)  # blocks side by side share edge cells: keep what is already there
            dst.write(np.where(coarse == 255, current, coarse), 1, window=win)
    return path


def step_compare(work: Path, run_dir: str) -> dict:
    """`mapper compare` of a seed-1 run against its own map degraded to 30 m."""
    coarse = degrade_to_30m(work / run_dir, work / "coarse30.tif")
    _, stdout = mapper(["compare", run_dir, str(coarse), "--json", "-q"], work)
    s = json_out(stdout)
    lvl = s["block_level"]
    return {"run": run_dir, "iou": s["pixel"]["iou"], "blocks_compared": s["blocks"]["compared"],
            "min_af": lvl["min_af"], "blocks_above": lvl["blocks"], "div_af": lvl["area_fraction"]["median_div"],
            "af_over_share": lvl["area_fraction"]["over_share"], "div_ed": lvl["edge_density"]["median_div"],
            "ed_under_share": lvl["edge_density"]["under_share"]}  # fmt: skip


def step_croptype(work: Path) -> dict:
    """Crop types of the demo run's fields, as the README's next command."""
    wall, _ = mapper(["croptype", "map", "runs/guangdong", "-q"], work)
    summary = json.loads((work / "runs/guangdong/croptype/summary.json").read_text())
    return {"wall_s": wall, "blocks": summary["blocks"], "accuracy_by_area": summary.get("accuracy_by_area")}


def step_al(work: Path) -> dict:
    """The README's label round on world seed 1, command by command."""
    commands = {  # as the README writes them
        "labels_make": "labels make --province Guangdong --n 16 --out runs/gd-seed0-labels",
        "al_init": "al init runs/gd-camp --province Guangdong --world-seed 1 --pool 8 --validation 4 --decision 4 "
        "--round-blocks 2 --finetune-steps 60 --stop-iou 0.95 --base-labels runs/gd-seed0-labels",
        "al_loop": "al loop runs/gd-camp --rounds 1 --in-process -q",
        "al_status": "al status runs/gd-camp",
        "al_report": "al report runs/gd-camp",
    }
    out = {f"{name}_s": mapper(shlex.split(command), work)[0] for name, command in commands.items()}
    return {**out, "total_s": sum(out.values())}


def step_area() -> dict:
    """The spherical cos² rule against the ellipsoid's exact pixel rows, and plain mercator area of Guangdong."""
    import numpy as np
    import shapely
    from pyproj import Transformer

    from mapper.grid.admin import resolve_province
    from mapper.grid.area import geodesic_area_m2, row_pixel_areas
    from mapper.grid.tilegrid import PixelWindow, lonlat_to_global_pixel, pixel_size

    errors = []
    for lat in np.arange(0.5, 30.0, 0.5):  # a pixel row at each latitude, z16
        row = int(lonlat_to_global_pixel(0.0, lat, 16)[1])
        window = PixelWindow(16, 0, row, 1, row + 1)
        exact = float(row_pixel_areas(window)[0])
        spherical = (pixel_size(16) * np.cos(np.radians(lat))) ** 2
        errors.append(spherical / exact - 1.0)
    geometry = resolve_province("Guangdong").geometry
    to_mercator = Transformer.from_crs(4326, 3857, always_xy=True)
    mercator = shapely.transform(geometry, lambda xy: np.column_stack(to_mercator.transform(xy[:, 0], xy[:, 1]))).area
    return {"spherical_error_0_30": [float(min(errors)), float(max(errors))],
            "guangdong_mercator_over_true": float(mercator / geodesic_area_m2(geometry))}  # fmt: skip


def seed1_labels(work: Path, per_province: int) -> tuple[str, float]:
    """Labelled blocks of world seed 1 over the held-out provinces (the packaged models learnt on seed 0), and the
    seconds it took; `labels make` keeps blocks already complete, so a second step reuses the first's."""
    labels = f"labels-seed1-{per_province}"
    t0 = time.perf_counter()
    for province in HELD_OUT_PROVINCES:
        mapper(["labels", "make", "--world-seed", "1", "-p", province, "--n", str(per_province), "--out", labels,
                "--workers", "2", "-q"], work)  # fmt: skip
    return labels, time.perf_counter() - t0


def step_models(work: Path, per_province: int) -> dict:
    """The packaged IQA and segmentation models on labelled blocks of world seed 1 (they learnt on seed 0)."""
    labels, labels_s = seed1_labels(work, per_province)
    iqa_s, stdout = mapper(["evaluate", "iqa", "--labels", labels, "--json"], work)
    iqa = json_out(stdout)
    seg_s, stdout = mapper(["evaluate", "seg", "--labels", labels, "--max-images", "40", "--json", "-q"], work)
    seg = json_out(stdout)
    return {"blocks": per_province * len(HELD_OUT_PROVINCES), "labels_s": labels_s, "iqa_top1": iqa["top1"],
            "iqa_images": iqa.get("n") or sum(c["n"] for c in iqa["per_class"].values()), "iqa_s": iqa_s,
            "seg_iou": seg["iou"], "seg_precision": seg["precision"], "seg_recall": seg["recall"],
            "seg_images": seg["images"], "seg_s": seg_s}  # fmt: skip


def step_decide(work: Path, per_province: int) -> dict:
    """The packaged decision models (decide-default, trained on world seed 0) judged on every labelled seed-1
    block: seg-default's predictions of both sources (`mapper segment --mosaic`), the feature tables, then
    `mapper decide evaluate --json` (semantic correctness per block × source, integration per block, and the
    integrated map's pixel IoU against either source alone)."""
    labels, _ = seed1_labels(work, per_province)
    images = sorted(str(p.relative_to(work)) for p in (work / labels).glob("*/image_*.tif"))
    if not images:
        raise RuntimeError(f"{work / labels} holds no labelled block images")
    mosaics = [arg for image in images for arg in ("--mosaic", image)]
    segment_s, _ = mapper(["segment", *mosaics, "--out", "preds-seed1", "-q"], work)
    table_s, _ = mapper(["decide", "table", "--labels", labels, "--predictions", "preds-seed1", "--out",
                         "tables-seed1", "-q"], work)  # fmt: skip
    from mapper.models.registry import resolve_checkpoint

    models = str(resolve_checkpoint("decide-default"))  # the packaged folder: `decide evaluate` takes a directory
    evaluate_s, stdout = mapper(["decide", "evaluate", "--models", models, "--tables", "tables-seed1",
                                 "--labels", labels, "--predictions", "preds-seed1", "--json"], work)  # fmt: skip
    return {**decide_numbers(json_out(stdout)), "segment_s": segment_s, "table_s": table_s, "evaluate_s": evaluate_s}


def decide_numbers(ev: dict) -> dict:
    """The README's figures from a `mapper decide evaluate --json` report."""
    noise = ev["correctness"]["per_class"].get("Noise", {})
    return {"blocks": ev["blocks"], "rows": ev["correctness"]["n"], "correctness": ev["correctness"]["accuracy"],
            "noise_recall": noise.get("recall"), "noise_n": noise.get("n"),
            "integration": ev["integration"]["accuracy"], "pixel_iou": ev["pixel_iou"]}  # fmt: skip


def step_croptype_evaluate(work: Path) -> dict:
    """The packaged crop-type model held out: `mapper croptype evaluate --json` (Henan parcels of world seed 1;
    it learnt on seed 0) — overall accuracy per taxonomy level."""
    wall, stdout = mapper(["croptype", "evaluate", "--model", "croptype-default", "--json"], work)
    ev = json_out(stdout)
    levels = {k: ev[k]["overall_accuracy"] for k in ("level1", "level2", "level3", "level4") if k in ev}
    return {"wall_s": wall, "data": ev.get("data"), "parcels": ev.get("n_parcels"), "accuracy": levels,
            "macro_f1": {k: ev[k]["macro_f1"] for k in levels}}


def _f(v, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def _pct(v, fmt: str = "+.1f") -> str:
    return "-" if v is None else f"{format(100 * v, fmt)} %"


def _maps(d: dict) -> str:
    """'final (a, b)' from a {map name: value} dict whose first entry is the final map."""
    values = list(d.values())
    return f"{_f(values[0])} ({', '.join(_f(v) for v in values[1:])})" if values else "-"


def _times(times: list[float]) -> str:
    return f"median of {len(times)}: {', '.join(f'{t:.0f}' for t in times)} s"


def _demo_lines(d: dict) -> list[str]:
    return [
        f"- **Demo run** (`mapper run --province Guangdong --source demo --max-blocks {d['blocks']}`, local Ray): "
        f"{d['finished']} blocks mapped, {d['failed']} failed, **{d['wall_s']:.0f} s** ({_times(d['times_s'])}); "
        f"PCS of the sample's province estimate {_f(d['pcs'])}."
    ]


def _validate_lines(v: dict) -> list[str]:
    verdict = "stop" if v["stop"] else "continue"
    return [
        f"- **`mapper validate`** of it: IoU {_maps(v['iou'])} (final (A, B)), semantic correctness "
        f"{_maps(v['semantic'])}, PCS {_f(v['pcs'])} ({v['comparison']}), {verdict}; **{v['wall_s']:.0f} s** "
        f"({_times(v['times_s'])}). `mapper report`: {v['report_wall_s']:.0f} s."
    ]


def _seed1_lines(rows: list[dict]) -> list[str]:
    from benchmarks.run import table

    cells = [
        {"blocks": r["blocks"], "iou": _maps(r["iou"]), "sc": _maps(r["semantic"]), "pcs": _f(r["pcs"]),
         "stop": "stop" if r["stop"] else "continue", "wall": r["run_wall_s"]}
        for r in rows
    ]  # fmt: skip
    columns = [("blocks", "blocks of seed 1", "d"), ("iou", "final-map IoU (A alone, B alone)", ""),
               ("sc", "semantic correctness, final (A, B)", ""), ("pcs", "PCS, same area", ""), ("stop", "stop", ""),
               ("wall", "run s", ".0f")]  # fmt: skip
    lines = [
        "",
        "Held out (`mapper run --province Guangdong --world-seed 1 --max-blocks N --in-process`, then `mapper "
        "validate --json`; the packaged models were trained on world seed 0):",
        "",
        *table(cells, columns),
        "",
    ]
    for r in rows:
        if e := r.get("province_estimate"):
            lines.append(
                f"- {r['blocks']} blocks: whole-province ratio estimate {e['ratio']:.2f} × the world's statistic "
                f"({e['statistic_mha']:.2f} Mha), 95 % interval {e['ci95_mha'][0]:.2f}-{e['ci95_mha'][1]:.2f} Mha."
            )
    return lines


def _compare_lines(c: dict) -> list[str]:
    return [
        f"- **`mapper compare`** of {c['run']} against its own map degraded to 30 m (a cell cropland when ≥ 30 % of "
        f"it is): IoU {c['iou']:.3f} over {c['blocks_compared']} blocks; over the {c['blocks_above']} blocks above "
        f"{_pct(c['min_af'], '.0f')} cropland, median Div {_pct(c['div_af'])} in area fraction "
        f"({_pct(c['af_over_share'], '.0f')} of them over) and {_pct(c['div_ed'])} in edge density "
        f"({_pct(c['ed_under_share'], '.0f')} under)."
    ]


def _croptype_lines(c: dict) -> list[str]:
    acc = c["accuracy_by_area"] or {}
    levels = ", ".join(f"level {k.removeprefix('level')} {_f(v)}" for k, v in acc.items()) or "no truth"
    return [
        f"- **`mapper croptype map`** of the demo run ({c['blocks']} blocks, every 10 m pixel classified): "
        f"**{c['wall_s']:.0f} s**; share of the cropland area whose crop agrees with the world's: {levels}."
    ]


def _al_lines(a: dict) -> list[str]:
    parts = ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.0f} s" for k, v in a.items() if k != "total_s")
    return [f"- **Label round** (the README's commands, one after the other): {a['total_s']:.0f} s in all ({parts})."]


def _area_lines(a: dict) -> list[str]:
    lo, hi = a["spherical_error_0_30"]
    return [f"- **Pixel area**: the spherical cos² rule is {100 * lo:+.2f} % to {100 * hi:+.2f} % off the ellipsoid's "
            f"rows at 0-30° N; plain mercator area overstates Guangdong by "
            f"{100 * (a['guangdong_mercator_over_true'] - 1):.1f} %."]  # fmt: skip


def _models_lines(m: dict) -> list[str]:
    return [f"- **Packaged models, held out on world seed 1** ({m['blocks']} labelled blocks, "
            f"{m['labels_s']:.0f} s to make): `iqa-default` top-1 **{_f(m['iqa_top1'])}** over {m['iqa_images']} "
            f"images ({m['iqa_s']:.0f} s); `seg-default` pixel IoU **{_f(m['seg_iou'])}** (precision "
            f"{_f(m['seg_precision'])}, recall {_f(m['seg_recall'])}) over {m['seg_images']} whole images "
            f"({m['seg_s']:.0f} s)."]  # fmt: skip


def _decide_lines(d: dict) -> list[str]:
    iou = d["pixel_iou"]
    timed = "segment_s" in d  # a saved report read back has no times
    timing = f"; segmenting both sources {d['segment_s']:.0f} s, tables {d['table_s']:.0f} s." if timed else "."
    return [f"- **Decisions held out** (`decide-default` on all {d['blocks']} labelled blocks of seed 1, "
            f"`mapper decide evaluate --json`): semantic-correctness accuracy **{_f(d['correctness'])}** over "
            f"{d['rows']} block × source rows (Noise recall {_f(d['noise_recall'], '.2f')} of {d['noise_n']}), "
            f"integration accuracy {_f(d['integration'])}, integrated map's pixel IoU **{_f(iou['integrated'])}** "
            f"against {_f(iou['Only A'])} (A alone) and {_f(iou['Only B'])} (B alone), per-block best choice "
            f"{_f(iou['best choice'])}" + timing]


def _croptype_evaluate_lines(c: dict) -> list[str]:
    acc = ", ".join(f"level {k.removeprefix('level')} {_f(v)}" for k, v in c["accuracy"].items())
    return [f"- **`mapper croptype evaluate`** of `croptype-default` ({c['data']}, {c['parcels']} parcels' pure "
            f"10 m pixels): overall accuracy {acc}; {c['wall_s']:.0f} s."]


LINES = {"demo": _demo_lines, "validate": _validate_lines, "seed1": _seed1_lines, "compare": _compare_lines,
         "croptype": _croptype_lines, "al": _al_lines, "area": _area_lines, "models": _models_lines,
         "decide": _decide_lines, "croptype_evaluate": _croptype_evaluate_lines}  # fmt: skip


def report(results: dict, info: dict, state: dict) -> list[str]:
    """The dated RESULTS.md section: when it started, machine and load, then a few lines per step that ran."""
    when, load = state["started"], (state["load_before"], state["load_after"])
    lines = [
        f"## {when} — the README's numbers (`python -m benchmarks.readme_numbers`) — {info['cpu']}, "
        f"{info['cores']} cores, {info['ram']}, no GPU; load average {load[0]} before, {load[1]} after",
        "",
    ]
    for name in (n for n in STEPS if n in results):
        error = results[name].get("error") if isinstance(results[name], dict) else None
        lines += [f"- {name}: failed, no numbers: {error.splitlines()[0]}"] if error else LINES[name](results[name])
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import load_average, machine_info

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="work folder, outside the repository (runs/ go here)")
    parser.add_argument("--only", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--max-blocks", type=int, default=8, help="blocks of the demo run (README: 8)")
    parser.add_argument("--seed1-blocks", type=int, nargs="+", default=[8, 24], help="sizes of the seed-1 runs")
    parser.add_argument("--run-repeats", type=int, default=1, help="demo runs to take the median time of")
    parser.add_argument("--repeats", type=int, default=3, help="validate runs to take the median time of")
    parser.add_argument("--models-per-province", type=int, default=25,
                        help="labelled seed-1 blocks per province of the models step (README: 25, 250 in all)")
    parser.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: report (and --record) what OUT/readme_numbers.json holds, e.g. after an "
                             "interrupted run")  # fmt: skip
    args = parser.parse_args(argv)
    work = args.out.resolve()
    if work == REPO or REPO in work.parents:
        parser.error(f"--out {args.out}: give a folder outside the repository ({REPO}), e.g. /tmp/readme-numbers")
    if min(args.run_repeats, args.repeats, *args.seed1_blocks, args.max_blocks) < 1:
        parser.error("--run-repeats, --repeats, --seed1-blocks and --max-blocks must be at least 1")
    saved = work / "readme_numbers.json"
    if args.report_only:
        state = json.loads(saved.read_text())
        return publish(report(state["steps"], machine_info(), state), args.record)
    work.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    state = {"started": started, "load_before": load_average(), "load_after": None, "steps": {}}
    results = state["steps"]
    steps = {
        "demo": lambda: step_demo(work, args.max_blocks, args.run_repeats),
        "validate": lambda: step_validate(work, args.repeats),
        "seed1": lambda: step_seed1(work, args.seed1_blocks),
        "compare": lambda: step_compare(work, f"runs/gd-seed1-{max(args.seed1_blocks)}"),
        "croptype": lambda: step_croptype(work),
        "al": lambda: step_al(work),
        "area": step_area,
        "models": lambda: step_models(work, args.models_per_province),
        "decide": lambda: step_decide(work, args.models_per_province),
        "croptype_evaluate": lambda: step_croptype_evaluate(work),
    }
    for name in (n for n in STEPS if n in args.only):
        print(f"[{time.strftime('%H:%M:%S')}] {name} …", file=sys.stderr, flush=True)
        try:
            results[name] = steps[name]()
        except (RuntimeError, OSError, KeyError, ValueError) as exc:  # the other steps still measure
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(results[name]), flush=True)
        state["load_after"] = load_average()
        saved.write_text(json.dumps(state, indent=1))  # after each step: an interrupted run keeps what it measured
    return publish(report(results, machine_info(), state), args.record)


def publish(lines: list[str], record: bool) -> int:
    """Print the section, and with `record` append it to benchmarks/RESULTS.md."""
    from benchmarks.run import append_results

    print("\n".join(lines))
    if record:
        append_results(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
