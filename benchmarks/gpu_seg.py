"""GPU throughput of the Mask2Former segmentation variants (not part of `python -m benchmarks.run`: it needs a GPU).

On a machine with a CUDA build of torch:

    python -m benchmarks.gpu_seg --record                      # r50, swin-t, swin-l at batch 8, 16, 32
    python -m benchmarks.gpu_seg --variants seg-m2f-swin-l --batch-sizes 16 --compile
    python -m benchmarks.gpu_seg --train --batch-sizes 8,16 --record       # bf16 training steps
    python -m benchmarks.gpu_seg --device cpu --variants seg-m2f-tiny --batch-sizes 2 --iters 1   # a CPU check

**Inference** (default). Each variant is built from configs/models.yaml with random weights (the work does
not depend on them) and run as mapper.seg.predict runs it on CUDA: `Segmenter.to(device)` (channels-last
weights), channels-last input, bf16 autocast, `torch.inference_mode`, and the full-resolution
`cropland_probability` of every window. After warm-up iterations, `--iters` batches of random windows are
timed between `torch.cuda.synchronize()` calls: ms per batch, windows/s, blocks/s (a 2531 × 2330 px block
is `block_windows(2531, 2330, size, overlap)` windows of the variant) and the peak of
torch.cuda.max_memory_allocated. 'e2e windows/s' times `Segmenter.window_probabilities` as `predict`
calls it: uint8 windows from the host in, float32 probabilities back to the host. `--compile` adds rows
for `torch.compile(net)` (a failure is reported in the row, not raised).

**Training** (`--train`). One AdamW step per iteration, as mapper.seg.train steps (bf16 autocast, the
model's own Mask2Former loss, gradient clipping; train_seg's default hyper-parameters) on a batch of random
crops of the variant's window size, with random blobby 0/1 masks as labels (background + cropland
targets): crops/s, ms per step, peak memory.

**FLOPs** are counted by `torch.utils.flop_counter.FlopCounterMode` over one pass on one window (inference:
the forward and `cropland_probability`; training: forward, loss and backward, per crop): the FLOPs of
matrix multiplications, convolutions and attention (2 per multiply-add), which are what the tensor cores
do. Element-wise work, grid_sample (the deformable attention of the pixel decoder, the loss's point
sampling) and the bilinear upsampling have no FLOP formula and are not counted, so the achieved TFLOP/s
(FLOPs per window × windows/s) is a lower bound of the work done. It is compared with the GPU's dense bf16
peak (table below, by torch.cuda.get_device_name(), or `--peak-tflops`). On the CPU (no autocast: float32)
the fraction of peak is n/a.

`--record` appends a dated section (GPU, driver, CUDA and torch versions) to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

DEFAULT_VARIANTS = ("seg-m2f-r50", "seg-m2f-swin-t", "seg-m2f-swin-l")
BLOCK_SHAPE = (2531, 2330)  # a 0.05° block at zoom 16 (≈ 23° N): rows, columns
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the normalisation does not change the speed

# Dense (no 2:4 sparsity) bf16 tensor-core peaks, TFLOP/s, from NVIDIA's data sheets, which quote the
# sparse figure: half of it. H100 SXM and H200: 1,979 sparse (H100 / H200 Tensor Core GPU data sheets);
# H100 PCIe: 1,513; A100 (SXM and PCIe): 624 (A100 data sheet); L40S: 733; L4: 242 (L4 data sheet).
# The first name contained in torch.cuda.get_device_name() wins, so longer names come first.
PEAK_BF16_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIe", 756.5),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 366.5),
    ("L4", 121.0),
)


# ----------------------------------------------------------------------------------------------- device
def peak_tflops(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_info(device) -> dict[str, str]:
    import torch

    info = {"torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda or "?"
        info["cudnn"] = str(torch.backends.cudnn.version())
        info["driver"] = nvidia_driver()
        info["memory"] = f"{torch.cuda.get_device_properties(device).total_memory / 1024**3:.0f} GiB"
    else:
        info["gpu"] = "none (CPU)"
        info["threads"] = str(torch.get_num_threads())
    return info


def nvidia_driver() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def autocast(device):
    """bf16 autocast on CUDA, as predict and train run; nothing (float32) elsewhere."""
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


# ----------------------------------------------------------------------------------------------- models
def windows_per_block(size: int, overlap: int) -> int:
    from mapper.seg.windows import block_windows

    return len(block_windows(*BLOCK_SHAPE, size, overlap))


def make_segmenter(name: str, device, batch_size: int, seed: int = 0):
    """The variant's Segmenter with random weights, moved as Segmenter.to moves it (channels-last on CUDA)."""
    import torch

    from mapper.models.registry import get_model_spec
    from mapper.seg.model import build_model
    from mapper.seg.predict import Segmenter

    spec = get_model_spec(name, kind="segmentation")
    torch.manual_seed(seed)
    return Segmenter(build_model(spec.arch), spec.input.size, spec.input.overlap, MEAN, STD, batch_size).to(device)


