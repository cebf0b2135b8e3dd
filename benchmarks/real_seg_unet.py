"""A from-scratch peer of the segmentation models on real imagery: a small U-Net with a whole-chip context branch,
trained on the gid15 training chips at their own pixel size and judged on the same held-out test chips as
benchmarks/real_seg.py and benchmarks/real_seg_forest.py.

    python -m benchmarks.real_seg prepare --out /tmp/real                           # once: the splits
    python -m benchmarks.real_seg_unet --out /tmp/real --targets cropland --record  # ~12 min on 2 cores
    python -m benchmarks.real_seg_unet --out /tmp/real --targets gid15 --record     # the 15 GID classes

It answers two questions the fine-tunes of seg-default cannot: does a network that sees the whole chip at 4 m (no
upsampling to 2 m, no world prior) do better on chips of scenes it never saw, and does the richer supervision of
GID's 15 land-cover classes (`--targets gid15`: the network must tell dry cropland from grassland, paddy from pond)
carry better to them than cropland / not (`--targets cropland`)? Under `gid15` the cropland probability is the sum of
classes 4-6 (paddy field, irrigated land, dry cropland), exactly the gid15 preset's cropland.

**Network**: a U-Net (two 3×3 conv + batch norm + ReLU per level, `--width` channels doubled per level, `--depth`
levels) fed the chip averaged 2× (8 m: the labels are coarse hand-drawn polygons), its deepest features joined
with their mean over the chip (the scene's context, what GID chips are mostly about), logits upsampled back to 4 m.
Inputs normalised per chip (each channel's mean and spread over the chip: GID's images differ in radiometry).
**Training**: `--steps` AdamW steps of 16 random 192 px crops with flips, 90° rotations and per-channel gain and
offset; one-cycle learning rate; seeded. **Checkpoint and threshold** chosen on the validation chips (highest pooled
IoU every 250 steps, threshold 0.2-0.8 by 0.05); the test chips choose nothing. **Judged** like `mapper evaluate
seg`: pooled pixel IoU over the labelled pixels of every test chip, predictions averaged with the mirrored chip's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.real_seg import GID15

GID15_CROPLAND = (4, 5, 6)  # paddy field, irrigated land, dry cropland (the gid15 preset)
GID15_CLASSES = 15  # 0-14; 15 is unlabelled
THRESHOLDS = np.round(np.arange(0.2, 0.81, 0.05), 2)


def load_split(root: Path, targets: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(N, 3, 224, 224) uint8 images and (N, 224, 224) uint8 targets (255 = ignore) of the chips under `root`:
    the imported cropland masks, or (gid15) the GID class of each pixel from the dataset's own labels."""
    from PIL import Image

    from mapper.labels.chips import chip_dirs, read_labelled_chip

    xs, ys, names = [], [], []
    for d in chip_dirs(root):
        chip = read_labelled_chip(d)
        if targets == "gid15":
            y = np.array(Image.open(GID15 / "labels" / f"{d.name}.png"))
            y = np.where(y >= GID15_CLASSES, 255, y).astype(np.uint8)
        else:
            y = chip.target()
        xs.append(np.moveaxis(chip.rgb[:224, :224], -1, 0))
        ys.append(y[:224, :224])
        names.append(d.name)
    return np.stack(xs), np.stack(ys), names


def cropland_target(y: np.ndarray, targets: str) -> np.ndarray:
    if targets == "cropland":
        return y
    return np.where(y == 255, 255, np.isin(y, GID15_CROPLAND)).astype(np.uint8)


def build_net(width: int, depth: int, classes: int):
    import torch
    from torch import nn

    def block(cin, cout):
        conv = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.Conv2d(cout, cout, 3, padding=1, bias=False)]
        return nn.Sequential(conv[0], nn.BatchNorm2d(cout), nn.ReLU(True), conv[1], nn.BatchNorm2d(cout), nn.ReLU(True))

    chans = [width * 2**i for i in range(depth)]

    class ContextUNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.ModuleList([block(3 if i == 0 else chans[i - 1], c) for i, c in enumerate(chans)])
            self.context = nn.Sequential(nn.Linear(chans[-1], chans[-1]), nn.ReLU(True))
            self.fuse = nn.Conv2d(2 * chans[-1], chans[-1], 1)
            self.up = nn.ModuleList([block(chans[i] + chans[i + 1], chans[i]) for i in range(depth - 1)])
            self.head = nn.Conv2d(chans[0], classes, 1)

        def forward(self, x):
            size = x.shape[-2:]
            x = nn.functional.avg_pool2d(x, 2)
            skips = []
            for i, down in enumerate(self.down):
                x = down(x if i == 0 else nn.functional.max_pool2d(x, 2))
                skips.append(x)
            scene = self.context(x.mean((2, 3)))[:, :, None, None].expand_as(x)
            x = self.fuse(torch.cat([x, scene], 1))
            for i in reversed(range(depth - 1)):
                x = nn.functional.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
                x = self.up[i](torch.cat([skips[i], x], 1))
            return nn.functional.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)

    return ContextUNet()


def normalise(x: np.ndarray) -> np.ndarray:
    """Per chip and channel: zero mean, unit spread (a floor keeps flat chips finite)."""
    x = x.astype(np.float32) / 255.0
    return (x - x.mean((-2, -1), keepdims=True)) / (x.std((-2, -1), keepdims=True) + 0.02)


