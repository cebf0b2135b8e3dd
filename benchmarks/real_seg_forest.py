"""The classic peer of the segmentation models on real imagery: a per-pixel random forest over colour and local
texture, trained on the gid15 training chips and judged on the same held-out test chips as benchmarks/real_seg.py.

    python -m benchmarks.real_seg prepare --out /tmp/real          # once: the splits
    python -m benchmarks.real_seg_forest --out /tmp/real --record  # ~5 min on 2 cores

A deep model that cannot beat this on the held-out chips has learnt nothing a forest over pixels does not know.
**Features** of each pixel, at the chip's own pixel size (4 m): R, G, B (0-1), hue, saturation, value, excess
green (2G − R − B), and for each of R, G, B and the gradient magnitude the mean and standard deviation over
windows of 5, 11 and 25 pixels (20, 44, 100 m). **Forest**: XGBoost's random-forest mode as mapper's crop-type
baseline (mapper/croptype/baseline.py: 200 trees, depth 16, rows subsampled at 0.632, √F features per split),
classes weighted equally, trained on `--pixels-per-chip` labelled pixels drawn at random (seeded) from each
training chip; the validation chips are not used (nothing is tuned). **Judged** like `mapper evaluate seg`:
pooled pixel IoU, precision, recall and F1 over the labelled pixels (mask 0/1) of every test chip, cropland when
the forest's probability is ≥ 0.5.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

WINDOWS = (5, 11, 25)  # pixels
FEATURES = ["r", "g", "b", "hue", "saturation", "value", "exg"] + [
    f"{band}_{stat}{w}" for band in ("r", "g", "b", "grad") for w in WINDOWS for stat in ("mean", "std")
]


def pixel_features(rgb: np.ndarray) -> np.ndarray:
    """(H, W, F) float32 features of an (H, W, 3) uint8 image, in FEATURES order."""
    from scipy import ndimage
    from skimage.color import rgb2hsv

    x = rgb.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    hsv = rgb2hsv(x)
    grey = x.mean(axis=-1)
    grad = np.hypot(ndimage.sobel(grey, axis=0), ndimage.sobel(grey, axis=1))
    out = [r, g, b, hsv[..., 0], hsv[..., 1], hsv[..., 2], 2 * g - r - b]
    for band in (r, g, b, grad):
        for w in WINDOWS:
            mean = ndimage.uniform_filter(band, w, mode="reflect")
            sq = ndimage.uniform_filter(band * band, w, mode="reflect")
            out += [mean, np.sqrt(np.maximum(sq - mean * mean, 0.0))]
    return np.stack(out, axis=-1).astype(np.float32)


def training_pixels(root: Path, per_chip: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and 0/1 labels of `per_chip` labelled pixels drawn from each chip under `root`."""
    from mapper.labels.chips import chip_dirs, read_labelled_chip

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for d in chip_dirs(root):
        chip = read_labelled_chip(d)
        target = chip.target()
        rows, cols = np.nonzero(target != 255)
        pick = rng.choice(len(rows), size=min(per_chip, len(rows)), replace=False)
        feats = pixel_features(chip.rgb)
        xs.append(feats[rows[pick], cols[pick]])
        ys.append(target[rows[pick], cols[pick]])
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def fit_forest(x: np.ndarray, y: np.ndarray, n_trees: int, max_depth: int, seed: int):
    import xgboost as xgb

    from mapper.croptype.baseline import balanced_weights, forest_params

    params = forest_params(x.shape[1], n_trees, max_depth, seed, nthread=2, device="cpu")
    params = {**params, "objective": "binary:logistic"}
    return xgb.train(params, xgb.DMatrix(x, label=y, weight=balanced_weights(y)), num_boost_round=1)


def judge(booster, root: Path) -> dict:
    """Pooled pixel metrics over the labelled pixels of every chip under `root`."""
    import xgboost as xgb

    from mapper.labels.chips import chip_dirs, read_labelled_chip

    tp = fp = fn = 0
    chips = chip_dirs(root)
    for d in chips:
        chip = read_labelled_chip(d)
        target = chip.target()
        feats = pixel_features(chip.rgb)
        h, w, f = feats.shape
        pred = booster.predict(xgb.DMatrix(feats.reshape(-1, f))).reshape(h, w) >= 0.5
        labelled = target != 255
        truth = target == 1
        tp += int(np.count_nonzero(pred & truth & labelled))
        fp += int(np.count_nonzero(pred & ~truth & labelled))
        fn += int(np.count_nonzero(~pred & truth & labelled))
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    return {"iou": tp / (tp + fp + fn) if tp + fp + fn else float("nan"), "precision": precision, "recall": recall,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0, "images": len(chips)}  # fmt: skip


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="The work folder of benchmarks.real_seg prepare.")
    ap.add_argument("--train", default="train", help="Training split under OUT/gid15 (train, train_25, train_50).")
    ap.add_argument("--pixels-per-chip", type=int, default=500)
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--max-depth", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--record", action="store_true", help="append the result to benchmarks/RESULTS.md.")
    args = ap.parse_args(argv)
    train_root, test_root = args.out / "gid15" / args.train, args.out / "gid15" / "test"
    if not (train_root.is_dir() and test_root.is_dir()):
        sys.exit(f"{train_root} or {test_root} is missing: `python -m benchmarks.real_seg prepare --out {args.out}`")
    t0 = time.perf_counter()
    x, y = training_pixels(train_root, args.pixels_per_chip, args.seed)
    booster = fit_forest(x, y, args.trees, args.max_depth, args.seed)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    test = judge(booster, test_root)
    result = {"model": "pixel forest", "train": args.train, "train_pixels": len(y), "cropland_share": float(y.mean()),
              "train_seconds": round(train_s), "judge_seconds": round(time.perf_counter() - t0),
              "gid15_test": test}  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.record:
        from benchmarks.run import append_results, machine_info

        info = machine_info()
        append_results([
            f"## Per-pixel forest on the held-out gid15 chips ({time.strftime('%Y-%m-%d')})", "",
            f"Machine: {info.get('cpu')}, {info.get('cores', '?')} cores, {info.get('ram')}. "
            f"`python -m benchmarks.real_seg_forest --train {args.train}` ({len(FEATURES)} colour and texture "
            f"features per pixel, {args.trees} trees of depth {args.max_depth}, {len(y)} training pixels from "
            f"gid15/{args.train}): on the 153 test chips pooled pixel IoU **{test['iou']:.3f}** (precision "
            f"{test['precision']:.3f}, recall {test['recall']:.3f}, F1 {test['f1']:.3f}); {round(train_s)} s to "
            f"train, {result['judge_seconds']} s to judge.", "",
        ])  # fmt: skip


if __name__ == "__main__":
    main()
