"""Crop-type public dataset formats benchmark (issue 14): does training through `--format ccd` / `--format h2crop`
on the world's exported data reach the accuracy of training on the native dataset of the same samples?

    python -m benchmarks.croptype_formats            # the full run (~10 min on 2 shared cores; exports cached)
    python -m benchmarks.croptype_formats --quick    # a smoke run (< 1 min; results under the work dir)

Settings, fixed up front and never tuned on test results:
- train: Henan on world seed 0, 12 windows (window seed 0) exported by `mapper croptype export`'s code —
  ccd: windows of 2 km, at most 60 points (fields) a window, months June-October (the dataset's), RGB PNGs and
  the GeoTIFF zips, read from the zips (--source tif); h2crop: windows of 1.92 km (H2Crop's 192 px), twelve
  months, 300 labelled pixels a sample file, unit pixel;
- held out: Henan on world seed 1 (another world: other fields, mixes and weather), 8 windows, window seed 100,
  exported and read the same way, every split of it judged.
Per format three training sets of exactly the same samples and splits (the exporter returns the native series
of the pixels it writes): `format` (the files read back by mapper.croptype.formats.read_format), `native months`
(the world's composite on the format's calendar months, in memory), `native 43` (the native 43 five-day steps).
Each trains through mapper.croptype.fit.train_model — the format's train split, early stopping on its val
split — and is judged on the held-out set in the same representation. format vs native months isolates the
round trip (files, int16 / float32 quantisation, the reader); native months vs native 43 is the cost of
monthly steps.
Model: CropNet width 32, Adam lr 1e-3, up to 40 epochs, patience 8, batch 128 (the CLI's defaults), the
augmentations at their defaults (on each series' own steps), seeds 0, 1 and 2 (median and range), CPU, torch
threads --threads (1).
Exports and models are cached under --work (default /tmp/croptype_formats_bench). Writes
benchmarks/croptype_formats.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.common import median

OUT_JSON = Path(__file__).resolve().parent / "croptype_formats.json"
VARIANTS = ("format", "native months", "native 43")


@dataclass(frozen=True)
class Plan:
    train_windows: int = 12
    test_windows: int = 8
    max_points: int = 60
    max_pixels: int = 300
    epochs: int = 40
    patience: int = 8
    seeds: tuple[int, ...] = (0, 1, 2)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def export(work: Path, fmt: str, world_seed: int, windows: int, window_seed: int, plan: Plan) -> dict:
    """{variant: ParcelDataset} of one export (cached on disk: the tree and the two native datasets)."""
    from mapper.croptype.dataset import load_dataset, save_dataset
    from mapper.croptype.formats import read_format
    from mapper.croptype.taxonomy import packaged_taxonomy
    from mapper.world.world import get_world

    key = work / f"{fmt}_w{world_seed}_n{windows}_s{window_seed}_p{plan.max_points}_{plan.max_pixels}"
    tree, n43, nm = key / "tree", key / "native43", key / "native_months"
    if not (tree.is_dir() and n43.is_dir() and nm.is_dir()):
        world = get_world(world_seed)
        t0 = time.perf_counter()
        if fmt == "ccd":
            from mapper.croptype.formats.ccdwrite import export_ccd

            native, months = export_ccd(world, "Henan", tree, windows, 2.0, window_seed, types=("RGB",),
                                        max_points=plan.max_points, log=log)  # fmt: skip
        else:
            from mapper.croptype.formats.h2cropwrite import export_h2crop

            native, months = export_h2crop(world, "Henan", tree, windows, 1.92, window_seed, plan.max_pixels, log=log)
        save_dataset(native, n43)
        save_dataset(months, nm)
        log(f"{fmt} world {world_seed}: exported {len(native)} samples in {time.perf_counter() - t0:.0f} s")
    options = {"source": "tif"} if fmt == "ccd" else {"max_pixels": plan.max_pixels, "seed": window_seed}
    return {"format": read_format(tree, fmt, packaged_taxonomy(), **options), "native months": load_dataset(nm),
            "native 43": load_dataset(n43)}  # fmt: skip


def train(work: Path, name: str, ds, plan: Plan, seed: int):
    from mapper.croptype.fit import train_model
    from mapper.croptype.kinds import load_model
    from mapper.croptype.train import CropTrainConfig

    out = work / "models" / f"{name.replace(' ', '_')}_e{plan.epochs}_p{plan.patience}_s{seed}"
    if not (out / "checkpoint.json").is_file():
        cfg = CropTrainConfig(width=32, lr=1e-3, epochs=plan.epochs, patience=plan.patience, batch_size=128,
                              seed=seed, device="cpu")  # fmt: skip
        t0 = time.perf_counter()
        train_model(ds, out, "cropnet", cfg, log=lambda m: None)
        log(f"trained {name} seed {seed} in {time.perf_counter() - t0:.0f} s")
    return load_model(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="A tiny smoke run (few windows, 2 epochs).")
    p.add_argument("--work", type=Path, default=Path("/tmp/croptype_formats_bench"))
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the cores are shared).")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/croptype_formats.json; quick: work dir).")
    p.add_argument("--formats", default="ccd,h2crop", help="Comma-separated formats to run.")
    p.add_argument("--train-windows", type=int, help="Training windows (default 12).")
    p.add_argument("--seeds", help="Comma-separated training seeds (default 0,1,2).")
    args = p.parse_args(argv)

    import torch

    from mapper.croptype.fit import evaluate_model

    torch.set_num_threads(args.threads)
    plan = Plan(3, 2, 15, 100, 2, 2, (0,)) if args.quick else Plan()
    if args.train_windows:
        plan = replace(plan, train_windows=args.train_windows)
    if args.seeds:
        plan = replace(plan, seeds=tuple(int(x) for x in args.seeds.split(",")))
    # models are cached by name under the work dir: a plan of its own gets a folder of its own
    work = args.work / ("quick" if args.quick else "full" if plan == Plan() else f"w{plan.train_windows}")
    out_json = args.out or (work / "croptype_formats.json" if args.quick else OUT_JSON)
    t_start = time.perf_counter()
    report = {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "command": "python -m benchmarks.croptype_formats " + " ".join(sys.argv[1:] if argv is None else argv),
              "plan": plan.__dict__ | {"seeds": list(plan.seeds)}, "torch_threads": args.threads,
              "datasets": {}, "results": {}}  # fmt: skip
    for fmt in args.formats.split(","):
        train_sets = export(work, fmt, 0, plan.train_windows, 0, plan)
        test_sets = export(work, fmt, 1, plan.test_windows, 100, plan)
        report["datasets"][fmt] = {
            "train": {"n": len(train_sets["format"]),
                      "splits": train_sets["format"].parcels["split"].value_counts().to_dict(),
                      "steps": {v: len(d.steps) for v, d in train_sets.items()}},
            "held_out": {"n": len(test_sets["format"])},
        }  # fmt: skip
        for variant in VARIANTS:
            runs = []
            for seed in plan.seeds:
                model = train(work, f"{fmt} {variant}", train_sets[variant], plan, seed)
                m = evaluate_model(model, test_sets[variant])
                runs.append({f"level{lv}": round(m[f"level{lv}"]["overall_accuracy"], 4) for lv in (1, 4)}
                            | {"macro_f1_level4": round(m["level4"]["macro_f1"], 4)})  # fmt: skip
            report["results"][f"{fmt} {variant}"] = {
                "runs": runs, **{k: median(r[k] for r in runs) for k in runs[0]},
                "range_level4": [min(r["level4"] for r in runs), max(r["level4"] for r in runs)]}  # fmt: skip
            log(f"{fmt} {variant}: {report['results'][f'{fmt} {variant}']}")
    report["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(markdown(report))
    print(f"-> {out_json}; wall {report['wall_seconds']:.0f} s")
    return 0


def markdown(report: dict) -> str:
    lines = ["| format | trained on | steps | held-out OA level 1 | level 4 (median, range) | macro-F1 level 4 |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in report["results"].items():
        fmt, variant = name.split(" ", 1)
        steps = report["datasets"][fmt]["train"]["steps"][variant]
        lo, hi = r["range_level4"]
        lines.append(f"| {fmt} | {variant} | {steps} | {r['level1']:.3f} | {r['level4']:.3f} ({lo:.3f}-{hi:.3f}) | "
                     f"{r['macro_f1_level4']:.3f} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