def training_batch(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n: int = 16, size: int = 192):
    xs, ys = [], []
    for i in rng.integers(0, len(x), n):
        r, c = rng.integers(0, x.shape[-1] - size + 1, 2)
        xi, yi = x[i, :, r : r + size, c : c + size].astype(np.float32), y[i, r : r + size, c : c + size]
        k = int(rng.integers(4))
        xi, yi = np.rot90(xi, k, (1, 2)), np.rot90(yi, k)
        if rng.random() < 0.5:
            xi, yi = xi[:, :, ::-1], yi[:, ::-1]
        xi = xi * rng.uniform(0.75, 1.3, (3, 1, 1)) + rng.uniform(-20, 20, (3, 1, 1))
        xs.append(normalise(np.clip(xi, 0, 255)))
        ys.append(np.ascontiguousarray(yi))
    return np.stack(xs), np.stack(ys).astype(np.int64)


def cropland_probability(net, x: np.ndarray, targets: str, batch: int = 32) -> np.ndarray:
    """(N, H, W) float32 cropland probability, the chip's and its mirror's averaged."""
    import torch

    def prob(logits):
        p = torch.softmax(logits, 1)
        return p[:, 1] if targets == "cropland" else p[:, list(GID15_CROPLAND)].sum(1)

    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(normalise(x[i : i + batch]))
            out.append(((prob(net(xb)) + prob(net(xb.flip(-1))).flip(-1)) / 2).numpy())
    net.train()
    return np.concatenate(out)


def pooled(prob: np.ndarray, target: np.ndarray, threshold: float) -> dict:
    """Pooled pixel metrics over the labelled pixels, cropland where prob > threshold (as `mapper evaluate seg`)."""
    from mapper.seg.train import iou_counts, pixel_metrics

    m = pixel_metrics(iou_counts(prob, target, threshold))
    return {k: m[k] or 0.0 for k in ("iou", "precision", "recall", "f1")} | {"threshold": float(threshold)}


def run(out: Path, targets: str, width: int, depth: int, steps: int, seed: int) -> dict:
    import torch

    torch.manual_seed(seed)
    data = {s: load_split(out / "gid15" / s, targets) for s in ("train", "val", "test")}
    (xtr, ytr, _), (xva, yva, _), (xte, yte, _) = data["train"], data["val"], data["test"]
    yva, yte = cropland_target(yva, targets), cropland_target(yte, targets)
    net = build_net(width, depth, 2 if targets == "cropland" else GID15_CLASSES)
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.1)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
    rng, t0, best, history = np.random.default_rng(seed), time.perf_counter(), None, []
    for step in range(1, steps + 1):
        xb, yb = training_batch(xtr, ytr, rng)
        loss = loss_fn(net(torch.from_numpy(xb)), torch.from_numpy(yb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 and step != steps:
            continue
        val_prob = cropland_probability(net, xva, targets)
        val = max((pooled(val_prob, yva, t) for t in THRESHOLDS), key=lambda m: m["iou"])
        history.append({"step": step, "loss": round(float(loss.detach()), 4), "val_iou": round(val["iou"], 4),
                        "threshold": val["threshold"], "seconds": round(time.perf_counter() - t0)})  # fmt: skip
        print(json.dumps(history[-1]), flush=True)
        if best is None or val["iou"] > best[0]["iou"]:
            best = (val, {k: v.clone() for k, v in net.state_dict().items()}, step)
    val, state, step = best
    net.load_state_dict(state)
    test = pooled(cropland_probability(net, xte, targets), yte, val["threshold"])
    return {"targets": targets, "width": width, "depth": depth, "steps": steps, "seed": seed,
            "weights": sum(p.numel() for p in net.parameters()), "chosen_step": step, "val": val, "test": test,
            "train_chips": len(xtr), "test_chips": len(xte), "train_seconds": round(time.perf_counter() - t0),
            "history": history}  # fmt: skip


def report(results: list[dict], info: dict) -> list[str]:
    lines = [f"## From-scratch U-Net on the held-out gid15 chips ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {info.get('cpu')}, {info.get('cores', '?')} cores, {info.get('ram')}; torch CPU. "
             "`python -m benchmarks.real_seg_unet --targets T` (a context U-Net at the chips' 4 m, trained on the "
             "532 gid15 training chips, step and threshold chosen on the 76 validation chips): pooled pixel IoU on "
             "the 153 test chips (GID, Tong et al. 2020, chips of XiangtaoZheng/GID-MTL, research use).", "",
             "| targets | weights | steps (chosen) | threshold | val IoU | test IoU | precision | recall | train s |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        t = r["test"]
        lines.append(f"| {r['targets']} | {r['weights']:,} | {r['steps']} ({r['chosen_step']}) | "
                     f"{r['val']['threshold']:g} | {r['val']['iou']:.3f} | {t['iou']:.3f} | {t['precision']:.3f} | "
                     f"{t['recall']:.3f} | {r['train_seconds']} |")  # fmt: skip
    return [*lines, ""]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="The work folder of `benchmarks.real_seg prepare`.")
    ap.add_argument("--targets", choices=["cropland", "gid15"], nargs="+", default=["cropland", "gid15"])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md.")
    args = ap.parse_args(argv)
    if not (args.out / "gid15" / "test").is_dir():
        sys.exit(f"no gid15 splits under {args.out}: run `python -m benchmarks.real_seg prepare --out {args.out}`")
    import torch

    torch.set_num_threads(2)
    results = []
    for targets in args.targets:
        results.append(run(args.out, targets, args.width, args.depth, args.steps, args.seed))
        saved = args.out / f"unet_{targets}_s{args.steps}_seed{args.seed}.json"
        saved.write_text(json.dumps(results[-1], indent=1))
    from benchmarks.run import append_results, machine_info

    lines = report(results, machine_info())
    print("\n".join(lines))
    if args.record:
        append_results(lines)


if __name__ == "__main__":
    main()
