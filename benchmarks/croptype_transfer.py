"""Crop-type transfer benchmark (issue 13): CropNet with and without augmentation against the random forest,
trained in one region of the simulated world and tested in others, per parcel and per pixel; and the speed of
inference against reading and compositing Sentinel-2 files, on this machine.

    python -m benchmarks.croptype_transfer            # the full run (~50 min on 2 cores)
    python -m benchmarks.croptype_transfer --quick    # a smoke run (< 2 min; results under the work dir)

Settings, fixed up front (CropGlobe's kinds of transfer on the world) and never tuned on test results:
- train: Henan on world seed 0, 40 windows of 2 km (window seed 0); validation = 20 % of those windows held out
  whole (mapper.croptype.fit.split_by_window, seeded by the model's seed), for early stopping;
- val: those held-out windows (in-domain reference);
- near: Shandong, world seed 0 (a similar climate, another place), 15 windows, window seed 100;
- far: Heilongjiang, world seed 0 (colder: the world moves calendars 4 days later per °C, shortens seasons
  1 % per °C and grows another crop mix), 15 windows, window seed 101;
- other_seed: Henan on world seed 1 (another world: other fields, mixes and weather; same climate), 15 windows,
  window seed 102;
- far_other_seed: Heilongjiang on world seed 1, 15 windows, window seed 103.
Every setting is sampled twice over the same windows: per parcel (the truth fields' mean series) and per pixel
(unit="pixel", at most 400 single pure pixels a window). Models train on the training parcels only.

Models, through the CLI's code paths (mapper.croptype.fit.train_model / evaluate_model):
- cropnet_aug: CropNet width 32, Adam lr 1e-3, up to 40 epochs, patience 8, batch 128, dropout 0.2, the three
  augmentations at their defaults (shift ±50 days, time scale ±20 %, magnitude warp σ 0.1), on the CPU;
- cropnet_noaug: the same without augmentation;
- forest: XGBoost in random-forest mode, 500 trees (depth 12, balanced weights), 2 threads.
Both CropNets train with seeds 0 and 1 (median and range reported; the seed also picks the validation
windows); the forest with seed 0. torch uses --threads (2; pass 1 when another job shares the cores: two
threads on a busy core train several times slower). Trained models are cached, so a rerun with other threads
re-measures evaluation and speed only (each model's training threads are in the JSON).

Speed: one 0.05° block of Henan (world seed 0) is simulated (the world's cost, reported apart), written as
per-date GeoTIFFs (mapper croptype export-s2's code: s2write.write_dates), then read back (read_s2) and
composited; parcel inference (parcel means over the truth fields' pure pixels + the model) and pixel inference
(every not-all-cloud pixel of a truth field + the model) are timed against reading + compositing. Medians of
3 runs; CropNet at each of --speed-threads torch threads (2 and 1), the forest on its 2 threads. CropNet width
128 has random weights (the work is the same) and is timed on a sample of the pixels, as is the forest where
the block has more pixels than its sample (rates extrapolated; stated in the JSON).

Datasets, models and the block's files are cached under --work (default /tmp/croptype_bench), keyed by their
parameters, so a rerun reuses them. Writes benchmarks/croptype_transfer.json and confusion PNGs (levels 2 and 4,
far, per parcel, seed 0) under benchmarks/croptype_transfer/, and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import median

HERE = Path(__file__).resolve().parent
OUT_JSON = HERE / "croptype_transfer.json"
FIGURES = HERE / "croptype_transfer"
MODELS = ("cropnet_aug", "cropnet_noaug", "forest")
TESTS = ("val", "near", "far", "other_seed", "far_other_seed")
LEVELS = (1, 2, 3, 4)


@dataclass(frozen=True)
class Setting:
    name: str
    province: str
    world_seed: int
    windows: int
    window_seed: int
    what: str


@dataclass(frozen=True)
class Plan:
    settings: tuple[Setting, ...]
    pixels: int  # pixels a window in the pixel datasets
    width: int
    lr: float
    epochs: int
    patience: int
    batch_size: int
    trees: int
    seeds: tuple[int, ...]  # CropNet training seeds (the forest: the first)
    speed_km: float | None  # side of the speed area; None: one whole 0.05° block
    speed_repeats: int
    caps: dict  # "cropnet" (the trained one), "cropnet_w128", "forest" -> most samples timed (None: all)


def full_plan(seeds: tuple[int, ...], pixels: int) -> Plan:
    return Plan(
        settings=(
            Setting("train", "Henan", 0, 40, 0, "training region (its held-out windows: val)"),
            Setting("near", "Shandong", 0, 15, 100, "similar climate, other place"),
            Setting("far", "Heilongjiang", 0, 15, 101, "colder: later, shorter seasons, other crop mix"),
            Setting("other_seed", "Henan", 1, 15, 102, "same region and climate, other world seed"),
            Setting("far_other_seed", "Heilongjiang", 1, 15, 103, "far and other world seed"),
        ),
        pixels=pixels, width=32, lr=1e-3, epochs=40, patience=8, batch_size=128, trees=500, seeds=seeds,
        speed_km=None, speed_repeats=3, caps={"cropnet": None, "cropnet_w128": 20_000, "forest": 50_000},
    )  # fmt: skip


def quick_plan() -> Plan:
    full = full_plan((0,), 100)
    small = tuple(Setting(s.name, s.province, s.world_seed, 4 if s.name == "train" else 1, s.window_seed, s.what)
                  for s in full.settings)  # fmt: skip
    return Plan(small, pixels=100, width=32, lr=1e-3, epochs=2, patience=2, batch_size=128, trees=20, seeds=(0,),
                speed_km=0.5, speed_repeats=3, caps={"cropnet": None, "cropnet_w128": 500, "forest": None})  # fmt: skip


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ datasets
def dataset_key(s: Setting, unit: str, pixels: int) -> str:
    tail = f"pixel{pixels}" if unit == "pixel" else "parcel"
    return f"{s.province}-world{s.world_seed}-n{s.windows}-ws{s.window_seed}-{tail}"


def get_dataset(work: Path, s: Setting, unit: str, pixels: int, timings: dict):
    from mapper.croptype.dataset import load_dataset, save_dataset, simulate_dataset
    from mapper.world.world import get_world

    path = work / "datasets" / dataset_key(s, unit, pixels)
    if not (path / "dataset.json").is_file():
        t0 = time.perf_counter()
        ds = simulate_dataset(get_world(s.world_seed), s.province, s.windows, 2.0, s.window_seed, log=log, unit=unit,
                              max_pixels_per_window=pixels)  # fmt: skip
        save_dataset(ds, path)
        timings[path.name] = round(time.perf_counter() - t0, 1)
        log(f"{path.name}: {len(ds)} samples in {timings[path.name]:.0f} s")
    return load_dataset(path)


def describe(ds, taxonomy, train_leaves: np.ndarray | None = None) -> dict:
    leaves = ds.leaves(taxonomy)
    names = taxonomy.leaf_names()
    counts = np.bincount(leaves, minlength=taxonomy.n_leaves)
    top = np.argsort(-counts)[:6]
    out = {
        "n": len(ds),
        "windows": int(ds.parcels["window"].nunique()),
        "temperature_mean": round(float(ds.parcels["temperature"].mean()), 2),
        "leaves_present": int((counts > 0).sum()),
        "top_leaves": {names[i]: round(float(counts[i] / max(len(ds), 1)), 3) for i in top if counts[i]},
    }
    if train_leaves is not None:
        seen = np.bincount(train_leaves, minlength=taxonomy.n_leaves) > 0
        out["share_of_leaves_unseen_in_training"] = round(float((~seen[leaves]).mean()), 4)
    return out


# ------------------------------------------------------------------------------------------------ models
def train_config(plan: Plan, augment: bool, seed: int):
    from mapper.croptype.train import CropTrainConfig

    return CropTrainConfig(width=plan.width, lr=plan.lr, epochs=plan.epochs, patience=plan.patience,
                           batch_size=plan.batch_size, augment=augment, seed=seed, device="cpu")  # fmt: skip


def get_model(work: Path, train_key: str, train_ds, plan: Plan, kind: str, seed: int):
    """(loaded model, training summary), trained once and cached under the work dir."""
    import torch

    from mapper.croptype.fit import train_model
    from mapper.croptype.kinds import load_model

    cfg = train_config(plan, kind == "cropnet_aug", seed)
    recipe = f"w{plan.width}-e{plan.epochs}-p{plan.patience}-lr{plan.lr:g}-b{plan.batch_size}"
    tag = f"forest-t{plan.trees}-s{seed}" if kind == "forest" else f"{kind}-{recipe}-s{seed}"
    path = work / "models" / train_key / tag
    info_path = path.with_name(tag + ".train.json")
    if not info_path.is_file():
        log(f"training {tag} on {train_key} ({len(train_ds)} parcels)")
        t0 = time.perf_counter()
        info = train_model(train_ds, path, "forest" if kind == "forest" else "cropnet", cfg, val_share=0.2,
                           n_trees=plan.trees, command=f"benchmarks.croptype_transfer {tag}", log=log)  # fmt: skip
        info = {k: v for k, v in info.items() if k != "val_metrics"}
        info["wall_seconds"] = round(time.perf_counter() - t0, 1)
        info["torch_threads"] = torch.get_num_threads()
        info["config"] = cfg.model_dump()
        info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        log(f"{tag}: {info['wall_seconds']:.0f} s")
    return load_model(path), json.loads(info_path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------ metrics
def compact(metrics: dict) -> dict:
    out = {"n": metrics["n_parcels"]}
    for lv in LEVELS:
        m = metrics[f"level{lv}"]
        out[f"oa{lv}"] = round(m["overall_accuracy"], 4)
        out[f"f1{lv}"] = round(m["macro_f1"], 4)
    if "raw_consistency" in metrics:
        out["raw_consistency"] = round(metrics["raw_consistency"], 4)
    return out


def spread(runs: list[dict]) -> dict:
    """Per metric: the median over the seeds' runs and, with two or more, the min and max."""
    out = {"n": runs[0]["n"], "seeds": len(runs)}
    for key in runs[0]:
        if key == "n":
            continue
        vals = [r[key] for r in runs if r.get(key) is not None]
        out[key] = round(median(vals), 4)
        if len(vals) > 1:
            out[f"{key}_range"] = [min(vals), max(vals)]
    return out


