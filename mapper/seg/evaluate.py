"""Scoring a segmentation checkpoint on labelled blocks: pixel IoU of cropland at full resolution.

Each selected image (block × source) is predicted whole, exactly as in production (sliding windows,
blended, mapper.seg.predict), and compared with its target (the block mask seen through that image:
unlabelled pixels and pixels without imagery are ignored). Counts are pooled over all images, so the IoU
is the pixel IoU of the whole labelled set — the paper's metric — not a mean of per-image IoUs (those are
listed per image as well, with None for an image with no cropland in either truth or prediction). Cropland
is where the probability exceeds the checkpoint's decision threshold (0.5 unless `mapper train calibrate`
recorded another), as in production.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mapper.seg.samples import SegSample
from mapper.seg.train import iou_counts, pixel_metrics


def select_samples(samples: Sequence[SegSample], max_images: int | None) -> list[SegSample]:
    """At most `max_images` samples spread evenly over the list sorted by block and source (deterministic)."""
    from mapper.imagery.fetch import spread_sample

    ordered = sorted(samples, key=lambda s: (s.block_id, s.source))
    if max_images is None or max_images >= len(ordered):
        return ordered
    keys = spread_sample([f"{s.block_id}/{s.source}" for s in ordered], max_images)
    by_key = {f"{s.block_id}/{s.source}": s for s in ordered}
    return [by_key[k] for k in keys]


@dataclass(frozen=True)
class ChipImage:
    """A labelled chip's image as the segmenter and the overlays take it (no block grid)."""

    rgb: np.ndarray
    valid: np.ndarray


def read_sample(sample: SegSample):
    """(mosaic, target) of one labelled image: the BlockMosaic (a ChipImage for a chip) and the 0/1/255 target
    on its grid."""
    import rasterio

    from mapper.imagery.mosaic import read_mosaic
    from mapper.labels.chips import CHIP_SOURCE, read_labelled_chip
    from mapper.labels.store import IGNORE, MASK_FILE, check_mask_values, image_file

    if sample.source == CHIP_SOURCE:
        chip = read_labelled_chip(sample.directory)
        return ChipImage(chip.rgb, chip.valid), chip.target()
    mosaic = read_mosaic(sample.directory / image_file(sample.source))
    with rasterio.open(sample.directory / MASK_FILE) as src:
        target = src.read(1)
    if target.shape != mosaic.valid.shape:
        from mapper.labels.store import LabelError

        raise LabelError(
            f"{sample.directory}: mask {target.shape} and image_{sample.source} {mosaic.valid.shape} differ; "
            "run `mapper labels check` on the labels"
        )
    check_mask_values(target, str(sample.directory / MASK_FILE))
    target = target.copy()
    target[~mosaic.valid] = IGNORE
    return mosaic, target


def prediction_inputs(samples: Sequence[SegSample], held: dict[int, tuple]) -> Iterator[tuple]:
    """The Segmenter.predict items of `samples`, keyed by index, read lazily; each sample's (mosaic, target) is
    put in `held[index]` for the caller to take when its result comes."""
    for i, s in enumerate(samples):
        held[i] = read_sample(s)
        mosaic = held[i][0]
        yield (i, (mosaic.rgb, mosaic.valid), s.gsd_m) if isinstance(mosaic, ChipImage) else (i, mosaic)


def evaluate_samples(
    segmenter,
    samples: Sequence[SegSample],
    on_image: Callable[[dict, object, np.ndarray, object], None] | None = None,
) -> dict:
    """Pooled pixel metrics and per-image rows for `samples` (see the module docstring). `on_image(row,
    mosaic, target, result)` is called after each image (e.g. to draw overlays or advance a progress bar)."""
    held: dict[int, tuple] = {}
    threshold = getattr(segmenter, "threshold", 0.5)
    total = np.zeros(4, np.int64)
    by_coverage: dict[str, np.ndarray] = {}
    rows, windows = [], 0
    t0 = time.perf_counter()
    for i, result in segmenter.predict(prediction_inputs(samples, held)):
        s, (mosaic, target) = samples[i], held.pop(i)
        counts = iou_counts(np.nan_to_num(result.probability, nan=0.0), target, threshold)
        total += counts
        key = s.coverage or "unrecorded"
        by_coverage[key] = by_coverage.get(key, np.zeros(4, np.int64)) + counts
        windows += result.windows_run
        m = pixel_metrics(counts)
        row = {"block": s.block_id, "source": s.source, "coverage": s.coverage, "gsd_m": s.gsd_m, "iou": m["iou"],
               "truth_cropland": (m["counts"]["tp"] + m["counts"]["fn"]) / max(1, m["pixels"]),
               "predicted_cropland": (m["counts"]["tp"] + m["counts"]["fp"]) / max(1, m["pixels"])}  # fmt: skip
        rows.append(row)
        if on_image is not None:
            on_image(row, mosaic, target, result)
    seconds = time.perf_counter() - t0
    return {
        **pixel_metrics(total),
        "images": len(rows),
        "blocks": len({r["block"] for r in rows}),
        "by_coverage": {k: pixel_metrics(v) for k, v in sorted(by_coverage.items())},
        "world_seeds": sorted({s.world_seed for s in samples if s.world_seed >= 0}),
        "model_gsd_m": getattr(segmenter, "gsd_m", None),
        "threshold": threshold,
        "image_gsd_m": _gsd_range(samples),
        "windows": windows,
        "seconds": round(seconds, 1),
        "windows_per_second": round(windows / seconds, 2) if seconds > 0 else None,
        "per_image": rows,
    }


