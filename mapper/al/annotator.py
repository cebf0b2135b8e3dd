"""The simulated annotator: returns an exported round exactly as a person would, from the world's truth.

    simulate_annotator(export_dir, world_seed, degrade=None, seed=0) -> AnnotatorCost

For each block of the round it replaces the block's `cropland` features in `labels.gpkg` by the vectorised
truth (class 1; the same tracing as the run's polygons, so rasterising them back gives the truth again) and
sets the block's status to `done`, or `negative` when it would draw nothing. It writes only through the
GeoPackage (pyogrio), the file a person hands back, atomically (a copy is edited, then renamed over it).

`Degrade` makes it a sloppier labeller, deterministically from `seed`: fields (8-connected cropland
components) under `min_field_m2` of true ground area are not drawn, and the drawing is offset by `shift_px`
pixels in one of the eight directions, drawn per block (boundaries shifted; a misregistered labeller).

The cost (also `export_dir/annotator_cost.json`): blocks positive / negative, polygons and vertices drawn,
and the edited area: true ground m² (mapper.grid.area) of labelled pixels whose label differs from the
exported prediction, and that as a share of the labelled area.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from mapper.al.handoff import LABELS, block_windows, imagery_valid, read_manifest
from mapper.al.labels_gpkg import (
    BLOCKS_LAYER,
    CROPLAND,
    CROPLAND_LAYER,
    IGNORE,
    burn,
    cropland_frame,
    read_layer,
    write_layers,
)
from mapper.grid.area import masked_area_m2, pixel_area_grid
from mapper.grid.blocks import Block
from mapper.grid.tilegrid import PixelWindow
from mapper.imagery.mosaic import CRS
from mapper.store.atomic import atomic_path, atomic_write_text

COST_FILE = "annotator_cost.json"
_DIRECTIONS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


@dataclass(frozen=True)
class Degrade:
    min_field_m2: float = 0.0  # fields smaller than this (true ground area) are not drawn
    shift_px: int = 0  # the drawing is offset by this many pixels


@dataclass
class AnnotatorCost:
    blocks_positive: int = 0
    blocks_negative: int = 0
    polygons: int = 0
    vertices: int = 0
    edited_m2: float = 0.0
    labelled_m2: float = 0.0
    per_block: dict[str, dict] = field(default_factory=dict)

    @property
    def edited_share(self) -> float:
        return self.edited_m2 / self.labelled_m2 if self.labelled_m2 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "edited_share": self.edited_share}


def drop_small_fields(mask: np.ndarray, window: PixelWindow, min_m2: float) -> np.ndarray:
    """`mask` without its 8-connected components of less than `min_m2` true ground area."""
    import cv2

    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    area = np.bincount(labels.ravel(), weights=pixel_area_grid(window).ravel(), minlength=n)
    keep = area >= min_m2
    keep[0] = False
    return keep[labels]


def shift_mask(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`mask` moved by (dy, dx) pixels; what moves in from outside is not cropland."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def drawn_mask(world, block: Block, window: PixelWindow, degrade: Degrade | None, seed: int) -> np.ndarray:
    """What the annotator draws in a block: the truth, degraded as asked (bool, block grid)."""
    from mapper.world.truth import block_truth

    mask = np.asarray(block_truth(world, block).cropland, bool)
    if degrade is not None and degrade.min_field_m2 > 0:
        mask = drop_small_fields(mask, window, degrade.min_field_m2)
    if degrade is not None and degrade.shift_px:
        rng = np.random.default_rng([int(seed), block.ix, block.iy])
        dy, dx = _DIRECTIONS[int(rng.integers(len(_DIRECTIONS)))]
        mask = shift_mask(mask, dy * int(degrade.shift_px), dx * int(degrade.shift_px))
    return mask


def _rewrite(labels: Path, cropland, blocks) -> None:
    """Both layers replaced in a copy of the file (styles and all else kept), renamed over the original."""
    with atomic_path(labels, suffix=".gpkg") as tmp:
        shutil.copyfile(labels, tmp)
        write_layers(tmp, cropland, blocks)


def simulate_annotator(
    export_dir: Path | str, world_seed: int, *, degrade: Degrade | None = None, seed: int = 0
) -> AnnotatorCost:
    """Fill `export_dir/labels.gpkg` from world `world_seed`'s truth (see the module docstring)."""
    from mapper.maps.polygons import block_polygons
    from mapper.world.world import get_world

    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    labels = export_dir / LABELS
    cropland, blocks = read_layer(labels, CROPLAND_LAYER), read_layer(labels, BLOCKS_LAYER)
    world, windows = get_world(int(world_seed)), block_windows(manifest)
    cost = AnnotatorCost()
    drawn_frames = [cropland[~cropland["block_id"].isin(list(windows))]]  # features of no round block stay
    for entry in manifest["blocks"]:
        bid, window = entry["block_id"], windows[entry["block_id"]]
        drawn = drawn_mask(world, Block.parse(bid), window, degrade, seed)
        mine = cropland[cropland["block_id"] == bid]
        predicted = burn(list(mine.geometry.values), mine["class"].to_numpy(), window)
        label = drawn.astype(np.uint8)
        label[~imagery_valid(export_dir, entry)] = IGNORE
        labelled = label != IGNORE
        geoms = list(block_polygons(drawn, window, bid).to_crs(CRS).geometry.values)
        drawn_frames.append(cropland_frame([bid] * len(geoms), geoms, [CROPLAND] * len(geoms)))
        status = "done" if geoms else "negative"
        blocks.loc[blocks["block_id"] == bid, "status"] = status
        row = {
            "status": status,
            "polygons": len(geoms),
            "vertices": int(shapely.get_num_coordinates(np.asarray(geoms, dtype=object)).sum()) if geoms else 0,
            "edited_m2": masked_area_m2(labelled & (label != predicted), window),
            "labelled_m2": masked_area_m2(labelled, window),
        }
        cost.per_block[bid] = row
        cost.blocks_positive += status == "done"
        cost.blocks_negative += status == "negative"
        for key in ("polygons", "vertices", "edited_m2", "labelled_m2"):
            setattr(cost, key, getattr(cost, key) + row[key])
    new = pd.concat(drawn_frames, ignore_index=True)
    _rewrite(labels, cropland_frame(new["block_id"], new.geometry.values, new["class"]), blocks)
    record = {**cost.to_dict(), "world_seed": int(world_seed), "degrade": asdict(degrade) if degrade else None,
              "seed": int(seed), "round": manifest["round"]}  # fmt: skip
    atomic_write_text(export_dir / COST_FILE, json.dumps(record, indent=2) + "\n")
    return cost
