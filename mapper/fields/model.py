"""The field delineation model: per 2 m pixel field interior / field boundary / background (Fields of The World's
three classes), a small U-Net, and the delineators a run uses.

    model = load_field_model("fields-default" | "path/to/ckpt" | "baseline", device=None)
    labels = model.delineate(rgb, cropland, valid)       int32 field instances inside the block's cropland
    interior, boundary = model.probabilities(rgb)        float32 (H, W) each (learned model only)

**Why three classes and not instance queries.** Fields are many (a block of southern plots holds 6,000) and
small (down to ~30 px across): Mask2Former's 100-200 queries per window would each have to be a field, and
its mask head works at 1/4 resolution, where a 2-px bund between two fields vanishes. A dense per-pixel
boundary class keeps the full 2 m resolution, and the seeded watershed of `polygons.instances_from_
probabilities` turns it into any number of instances — FTW's choice for the same reasons. Measured against
the classical baseline on held-out world seed 1 (benchmarks/RESULTS.md, "Field boundaries").

**Architecture** (`arch`): a U-Net of `depth` levels, `width` channels at full resolution doubled per level
(two 3×3 conv + batch norm + ReLU per level, max-pool down, bilinear up + skip), 3 output logits. Full-
resolution skip connections keep 1-px boundary detail. Inputs are RGB scaled to 0..1 and normalised by the
checkpoint's mean / std. Inference runs in overlapping windows (`input.size`, `input.overlap`): only each
window's centre is kept, so a window's border (where convolutions see zero padding) never reaches the output.

The block's final cropland mask is the extent: fields lie inside cropland (the issue's rule), so the model
only has to part fields, not find cropland — which the segmentation model already did.

`baseline` is the classical delineator (`mapper.fields.baseline`) behind the same interface: no weights, the
floor the model has to beat, and what a run uses when asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mapper.fields.polygons import MIN_MARKER_PX, instances_from_probabilities

KIND = "fields"
CLASSES = ["background", "interior", "boundary"]
ARCH_KEYS = ("name", "width", "depth")
BASELINE = "baseline"
DEFAULT_MODEL = "fields-default"


# ---------------------------------------------------------------------------------------------- network
def _conv_block(torch_nn, cin: int, cout: int):
    return torch_nn.Sequential(
        torch_nn.Conv2d(cin, cout, 3, padding=1, bias=False), torch_nn.BatchNorm2d(cout), torch_nn.ReLU(inplace=True),
        torch_nn.Conv2d(cout, cout, 3, padding=1, bias=False), torch_nn.BatchNorm2d(cout), torch_nn.ReLU(inplace=True),
    )  # fmt: skip


def build_model(arch: dict):
    """The U-Net of an arch dict {name: "unet", width, depth} (checkpoint.json's arch)."""
    import torch
    from torch import nn

    missing = [k for k in ARCH_KEYS if k not in arch]
    unknown = [k for k in arch if k not in ARCH_KEYS]
    if missing or unknown or arch.get("name") != "unet":
        raise ValueError(f"field arch must be {{name: unet, width, depth}}; missing {missing}, unknown {unknown}")
    width, depth = int(arch["width"]), int(arch["depth"])
    chans = [width * 2**i for i in range(depth)]

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.ModuleList([_conv_block(nn, 3 if i == 0 else chans[i - 1], c) for i, c in enumerate(chans)])
            self.up = nn.ModuleList([_conv_block(nn, chans[i] + chans[i + 1], chans[i]) for i in range(depth - 1)])
            self.head = nn.Conv2d(chans[0], len(CLASSES), 1)

        def forward(self, x):
            skips = []
            for i, block in enumerate(self.down):
                x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
                skips.append(x)
            for i in reversed(range(depth - 1)):
                x = nn.functional.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
                x = self.up[i](torch.cat([skips[i], x], dim=1))
            return self.head(x)

    return UNet()


# ---------------------------------------------------------------------------------------------- delineators
@dataclass
class LearnedDelineator:
    """A trained field model: per-pixel class probabilities in overlapping windows, then the seeded watershed."""

    model: object  # torch.nn.Module in eval mode
    meta: dict
    device: object
    batch_size: int = 8
    name: str = ""

    @property
    def window(self) -> tuple[int, int]:
        return int(self.meta["input"]["size"]), int(self.meta["input"].get("overlap", 0))

    def probabilities(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(interior, boundary) float32 (H, W) probabilities of an (H, W, 3) uint8 image."""
        import torch

        rgb = _check_rgb(rgb)
        mean = np.asarray(self.meta["normalisation"]["mean"], np.float32)
        std = np.asarray(self.meta["normalisation"]["std"], np.float32)
        x = (rgb.astype(np.float32) / 255.0 - mean) / std
        size, overlap = self.window
        h, w = x.shape[:2]
        # Padded (mirrored) to at least a window and to a multiple of the network's pooling stride, so every
        # window starts on the pooling grid of the whole image: neighbouring windows then agree where they overlap.
        align = 2 ** (int(self.meta["arch"]["depth"]) - 1)
        pad_h, pad_w = (max(size, -(-n // align) * align) - n for n in (h, w))
        x = np.pad(x, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
        out = np.zeros((len(CLASSES), *x.shape[:2]), np.float32)
        origins = _window_origins(x.shape[0], size, overlap), _window_origins(x.shape[1], size, overlap)
        windows = [(r, c) for r in origins[0] for c in origins[1]]
        with torch.inference_mode():
            for i in range(0, len(windows), self.batch_size):
                part = windows[i : i + self.batch_size]
                batch = np.stack([x[r : r + size, c : c + size] for r, c in part]).transpose(0, 3, 1, 2)
                prob = torch.softmax(self.model(torch.from_numpy(batch).to(self.device)), dim=1).cpu().numpy()
                for (r, c), p in zip(part, prob, strict=True):
                    rows, cols = _centre(r, c, size, overlap, x.shape[:2])
                    out[:, rows, cols] = p[:, rows.start - r : rows.stop - r, cols.start - c : cols.stop - c]
        return out[1, :h, :w], out[2, :h, :w]

    def delineate(self, rgb: np.ndarray, cropland: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """int32 field instances (0 none) inside the cropland (and the imaged pixels)."""
        extent = _extent(cropland, valid, np.asarray(rgb).shape[:2])
        if not extent.any():
            return np.zeros(extent.shape, np.int32)
        interior, boundary = self.probabilities(rgb)
        return instances_from_probabilities(interior, boundary, extent, min_marker_px=self.min_marker_px)

    @property
    def min_marker_px(self) -> int:
        return int(self.meta.get("postprocess", {}).get("min_marker_px", MIN_MARKER_PX))

    def to(self, device) -> LearnedDelineator:
        import torch

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        self.batch_size = 32 if self.device.type == "cuda" else 8
        return self


@dataclass
class BaselineDelineator:
    """The classical delineation (mapper.fields.baseline) behind the model's interface."""

    name: str = BASELINE

    def delineate(self, rgb: np.ndarray, cropland: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        from mapper.fields.baseline import delineate

        return delineate(_check_rgb(rgb), cropland, valid)


def load_field_model(spec: str | Path = DEFAULT_MODEL, device: str | None = None):
    """A delineator: `baseline` (classical), or a field checkpoint (directory or packaged name), checked before
    any work (CheckpointError names what is wrong and the fix)."""
    if str(spec) == BASELINE:
        return BaselineDelineator()
    from mapper.models.checkpoint import load_checkpoint
    from mapper.models.registry import resolve_checkpoint

    ckpt = load_checkpoint(resolve_checkpoint(spec), kind=KIND)
    return LearnedDelineator(ckpt.model, ckpt.meta, None, name=str(spec)).to(device)


# ---------------------------------------------------------------------------------------------- helpers
def _check_rgb(rgb) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"field delineation takes an (H, W, 3) uint8 image; got {rgb.shape} {rgb.dtype}")
    return rgb


def _extent(cropland, valid, shape) -> np.ndarray:
    cropland = np.asarray(cropland)
    extent = cropland if cropland.dtype == bool else cropland == 1
    if extent.shape != tuple(shape):
        raise ValueError(f"the cropland mask {extent.shape} is not on the image's grid {tuple(shape)}")
    return extent & np.asarray(valid, bool) if valid is not None else extent


def _window_origins(length: int, size: int, overlap: int) -> list[int]:
    """Window starts covering 0..length with windows of `size` overlapping by at least `overlap` (multiples of the
    pooling stride when length, size and overlap are)."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, size - overlap))
    return [*starts, length - size]


def _centre(r: int, c: int, size: int, overlap: int, shape) -> tuple[slice, slice]:
    """The part of a window written out: all but overlap / 2 on each side that has a neighbour (image edges
    keep theirs). Later windows overwrite earlier ones only inside their own centre, so every pixel comes from
    a window that sees at least overlap / 2 around it (or the image's edge)."""
    m = overlap // 2
    r0 = r if r == 0 else r + m
    c0 = c if c == 0 else c + m
    r1 = r + size if r + size >= shape[0] else r + size - m
    c1 = c + size if c + size >= shape[1] else c + size - m
    return slice(r0, r1), slice(c0, c1)