def random_input(batch: int, size: int, device, seed: int = 0):
    """A normalised (B, 3, S, S) batch, channels-last on CUDA as window_probabilities makes it."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g).to(device)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def forward_fn(net, x, size: int) -> Callable[[], object]:
    """One inference pass as window_probabilities does it (network + full-resolution probability)."""
    import torch

    from mapper.seg.model import cropland_probability

    def call():
        with torch.inference_mode(), autocast(x.device):
            out = net(pixel_values=x)
            return cropland_probability(out.masks_queries_logits, out.class_queries_logits, (size, size))

    return call


def random_targets(batch: int, size: int, device, seed: int = 0):
    """Mask2Former targets of random blobby cropland: per crop, masks (2, S, S) [background, cropland]
    and classes [0, 1] (both present, as crop_targets gives them)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    cells = torch.rand(batch, 1, max(2, size // 32), max(2, size // 32), generator=g) > 0.5
    cells[:, :, 0, 0], cells[:, :, -1, -1] = True, False  # both classes present in every crop
    crop = F.interpolate(cells.float(), size=(size, size), mode="nearest")[:, 0]
    masks = [torch.stack([1 - c, c]).to(device) for c in crop]
    classes = [torch.tensor([0, 1], device=device) for _ in range(batch)]
    return masks, classes


def train_step_fn(net, opt, x, masks, classes, grad_clip: float) -> Callable[[], object]:
    """One optimizer step as mapper.seg.train takes it."""
    import torch

    def step():
        net.train()
        with autocast(x.device):
            loss = net(pixel_values=x, mask_labels=masks, class_labels=classes).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        opt.step()
        return loss

    return step


# ----------------------------------------------------------------------------------------------- timing
def count_flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def time_iters(fn: Callable[[], object], device, warmup: int, iters: int) -> tuple[float, float | None]:
    """(seconds per iteration, peak GiB allocated or None on the CPU) after `warmup` untimed iterations."""
    import torch

    cuda = device.type == "cuda"
    for _ in range(warmup):
        fn()
    synchronize(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    synchronize(device)
    seconds = (time.perf_counter() - t0) / iters
    return seconds, (torch.cuda.max_memory_allocated(device) / 1024**3 if cuda else None)


def _free(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _compiled(net) -> tuple[object | None, str]:
    import torch

    try:
        return torch.compile(net, dynamic=False), ""  # static shapes: one graph per batch size
    except Exception as e:  # an unsupported platform fails here, most failures at the first call
        return None, f"torch.compile failed: {type(e).__name__}: {e}"[:200]


# ------------------------------------------------------------------------------------------------- rows
def _rates(row: dict, batch: int, seconds: float, flops_per_item: int, peak: float | None, per_block=None) -> dict:
    items_s = batch / seconds
    tflops = flops_per_item * items_s / 1e12
    if per_block:
        row["blocks_per_s"] = items_s / per_block
    row.update(
        ms_per_batch=1000 * seconds, items_per_s=items_s, gflop_per_item=flops_per_item / 1e9, tflops=tflops,
        of_peak=f"{tflops / peak:.1%}" if peak else "n/a",
    )  # fmt: skip
    return row


def infer_rows(name: str, batch_sizes: list[int], device, args, peak, log) -> list[dict]:
    """Eager (and with --compile, compiled) inference rows of one variant at each batch size."""
    seg = make_segmenter(name, device, max(batch_sizes), args.seed)
    size, per_block = seg.size, windows_per_block(seg.size, seg.overlap)
    flops = count_flops(forward_fn(seg.net, random_input(1, size, device, args.seed), size))
    nets = {"eager": (seg.net, "")}
    if args.compile:
        nets["compiled"] = _compiled(seg.net)
    rows = []
    for batch in batch_sizes:
        x = random_input(batch, size, device, args.seed)
        for label, (net, note) in nets.items():
            row = {"variant": name, "mode": f"inference, {label}", "batch": batch, "window": size,
                   "windows_per_block": per_block, "dtype": _dtype(device), "note": note}  # fmt: skip
            rows.append(row)
            if net is None:
                continue
            try:
                t_first = time.perf_counter()
                forward_fn(net, x, size)()  # the first call at a shape compiles (torch.compile) or picks kernels
                synchronize(device)
                row["first_call_s"] = time.perf_counter() - t_first
                seconds, mem = time_iters(forward_fn(net, x, size), device, args.warmup, args.iters)
                if label == "eager":
                    row["e2e_per_s"] = e2e_rate(seg, batch, device, args)
            except Exception as e:  # a compile failure (or out of memory) is a result, not a crash
                row["note"] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
                _free(device)
                continue
            _rates(row, batch, seconds, flops, peak, per_block)
            row["peak_gib"] = f"{mem:.2f}" if mem is not None else "n/a"
            log(_line(row))
        del x
        _free(device)
    del seg, nets
    _free(device)
    return rows


def e2e_rate(seg, batch: int, device, args) -> float:
    """Windows/s of Segmenter.window_probabilities: uint8 windows in, probabilities back on the host."""
    rgb = np.random.default_rng(args.seed).integers(0, 256, (batch, seg.size, seg.size, 3), dtype=np.uint8)
    seconds, _ = time_iters(lambda: seg.window_probabilities(rgb), device, min(args.warmup, 2), args.iters)
    return batch / seconds


def train_rows(name: str, batch_sizes: list[int], device, args, peak, log) -> list[dict]:
    """Training-step rows of one variant at each batch size (a fresh model and optimizer each)."""
    return [train_row(name, batch, device, args, peak, log) for batch in batch_sizes]


def train_row(name: str, batch: int, device, args, peak, log) -> dict:
    """Crops/s of training steps at one batch size."""
    import torch

    from mapper.models.registry import get_model_spec
    from mapper.seg.model import build_model
    from mapper.seg.train import SegTrainConfig

    spec = get_model_spec(name, kind="segmentation")
    size = spec.input.size
    row = {"variant": name, "mode": "training step", "batch": batch, "window": size, "dtype": _dtype(device),
           "note": ""}  # fmt: skip
    try:
        torch.manual_seed(args.seed)
        net = build_model(spec.arch).to(device)  # as train_seg: no channels-last
        cfg = SegTrainConfig()
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(args.seed)).to(device)
        masks, classes = random_targets(batch, size, device, args.seed)
        one = train_step_fn(net, opt, x[:1], masks[:1], classes[:1], cfg.grad_clip)
        flops = count_flops(one)  # forward + loss + backward of one crop (also a warm-up step)
        step = train_step_fn(net, opt, x, masks, classes, cfg.grad_clip)
        seconds, mem = time_iters(step, device, args.warmup, args.iters)
    except Exception as e:  # out of memory at a large batch is a result
        row["note"] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        _free(device)
        return row
    _rates(row, batch, seconds, flops, peak)
    row["peak_gib"] = f"{mem:.2f}" if mem is not None else "n/a"
    log(_line(row))
    del net, opt, x, masks, classes
    _free(device)
    return row


def _dtype(device) -> str:
    return "bf16 autocast" if device.type == "cuda" else "float32"


def _line(row: dict) -> str:
    unit = "crops" if row["mode"].startswith("training") else "windows"
    return (f"  {row['variant']} {row['mode']} batch {row['batch']}: {row['ms_per_batch']:.1f} ms, "
            f"{row['items_per_s']:.1f} {unit}/s, {row['tflops']:.2f} TFLOP/s")  # fmt: skip


# -------------------------------------------------------------------------------------------------- run
def run(args: argparse.Namespace, log=print) -> tuple[list[dict], dict]:
    """(rows, device info) of every variant × batch size."""
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: torch.cuda.is_available() is False (use --device cpu to check on a CPU)")
    info = device_info(device)
    peak = args.peak_tflops or (peak_tflops(info["gpu"]) if device.type == "cuda" else None)
    info["peak"] = f"{peak:g} TFLOP/s dense bf16" if peak else "n/a"
    log(", ".join(f"{k}: {v}" for k, v in info.items()))
    rows = []
    measure = train_rows if args.train else infer_rows
    for name in args.variants:
        rows += measure(name, args.batch_sizes, device, args, peak, log)
    return rows, info


COLUMNS = [
    ("variant", "variant", ""),
    ("mode", "mode", ""),
    ("dtype", "dtype", ""),
    ("batch", "batch", "d"),
    ("window", "window px", "d"),
    ("ms_per_batch", "ms/batch", ".1f"),
    ("items_per_s", "**windows (crops)/s**", ".1f"),
    ("blocks_per_s", "blocks/s", ".2f"),
    ("e2e_per_s", "e2e windows/s", ".1f"),
    ("gflop_per_item", "GFLOP/window", ".1f"),
    ("tflops", "TFLOP/s", ".2f"),
    ("of_peak", "of peak", ""),
    ("peak_gib", "peak GiB", ""),
    ("first_call_s", "first call s", ".1f"),
    ("note", "note", ""),
]


def report_lines(rows: list[dict], info: dict, args: argparse.Namespace) -> list[str]:
    from benchmarks.run import table

    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    what = "training steps" if args.train else "inference"
    if "cuda" in info:
        where = info["gpu"]
        setup = (f"torch {info['torch']}, CUDA {info['cuda']}, cuDNN {info['cudnn']}, driver {info['driver']}, "
                 f"{info['memory']} GPU memory; peak {info['peak']}; bf16 autocast.")  # fmt: skip
    else:
        where = "the CPU"
        setup = f"torch {info['torch']}, {info['threads']} threads, float32 (no autocast); no peak to compare with."
    lines = [
        f"## {now} — gpu_seg ({what}) on {where}",
        "",
        f"{setup} Random weights; {args.warmup} warm-up and {args.iters} timed iterations per row. Blocks/s: "
        f"{BLOCK_SHAPE[0]} × {BLOCK_SHAPE[1]} px blocks at the variant's window and overlap. FLOPs: "
        "FlopCounterMode (matmul, conv, attention; not element-wise, grid_sample or upsampling), so TFLOP/s is "
        "a lower bound. "
        "Command: `python -m benchmarks.gpu_seg " + " ".join(args.argv) + "`.",
        "",
    ]
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows)]  # e.g. no e2e column for training
    return lines + table(rows, cols) + [""]


def _csv(kind):
    return lambda s: [kind(v) for v in s.split(",") if v.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", type=_csv(str), default=list(DEFAULT_VARIANTS), help="comma-separated")
    p.add_argument("--batch-sizes", type=_csv(int), default=[8, 16, 32], help="comma-separated; default 8,16,32")
    p.add_argument("--iters", type=int, default=20, help="timed iterations per row (default 20)")
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations first (default min(5, iters))")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak, for an unknown GPU")
    p.add_argument("--device", default="cuda")
    p.add_argument("--compile", action="store_true", help="also time torch.compile(net) (inference)")
    p.add_argument("--train", action="store_true", help="time bf16 training steps instead of inference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    if args.iters < 1 or not args.batch_sizes or min(args.batch_sizes) < 1:
        p.error("--iters and the batch sizes must be at least 1")
    args.warmup = min(5, args.iters) if args.warmup is None else args.warmup
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: list[str] | None = None, results: Path | None = None) -> int:
    from benchmarks.run import RESULTS, append_results

    args = parse_args(argv)
    rows, info = run(args)
    lines = report_lines(rows, info, args)
    print()
    print("\n".join(lines))
    if args.record:
        append_results(lines, results or RESULTS)
        print(f"appended to {results or RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
