"""The blocks an estimate is of: planned exactly as `mapper run` plans them (mapper.run.plan), or read back from a
run's state database once `mapper run` has planned them (so a run's estimate is of what it will actually do)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mapper.run.plan import Region, RegionError, plan_blocks


@dataclass(frozen=True)
class Plan:
    region: str  # the region's name as runs print it
    ix: np.ndarray
    iy: np.ndarray
    frac_inside: np.ndarray  # share of each block inside the region
    region_blocks: int  # blocks of the whole region (before --max-blocks)

    @property
    def blocks(self) -> int:
        return len(self.ix)

    @property
    def sampled(self) -> bool:
        return self.blocks < self.region_blocks


def plan_region(region: Region, max_blocks: int | None = None) -> Plan:
    """The blocks `mapper run` would plan for the region: all of them, or the same spread sample of N."""
    from mapper.imagery.fetch import spread_indices

    plan = plan_blocks(region)
    region_blocks = len(plan)
    if max_blocks:
        plan = plan.iloc[spread_indices(len(plan), max_blocks)]
    return Plan(
        region.name, plan["ix"].to_numpy(), plan["iy"].to_numpy(), plan["frac_inside"].to_numpy(), region_blocks
    )


def check_mappable(plan: Plan, region: Region) -> None:
    """Refuse a region with no block to map: a box that meets no province mapper knows (over sea, or abroad)."""
    if plan.blocks == 0 or (region.kind == "bbox" and not region.provinces):
        given = f"--{region.name}" if region.kind == "bbox" else region.name  # "bbox W,S,E,N"
        raise RegionError(
            f"{given}: no block of it lies in a province mapper knows (the box is over sea or outside China), "
            "so there is nothing to map or estimate; give a box over land, e.g. --bbox 113.2,23.0,113.4,23.2, or "
            "--province NAME"
        )


def plan_of_store(store, region_name: str) -> Plan:
    """The blocks a run directory has planned (mapper.store.run_store.RunStore), in planning order."""
    rows = list(store.block_rows())  # (block_id, ix, iy, province, frac_inside)
    ix = np.array([r[1] for r in rows], dtype=np.int64)
    iy = np.array([r[2] for r in rows], dtype=np.int64)
    frac = np.array([r[4] for r in rows], dtype=np.float64)
    counted = sum((store.meta("region_blocks_per_province") or {}).values())  # blocks outside provinces are not
    return Plan(region_name, ix, iy, frac, max(counted, len(rows)))
