"""The samples of segmentation training: images of labelled blocks, their weights, and random crops with
their Mask2Former targets (used by mapper.seg.train, mapper.seg.finetune and label rounds).

**Samples.** Every image of a labelled block whose coverage type is one the segmentation is run on
(`coverage`, by default Planting and Non-planting: cloudy, snowy and empty images are routed away by IQA
and never segmented) is a sample; its target is the block's mask seen through that image
(`LabelledBlock.target`: 255 where unlabelled or without imagery). Every labelled chip (mapper.labels.chips:
real labelled imagery at its own pixel size, no coverage type) is a sample too.

**Pixel size.** Each sample knows its GSD (a block's from its zoom and latitude, a chip's as declared). Given
the model's GSD, a crop of `crop` model pixels is read as the window of the same ground size in the sample's
pixels and resampled (mapper.seg.resample), times a random scale from `scale` (augmentation).

Crops of `crop` px (the arch's window by default) are read from the GeoTIFFs on demand (windowed reads of the
tiled files; nothing is held in memory but the batches), in a background thread that keeps `prefetch` batches
ready, so data loading overlaps the network (the time the loop waits for data is logged with every validation).

**Weights.** A crop's image is drawn with probability proportional to its block's weight (`SampleWeights`:
1 unless named). By default the blocks an active-learning campaign ingested last (label.json
`"al": {"round": k}`, the newest k present) weigh `recent_weight` (1.0: uniform), so a fine-tune
(mapper.seg.finetune) learns the new labels without forgetting the old. Uniform weights draw exactly the
sequence they always did, so older checkpoints stay reproducible.

**Targets and empty windows.** Mask2Former is trained with its own set loss (Hungarian matching, class
cross-entropy, point-sampled mask BCE and dice). Each crop's targets are the masks of the classes present
among its labelled pixels, background included: a crop without cropland has the background mask alone,
so no crop has an empty target set (which is what crashes naive training with cropland as the only class).
Ignored pixels belong to no target mask, as in Mask2Former's reference semantic-segmentation data
pipeline; a crop with less than `min_labelled` of its pixels labelled is drawn again (bounded), and one
with no labelled pixel is never used.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mapper.labels.store import IGNORE, LabelError, image_file
from mapper.models.training import AugmentConfig
from mapper.seg.model import CLASSES

log = logging.getLogger(__name__)

SEGMENTED_COVERAGE = ("Planting", "Non-planting")  # cloudy, snowy and empty images are routed away by IQA

@dataclass(frozen=True)
class SegSample:
    """One image of a labelled block: where its image and mask are, and what label.json says of it."""

    directory: Path
    block_id: str
    source: str
    coverage: str | None
    cropland_fraction: float | None
    world_seed: int  # -1 for human labels
    al_round: int | None = None  # the active-learning round that ingested the block (label.json "al")
    gsd_m: float | None = None  # ground metres per pixel (None: not known)


def find_samples(roots: Sequence[Path | str], coverage: Sequence[str] | None = SEGMENTED_COVERAGE) -> list[SegSample]:
    """The images under labelled-block roots whose coverage type is in `coverage` (None: every image),
    from label.json alone. Incomplete blocks are skipped with a warning; none at all is a LabelError."""
    from mapper.labels.chips import CHIP_SOURCE, chip_dirs, read_chip_json
    from mapper.labels.store import block_dirs, is_complete, read_label_json
    from mapper.seg.resample import block_gsd_m

    out: list[SegSample] = []
    for root in roots:
        dirs = block_dirs(root)
        complete = [d for d in dirs if is_complete(d)]
        if len(complete) < len(dirs):
            log.warning("%d incomplete labelled block(s) under %s skipped", len(dirs) - len(complete), root)
        for d in complete:
            meta = read_label_json(d)
            seed = int(meta.get("world", {}).get("seed", -1))
            al_round = (meta.get("al") or {}).get("round")
            gsd = block_gsd_m(meta["block"], int(meta.get("zoom", 16)))
            for source in meta["sources"]:
                cov = meta.get("coverage", {}).get(source)
                if coverage is None or cov in coverage:
                    frac = meta.get("cropland_fraction")
                    out.append(SegSample(d, meta["block"], source, cov, frac, seed, _round(al_round, d), gsd))
        for d in chip_dirs(root):  # real labelled imagery: no coverage type, segmented as it is
            meta = read_chip_json(d)
            al_round = _round((meta.get("al") or {}).get("round"), d)  # a chip ingested by a label round
            out.append(SegSample(d, meta["chip"], CHIP_SOURCE, None, meta.get("cropland_fraction"), -1, al_round,
                                 float(meta["gsd_m"])))  # fmt: skip
    if not out:
        which = "any coverage" if coverage is None else f"coverage {', '.join(coverage)}"
        raise LabelError(f"no labelled image of {which} under {', '.join(map(str, roots))}")
    return out


def _round(value, directory: Path) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LabelError(f"{directory}/label.json: al.round must be a round number ≥ 0, not {value!r}; fix it")
    return value


@dataclass(frozen=True)
class SampleWeights:
    """How often each block's images are drawn, relative to 1 (blocks not named weigh 1), and the rule that
    gave the weights; both go into checkpoint.json."""

    by_block: dict[str, float]
    rule: str

    @classmethod
    def explicit(cls, weights: Mapping[str, float]) -> SampleWeights:
        """Weights chosen by the caller, {block_id: weight}; each must be a finite number > 0 (to leave a block
        out, leave its samples out)."""
        bad = {k: w for k, w in weights.items() if not (isinstance(w, int | float) and math.isfinite(w) and w > 0)}
        if bad:
            raise ValueError(f"sample weights must be finite numbers > 0; fix those of {bad}")
        return cls({k: float(w) for k, w in weights.items() if w != 1}, "explicit {block_id: weight}")

    @classmethod
    def recent(cls, samples: Sequence[SegSample], weight: float, al_round: int | None = None) -> SampleWeights:
        """The blocks of active-learning round `al_round` (default: the newest among the samples) weigh `weight`,
        the others 1."""
        rounds = {s.al_round for s in samples if s.al_round is not None}
        if al_round is None:
            al_round = max(rounds, default=None)
        if weight == 1:
            return cls({}, "uniform")
        if al_round is None:
            return cls({}, f"uniform: no block of an al round to weigh {weight:g}")
        if al_round not in rounds:
            log.warning("no training block of al round %d (rounds present: %s); sampling uniformly", al_round,
                        sorted(rounds))  # fmt: skip
        return cls({s.block_id: float(weight) for s in samples if s.al_round == al_round},
                   f"blocks of al round {al_round} weigh {weight:g}, others 1")  # fmt: skip

    def of(self, block_id: str) -> float:
        return self.by_block.get(block_id, 1.0)

    def record(self) -> dict:
        return {"rule": self.rule, "weights": dict(sorted(self.by_block.items()))}


def split_samples(samples: list[SegSample], fraction: float, seed: int) -> tuple[list[SegSample], list[SegSample]]:
    """(train, val): a random `fraction` of the blocks (all their images) is held out."""
    blocks = sorted({s.block_id for s in samples})
    n_val = round(fraction * len(blocks)) if len(blocks) > 1 else 0
    if fraction <= 0 or n_val == 0:
        return samples, []
    held = set(np.random.default_rng([seed, 17]).choice(blocks, n_val, replace=False).tolist())
    return [s for s in samples if s.block_id not in held], [s for s in samples if s.block_id in held]


def read_crop(sample: SegSample, row: int, col: int, size: int, out: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(rgb (S, S, 3) uint8, target (S, S) uint8 0/1/255) of the crop of `size` px at (row, col), resampled to
    `out` px (default: not resampled); pixels without imagery are IGNORE. A crop reaching past the image's edge
    is padded with IGNORE."""
    import warnings

    import rasterio
    from rasterio.windows import Window

    from mapper.seg.resample import resize_labels, resize_rgb

    win = Window(col, row, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # chips have no georeference
        with rasterio.open(sample.directory / image_file(sample.source)) as src:
            rgb = src.read(window=win, boundless=True, fill_value=0)
            valid = src.read_masks(1, window=win, boundless=True) > 0
        with rasterio.open(sample.directory / "mask.tif") as src:
            target = src.read(1, window=win, boundless=True, fill_value=IGNORE)
    target[~valid] = IGNORE
    rgb = np.moveaxis(rgb, 0, -1)
    if out is not None and out != size:
        rgb, target = resize_rgb(rgb, (out, out)), resize_labels(target, (out, out))
    return rgb, target


def _image_shape(sample: SegSample) -> tuple[int, int]:
    import warnings

    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(sample.directory / image_file(sample.source)) as src:
            return src.height, src.width


class CropSampler:
    """Random labelled crops of a list of samples (image shapes read once), each sample drawn with probability
    proportional to its weight (`weights`, one per sample; default all equal). With `gsd_m` (the model's pixel
    size) each crop covers `size` model pixels of ground, resampled from the sample's own pixels; `scale`
    (low, high) multiplies that ground size by a log-uniform random factor (augmentation)."""

    def __init__(
        self,
        samples: Sequence[SegSample],
        size: int,
        min_labelled: float,
        tries: int = 20,
        weights: Sequence[float] | None = None,
        gsd_m: float | None = None,
        scale: tuple[float, float] = (1.0, 1.0),
    ):
        self.samples = list(samples)
        self.size, self.min_labelled, self.tries = size, min_labelled, tries
        self.gsd_m, self.scale = gsd_m, (float(scale[0]), float(scale[1]))
        if gsd_m is not None and any(s.gsd_m is None for s in self.samples):
            raise LabelError("a sample without a known pixel size cannot be resampled to the model's; re-import it")
        self.shapes = [_image_shape(s) for s in self.samples]
        w = np.ones(len(self.samples)) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (len(self.samples),) or not (np.isfinite(w).all() and (w > 0).all()):
            raise ValueError(f"need one finite weight > 0 per sample ({len(self.samples)}), got {weights!r}")
        # Equal weights keep the original draw (rng.integers), so the (seed, step) crops of every run before
        # weights existed are drawn again exactly; unequal ones invert the cumulative weights with one uniform.
        self._cumulative = None if (w == w[0]).all() else np.cumsum(w / w.sum())

    def draw(self, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(sample index, row, col, side) of one crop: its top-left corner and side in the sample's pixels."""
        if self._cumulative is None:
            i = int(rng.integers(len(self.samples)))
        else:  # side="right": a zero-width interval (none here: weights > 0) is never hit; min() for rounding
            i = min(int(np.searchsorted(self._cumulative, rng.random(), side="right")), len(self.samples) - 1)
        side = self.source_side(i, rng)
        h, w = self.shapes[i]
        row = int(rng.integers(max(1, h - side + 1)))
        col = int(rng.integers(max(1, w - side + 1)))
        return i, row, col, side

    def source_side(self, i: int, rng: np.random.Generator) -> int:
        """The crop's side in sample i's pixels. Nothing is drawn without resampling or scale augmentation, so the
        crops of runs from before pixel sizes existed are drawn again exactly."""
        factor = 1.0
        if self.gsd_m is not None:
            factor = self.gsd_m / self.samples[i].gsd_m
        low, high = self.scale
        if (low, high) != (1.0, 1.0):
            factor *= float(np.exp(rng.uniform(np.log(low), np.log(high))))
        return max(8, round(self.size * factor))

    def crop(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        best = None
        for _ in range(self.tries):
            i, row, col, side = self.draw(rng)
            rgb, target = read_crop(self.samples[i], row, col, side, self.size)
            labelled = float(np.mean(target != IGNORE))
            if labelled >= self.min_labelled:
                return rgb, target
            if labelled > 0 and (best is None or labelled > best[0]):
                best = (labelled, rgb, target)
        if best is None:
            raise LabelError(
                f"no crop with labelled pixels found in {self.tries} draws; the labels are (nearly) all ignored"
            )
        return best[1], best[2]


def augment_crop(rgb: np.ndarray, target: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig):
    """Flips, 90° rotations and colour jitter of one crop; the target moves with the image."""
    if cfg.flips and rng.random() < 0.5:
        rgb, target = rgb[:, ::-1], target[:, ::-1]
    if cfg.rot90:
        k = int(rng.integers(4))
        rgb, target = np.rot90(rgb, k), np.rot90(target, k)
    x = rgb.astype(np.float32)
    if cfg.brightness or cfg.channel_gain or cfg.contrast:
        gain = 1 + rng.uniform(-cfg.brightness, cfg.brightness) + rng.uniform(-cfg.channel_gain, cfg.channel_gain, 3)
        mean = x.reshape(-1, 3).mean(axis=0)
        x = ((x - mean) * (1 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean) * gain
    return np.clip(x, 0, 255).astype(np.float32), np.ascontiguousarray(target)


def crop_targets(target: np.ndarray):
    """(masks (K, S, S) float32, classes (K,) int64) of the classes present among the labelled pixels."""
    import torch

    present = [c for c in range(len(CLASSES)) if (target == c).any()]
    masks = torch.from_numpy(np.stack([(target == c) for c in present]).astype(np.float32))
    return masks, torch.tensor(present, dtype=torch.int64)


