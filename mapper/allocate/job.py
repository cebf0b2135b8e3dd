"""`mapper allocate RUN`: a run's crop statistics onto the grid, from the run's own layers.

    statistics (CSV, or the world's own for the run's footprint) ─┐
    pieces of the grid per unit ──────────────────────────────────┤
    cropland (the run's final map, or a raster) × intensity ──────┼→ eqs. 1-7 → outputs (mapper.allocate.outputs)
    probability (the run's crop-type map per cell, or a regression)┘
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from mapper.allocate.core import AllocationProblem, allocate, max_harvested_area, proportional_allocation
from mapper.allocate.grid import AllocationGrid, Pieces, unit_pieces
from mapper.allocate.runlayers import RunInputError, RunResults, read_run, run_layers
from mapper.allocate.statistics import CropStatistics, read_statistics, write_statistics

PROBABILITIES = ("map", "regression")


@dataclass
class AllocationSettings:
    statistics: str = "world"  # a CSV path, or "world" (the simulated world's, for the run's footprint)
    level: str = "prefecture"  # the units of "world" statistics
    grid: str = "block"
    probability: str = "map"
    cropland: str = "run"  # "run" or a raster of the cropland share on the grid
    intensity: str = "auto"  # "world", "1", a raster, or auto: the world's on a simulated run, else 1
    indicators: list[str] = field(default_factory=list)  # extra rasters for the regression
    samples_per_side: int = 20  # the world's truth per cell: samples per cell side
    seed: int = 0


def _taxonomy():
    from mapper.croptype.taxonomy import packaged_taxonomy

    return packaged_taxonomy()


def world_problem(run: RunResults, settings: AllocationSettings, taxonomy):
    """The simulated world's own statistics for the part of each unit the run mapped, the pieces of those
    parts and the truth per piece (statistics and truth from the same samples, so they agree exactly)."""
    from mapper.allocate.statistics import statistics_from_pieces, unit_frame
    from mapper.allocate.world import piece_truth
    from mapper.world.world import get_world

    if run.world_seed is None:
        raise RunInputError(f"{run.root} mapped real imagery, so the simulated world has no statistics for it; "
                            "give --statistics CSV (unit, crop, area_ha)")  # fmt: skip
    frame = unit_frame(settings.level)
    units = frame[frame["code"].isin(run.units(settings.level))].sort_values("code").reset_index(drop=True)
    units = units.set_geometry(units.geometry.intersection(run.footprint()))[["code", "name", "geometry"]]
    pieces = unit_pieces(AllocationGrid.named(settings.grid), units)
    cropped = [int(c) for c, f in zip(taxonomy.codes, taxonomy.cropped, strict=True) if f]
    truth = piece_truth(get_world(run.world_seed), pieces, cropped, settings.samples_per_side)
    stats = statistics_from_pieces(settings.level, units, pieces.unit, cropped, truth["crop_ha"], taxonomy)
    keep = np.isin(cropped, stats.codes)
    truth["crop_ha"], truth["physical_ha"] = truth["crop_ha"][:, keep], truth["physical_ha"][:, keep]
    return stats, pieces, truth


def load_problem(run: RunResults, settings: AllocationSettings, taxonomy):
    """(statistics, pieces, the world's truth per piece or None)."""
    if settings.statistics == "world":
        return world_problem(run, settings, taxonomy)
    stats = read_statistics(settings.statistics, taxonomy)
    pieces = unit_pieces(AllocationGrid.named(settings.grid), stats.units)
    truth = None
    if run.world_seed is not None:
        from mapper.allocate.world import piece_truth
        from mapper.world.world import get_world

        truth = piece_truth(get_world(run.world_seed), pieces, stats.codes, settings.samples_per_side)
    return stats, pieces, truth


def _probability(settings, pieces: Pieces, layers: dict, world_truth: dict | None, cropland_ha, stats):
    share = np.divide(layers["crop_ha"], layers["mapped_ha"][:, None], out=np.zeros_like(layers["crop_ha"]),
                      where=layers["mapped_ha"][:, None] > 0)  # fmt: skip
    if settings.probability == "map":
        return share, {}
    from mapper.allocate.regression import regression_probability

    features = indicator_table(pieces, cropland_ha, world_truth, settings.indicators)
    prob, info = regression_probability(features, share, layers["mapped_ha"] > 0, seed=settings.seed)
    return prob, {"regression": [{"crop": n, **i} for n, i in zip(stats.names, info, strict=True)]}


def indicator_table(pieces: Pieces, cropland_ha, world_truth: dict | None, rasters) -> np.ndarray:
    """(n, F) spatial indicators per piece: location, cropland share, the world's climate and terrain (on the
    simulated world) and any user rasters (one feature per band)."""
    from mapper.allocate.rasters import read_on_grid

    d = pieces.grid.cells_per_degree
    cols = [(pieces.ix + 0.5) / d - 180.0, (pieces.iy + 0.5) / d - 90.0, cropland_ha / pieces.area_ha]
    if world_truth is not None:
        cols += [world_truth[k] for k in ("temperature", "aridity", "elevation_m", "relief_m")]
    for path in rasters:
        cols += list(read_on_grid(path, pieces, "indicator"))
    return np.column_stack(cols)


def _rasters(settings: AllocationSettings) -> list[tuple[str, str]]:
    """(what, path) of every user raster the settings name."""
    named = [("cropland", settings.cropland), ("intensity", settings.intensity)]
    return [(w, v) for w, v in named if v not in ("run", "world", "1", "auto")] + [
        ("indicator", p) for p in settings.indicators]


def _layer(value: str, pieces: Pieces, what: str, keyword_value) -> np.ndarray:
    """A per-piece layer: the keyword's own values, ones for "1", else the user's raster's first band."""
    from mapper.allocate.rasters import read_on_grid

    if value == "1":
        return np.ones(len(pieces))
    if value in ("run", "world"):
        return keyword_value
    return np.nan_to_num(read_on_grid(value, pieces, what)[0], nan=0.0)


def allocate_run(run_dir: Path | str, settings: AllocationSettings, out_dir: Path | str | None = None,
                 log=print) -> dict:  # fmt: skip
    from mapper.allocate.outputs import write_allocation_outputs

    t0 = time.perf_counter()
    run = read_run(run_dir)
    out = Path(out_dir) if out_dir else run.root / "allocation"
    if settings.probability not in PROBABILITIES:
        raise RunInputError(f"unknown --probability {settings.probability!r}; use map or regression")
    if not run.croptype:
        raise RunInputError(f"{run.root} has no crop-type map yet: the probability layers come from it; run "
                            f"`mapper croptype map {run.root}` first")  # fmt: skip
    if settings.intensity == "auto":
        settings = replace(settings, intensity="world" if run.world_seed is not None else "1")
    if settings.intensity == "world" and run.world_seed is None:
        raise RunInputError("--intensity world needs a run on the simulated world; give --intensity FILE or 1")
    from mapper.allocate.rasters import check_on_grid

    for what, path in _rasters(settings):  # before the world's truth is sampled: a wrong grid is named at once
        check_on_grid(path, AllocationGrid.named(settings.grid), what)
    taxonomy = _taxonomy()
    stats, pieces, world_truth = load_problem(run, settings, taxonomy)
    log(f"{len(stats.units)} {stats.level}(s), {len(stats.codes)} crops, {len(pieces):,} pieces of the "
        f"{settings.grid} grid")  # fmt: skip
    layers = run_layers(run, pieces, stats.level, stats.codes)
    share = _layer(settings.cropland, pieces, "cropland", layers["cropland_ha"] / pieces.area_ha)
    cropland_ha = np.clip(share, 0, 1) * pieces.area_ha
    intensity = _layer(settings.intensity, pieces, "intensity", world_truth["intensity"] if world_truth else None)
    cap = max_harvested_area(cropland_ha / pieces.area_ha, intensity, pieces.area_ha)
    prob, prob_info = _probability(settings, pieces, layers, world_truth, cropland_ha, stats)
    leaf = {c: i for i, c in enumerate(taxonomy.codes)}
    cols = [leaf[int(c)] for c in stats.codes]
    problem = AllocationProblem(pieces.unit, pieces.area_ha, cap, prob, stats.stat_ha,
                                taxonomy.perennial[cols], taxonomy.specific[cols])  # fmt: skip
    t1 = time.perf_counter()
    result = allocate(problem)
    seconds = {"prepare": t1 - t0, "allocate": time.perf_counter() - t1}
    evaluation = None
    if world_truth is not None:
        evaluation = evaluate_against_truth(pieces, result.area_ha, world_truth["crop_ha"], cropland_ha, stats)
    summary = {"run": str(run.root), "settings": asdict(settings), "units": len(stats.units),
               "crops": list(stats.names), "pieces": len(pieces), "statistic_ha": float(stats.stat_ha.sum()),
               "allocated_ha": float(result.area_ha.sum()), "unplaced_ha": float(result.unplaced_ha.sum()),
               "cap_ha": float(cap.sum()), "seconds": seconds, "evaluation": evaluation, **prob_info}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    if settings.statistics == "world":
        write_statistics(stats, out / "statistics.csv")
        summary["statistics_file"] = str(out / "statistics.csv")
    summary["outputs"] = write_allocation_outputs(out, pieces, stats, result, prob, cap, summary)
    return summary


def cell_sums(pieces: Pieces, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ix, iy, (cells, J) sums) of per-piece values over each cell's pieces."""
    ix, iy, inverse = pieces.cell_index()
    values = np.asarray(values, float)
    flat = values.reshape(len(pieces), -1)
    sums = np.stack([np.bincount(inverse, flat[:, j], len(ix)) for j in range(flat.shape[1])], 1)
    return ix, iy, sums.reshape((len(ix), *values.shape[1:]))


def fit_scores(truth: np.ndarray, estimate: np.ndarray) -> dict:
    """R² (1 − SS_res / SS_tot over every cell × crop) and the mean absolute error, ha per cell and crop."""
    t, e = np.asarray(truth, float).ravel(), np.asarray(estimate, float).ravel()
    ss_tot = float(((t - t.mean()) ** 2).sum())
    r2 = 1.0 - float(((t - e) ** 2).sum()) / ss_tot if ss_tot > 0 else None
    return {"r2": r2, "mae_ha": float(np.abs(t - e).mean()), "cells_x_crops": int(t.size)}


def evaluate_against_truth(pieces: Pieces, allocated: np.ndarray, truth: np.ndarray, cropland_ha: np.ndarray,
                           stats: CropStatistics) -> dict:  # fmt: skip
    """The allocation and the cropland-proportional peer against the world's true harvested area per cell."""
    peer = proportional_allocation(pieces.unit, cropland_ha, stats.stat_ha)
    _, _, t = cell_sums(pieces, truth)
    _, _, a = cell_sums(pieces, allocated)
    _, _, p = cell_sums(pieces, peer)
    return {"method": fit_scores(t, a), "cropland_proportional": fit_scores(t, p),
            "truth_ha": float(t.sum())}  # fmt: skip
