"""Block inference: sliding windows from many blocks batched together, blended at full resolution.

    seg = load_segmenter("seg-default")                # or a checkpoint directory
    for key, result in seg.predict([(block_id, mosaic), ...]):
        write_prediction(result, mosaic.window, out / f"{key}.tif", block_id=key)

`Segmenter.predict` walks the mosaics lazily: each block is cut into windows (mapper.seg.windows), and
windows from consecutive blocks fill the same batches, so a batch is always full however the blocks are
sized; a block's result is yielded as soon as its last window has run (in input order), so only the
blocks in flight are held in memory. Windows without any imagery are not run, and a block without any
imagery is all nodata without running the network. On CUDA the network runs under bf16 autocast with
channels-last tensors; on CPUs in float32.

The network sees R, G, B scaled to [0, 1] and normalised by the checkpoint's per-channel mean and std;
pixels without imagery are set to the mean (0 after normalisation), and the probability there is NaN.

**Pixel size.** A checkpoint that records its GSD (`input.gsd_m`) is fed imagery at that pixel size: an image
of another GSD (a block's follows from its zoom and latitude; a chip's or array's is given with it) is
resampled to the model's, predicted, and its probability resampled back onto the image's own grid
(mapper.seg.resample). Older checkpoints record none and predict every image at its own pixel size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mapper.imagery.mosaic import BlockMosaic, check_mosaic, mosaic_arrays
from mapper.seg.model import CLASSES, cropland_probability
from mapper.seg.resample import (
    needs_resampling,
    resampled_shape,
    resize_labels,
    resize_probability,
    resize_rgb,
    window_gsd_m,
)
from mapper.seg.windows import BlendedProbability, Window, block_windows

if TYPE_CHECKING:
    import torch

    from mapper.grid.tilegrid import PixelWindow

DEFAULT_CHECKPOINT = "seg-default"
NODATA = 255
PROBABILITY_SCALE = 250  # band 2 of a prediction GeoTIFF: probability × 250 (uint8), 255 = no imagery
DEFAULT_THRESHOLD = 0.5  # Mask2Former's argmax of two classes; a calibrated checkpoint records its own


def decision_threshold(meta: dict) -> float:
    """The cropland threshold a checkpoint records (`decision.threshold`, set by `mapper train calibrate` on
    held-out labels), else 0.5."""
    return float((meta.get("decision") or {}).get("threshold", DEFAULT_THRESHOLD))


@dataclass
class SegResult:
    probability: np.ndarray  # (H, W) float32 cropland probability; NaN where there is no imagery
    valid: np.ndarray  # (H, W) bool: the mosaic had imagery
    windows_run: int = 0
    threshold: float = DEFAULT_THRESHOLD  # cropland where probability > threshold (the checkpoint's decision)

    @property
    def mask(self) -> np.ndarray:
        """(H, W) uint8: 1 cropland, 0 not, 255 no imagery (probability > threshold; 0.5 is Mask2Former's
        argmax)."""
        out = np.full(self.valid.shape, NODATA, np.uint8)
        out[self.valid] = self.probability[self.valid] > self.threshold
        return out


@dataclass
class _Block:
    key: Any
    rgb: np.ndarray
    valid: np.ndarray
    blend: BlendedProbability
    pending: int
    windows_run: int = 0
    own: tuple | None = None  # (shape, valid) of the image's own grid, when it was resampled for the network


@dataclass
class Segmenter:
    """A segmentation network with what it needs to be fed: window, overlap, normalisation."""

    net: torch.nn.Module
    size: int
    overlap: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    batch_size: int = 16
    meta: dict | None = None
    classes: tuple[str, ...] = CLASSES
    gsd_m: float | None = None  # the pixel size the network learnt at (None: not recorded, no resampling)
    threshold: float = DEFAULT_THRESHOLD  # the checkpoint's decision threshold (mapper.seg.calibrate)

    @classmethod
    def from_checkpoint(cls, checkpoint, batch_size: int = 16) -> Segmenter:
        meta = checkpoint.meta
        norm = meta["normalisation"]
        return cls(checkpoint.model, int(meta["input"]["size"]), int(meta["input"].get("overlap", 0)),
                   tuple(norm["mean"]), tuple(norm["std"]), batch_size, meta, tuple(meta["classes"]),
                   meta["input"].get("gsd_m"), decision_threshold(meta))  # fmt: skip

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device) -> Segmenter:
        import torch

        self.net.to(device)
        if torch.device(device).type == "cuda":
            self.net.to(memory_format=torch.channels_last)
        return self

    # ------------------------------------------------------------------------------------------ network
    def window_probabilities(self, rgb: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """(N, S, S, 3) uint8 windows (+ (N, S, S) bool valid) -> (N, S, S) float32 cropland probability."""
        import torch

        if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"windows must be (N, H, W, 3) uint8; got {rgb.shape} {rgb.dtype}")
        device = self.device
        cuda = device.type == "cuda"
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        x = (x - mean) / std
        if valid is not None and not valid.all():
            x = x * torch.from_numpy(np.ascontiguousarray(valid)).to(device)[:, None].to(x.dtype)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                out = self.net(pixel_values=x)
                prob = cropland_probability(out.masks_queries_logits, out.class_queries_logits, rgb.shape[1:3])
        finally:
            self.net.train(was_training)
        return prob.float().cpu().numpy()

    # ------------------------------------------------------------------------------------------ blocks
    def predict(self, items: Iterable[tuple]) -> Iterator[tuple[Any, SegResult]]:
        """(key, result) for each (key, mosaic) or (key, mosaic, gsd_m) in order; a mosaic is a BlockMosaic (its
        GSD follows from its grid), an (rgb, valid) pair or an (H, W, 3) uint8 array (GSD given, or unknown).
        The result is on the mosaic's own grid. ValueError for a mosaic of the wrong shape or dtype."""
        blocks: deque[_Block] = deque()
        queue: list[tuple[_Block, Window]] = []
        for key, m, *gsd in items:
            rgb, valid = mosaic_arrays(m)
            valid = check_mosaic(rgb, valid)
            own = (valid.shape, valid)
            image_gsd = gsd[0] if gsd else (window_gsd_m(m.window) if isinstance(m, BlockMosaic) else None)
            if needs_resampling(image_gsd, self.gsd_m):
                shape = resampled_shape(valid.shape, image_gsd, self.gsd_m)
                rgb, valid = resize_rgb(rgb, shape), resize_labels(valid, shape)
            h, w = valid.shape
            block = _Block(key, rgb, valid, BlendedProbability(h, w, self.overlap), 0, own=own)
            if valid.any():
                for win in block_windows(h, w, self.size, self.overlap):
                    if valid[win.row : win.row + win.height, win.col : win.col + win.width].any():
                        queue.append((block, win))
                        block.pending += 1
            blocks.append(block)
            while len(queue) >= self.batch_size:
                self._run(queue[: self.batch_size])
                del queue[: self.batch_size]
                yield from self._finished(blocks)
            yield from self._finished(blocks)
        while queue:
            self._run(queue[: self.batch_size])
            del queue[: self.batch_size]
        yield from self._finished(blocks)

    def predict_one(self, mosaic) -> SegResult:
        return next(iter(self.predict([(None, mosaic)])))[1]

    def _run(self, batch: Sequence[tuple[_Block, Window]]) -> None:
        s = self.size
        rgb = np.zeros((len(batch), s, s, 3), np.uint8)
        valid = np.zeros((len(batch), s, s), bool)
        for i, (b, win) in enumerate(batch):
            sl = (slice(win.row, win.row + win.height), slice(win.col, win.col + win.width))
            rgb[i, : win.height, : win.width] = b.rgb[sl]
            valid[i, : win.height, : win.width] = b.valid[sl]
        prob = self.window_probabilities(rgb, valid)
        for i, (b, win) in enumerate(batch):
            b.blend.add(win, prob[i])
            b.pending -= 1
            b.windows_run += 1

    def _finished(self, blocks: deque[_Block]) -> Iterator[tuple[Any, SegResult]]:
        while blocks and blocks[0].pending == 0:
            b = blocks.popleft()
            prob = b.blend.result()
            prob[~b.valid] = np.nan
            valid = b.valid
            if b.own is not None and b.own[0] != prob.shape:  # back onto the image's own grid
                valid = b.own[1]
                prob = resize_probability(prob, b.own[0])
                prob[~valid] = np.nan
                prob[valid & np.isnan(prob)] = 0.0  # an own pixel whose resampled neighbours had no imagery
            yield b.key, SegResult(prob, valid, b.windows_run, self.threshold)


