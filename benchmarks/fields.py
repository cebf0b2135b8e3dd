"""Field delineation on held-out worlds: the learned model against the classical baseline, and its time per block
against segmentation's.

    python -m benchmarks.fields --runs RUN [RUN ...] [--models baseline fields-default] [--croptype] [--record]

Each RUN is a finished `mapper run` on a simulated world the field model never saw (e.g. `mapper run --world-seed
1 --source demo --bbox ...`). For every block with a decision, each model delineates the fields inside the
block's final mask on the imagery the fields stage uses (`mapper.fields.stage.block_imagery`), and is scored
against the world's field truth (`mapper.fields.evaluate.score_instances`, fragments under 40 px left out, as
`mapper fields evaluate`): object precision / recall / F1 at IoU > 0.5, extent IoU, boundary F within 1 px,
median area error. Time: the delineation of each block (median over blocks), beside the segmentation model's
prediction of the same block's mosaic (seg-default, one source: what the segment stage does per source) in the
same process, so the ratio is measured side by side.

`--croptype`: crop types of the same runs per unit — `pixel` (every 10 m pixel), `parcel` (10 m fields grouped by
their NDVI series), `field` (the fields of the last --models model) — each on a copy of the run through the
commands a user runs (`mapper fields`, `mapper croptype map --unit U`), scored by the share of the cropland area
whose level-4 crop agrees with the world's (croptype/summary.json), with the stage's seconds per block.

Writes benchmarks/fields.json; `--record` appends the tables to RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MIN_PX = 40


def _blocks(run: Path):
    import geopandas as gpd

    table = gpd.read_parquet(run / "blocks.parquet")
    return [(r["block_id"], r["decision"]) for _, r in table.iterrows() if isinstance(r["decision"], str)]


def measure(runs: list[Path], models: list[str], seg_model: str = "seg-default") -> dict:
    import rasterio

    from mapper.config.loader import load_config
    from mapper.fields.evaluate import score_instances, sum_scores
    from mapper.fields.model import load_field_model
    from mapper.fields.stage import block_imagery
    from mapper.fields.truth import field_truth
    from mapper.grid.blocks import Block
    from mapper.imagery.mosaic import read_mosaic
    from mapper.seg.predict import load_segmenter
    from mapper.store.run_store import RunLayout
    from mapper.world.world import get_world

    delineators = {m: load_field_model(m) for m in models}
    segmenter = load_segmenter(seg_model)
    scores: dict = {m: {} for m in models}
    seconds: dict = {m: [] for m in models}
    seg_seconds = []
    rows = []
    for run in runs:
        config = load_config([run / "config.yaml"])
        run_json = json.loads((run / "run.json").read_text())
        sources = run_json.get("sources") or list(config.source_sets["demo"])
        world = get_world(config.world.seed)
        for block_id, decision in _blocks(run):
            with rasterio.open(run / "final" / f"{block_id}.tif") as f:
                final = f.read(1)
            if decision == "Neither" or not (final == 1).any():
                continue
            rgb, valid, used, _ = block_imagery(RunLayout(run), sources, block_id, decision, final == 1)
            truth = field_truth(world, Block.parse(block_id))
            mosaic = read_mosaic(RunLayout(run).mosaic(used[0], block_id))
            t0 = time.perf_counter()
            list(segmenter.predict([(0, mosaic)]))
            seg_seconds.append(time.perf_counter() - t0)
            for name, d in delineators.items():
                t0 = time.perf_counter()
                labels = d.delineate(rgb, final, valid & (final != 255))
                seconds[name].append(time.perf_counter() - t0)
                s = score_instances(truth.labels, labels, min_pixels=MIN_PX, valid=final != 255)
                scores[name].setdefault(run.name, []).append(s)
                rows.append({"run": run.name, "block": block_id, "model": name, "seconds": seconds[name][-1],
                             **{k: s.as_dict()[k] for k in ("f1", "precision", "recall", "boundary_f")}})  # fmt: skip
                print(f"{run.name} {block_id} {name:<16} F1 {rows[-1]['f1']:.3f}  {seconds[name][-1]:.1f}s", flush=True)
    out = {"models": {}, "seg_seconds_median": float(np.median(seg_seconds)), "blocks": rows}
    for name in models:
        per_run = {r: sum_scores(v).as_dict() for r, v in scores[name].items()}
        pooled = sum_scores([s for v in scores[name].values() for s in v]).as_dict()
        out["models"][name] = {"pooled": pooled, "runs": per_run, "seconds_median": float(np.median(seconds[name])),
                               "ratio_to_segmentation": float(np.median(seconds[name]) / np.median(seg_seconds))}
    return out


def croptype_units(runs: list[Path], model: str, work: Path) -> dict:
    """Level-4 area agreement and seconds per block of each crop-type unit on copies of the runs."""
    import shutil
    import subprocess
    import sys

    def cli(*args):
        res = subprocess.run([sys.executable, "-m", "mapper.cli", *map(str, args)], capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"mapper {' '.join(map(str, args))} failed:\n{res.stderr[-2000:]}")

    out: dict = {}
    for run in runs:
        fielded = work / run.name / "fielded"
        shutil.rmtree(work / run.name, ignore_errors=True)
        shutil.copytree(run, fielded)
        cli("fields", fielded, "--model", model, "--in-process", "-q")
        for unit in ("pixel", "parcel", "field"):
            copy = work / run.name / unit
            shutil.copytree(fielded, copy)
            cli("croptype", "map", copy, "--unit", unit, "--in-process", "-q")
            summary = json.loads((copy / "croptype" / "summary.json").read_text())
            area = summary["accuracy_by_area"]
            out.setdefault(unit, {})[run.name] = {**area, "blocks": summary["blocks"],
                                                  "seconds_per_block": sum(summary["seconds"].values())
                                                  / max(summary["blocks"], 1)}  # fmt: skip
            print(f"{run.name} unit {unit}: level 4 {area['level4']:.3f}", flush=True)
    return out


def croptype_table(units: dict) -> str:
    runs = sorted({r for v in units.values() for r in v})
    lines = ["| unit | " + " | ".join(f"{r} level 1 / level 4" for r in runs) + " | seconds a block |",
             "|---|" + "---|" * (len(runs) + 1)]  # fmt: skip
    for unit, by_run in units.items():
        cells = [f"{by_run[r]['level1']:.3f} / **{by_run[r]['level4']:.3f}**" for r in runs]
        secs = np.mean([by_run[r]["seconds_per_block"] for r in runs])
        lines.append(f"| {unit} | " + " | ".join(cells) + f" | {secs:.1f} |")
    return "\n".join(lines)


def table(result: dict) -> str:
    lines = ["| model | run | object P | object R | object F1 | extent IoU | boundary F | median area error |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, m in result["models"].items():
        for run, d in [*m["runs"].items(), ("all", m["pooled"])]:
            lines.append(f"| {name} | {run} | {d['precision']:.3f} | {d['recall']:.3f} | **{d['f1']:.3f}** | "
                         f"{d['extent_iou']:.3f} | {d['boundary_f']:.3f} | {d['median_area_error']:.3f} |")  # fmt: skip
    lines.append("")
    seg = result["seg_seconds_median"]
    for name, m in result["models"].items():
        lines.append(f"- {name}: {m['seconds_median']:.1f} s a block (median), {m['ratio_to_segmentation']:.2f} × "
                     f"segmentation's {seg:.1f} s for one source's mosaic of the same blocks")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=["baseline", "fields-default"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "fields.json")
    ap.add_argument("--croptype", action="store_true", help="Also crop types per unit (pixel, parcel, field).")
    ap.add_argument("--record", action="store_true", help="Append the tables to RESULTS.md.")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    result = measure(args.runs, args.models)
    result["when"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    result["machine"] = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    text = table(result)
    if args.croptype:
        from benchmarks.common import WORK_DIR

        result["croptype"] = croptype_units(args.runs, args.models[-1], WORK_DIR / "fields_croptype")
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        text += "\n\nCrop types per unit (share of the cropland area whose crop agrees with the world's):\n\n"
        text += croptype_table(result["croptype"])
    print(text)
    if args.record:
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(f"\n### Field delineation on held-out worlds ({result['when']}, {result['machine']})\n\n"
                    f"Runs: {', '.join(str(r) for r in args.runs)}\n\n{text}\n")  # fmt: skip


if __name__ == "__main__":
    main()
