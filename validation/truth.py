"""The truth `mapper validate` judges a run's maps against: labelled blocks, or the simulated world.

**The truth.** With `labels`, the labelled blocks (mapper.labels.store) that the run mapped: their mask.tif
(0/1, 255 = not labelled). Labelled blocks the run does not hold are ignored (counted); a labelled block that
cannot be read, or that lies on another grid than the run's masks (another zoom), is refused with the reason
and counted, and the validation goes on without it. Without `labels`, for a run whose sources are all
simulated-world sources: the world's truth of every mapped block, exactly as `mapper labels make` derives a
label mask (mapper.labels.world.write_world_block: `block_truth(world, block).cropland`, i.e. the cover
classes `mapper.world.landscape.CROPLAND` marks), with the world's true coverage type of each source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mapper.validation.errors import ValidationInputError
from mapper.validation.run_data import RunData


@dataclass
class Truth:
    """One block's truth: mask 0/1/255 on the block grid, true coverage type per run source (None: unknown)."""

    mask: np.ndarray
    coverage: dict[str, str | None]


class LabelSet:
    """The labelled blocks of a directory that the run mapped (read lazily, one block at a time)."""

    def __init__(self, root: Path, run: RunData):
        from mapper.labels.store import LabelError, block_dirs

        self.root = Path(root)
        try:
            dirs = block_dirs(self.root)
        except LabelError as e:
            raise ValidationInputError(f"--labels {root}: {e}; give a directory of <block_id>/ label folders") from e
        planned = {r[0] for r in run.rows}
        self.dirs = {d.name: d for d in dirs if d.name in run.final}
        self.outside = sorted(d.name for d in dirs if d.name not in planned)
        self.not_mapped = sorted(d.name for d in dirs if d.name in planned and d.name not in run.final)
        self.refused: list[dict] = []
        self.used: list[str] = []
        self.run = run

    def truth(self, block) -> Truth | None:
        from mapper.labels.store import LabelError, read_labelled_block

        directory = self.dirs.get(block.id)
        if directory is None:
            return None
        try:
            lb = read_labelled_block(directory)
            problem = grid_problem(lb, block, self.run.zoom)
            if problem:
                raise LabelError(problem)
        except LabelError as e:
            self.refused.append({"block_id": block.id, "reason": str(e)})
            return None
        self.used.append(block.id)
        return Truth(lb.mask, {s: _label_coverage(lb, s, self.run) for s in self.run.sources})

    def summary(self) -> dict:
        return {
            "dir": str(self.root),
            "used": len(self.used),
            "refused": self.refused,
            "outside_run": len(self.outside),
            "outside_run_examples": self.outside[:10],
            "not_mapped": self.not_mapped,
        }


def grid_problem(lb, block, zoom: int) -> str | None:
    """Why a labelled block cannot be compared with the run's masks (another grid), or None."""
    window = block.window(zoom)
    grids = {m.window for m in lb.images.values()}
    if lb.mask.shape == window.shape and grids == {window}:
        return None
    got = next(iter(grids))
    return (
        f"labels of block {block.id} are on another grid than the run's masks: labels z{got.zoom}, "
        f"{got.width} × {got.height} px from column {got.col0}, row {got.row0}; run z{zoom}, {window.width} × "
        f"{window.height} px from column {window.col0}, row {window.row0}. Write the labels on the run's grid "
        f"(`mapper labels make` / `ingest` with zoom {zoom}), or leave this block out"
    )


def _label_coverage(lb, source: str, run: RunData) -> str | None:
    """The labelled coverage type of a run source: by name, else (world labels) by the same rendering."""
    if lb.coverage.get(source) is not None:
        return lb.coverage[source]
    renderings = (lb.meta.get("world") or {}).get("renderings") or {}
    want = run.rendering(source)
    for name, rendering in renderings.items():
        if want is not None and rendering == want and lb.coverage.get(name) is not None:
            return lb.coverage[name]
    return None