def _gsd_range(samples: Sequence[SegSample]) -> list[float] | None:
    sizes = [s.gsd_m for s in samples if s.gsd_m is not None]
    return [round(min(sizes), 3), round(max(sizes), 3)] if sizes else None


def write_overlay(path: Path | str, mosaic, target: np.ndarray, probability: np.ndarray, title: str = "",
                  crop: int = 512, threshold: float = 0.5) -> Path:  # fmt: skip
    """A PNG of one image: the block (¼ scale) and a full-resolution crop (a chip under 1024 px: the whole chip
    at full resolution), each as image / prediction outlined on the image / errors (green TP, red FP, blue FN,
    grey where ignored) / truth outlined."""
    import cv2

    from mapper.store.atomic import atomic_path

    rgb = mosaic.rgb.copy()
    rgb[~mosaic.valid] = (255, 0, 255)
    pred = np.nan_to_num(probability, nan=0.0) > threshold
    truth = target == 1
    ignored = target == 255

    def outlined(img, mask, colour):
        out = img.copy()
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, colour, 1)
        return out

    errors = (rgb.astype(np.float32) * 0.35).astype(np.uint8)
    errors[pred & truth & ~ignored] = (40, 200, 60)
    errors[pred & ~truth & ~ignored] = (230, 40, 40)
    errors[~pred & truth & ~ignored] = (40, 90, 240)
    errors[ignored] = (128, 128, 128)
    panels = [rgb, outlined(rgb, pred, (255, 255, 0)), errors, outlined(rgb, truth, (0, 255, 255))]
    h, w = rgb.shape[:2]
    shrink = 4 if min(h, w) >= 1024 else 1  # a small chip is shown whole at full resolution
    small = [cv2.resize(p, (w // shrink, h // shrink), interpolation=cv2.INTER_AREA) for p in panels]
    # the full-resolution crop: where truth and prediction disagree most, else the centre
    c = min(crop, h, w)
    err = (pred != truth) & ~ignored
    integral = cv2.integral(err.astype(np.uint8))
    sums = integral[c:, c:] - integral[:-c, c:] - integral[c:, :-c] + integral[:-c, :-c]
    r0, c0 = np.unravel_index(int(np.argmax(sums[::16, ::16])), sums[::16, ::16].shape)
    r0, c0 = r0 * 16, c0 * 16
    big = [p[r0 : r0 + c, c0 : c0 + c] for p in panels]
    scale = small[0].shape[1] / c
    big = [cv2.resize(p, (small[0].shape[1], round(c * scale)), interpolation=cv2.INTER_NEAREST) for p in big]
    sep = np.full((small[0].shape[0], 6, 3), 255, np.uint8)
    top = np.hstack([x for p in small for x in (p, sep)][:-1])
    sep2 = np.full((big[0].shape[0], 6, 3), 255, np.uint8)
    bottom = np.hstack([x for p in big for x in (p, sep2)][:-1])
    header = np.full((28, top.shape[1], 3), 255, np.uint8)
    labels = "image | prediction (yellow) | TP green, FP red, FN blue | truth (cyan)"
    cv2.putText(header, f"{title}   {labels}", (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    note = np.full((22, top.shape[1], 3), 255, np.uint8)
    cv2.putText(note, f"full resolution {c}x{c} px crop at row {r0}, col {c0}", (6, 16),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
    sheet = np.vstack([header, top, note, bottom]) if shrink > 1 else np.vstack([header, top])  # small: whole
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(png.tobytes())
    return path
