"""Segmentation on real imagery: the gid15 chips (Gaofen-2, China) split fairly, models trained on the
simulated world, on real chips and on both, judged on held-out real chips and on a held-out world.

    python -m benchmarks.real_seg prepare --out /tmp/real          # labels: gid15 splits + world seeds 0 and 1
    python -m benchmarks.real_seg prepare --out /tmp/real --chips-only   # the gid15 splits alone (label rounds)
    python -m benchmarks.real_seg evaluate --out /tmp/real --checkpoint seg-default
    python -m benchmarks.real_seg curve --out /tmp/real --steps 400 --record   # the learning curve (CPU: ~1 h)
    python -m benchmarks.real_seg calibrated --out /tmp/real --steps 1200 --record   # its models, calibrated

**Data.** `../shared/data/real/gid15/` (761 chips of 224 px, GID: Tong et al. 2020, Remote Sensing of
Environment 237:111322; chips and labels as published in XiangtaoZheng/GID-MTL, Zheng et al. 2021; research
use). Imported with `mapper labels import chips --preset gid15 --gsd 4` (Gaofen-2 multispectral: 4 m in the
GID paper). **Split** within each scene class in `manifest.csv` order, never at random — neighbouring chips
of one scene look alike, so a random split would leak: per scene class the first 70 % train, the next 10 %
validation (what training watches), the last 20 % test (held out: no model is trained or tuned on it).
World labels: `mapper labels make` over the provinces of configs/train_iqa_default.yaml, seed 0 for training
and seed 1 (held out) for judging.

**Curve.** What a number of labelled real chips buys: seg-default (the simulated world only) against
fine-tunes of it with configs/train_seg_real.yaml at `--steps` on the real training chips alone ("real") and
on the world's seed-0 blocks beside them ("mixed"), each with the first 25 %, 50 % and 100 % of the training
chips of every scene class (nested: each larger set holds the smaller). Every model is judged on the same
held-out gid15 test chips and world seed-1 images.

**Calibrated.** Each trained model of the curve, copied and given a decision threshold by `mapper train
calibrate` on the gid15 validation chips (mapper.seg.calibrate: the threshold of highest pooled IoU there),
judged again on the same test chips (and, with `--with-world`, world seed 1). The test chips choose nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GID15 = ROOT.parent / "shared" / "data" / "real" / "gid15"
SPLITS = (("train", 0.7), ("val", 0.1), ("test", 0.2))
TRAIN_PROVINCES = ("Heilongjiang", "Qinghai", "Guangdong", "Henan", "Sichuan", "Xinjiang", "Inner Mongolia", "Jilin")
HELD_OUT_PROVINCES = ("Heilongjiang", "Tibet", "Guangxi", "Shandong", "Gansu", "Hubei", "Xinjiang", "Yunnan",
                      "Qinghai", "Inner Mongolia")  # fmt: skip


def scene_split(manifest: Path) -> dict[str, str]:
    """{chip id: train | val | test}: within each scene class, in manifest order, the first 70 %, the next
    10 %, the last 20 % (at least one test chip per class of three or more)."""
    by_scene: dict[str, list[str]] = {}
    with open(manifest, newline="") as f:
        for row in csv.DictReader(f):
            by_scene.setdefault(row["scene"], []).append(row["id"])
    out: dict[str, str] = {}
    for ids in by_scene.values():
        n = len(ids)
        n_test = max(1, round(0.2 * n)) if n >= 3 else 0
        n_val = round(0.1 * n)
        n_train = n - n_val - n_test
        for i, cid in enumerate(ids):
            out[cid] = "train" if i < n_train else ("val" if i < n_train + n_val else "test")
    return out


def mapper(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mapper.cli", *args]
    print("$ mapper", " ".join(args), flush=True)
    return subprocess.run(cmd, check=True, text=True, capture_output=True)


def prepare_gid15(out: Path, gid: Path = GID15) -> dict[str, int]:
    """out/gid15/{train,val,test}: the chips of each split, imported by the gid15 preset."""
    split = scene_split(gid / "manifest.csv")
    counts = {}
    for name, _ in SPLITS:
        ids = sorted(c for c, s in split.items() if s == name)
        staging = out / "staging" / name
        for sub, folder in (("images", "images"), ("masks", "labels")):
            d = staging / sub
            d.mkdir(parents=True, exist_ok=True)
            for cid in ids:
                link = d / f"{cid}.png"
                if not link.exists():
                    os.symlink(gid / folder / f"{cid}.png", link)
        mapper("labels", "import", "chips", "--images", str(staging / "images"), "--masks", str(staging / "masks"),
               "--preset", "gid15", "--gsd", "4", "--out", str(out / "gid15" / name))  # fmt: skip
        counts[name] = len(ids)
    shutil.rmtree(out / "staging", ignore_errors=True)
    return counts


def prepare_world(out: Path, per_province: int, held_out_per_province: int) -> None:
    for p in TRAIN_PROVINCES:
        mapper("labels", "make", "--world-seed", "0", "-p", p, "--n", str(per_province), "--out",
               str(out / "world_seed0"), "--workers", "2", "-q")  # fmt: skip
    for p in HELD_OUT_PROVINCES:
        mapper("labels", "make", "--world-seed", "1", "-p", p, "--n", str(held_out_per_province), "--out",
               str(out / "world_seed1"), "--workers", "2", "-q")  # fmt: skip


def evaluate(out: Path, checkpoint: str, max_world_images: int, with_world: bool = True) -> dict:
    """Pooled pixel metrics of a checkpoint on the held-out gid15 chips and (with_world) on world seed 1."""
    result = {}
    judged = (
        ("gid15_test", out / "gid15" / "test", []),
        ("world_seed1", out / "world_seed1", ["--max-images", str(max_world_images)]),
    )[: 2 if with_world else 1]
    for name, labels, extra in judged:
        overlays = out / "overlays" / Path(checkpoint).name / name
        r = mapper("evaluate", "seg", "--checkpoint", checkpoint, "--labels", str(labels), "--json", "-q",
                   "--overlays", str(overlays), *extra)  # fmt: skip
        m = json.loads(r.stdout)
        keys = ("iou", "precision", "recall", "f1", "images", "model_gsd_m", "image_gsd_m", "threshold")
        result[name] = {k: m[k] for k in keys if k in m}
    return result


def chip_subset(out: Path, fraction: float) -> Path:
    """out/gid15/train_<pct>: links to the first `fraction` of the training chips of each scene class (all of
    them: out/gid15/train itself)."""
    if fraction >= 1:
        return out / "gid15" / "train"
    split = scene_split(GID15 / "manifest.csv")
    scenes: dict[str, list[str]] = {}
    with open(GID15 / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            if split[row["id"]] == "train":
                scenes.setdefault(row["scene"], []).append(row["id"])
    subset = out / "gid15" / f"train_{round(100 * fraction)}"
    subset.mkdir(parents=True, exist_ok=True)
    for ids in scenes.values():
        for cid in ids[: max(1, round(fraction * len(ids)))]:
            link = subset / cid
            if not link.exists():
                os.symlink((out / "gid15" / "train" / cid).resolve(), link)
    return subset


def train_point(out: Path, regime: str, fraction: float, steps: int) -> Path:
    """A fine-tune of seg-default by configs/train_seg_real.yaml on the chip subset (and the world: mixed)."""
    ckpt = out / "models" / f"{regime}_{round(100 * fraction)}_s{steps}"
    if (ckpt / "checkpoint.json").exists() and json.loads((ckpt / "checkpoint.json").read_text())["training"].get(
        "complete"
    ):
        return ckpt
    labels = ["--labels", str(chip_subset(out, fraction))]
    if regime == "mixed":  # the world first, as configs/train_seg_real.yaml's command gives them
        labels = ["--labels", str(out / "world_seed0"), *labels]
    resume = ["--resume"] if (ckpt / "checkpoint.json").exists() else ["--init", "seg-default"]
    mapper("train", "seg", *resume, "--config", str(ROOT / "configs" / "train_seg_real.yaml"), "--steps", str(steps),
           *labels, "--val-labels", str(out / "gid15" / "val"), "--out", str(ckpt))  # fmt: skip
    return ckpt


def curve(out: Path, steps: int, fractions, max_world_images: int) -> dict:
    """{model: {gid15_test: metrics, world_seed1: metrics, ...}} for seg-default and every curve point; saved
    after each point (out/curve.json), so a stopped curve goes on where it was."""
    saved = out / f"curve_s{steps}.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    points = [("world", 0.0)] + [(r, f) for r in ("real", "mixed") for f in fractions]
    for regime, fraction in points:
        name = "seg-default" if regime == "world" else f"{regime}_{round(100 * fraction)}"
        if name in results:
            continue
        t0 = time.perf_counter()
        ckpt = "seg-default" if regime == "world" else str(train_point(out, regime, fraction, steps))
        trained = time.perf_counter() - t0
        chips = 0 if regime == "world" else len(list(chip_subset(out, fraction).iterdir()))
        results[name] = {"regime": regime, "train_chips": chips, "steps": 0 if regime == "world" else steps,
                         "train_seconds": round(trained), **evaluate(out, ckpt, max_world_images)}  # fmt: skip
        saved.write_text(json.dumps(results, indent=1))
        print(json.dumps({name: results[name]}), flush=True)
    return results


def calibrated(out: Path, steps: int, max_world_images: int, with_world: bool) -> dict:
    """{model_cal: {threshold, gid15_test[, world_seed1]}} for every trained model of the saved curve: a copy
    calibrated on the validation chips, then judged; saved after each (out/calibrated_s{steps}.json)."""
    saved, curve_file = out / f"calibrated_s{steps}.json", out / f"curve_s{steps}.json"
    if not curve_file.exists():
        sys.exit(f"{curve_file} is missing: run `python -m benchmarks.real_seg curve --out {out} --steps {steps}`")
    results = json.loads(saved.read_text()) if saved.exists() else {}
    for name, point in json.loads(curve_file.read_text()).items():
        if point["regime"] == "world" or f"{name}_cal" in results:
            continue
        ckpt = out / "models" / f"{name}_s{steps}_cal"
        if not ckpt.exists():
            shutil.copytree(out / "models" / f"{name}_s{steps}", ckpt)
        mapper("train", "calibrate", "--checkpoint", str(ckpt), "--labels", str(out / "gid15" / "val"), "-q")
        threshold = json.loads((ckpt / "checkpoint.json").read_text())["decision"]["threshold"]
        judged = evaluate(out, str(ckpt), max_world_images, with_world=with_world)
        results[f"{name}_cal"] = {**point, "threshold": threshold, **judged}
        if not with_world:
            results[f"{name}_cal"].pop("world_seed1", None)
        saved.write_text(json.dumps(results, indent=1))
        print(json.dumps({f"{name}_cal": results[f"{name}_cal"]}), flush=True)
    return results


def report(results: dict, info: dict, world_images: int, command: str) -> list[str]:
    """The RESULTS.md section: pooled pixel metrics of each model on both held-out sets (and, for curve points,
    the training chips and seconds)."""
    lines = [f"## Segmentation on real imagery: held-out gid15 chips and world seed 1 ({time.strftime('%Y-%m-%d')})",
             "", f"Machine: {info.get('cpu')}, {info.get('cores', '?')} cores, {info.get('ram')}; torch CPU. "
             f"`python -m benchmarks.real_seg {command}`: pooled pixel IoU on the 153 gid15 test chips (the last 20 % "
             "of each scene class in manifest order, 4 m Gaofen-2; GID, Tong et al. 2020, chips of "
             f"XiangtaoZheng/GID-MTL, research use) and on {world_images} images of world seed 1 (held out). Trained "
             "models are fine-tunes of seg-default by configs/train_seg_real.yaml (2 m, scale 0.75-1.33).", "",
             "| model | model GSD | training chips | threshold | gid15 IoU | precision | recall | world seed 1 IoU | "
             "precision | recall | train s |", "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in results.items():
        g, w = r["gid15_test"], r.get("world_seed1")
        world = f"{w['iou']:.3f} | {w['precision']:.3f} | {w['recall']:.3f}" if w else "- | - | -"
        lines.append(f"| {name} | {g.get('model_gsd_m') or 'native'} | {r.get('train_chips', '-')} | "
                     f"{g.get('threshold', 0.5):g} | {g['iou']:.3f} | {g['precision']:.3f} | {g['recall']:.3f} | "
                     f"{world} | {r.get('train_seconds', '-')} |")  # fmt: skip
    return [*lines, ""]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["prepare", "evaluate", "curve", "calibrated"])
    ap.add_argument("--out", type=Path, required=True, help="Work folder (labels, overlays).")
    ap.add_argument("--checkpoint", action="append", default=[], help="evaluate: a checkpoint (repeatable).")
    ap.add_argument("--chips-only", action="store_true", help="prepare: the gid15 splits only, no world labels.")
    ap.add_argument("--world-per-province", type=int, default=20, help="prepare: seed-0 blocks per province.")
    ap.add_argument("--held-out-per-province", type=int, default=25, help="prepare: seed-1 blocks per province.")
    ap.add_argument("--max-world-images", type=int, default=40, help="evaluate: seed-1 images judged.")
    ap.add_argument("--steps", type=int, default=400, help="curve: fine-tune steps of each point.")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0], help="curve: chip shares.")
    ap.add_argument("--with-world", action="store_true", help="calibrated: also judge on world seed 1 (slow).")
    ap.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md.")
    args = ap.parse_args(argv)
    if args.step == "prepare":
        if not GID15.is_dir():
            sys.exit(f"{GID15} is not there: the gid15 chips live in ../shared/data/real/ beside the repository")
        print(json.dumps(prepare_gid15(args.out)))
        for fraction in (0.25, 0.5):  # the curve's nested subsets of the training chips (links)
            chip_subset(args.out, fraction)
        if not args.chips_only:
            prepare_world(args.out, args.world_per_province, args.held_out_per_province)
        return
    if args.step == "calibrated":
        results = calibrated(args.out, args.steps, args.max_world_images, args.with_world)
        command = f"calibrated --steps {args.steps}"
    elif args.step == "curve":
        results = curve(args.out, args.steps, args.fractions, args.max_world_images)
        command = f"curve --steps {args.steps}"
    else:
        results = {}
        for ckpt in args.checkpoint or ["seg-default"]:
            results[ckpt] = evaluate(args.out, ckpt, args.max_world_images)
            print(json.dumps({ckpt: results[ckpt]}, indent=2), flush=True)
        command = "evaluate"
    from benchmarks.run import append_results, machine_info

    lines = report(results, machine_info(), args.max_world_images, command)
    print("\n".join(lines))
    if args.record:
        append_results(lines)


if __name__ == "__main__":
    main()
