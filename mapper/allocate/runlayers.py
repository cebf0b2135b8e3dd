"""The layers a finished run gives the allocation: per piece, the mapped cropland (the final 2 m map) and the
mapped area of each crop (the crop-type stage), in true ground hectares.

They come from the blocks' stage results in the run's state database (the `final` stage's cropland per
unit, the `croptype` stage's crop areas per unit and leaf code), so nothing is re-read from rasters. A block
is a cell of the 0.05° grid, so on the default grid a block's numbers for a unit are exactly its piece's;
on a coarser grid (5′) each block's numbers are spread over the cells it overlaps in proportion to the
overlap — within a block the map's detail is not kept there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from mapper.allocate.grid import Pieces
from mapper.grid.blocks import CELLS_PER_DEGREE, Block

KINDS = {"province": "provinces", "prefecture": "prefectures"}


class RunInputError(ValueError):
    """A run directory the allocation cannot use; the message names the fix."""


@dataclass
class RunResults:
    root: Path
    identity: dict
    final: dict[str, dict]  # block_id -> final stage result
    croptype: dict[str, dict]  # block_id -> croptype stage result

    @property
    def world_seed(self) -> int | None:
        sources = self.identity.get("config", {}).get("sources", {})
        used = [sources.get(s, {}) for s in self.identity.get("sources", [])]
        world = used and all(s.get("kind") == "world" for s in used)
        return int(self.identity["world_seed"]) if world else None

    def footprint(self):
        """The union of the mapped blocks (EPSG:4326)."""
        boxes = [shapely.box(*Block.parse(b).bounds) for b in self.final]
        return shapely.union_all(boxes)

    def units(self, level: str) -> set[str]:
        return {u for r in self.final.values() for u in r.get(KINDS[level], {})}


def read_run(run_dir: Path | str) -> RunResults:
    from mapper.store.run_store import RunStore, RunStoreError

    root = Path(run_dir)
    try:
        store = RunStore.open(root)
    except RunStoreError as e:
        raise RunInputError(str(e)) from None
    try:
        final = dict(store.results("final"))
        croptype = dict(store.results("croptype"))
    finally:
        store.close()
    if not final:
        raise RunInputError(f"{root}: no block has its final map yet; finish the run first "
                            f"(`mapper run --resume {root}`)")  # fmt: skip
    identity = json.loads((root / "run.json").read_text(encoding="utf-8"))
    return RunResults(root, identity, final, croptype)


def _block_rows(run: RunResults, level: str, crop_codes) -> pd.DataFrame:
    """One row per block × unit: mapped area, cropland and crop hectares."""
    kind = KINDS[level]
    lut = {int(c): j for j, c in enumerate(crop_codes)}
    rows = []
    for block_id, res in run.final.items():
        b = Block.parse(block_id)
        crops = run.croptype.get(block_id, {}).get("areas", {}).get(kind, {})
        for unit, (crop_m2, area_m2) in res.get(kind, {}).items():
            per_crop = np.zeros(len(lut))
            for code, m2 in crops.get(unit, {}).items():
                if int(code) in lut:
                    per_crop[lut[int(code)]] += m2
            rows.append((b.ix, b.iy, unit, area_m2 / 1e4, crop_m2 / 1e4, per_crop / 1e4))
    return pd.DataFrame(rows, columns=["bx", "by", "unit_code", "mapped_ha", "cropland_ha", "crop_ha"])


def _overlaps(index: np.ndarray, d: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per block index along one axis: [(cell index, share of the block in it)] for the (at most two) cells
    of a 1/d° grid a 1/20° block overlaps (d ≤ 20)."""
    lo = index / CELLS_PER_DEGREE
    hi = (index + 1) / CELLS_PER_DEGREE
    first = np.floor(np.round(lo * d, 9)).astype(np.int64)
    edge = (first + 1) / d
    share_first = np.clip((np.minimum(hi, edge) - lo) * CELLS_PER_DEGREE, 0.0, 1.0)
    return [(first, share_first), (first + 1, 1.0 - share_first)]


def run_layers(run: RunResults, pieces: Pieces, level: str, crop_codes) -> dict[str, np.ndarray]:
    """{mapped_ha, cropland_ha, crop_ha (n, J)} per piece: what the run mapped of it (0 where it mapped nothing)."""
    if pieces.grid.cells_per_degree > CELLS_PER_DEGREE:
        raise RunInputError("the run's layers need a grid no finer than its 0.05° blocks")
    rows = _block_rows(run, level, crop_codes)
    n, n_crops = len(pieces), len(crop_codes)
    out = {"mapped_ha": np.zeros(n), "cropland_ha": np.zeros(n), "crop_ha": np.zeros((n, n_crops))}
    if rows.empty:
        return out
    unit_ix = {c: i for i, c in enumerate(pieces.units["code"])}
    unit = rows["unit_code"].map(unit_ix)
    keep = unit.notna().to_numpy()
    rows, unit = rows[keep], unit[keep].to_numpy(np.int64)
    key_of = {(int(x), int(y), int(u)): i for i, (x, y, u) in enumerate(zip(pieces.ix, pieces.iy, pieces.unit,
                                                                             strict=True))}  # fmt: skip
    crop = np.stack(rows["crop_ha"].to_numpy()) if len(rows) else np.zeros((0, n_crops))
    bx, by = rows["bx"].to_numpy(), rows["by"].to_numpy()
    d = pieces.grid.cells_per_degree
    for cx, sx in _overlaps(bx, d):
        for cy, sy in _overlaps(by, d):
            share = sx * sy
            for r in np.nonzero(share > 0)[0]:
                i = key_of.get((int(cx[r]), int(cy[r]), int(unit[r])))
                if i is None:  # the unit's polygon misses this cell (a sliver of the block): nothing to place it in
                    continue
                out["mapped_ha"][i] += share[r] * rows["mapped_ha"].iat[r]
                out["cropland_ha"][i] += share[r] * rows["cropland_ha"].iat[r]
                out["crop_ha"][i] += share[r] * crop[r]
    return out
