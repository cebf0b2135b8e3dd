"""Allocation of crop statistics (mapper.allocate, seed 003 eqs. 1-7): accuracy against the simulated world's
truth per cell, and speed over all of China's cells.

Accuracy. Units: the prefectures of Shandong and of Guangdong (world seeds 0 and 1). Per piece of the 0.05°
grid, the world's truth (harvested ha per crop, cropland, cropping intensity, climate and terrain; 10 × 10
samples per cell) gives the statistics (per-prefecture sums), the cap (true cropland × intensity) and a base
map: the true crop shares of a random 20 % of the cells (like a sparse base map, e.g. SPAM or a few mapped
regions). The seed's method — an RF regression per crop trained on the base-map cells, then eqs. 1-7 — is
judged against allocating each statistic in proportion to cropland alone, on the 80 % of cells *outside*
the base map (held out): R² over cells × crops and the mean absolute error (ha per cell and crop).

Speed. All 34 provinces (and the 361 prefectures) cut into 0.05° pieces (≈ 383,000 cells), 30 crops with a
sparse random probability, cap and statistics filling 80 % of each unit's cap; median of 3 runs of
`allocate`, beside the cropland-proportional allocation (the simplest vectorised peer).

    python -m benchmarks.allocate [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.common import median
from mapper.allocate.core import AllocationProblem, allocate, max_harvested_area, proportional_allocation
from mapper.allocate.grid import AllocationGrid, unit_pieces
from mapper.allocate.job import fit_scores, indicator_table
from mapper.allocate.regression import regression_probability
from mapper.allocate.statistics import statistics_from_pieces, unit_frame
from mapper.allocate.world import piece_truth
from mapper.croptype.taxonomy import packaged_taxonomy

HERE = Path(__file__).resolve().parent
OUT_JSON = HERE / "allocate.json"
BASE_SHARE = 0.2


def accuracy(province_code: str, world_seed: int, samples: int, seed: int = 0, figures: Path | None = None) -> dict:
    from mapper.world.world import get_world

    taxonomy = packaged_taxonomy()
    frame = unit_frame("prefecture")
    units = frame[frame["code"].str.startswith(province_code)].sort_values("code").reset_index(drop=True)
    pieces = unit_pieces(AllocationGrid.named("block"), units[["code", "name", "geometry"]])
    cropped = [int(c) for c, f in zip(taxonomy.codes, taxonomy.cropped, strict=True) if f]
    t0 = time.perf_counter()
    truth = piece_truth(get_world(world_seed), pieces, cropped, samples)
    truth_s = time.perf_counter() - t0
    stats = statistics_from_pieces("prefecture", pieces.units, pieces.unit, cropped, truth["crop_ha"], taxonomy)
    crop_ha = truth["crop_ha"][:, np.isin(cropped, stats.codes)]
    cap = max_harvested_area(truth["cropland_ha"] / pieces.area_ha, truth["intensity"], pieces.area_ha)
    rng = np.random.default_rng(seed)
    base = rng.uniform(size=len(pieces)) < BASE_SHARE
    share = crop_ha / pieces.area_ha[:, None]
    features = indicator_table(pieces, truth["cropland_ha"], truth, [])
    t0 = time.perf_counter()
    prob, _ = regression_probability(features, share, base, seed=seed)
    regression_s = time.perf_counter() - t0
    leaf = {c: i for i, c in enumerate(taxonomy.codes)}
    cols = [leaf[int(c)] for c in stats.codes]
    problem = AllocationProblem(pieces.unit, pieces.area_ha, cap, prob, stats.stat_ha, taxonomy.perennial[cols],
                                taxonomy.specific[cols])  # fmt: skip
    result = allocate(problem)
    peer = proportional_allocation(pieces.unit, truth["cropland_ha"], stats.stat_ha)
    held = ~base
    if figures is not None:  # the maps of the three largest crops, to look at
        from mapper.allocate.outputs import crop_pngs

        top = np.argsort(-stats.stat_ha.sum(0))[:3]
        sub = type(stats)(stats.level, stats.units, stats.codes[top], tuple(stats.names[t] for t in top),
                          stats.stat_ha[:, top])  # fmt: skip
        crop_pngs(figures / f"{province_code}-s{world_seed}", pieces, sub, result.area_ha[:, top])
    return {
        "province": province_code, "world_seed": world_seed, "pieces": len(pieces), "units": len(units),
        "crops": len(stats.codes), "held_out_pieces": int(held.sum()),
        "method": fit_scores(crop_ha[held], result.area_ha[held]),
        "cropland_proportional": fit_scores(crop_ha[held], peer[held]),
        "unplaced_ha": float(result.unplaced_ha.sum()), "statistic_ha": float(stats.stat_ha.sum()),
        "over_cap_pieces": int(((result.area_ha[:, ~taxonomy.perennial[cols]].sum(1)) > cap * (1 + 1e-9) + 1e-9).sum()),
        "seconds": {"truth": truth_s, "regression": regression_s},
    }  # fmt: skip


def speed(level: str, n_crops: int = 30, repeats: int = 3, seed: int = 0) -> dict:
    from mapper.grid.admin import provinces_frame

    units = unit_frame(level)
    if level == "province":
        units = units[units["code"].isin(provinces_frame()["ADM1_PCODE"])]
    units = units.sort_values("code").reset_index(drop=True)[["code", "name", "geometry"]]
    t0 = time.perf_counter()
    pieces = unit_pieces(AllocationGrid.named("block"), units)
    pieces_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    n, k = len(pieces), pieces.n_units
    cap = pieces.area_ha * rng.uniform(0, 0.8, n)
    prob = rng.uniform(0, 1, (n, n_crops)) * (rng.uniform(size=(n, n_crops)) < 0.5)
    stat = rng.uniform(0.1, 1, (k, n_crops))
    perennial = np.arange(n_crops) < 3
    specific = np.arange(n_crops) % 5 != 4
    stat *= (0.8 * np.bincount(pieces.unit, cap, k) / stat[:, ~perennial].sum(1))[:, None]
    problem = AllocationProblem(pieces.unit, pieces.area_ha, cap, prob, stat, perennial, specific)
    times, peer = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = allocate(problem)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        proportional_allocation(pieces.unit, cap, stat)
        peer.append(time.perf_counter() - t0)
    cells = len(np.unique(pieces.iy * 7200 + pieces.ix))
    annual = result.area_ha[:, ~perennial].sum(1)
    return {
        "level": level, "units": k, "pieces": n, "cells": cells, "crops": n_crops, "pieces_seconds": pieces_s,
        "allocate_seconds_median": median(times), "proportional_seconds_median": median(peer),
        "ratio_to_proportional": median(times) / median(peer),
        "array_mb": (prob.nbytes + result.area_ha.nbytes) / 2**20,
        # every hectare is placed or reported: allocated + unplaced = statistic per unit and crop
        "max_unit_balance_error": float(np.abs(result.allocated_ha(pieces.unit, k) + result.unplaced_ha - stat).max()),
        "unplaced_ha": float(result.unplaced_ha.sum()),
        "over_cap_pieces": int((annual > cap * (1 + 1e-9) + 1e-9).sum()),
    }  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="One province and seed, provinces only for speed.")
    p.add_argument("--out", type=Path, default=OUT_JSON)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    cases = [("CN037", 0)] if args.quick else [("CN037", 0), ("CN044", 0), ("CN037", 1), ("CN044", 1)]
    report = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": f"{platform.node()} ({platform.machine()}, "
              "2 shared cores, no GPU)", "accuracy": [], "speed": []}  # fmt: skip
    for code, world_seed in cases:
        r = accuracy(code, world_seed, samples=10, figures=args.out.parent / "allocate")
        report["accuracy"].append(r)
        print(json.dumps({k: r[k] for k in ("province", "world_seed", "method", "cropland_proportional")}), flush=True)
    for level in ("province",) if args.quick else ("province", "prefecture"):
        r = speed(level)
        report["speed"].append(r)
        print(json.dumps(r), flush=True)
    report["wall_seconds"] = time.perf_counter() - t0
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"-> {args.out}; wall {report['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
