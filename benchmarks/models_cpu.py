"""CPU throughput of the two networks, each against a peer run side by side in the same process.

- Segmentation (`seg-m2f-tiny`, randomly initialised: the weights do not change the work): `Segmenter.predict`
  over synthetic block-sized mosaics (windows of consecutive blocks fill the same batches of 16) against the
  naive loop that runs the same windows one at a time (`window_probabilities` of a batch of 1, then the same
  blending); both give the same probabilities, and the largest difference is reported. Also the latency of
  one `window_probabilities` call per window at batch 1 / 8 / 16.
- IQA (the packaged `iqa-default` checkpoint): views/s of `CoverageClassifier.probabilities` at batch 64
  against batch 1, and the time `make_view` takes to reduce one block to its view.

Latencies and IQA are measured at 1 thread and at torch's default thread count (torch.get_num_threads()):
on a machine shared with a busier, higher-priority job, OpenMP threads that wait for a core they do not get
make every parallel region wait, and more threads can be far slower than one. The block comparison runs at
the thread count that was faster at batch 16. Times are medians of the repeats; the measurements take turns
within each repeat (the two block runs alternate their order) so that a busy spell hits all alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np

from benchmarks.common import median

SEG_MODEL = "seg-m2f-tiny"
IQA_CHECKPOINT = "iqa-default"
BLOCK_SHAPE = (2531, 2330)  # a 0.05° block at zoom 16 (≈ 23° N)
QUICK_BLOCK_SHAPE = (320, 300)  # 2 × 2 windows of 256 px with 64 px overlap
# The mean and std the network is normalised by do not change its speed; ImageNet's, as a checkpoint would have.
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------------- input
def synthetic_mosaic(shape: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8, valid) of random-ish imagery: a coarse colour field upsampled, plus pixel noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    coarse = rng.integers(30, 200, (max(2, h // 40), max(2, w // 40), 3), dtype=np.uint8)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.int16)
    rgb = np.clip(field + rng.integers(-25, 26, (h, w, 3), dtype=np.int16), 0, 255).astype(np.uint8)
    return rgb, np.ones(shape, bool)


def make_segmenter(name: str = SEG_MODEL, batch_size: int = 16, seed: int = 0):
    """A Segmenter of a registry variant with random weights, on the CPU."""
    import torch

    from mapper.models.registry import get_model_spec
    from mapper.seg.model import build_model
    from mapper.seg.predict import Segmenter

    spec = get_model_spec(name, kind="segmentation")
    torch.manual_seed(seed)
    net = build_model(spec.arch)
    return Segmenter(net, spec.input.size, spec.input.overlap, MEAN, STD, batch_size).to("cpu")


# ----------------------------------------------------------------------------------------------- the peer
def naive_predict(seg, mosaics: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Each block's probability from its windows run one at a time (batch 1), blended as predict does."""
    from mapper.seg.windows import BlendedProbability, block_windows

    out = []
    s = seg.size
    for rgb, valid in mosaics:
        h, w = valid.shape
        blend = BlendedProbability(h, w, seg.overlap)
        for win in block_windows(h, w, s, seg.overlap):
            sl = (slice(win.row, win.row + win.height), slice(win.col, win.col + win.width))
            x = np.zeros((1, s, s, 3), np.uint8)
            v = np.zeros((1, s, s), bool)
            x[0, : win.height, : win.width] = rgb[sl]
            v[0, : win.height, : win.width] = valid[sl]
            blend.add(win, seg.window_probabilities(x, v)[0])
        prob = blend.result()
        prob[~valid] = np.nan
        out.append(prob)
    return out