def far_figures(metrics: dict, kind: str, seed: int, taxonomy, figures: Path) -> None:
    from mapper.croptype.metrics import confusion_png

    title = f"{kind} (seed {seed}), far (Heilongjiang), parcels"
    for lv in (2, 4):
        cm = metrics[f"level{lv}"]["confusion"]
        confusion_png(cm, taxonomy.names[lv - 1], figures / f"far_{kind}_level{lv}.png", f"{title}, level {lv}")


def evaluate_kind(per_seed: dict, ds, test: str, label: str, taxonomy, timings: dict) -> tuple[list[dict], dict]:
    """One model kind's runs (compact metrics per seed) on one test set, and the first seed's full metrics."""
    from mapper.croptype.fit import evaluate_model

    runs, full = [], None
    for seed, (model, info) in per_seed.items():
        data = ds
        if test == "val":  # this model's held-out windows of the training world
            data = ds.subset(ds.parcels["window"].isin(info["val_windows"]).to_numpy())
        t0 = time.perf_counter()
        m = evaluate_model(model, data, taxonomy)
        timings[f"evaluate {label} s{seed}"] = round(time.perf_counter() - t0, 1)
        runs.append({"seed": seed, **compact(m)})
        full = m if full is None else full
    return runs, full


def slim(metrics: dict) -> dict:
    """Full metrics without what every entry repeats (the class names: the report's "classes")."""
    drop = ("classes", "classes_present", "confusion_axes")
    return {k: ({kk: vv for kk, vv in v.items() if kk not in drop} if isinstance(v, dict) else v)
            for k, v in metrics.items()}  # fmt: skip


