"""Coverage-type classification of a block × source (paper Sect. 3.1 and 4.1): a ResNet over a small view.

**The view.** A block mosaic (2330 px wide, 2500–3700 px tall at z16, RGB uint8 plus a `valid` mask) is
reduced to `size` × `size` cells (the block is squeezed to a square; its aspect ratio varies with latitude)
with four uint8 channels:

- R, G, B: the mean colour of the cell's *valid* pixels (0 where the cell has none), so that a stretch
  without imagery does not darken the colours of the imagery beside it;
- nodata: 255 × the cell's fraction of pixels without imagery.

Both are cv2.INTER_AREA averages (of rgb·valid and of valid; the colour is their ratio), rounded to uint8 —
the same bytes whether a view is computed for training (and cached), evaluation or prediction. The network
sees the four channels scaled to [0, 1] and normalised by the checkpoint's per-channel mean and std (computed
on the training views). Keeping nodata as its own channel, rather than painting it black, keeps dark imagery
(water, shadow) apart from missing imagery, and gives Nodata (> 10 % of the block) a direct signal.

**The network.** transformers' ResNetForImageClassification built from a config (`build_model(arch)`, arch as
configs/models.yaml and checkpoint.json hold it); never downloaded, no torchvision.

**Prediction.** `predict_coverage(model, mosaics)` → [(name, probs)] in batches; a block without any
imagery is Nodata (probability 1) without running the network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from mapper.imagery.mosaic import check_mosaic, mosaic_arrays
from mapper.world.conditions import COVERAGE_NAMES

if TYPE_CHECKING:
    import torch

    from mapper.imagery.mosaic import BlockMosaic

CHANNELS = ("red", "green", "blue", "nodata")
NODATA = "Nodata"
DEFAULT_CHECKPOINT = "iqa-default"


# ---------------------------------------------------------------------------------------------- the view
def make_view(rgb: np.ndarray, valid: np.ndarray | None, size: int) -> np.ndarray:
    """The (size, size, 4) uint8 view of a block mosaic (see the module docstring)."""
    valid = check_mosaic(rgb, valid)
    v = valid.astype(np.float32)
    cover = cv2.resize(v, (size, size), interpolation=cv2.INTER_AREA)
    colour = cv2.resize(rgb.astype(np.float32) * v[..., None], (size, size), interpolation=cv2.INTER_AREA)
    has = cover > 1e-6
    mean = np.where(has[..., None], colour / np.where(has, cover, 1.0)[..., None], 0.0)
    out = np.empty((size, size, 4), np.uint8)
    out[..., :3] = np.clip(np.rint(mean), 0, 255)
    out[..., 3] = np.clip(np.rint(255.0 * (1.0 - cover)), 0, 255)
    return out


def views_to_float(views: np.ndarray) -> torch.Tensor:
    """(N, S, S, 4) uint8 views -> (N, 4, S, S) float32 in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(views)).permute(0, 3, 1, 2).float().div_(255.0)


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(N, 4, S, S) float in [0, 1] -> normalised by the per-channel mean and std."""
    import torch

    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def views_to_tensor(views: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(N, S, S, 4) uint8 views -> normalised (N, 4, S, S) float32, as the network takes them."""
    return normalise(views_to_float(views), mean, std)


# ---------------------------------------------------------------------------------------------- the network
def build_model(arch: dict):
    """ResNetForImageClassification from an arch dict (configs/models.yaml / checkpoint.json form)."""
    from transformers import ResNetConfig, ResNetForImageClassification

    from mapper.models.archs import full_iqa_arch

    a = full_iqa_arch(arch)
    a.pop("model_type")
    num_labels = a.pop("num_labels")
    config = ResNetConfig(**a, num_labels=num_labels)
    return ResNetForImageClassification(config)