# ------------------------------------------------------------------------------------------------ timing
def _take_turns(fns: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict]:
    """Median seconds of each function; they take turns within a repeat, in reversed order every other
    repeat (so that neither always runs first after a switch). Returns (seconds by name, last results)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    results = {}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            results[name] = fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: median(t) for name, t in times.items()}, results


def _with_threads(n: int, fn: Callable[[], object]) -> Callable[[], object]:
    import torch

    def call():
        torch.set_num_threads(n)
        return fn()

    return call


def _row(model, case, unit, threads, batch, items, seconds, **extra) -> dict:
    return {
        "model": model, "case": case, "unit": unit, "threads": threads, "batch": batch, "items": items,
        "per_s": items / seconds, "ms_per_item": 1000 * seconds / items, **extra,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------- sections
def sweep(seg, iqa, threads, seg_batches, iqa_batches, iqa_views, repeats, seed=0) -> list[dict]:
    """Latency of one window_probabilities call per batch size, and IQA views/s per batch size, at each
    thread count; speed-ups against batch 1 and against 1 thread."""
    rng = np.random.default_rng(seed)
    windows = rng.integers(0, 256, (max(seg_batches), seg.size, seg.size, 3), dtype=np.uint8)
    views = rng.integers(0, 256, (iqa_views, iqa.size, iqa.size, 4), dtype=np.uint8)
    n_b1 = min(iqa_views, 8)  # batch 1 is slow at many threads on a busy machine: fewer views, same rate
    fns = {}
    for t in threads:
        for b in seg_batches:
            fns["seg", t, b] = _with_threads(t, lambda b=b: seg.window_probabilities(windows[:b]))
        for b in iqa_batches:
            n = n_b1 if b == 1 else iqa_views
            fns["iqa", t, b] = _with_threads(t, lambda b=b, n=n: iqa.probabilities(views[:n], batch_size=b))
    for fn in fns.values():  # warm-up: oneDNN primitives for each shape and thread count
        fn()
    secs, _ = _take_turns(fns, repeats)
    rows = []
    for (kind, t, b), s in secs.items():
        if kind == "seg":
            row = _row(SEG_MODEL, "window_probabilities, one call", "window", t, b, b, s)
        else:
            n = n_b1 if b == 1 else iqa_views
            row = _row(IQA_CHECKPOINT, "CoverageClassifier.probabilities", "view", t, b, n, s)
        rows.append(row)
    by_key = {(r["model"], r["threads"], r["batch"]): r for r in rows}
    for r in rows:
        base = by_key.get((r["model"], r["threads"], 1))
        if r["batch"] != 1 and base:
            r["ratio"], r["peer"] = base["ms_per_item"] / r["ms_per_item"], "batch 1"
        one = by_key.get((r["model"], 1, r["batch"]))
        if r["threads"] != 1 and one:
            r["thread_ratio"] = one["ms_per_item"] / r["ms_per_item"]
    return rows


def compare_blocks(seg, mosaics, repeats: int, threads: int) -> list[dict]:
    """Segmenter.predict (cross-block batches) against the per-window loop over the same blocks."""
    import torch

    from mapper.seg.windows import block_windows

    n_windows = sum(len(block_windows(*v.shape, seg.size, seg.overlap)) for _, v in mosaics)
    items = [(i, m) for i, m in enumerate(mosaics)]
    torch.set_num_threads(threads)
    secs, res = _take_turns(
        {
            "predict": lambda: [r.probability for _, r in seg.predict(items)],
            "naive": lambda: naive_predict(seg, mosaics),
        },
        repeats,
    )
    diff = max(float(np.nanmax(np.abs(a - b))) for a, b in zip(res["predict"], res["naive"], strict=True))
    n = len(mosaics)
    where = f"{n} × {mosaics[0][1].shape[0]} × {mosaics[0][1].shape[1]} px"
    predict = _row(SEG_MODEL, "Segmenter.predict, cross-block batches", "window", threads, seg.batch_size,
                   n_windows, secs["predict"], s_per_block=secs["predict"] / n)  # fmt: skip
    naive = _row(SEG_MODEL, "per-window loop (+ the same blending)", "window", threads, 1, n_windows,
                 secs["naive"], s_per_block=secs["naive"] / n)  # fmt: skip
    predict.update(ratio=secs["naive"] / secs["predict"], peer="per-window loop", max_diff=diff, blocks=where)
    naive["blocks"] = where
    return [predict, naive]


def time_make_view(iqa, mosaics, repeats: int) -> list[dict]:
    """make_view: one block mosaic → the classifier's view (OpenCV INTER_AREA resizes)."""
    from mapper.iqa.model import make_view

    rgb, valid = mosaics[0]
    make_view(rgb[:64, :64], valid[:64, :64], iqa.size)  # warm-up
    secs, _ = _take_turns({"view": lambda: make_view(rgb, valid, iqa.size)}, repeats)
    row = _row(IQA_CHECKPOINT, f"make_view ({rgb.shape[0]} × {rgb.shape[1]} → {iqa.size} px)", "block",
               cv2.getNumThreads(), "", 1, secs["view"], s_per_block=secs["view"])  # fmt: skip
    return [row]