def evaluate_all(models: dict, datasets: dict, taxonomy, figures: Path | None, timings: dict) -> dict:
    """results[test][unit][model] = {"runs": [compact per seed], "summary": spread, "full": first seed's metrics}."""
    results: dict = {}
    for test in TESTS:
        for unit in ("parcel", "pixel"):
            for kind, per_seed in models.items():
                label = f"{test} {unit} {kind}"
                runs, full = evaluate_kind(per_seed, datasets[(test, unit)], test, label, taxonomy, timings)
                if figures is not None and test == "far" and unit == "parcel":
                    far_figures(full, kind, runs[0]["seed"], taxonomy, figures)
                summary = spread([{k: v for k, v in r.items() if k != "seed"} for r in runs])
                results.setdefault(test, {}).setdefault(unit, {})[kind] = {"runs": runs, "summary": summary,
                                                                          "full": slim(full)}  # fmt: skip
                log(f"{test:>14} {unit:>6} {kind:>13}: OA L2 {summary['oa2']:.3f} L4 {summary['oa4']:.3f}")
    return results


def goals(results: dict) -> dict:
    """The issue's goals, checked on the medians over seeds at every level and unit; the headline is level 4
    per parcel."""
    out: dict = {}
    for unit in ("parcel", "pixel"):
        for lv in LEVELS:
            key = f"oa{lv}"
            for test in ("far", "other_seed", "far_other_seed"):
                r = results[test][unit]
                aug, noaug, forest = (r[k]["summary"][key] for k in MODELS)
                out[f"{test} {unit} level{lv}"] = {
                    "cropnet_aug": aug, "cropnet_noaug": noaug, "forest": forest,
                    "vs_forest_points": round(100 * (aug - forest), 1),
                    "vs_noaug_points": round(100 * (aug - noaug), 1),
                    "met_vs_forest": bool(aug - forest >= 0.10), "met_vs_noaug": bool(aug - noaug >= 0.05),
                    "met": bool(aug - forest >= 0.10 and aug - noaug >= 0.05),
                }  # fmt: skip
        near = results["near"][unit]["cropnet_aug"]["summary"]["oa2"]
        out[f"near {unit} level2"] = {"cropnet_aug": near, "met": bool(near >= 0.95)}
    return out