@dataclass
class CoverageClassifier:
    """A coverage-type network with what it needs to be fed: view size, normalisation, class names."""

    net: torch.nn.Module
    classes: list[str]
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    meta: dict | None = None  # checkpoint.json when loaded from one

    @classmethod
    def from_checkpoint(cls, checkpoint) -> CoverageClassifier:
        meta = checkpoint.meta
        norm = meta["normalisation"]
        return cls(checkpoint.model, list(meta["classes"]), int(meta["input"]["size"]),
                   tuple(norm["mean"]), tuple(norm["std"]), meta)  # fmt: skip

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def probabilities(self, views: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(N, S, S, 4) uint8 views -> (N, n_classes) float32 softmax probabilities (network only)."""
        import torch

        if views.ndim != 4 or views.shape[1:] != (self.size, self.size, len(CHANNELS)) or views.dtype != np.uint8:
            raise ValueError(
                f"views must be (N, {self.size}, {self.size}, {len(CHANNELS)}) uint8; got {views.shape} {views.dtype}"
            )
        out = np.empty((len(views), len(self.classes)), np.float32)
        device = self.device
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.inference_mode():
                for i in range(0, len(views), batch_size):
                    x = views_to_tensor(views[i : i + batch_size], self.mean, self.std).to(device)
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                        logits = self.net(pixel_values=x).logits
                    out[i : i + len(x)] = torch.softmax(logits.float(), dim=1).cpu().numpy()
        finally:
            self.net.train(was_training)
        return out

    def classify_views(self, views: np.ndarray, any_valid: np.ndarray | None = None, batch_size: int = 64):
        """[(name, probs)] for views; where any_valid is False (no imagery at all) Nodata without the network."""
        n = len(views)
        any_valid = np.ones(n, bool) if any_valid is None else np.asarray(any_valid, bool)
        probs = np.zeros((n, len(self.classes)), np.float32)
        if NODATA in self.classes:
            probs[~any_valid, self.classes.index(NODATA)] = 1.0
        run = np.flatnonzero(any_valid)
        if len(run):
            probs[run] = self.probabilities(views[run], batch_size)
        names = [self.classes[int(np.argmax(p))] if ok else NODATA for p, ok in zip(probs, any_valid, strict=True)]
        return list(zip(names, probs, strict=True))


def predict_coverage(
    model: CoverageClassifier, mosaics: Iterable[BlockMosaic | tuple[np.ndarray, np.ndarray]], batch_size: int = 32
) -> list[tuple[str, np.ndarray]]:
    """Coverage type of each block mosaic: [(name, probabilities in model.classes order)].

    A mosaic is a BlockMosaic, an (rgb, valid) pair or a bare (H, W, 3) uint8 array (all valid). Views are
    made and classified `batch_size` at a time, so memory stays bounded for long iterables. A mosaic without
    any imagery is Nodata with probability 1, without running the network. ValueError for a mosaic that is
    not (H, W, 3) uint8 with an (H, W) bool mask."""
    out: list[tuple[str, np.ndarray]] = []
    views, any_valid = [], []

    def flush():
        if views:
            out.extend(model.classify_views(np.stack(views), np.array(any_valid), batch_size))
            views.clear()
            any_valid.clear()

    for m in mosaics:
        rgb, valid = mosaic_arrays(m)
        valid = check_mosaic(rgb, valid)
        ok = bool(valid.any())
        views.append(make_view(rgb, valid, model.size) if ok else np.zeros((model.size, model.size, 4), np.uint8))
        any_valid.append(ok)
        if len(views) >= batch_size:
            flush()
    flush()
    return out


def load_coverage_model(checkpoint: str | Path = DEFAULT_CHECKPOINT, device: str | None = None) -> CoverageClassifier:
    """The coverage classifier of a checkpoint directory or packaged checkpoint name (default: iqa-default)."""
    from mapper.models.checkpoint import load_checkpoint
    from mapper.models.registry import resolve_checkpoint

    ckpt = load_checkpoint(resolve_checkpoint(checkpoint), kind="iqa")
    if device:
        ckpt.model.to(device)
    return CoverageClassifier.from_checkpoint(ckpt)


def coverage_index(names: Sequence[str | None], classes: Sequence[str] = COVERAGE_NAMES) -> np.ndarray:
    """Class indices of coverage names (ValueError naming an unknown one)."""
    bad = sorted({n for n in names if n not in classes}, key=str)
    if bad:
        raise ValueError(f"unknown coverage type(s) {bad}; one of: {', '.join(classes)}")
    return np.array([list(classes).index(n) for n in names], np.int64)