def load_segmenter(
    checkpoint: str | Path = DEFAULT_CHECKPOINT, device: str | None = None, batch_size: int | None = None
) -> Segmenter:
    """The Segmenter of a checkpoint directory or packaged checkpoint name (default: seg-default), on
    `device` (default: cuda when available, else cpu). Default batch: 8 windows on CPUs (larger batches
    were slower there, benchmarks/RESULTS.md), 32 on GPUs."""
    import torch

    from mapper.models.checkpoint import load_checkpoint
    from mapper.models.registry import resolve_checkpoint

    ckpt = load_checkpoint(resolve_checkpoint(checkpoint), kind="segmentation")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    seg = Segmenter.from_checkpoint(ckpt, batch_size or (32 if device.type == "cuda" else 8))
    return seg.to(device)


# ---------------------------------------------------------------------------------------------- output
def write_prediction(
    result: SegResult, window: PixelWindow, path: Path | str, *, block_id: str | None = None,
    compress: str = "zstd", level: int = 1, tile_size: int = 256, tags: dict | None = None,
) -> Path:  # fmt: skip
    """The prediction as a 2-band uint8 GeoTIFF on the block's own grid, written atomically:
    band 1 `cropland` (1 / 0, 255 = no imagery), band 2 `probability` (× 250, scale 0.004 in the file's
    metadata; 255 = no imagery)."""
    import rasterio

    from mapper.imagery.mosaic import geotiff_profile
    from mapper.imagery.tiff_check import check_complete_geotiff
    from mapper.store.atomic import atomic_path

    if result.probability.shape != window.shape:
        raise ValueError(f"prediction of shape {result.probability.shape} does not fit the grid {window.shape}")
    prob = np.full(window.shape, NODATA, np.uint8)
    prob[result.valid] = np.rint(np.clip(result.probability[result.valid], 0, 1) * PROBABILITY_SCALE)
    profile = geotiff_profile(window, 2, "uint8", compress, tile_size, level)
    profile.update(nodata=NODATA, interleave="band")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, check=check_complete_geotiff) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(result.mask, 1)
        dst.write(prob, 2)
        dst.descriptions = ("cropland", "probability")
        dst.scales = (1.0, 1.0 / PROBABILITY_SCALE)
        block_tag = {"MAPPER_BLOCK": block_id} if block_id else {}
        dst.update_tags(MAPPER_ZOOM=str(window.zoom), **block_tag, **(tags or {}))
        dst.update_tags(2, MAPPER_PROBABILITY_SCALE=str(PROBABILITY_SCALE))
    return path


def read_prediction(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """(mask uint8 0/1/255, probability float32 with NaN for no imagery) of a prediction GeoTIFF."""
    import rasterio

    with rasterio.open(path) as src:
        mask = src.read(1)
        raw = src.read(2)
    prob = np.where(raw == NODATA, np.nan, raw.astype(np.float32) / PROBABILITY_SCALE).astype(np.float32)
    return mask, prob