# ------------------------------------------------------------------------------------------------- run
def run(
    *, quick: bool = False, n_blocks: int = 1, repeats: int = 3, threads: tuple[int, ...] | None = None,
    block_threads: int | None = None, seed: int = 0, log=print,
) -> list[dict]:  # fmt: skip
    """All rows (see the module docstring). quick: tiny blocks and batches, for the smoke test.

    threads: the torch thread counts of the latency sweep (default 1 and torch's default); block_threads:
    the thread count of the block comparison (default: the one faster at batch 16 in the sweep)."""
    import torch

    from mapper.iqa.model import load_coverage_model

    default_threads = torch.get_num_threads()
    threads = tuple(threads or sorted({1, default_threads}))
    seg_batches, iqa_batches, iqa_views = ((1, 2), (1, 4), 4) if quick else ((1, 8, 16), (1, 64), 64)
    shape = QUICK_BLOCK_SHAPE if quick else BLOCK_SHAPE
    mosaics = [synthetic_mosaic(shape, seed + i) for i in range(n_blocks)]
    seg = make_segmenter(batch_size=16, seed=seed)
    iqa = load_coverage_model(IQA_CHECKPOINT, device="cpu")
    try:
        rows = sweep(seg, iqa, threads, seg_batches, iqa_batches, iqa_views, repeats, seed)
        for r in rows:
            log(f"  {r['model']} {r['threads']} thr, batch {r['batch']}: {r['ms_per_item']:.1f} ms/{r['unit']}")
        if block_threads is None:
            at_max = [r for r in rows if r["model"] == SEG_MODEL and r["batch"] == max(seg_batches)]
            block_threads = min(at_max, key=lambda r: r["ms_per_item"])["threads"]
        log(f"  {n_blocks} block(s) of {shape[0]} × {shape[1]} px at {block_threads} thread(s) ...")
        block_rows = compare_blocks(seg, mosaics, repeats, block_threads)
        for r in block_rows:
            log(f"  {r['case']}: {r['per_s']:.2f} windows/s, {r['s_per_block']:.1f} s/block")
        rows = block_rows + rows + time_make_view(iqa, mosaics, repeats)
    finally:
        torch.set_num_threads(default_threads)
    for r in rows:
        r["default_threads"] = default_threads
    return rows


# ----------------------------------------------------------------------------------------------- report
COLUMNS = [
    ("model", "model", ""),
    ("case", "measurement", ""),
    ("unit", "item", ""),
    ("threads", "threads", ""),
    ("batch", "batch", ""),
    ("items", "items timed", "d"),
    ("per_s", "items/s", ".2f"),
    ("ms_per_item", "ms/item", ".1f"),
    ("s_per_block", "s/block", ".2f"),
    ("ratio", "**speed-up**", ".2f"),
    ("peer", "vs", ""),
    ("thread_ratio", "vs 1 thread", ".2f"),
    ("max_diff", "max prob. diff", ".1e"),
]


def report_lines(rows: list[dict], repeats: int) -> list[str]:
    """The RESULTS.md section of these rows."""
    import torch

    from benchmarks.run import table

    default = rows[0].get("default_threads", torch.get_num_threads()) if rows else torch.get_num_threads()
    where = next((r["blocks"] for r in rows if "blocks" in r), "no")
    lines = [
        "",
        f"### models_cpu — {SEG_MODEL} and {IQA_CHECKPOINT} on the CPU (torch {torch.__version__})",
        "",
        f"torch.get_num_threads() = {default} by default. {SEG_MODEL} has random weights (the work is the "
        f"same); the block rows run {where} blocks of synthetic imagery, all valid. Speed-up = the peer's time "
        "per item / this row's; 'vs 1 thread' = time at 1 thread / time at this row's threads (< 1: slower "
        "with more threads, as when the cores are busy with a higher-priority job). The block rows run at the "
        "thread count that was faster at the largest batch; the make_view row's threads are OpenCV's. "
        f"Medians of {repeats} repeats.",
        "",
    ]
    return lines + table(rows, COLUMNS)