# ------------------------------------------------------------------------------------------------ speed
def speed_bounds(plan: Plan) -> tuple[float, float, float, float]:
    """A 0.05° block wholly inside Henan (the one holding the first training window), or its south-west corner
    square of speed_km (quick runs)."""
    from mapper.croptype.dataset import DEG_PER_KM, sample_windows
    from mapper.grid.admin import resolve_province

    west, south, _, _ = sample_windows(resolve_province("Henan").geometry, 1, 2.0, 0)[0]
    x0, y0 = np.floor((west + 180.0) / 0.05) * 0.05 - 180.0, np.floor((south + 90.0) / 0.05) * 0.05 - 90.0
    if plan.speed_km is None:
        return (round(x0, 6), round(y0, 6), round(x0 + 0.05, 6), round(y0 + 0.05, 6))
    d = plan.speed_km * DEG_PER_KM
    return (round(x0, 6), round(y0, 6), round(x0 + d / np.cos(np.radians(y0)), 6), round(y0 + d, 6))


def timed_runs(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times), [round(t, 4) for t in times]


def speed(work: Path, plan: Plan, models: dict, taxonomy, speed_threads: tuple[int, ...]) -> dict:
    import torch

    from mapper.croptype.composite import composite
    from mapper.croptype.dataset import parcel_means
    from mapper.croptype.model import build_model, default_arch
    from mapper.croptype.predict import predict_croptype
    from mapper.croptype.s2read import read_s2
    from mapper.croptype.s2write import write_dates
    from mapper.world.sentinel2 import simulate_block
    from mapper.world.world import get_world

    bounds = speed_bounds(plan)
    out: dict = {"bounds": bounds, "world_seed": 0, "repeats": plan.speed_repeats,
                 "cropnet_torch_threads": list(speed_threads), "forest_nthread": 2}  # fmt: skip
    t0 = time.perf_counter()
    sim = simulate_block(get_world(0), bounds)
    out["simulate_s"] = round(time.perf_counter() - t0, 2)
    d, b, h, w = sim.data.shape
    out.update(dates=d, bands=b, height=h, width=w, pixels=h * w)
    folder = Path(tempfile.mkdtemp(prefix="s2-", dir=work))
    try:
        t0 = time.perf_counter()
        paths = write_dates(folder, sim.data, sim.scl, sim.bands, sim.dates, sim.crs, sim.transform)
        out["write_s"] = round(time.perf_counter() - t0, 2)
        out["files_mib"] = round(sum(p.stat().st_size for p in paths) / 2**20, 1)
        state: dict = {}
        out["read_s"], out["read_runs"] = timed_runs(lambda: state.update(stack=read_s2(folder)), plan.speed_repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    stack = state["stack"]
    out["composite_s"], out["composite_runs"] = timed_runs(lambda: state.update(comp=composite(stack)),
                                                           plan.speed_repeats)  # fmt: skip
    values = state["comp"].values
    pure = (sim.purity >= 1.0) & (sim.field >= 0)
    field_px = (sim.field >= 0) & np.isfinite(values[0, 0])
    out["field_pixels"] = int(field_px.sum())
    out["pure_pixels"] = int((pure & np.isfinite(values[0, 0])).sum())
    out["parcels_s"], _ = timed_runs(lambda: state.update(parcels=parcel_means(values, sim.field, pure)),
                                     plan.speed_repeats)  # fmt: skip
    out["n_parcels"] = len(state["parcels"][0])
    out["pixel_gather_s"], _ = timed_runs(lambda: state.update(px=values[:, :, field_px].transpose(2, 0, 1).copy()),
                                          plan.speed_repeats)  # fmt: skip
    parcels, pixels = state["parcels"][1], state["px"]

    forest = models["forest"][min(models["forest"])][0]
    ckpt = models["cropnet_aug"][min(models["cropnet_aug"])][0]
    wide = build_model(default_arch(taxonomy.sizes, taxonomy.n_leaves, 128)).eval()
    norm = ckpt.normalisation
    predictors = {  # name: (cap key, predict); the calls fit.predict_dataset makes
        f"cropnet_w{ckpt.net.arch['width']}": ("cropnet", lambda x: ckpt.predict(x)),
        "cropnet_w128": ("cropnet_w128", lambda x: predict_croptype(wide, x, normalisation=norm, taxonomy=taxonomy)),
        "forest": ("forest", lambda x: forest.predict(x)),
    }
    samples = {"parcel": (parcels, out["parcels_s"]), "pixel": (pixels, out["pixel_gather_s"])}
    rw = out["read_s"] + out["composite_s"]
    threads = torch.get_num_threads()
    for key in ("read_s", "composite_s", "parcels_s", "pixel_gather_s"):
        out[key] = round(out[key], 4)
    out["models"] = {}
    for name, (cap, fn) in predictors.items():
        for n in [None] if name == "forest" else speed_threads:  # the forest: its own 2 threads (nthread)
            label = name if n is None else f"{name}, {n} thread{'s' if n > 1 else ''}"
            if n is not None:
                torch.set_num_threads(n)
            out["models"][label] = time_model(label, fn, plan.caps.get(cap), samples, rw, plan.speed_repeats)
    torch.set_num_threads(threads)
    out["width128_weights"] = "random (timing only)"
    return out


def time_model(name: str, fn, cap: int | None, samples: dict, rw: float, repeats: int) -> dict:
    """Per unit: samples/s of `fn` (median of `repeats`, on at most `cap` samples), the whole block's model time
    at that rate, its preparation (parcel means or pixel gather) and the share of read + composite (rw s)."""
    row = {}
    for unit, (x, prep) in samples.items():
        n = len(x) if cap is None else min(len(x), cap)
        t, runs = timed_runs(lambda x=x, n=n: fn(x[:n]), repeats)
        rate = n / t
        infer = len(x) / rate  # the whole block at the measured rate (exact where n == len(x))
        row[unit] = {
            "timed": n, "of": len(x), "runs_s": runs, "per_s": round(rate, 1),
            "block_model_s": round(infer, 3), "block_prep_s": round(prep, 3),
            "read_composite_share": round(rw / (rw + prep + infer), 3),
        }  # fmt: skip
        log(f"speed {name} {unit}: {rate:,.0f}/s ({n} of {len(x)}), read+composite share "
            f"{row[unit]['read_composite_share']:.2f}")  # fmt: skip
    return row


# ------------------------------------------------------------------------------------------------ report
def markdown(report: dict) -> str:
    lines = []
    seeds = len(report["plan"]["seeds"])
    head = "| setting | n | model | " + " | ".join(f"OA L{lv}" for lv in LEVELS) + " | "
    head += " | ".join(f"F1 L{lv}" for lv in LEVELS) + " | consistent |"
    for unit in ("parcel", "pixel"):
        lines += [f"**Per {unit}** (OA / macro-F1 at levels 1-4; CropNets: median of {seeds} seeds, range in the "
                  "JSON; 'consistent': the heads' raw argmaxes forming a valid path)", "", head,
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for test in TESTS:
            for kind in MODELS:
                s = report["results"][test][unit][kind]["summary"]
                cons = f"{s['raw_consistency']:.3f}" if "raw_consistency" in s else "(flat)"
                oa = " | ".join(f"{s[f'oa{lv}']:.3f}" for lv in LEVELS)
                f1 = " | ".join(f"{s[f'f1{lv}']:.3f}" for lv in LEVELS)
                lines.append(f"| {test} | {s['n']} | {kind} | {oa} | {f1} | {cons} |")
        lines.append("")
    lines += ["**Goals** at levels 2 and 4 (medians over seeds; CropNet+aug minus the forest / minus CropNet without "
              "augmentation, OA points; goal: ≥ +10 and ≥ +5)", "",
              "| check | CropNet+aug | no aug | forest | vs forest | vs no aug | met |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, g in report["goals"].items():
        if not name.endswith(("level2", "level4")):  # every level is in the JSON
            continue
        met = "yes" if g["met"] else "no"
        if "forest" in g:
            parts = {"vs forest": g["met_vs_forest"], "vs no aug": g["met_vs_noaug"]}
            if not g["met"]:
                met = "no (" + ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in parts.items()) + ")"
            lines.append(f"| {name} | {g['cropnet_aug']:.3f} | {g['cropnet_noaug']:.3f} | {g['forest']:.3f} | "
                         f"{g['vs_forest_points']:+.1f} | {g['vs_noaug_points']:+.1f} | {met} |")  # fmt: skip
        else:
            lines.append(f"| {name} (≥ 0.95) | {g['cropnet_aug']:.3f} | | | | | {met} |")
    sp = report.get("speed")
    if sp:
        lines += ["", f"**Speed** ({sp['width']} × {sp['height']} px, {sp['dates']} dates, {sp['files_mib']} MiB of "
                  f"GeoTIFF; simulate {sp['simulate_s']:.1f} s (the world's cost), write {sp['write_s']:.1f} s, "
                  f"read {sp['read_s']:.2f} s, composite {sp['composite_s']:.2f} s; {sp['n_parcels']} parcels, "
                  f"{sp['field_pixels']:,} field pixels)", "",
                  "| model | unit | per s | block: prep s | block: model s | read + composite share |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for name, row in sp["models"].items():
            for unit, r in row.items():
                note = "" if r["timed"] == r["of"] else f" (timed on {r['timed']:,} of {r['of']:,})"
                lines.append(f"| {name} | {unit} | {r['per_s']:,.0f}{note} | {r['block_prep_s']:.2f} | "
                             f"{r['block_model_s']:.2f} | {r['read_composite_share']:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def dumps(report: dict) -> str:
    """Indented JSON with every list of numbers on one line (confusion matrices row by row)."""
    text = json.dumps(report, indent=1, ensure_ascii=False)
    return re.sub(r"\[\s+([-+\d.,eE\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def machine() -> dict:
    import torch
    import xgboost

    from benchmarks.run import load_average, machine_info

    info = machine_info()
    info.update(torch=torch.__version__, xgboost=xgboost.__version__, load_average=load_average())
    return info


# ------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="A tiny smoke run (few windows, 2 epochs): < 2 min.")
    p.add_argument("--work", type=Path, default=Path("/tmp/croptype_bench"), help="Cache of datasets and models.")
    p.add_argument("--seeds", default="0,1", help="CropNet training seeds (comma-separated; the forest: the first).")
    p.add_argument("--pixels", type=int, default=400, help="Pixels a window in the pixel datasets.")
    p.add_argument("--threads", type=int, default=2, help="torch threads for training and evaluation.")
    p.add_argument("--speed-threads", default="2,1", help="torch thread counts CropNet's speed is measured at.")
    p.add_argument("--no-speed", action="store_true", help="Skip the speed measurement.")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/croptype_transfer.json; quick: work dir).")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from mapper.croptype.taxonomy import packaged_taxonomy

    seeds = tuple(int(s) for s in args.seeds.split(","))
    plan = quick_plan() if args.quick else full_plan(seeds, args.pixels)
    work = args.work / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    out_json = args.out or (work / "croptype_transfer.json" if args.quick else OUT_JSON)
    figures = out_json.parent / "croptype_transfer" if args.quick else FIGURES
    taxonomy = packaged_taxonomy()
    started, t_start = dt.datetime.now(dt.UTC), time.perf_counter()
    command = "python -m benchmarks.croptype_transfer " + " ".join(sys.argv[1:] if argv is None else argv)
    report: dict = {"created": started.isoformat(timespec="seconds"), "command": command.strip(),
                    "machine": machine(), "plan": asdict(plan), "timings": {}}  # fmt: skip
    timings = report["timings"]

    by_name = {s.name: s for s in plan.settings}
    datasets = {}
    for s in plan.settings:
        for unit in ("parcel", "pixel"):
            datasets[(s.name, unit)] = get_dataset(work, s, unit, plan.pixels, timings)
    for unit in ("parcel", "pixel"):
        datasets[("val", unit)] = datasets[("train", unit)]
    train_ds = datasets[("train", "parcel")]
    train_leaves = train_ds.leaves(taxonomy)
    report["datasets"] = {
        f"{name} {unit}": {"key": dataset_key(by_name[name], unit, plan.pixels),
                           **describe(ds, taxonomy, None if name == "train" else train_leaves)}
        for (name, unit), ds in datasets.items() if name != "val"
    }  # fmt: skip

    train_key = dataset_key(by_name["train"], "parcel", plan.pixels)
    models: dict = {k: {} for k in MODELS}
    report["training"] = {}
    for seed in plan.seeds:  # every model of the first seed before the next seed's (a cut-short run has all kinds)
        for kind in MODELS if seed == plan.seeds[0] else MODELS[:2]:
            t0 = time.perf_counter()
            models[kind][seed] = get_model(work, train_key, train_ds, plan, kind, seed)
            info = models[kind][seed][1]
            report["training"][f"{kind} s{seed}"] = {
                k: info.get(k) for k in ("n_train", "n_val", "val_windows", "best_epoch", "epochs_run", "seconds",
                                         "wall_seconds", "torch_threads")}  # fmt: skip
            timings[f"model {kind} s{seed} (load or train)"] = round(time.perf_counter() - t0, 1)

    report["classes"] = {f"level{lv}": list(taxonomy.names[lv - 1]) for lv in LEVELS}
    report["confusion_axes"] = "rows: true class, columns: predicted class (results.*.full.level*.confusion)"
    report["results"] = evaluate_all(models, datasets, taxonomy, figures, timings)
    report["goals"] = goals(report["results"])
    if not args.no_speed:
        report["speed"] = speed(work, plan, models, taxonomy, tuple(int(t) for t in args.speed_threads.split(",")))
    report["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    report["machine"]["load_average_after"] = machine()["load_average"]
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(dumps(report), encoding="utf-8")
    print(markdown(report))
    print(f"-> {out_json} (figures {figures}); wall {report['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
