"""Level 3 of `mapper validate`: mapped cropland per province (and prefecture) against a reference area, with
the stop verdict of each province.

**3. Province level.** Mapped cropland (true ground area of the final map's pixels whose centre lies in the
province, from the run's `final` results) against a reference area, PCS = mapped / reference, and the
evaluation criterion |PCS − 1| ≤ 10 %. The comparison (`comparison`) is one of:

- "whole province": every block of the province was mapped; the reference is the statistic (--statistics,
  else the run's config table, else for world sources the world's true cropland of every pixel of the
  province, else the official table: TNLS 2019 or the 1996 survey).
- "same area (world truth)": the run mapped part of the province (a --max-blocks sample, a bbox, failed
  blocks) and its sources are the simulated world: the reference is the world's true cropland of exactly the
  same pixels (the mapped blocks ∩ province, by the same pixel-centre rule as the map), exact like-for-like.
  (The pixel truth, not `cropland_area_in_polygon`: its 40 × 40 samples per block are off by a few percent
  on a single block.) A spread-sample run also gets `province_estimate`: the ratio estimate of the whole
  province with its 95 % interval, against the world's province statistic.
- "sample estimate of the province": part of the province was mapped as a spread sample of its blocks, and
  the reference is a whole-province statistic: the province total is estimated from the sample with the
  ratio estimator and its 95 % interval (validation/sampling.py); PCS = estimate / statistic.
- "none": no comparison is possible (no block of the province mapped; a bbox over part of the province with
  a whole-province statistic only; no statistic at all); the reason is in `note`.

**Intervals.** Each province's PCS carries `pcs_ci95` and `pcs_ci95_from` saying how it was computed:

- a sample estimate of the province: the ratio estimator's 95 % interval of the province total divided by
  the statistic (validation/sampling.py; the statistic is taken as exact);
- like for like on a sample of blocks ("same area (world truth)"): the block bootstrap of the ratio
  Σ mapped / Σ truth over the mapped blocks (validation/intervals.py);
- the whole province mapped: none (a census has no sampling error; the point value decides).

The final map's IoU and semantic correctness over the province's blocks carry `iou_ci95` and
`semantic_correctness_ci95` (the block bootstrap). The stop verdict (validation/stop.py) gets these
intervals, the stop rule, and the province's share of blocks with poor imagery (`poor_imagery`,
validation/imagery.py), on which the waiver for cloudy provinces depends.

Prefectures: for world sources every prefecture with mapped blocks is compared with the world's truth of the
same pixels; official statistics exist for provinces only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mapper.validation.blocks import Totals
from mapper.validation.pixels import HA, pixel_metrics
from mapper.validation.run_data import FINAL, RunData
from mapper.validation.semantic import correct_ci95, correct_rate
from mapper.validation.stop import stop_verdict


def _statistic_for(province, run: RunData, user_stats: dict | None):
    """(Statistic, kind) by mapper.maps.statistics.reference_statistic: --statistics, else the run's config
    table (when the file is still there), else (world sources) None with kind "world", else official."""
    from mapper.maps.statistics import read_user_statistics, reference_statistic

    tables = [user_stats or {}]
    table = run.config.run.statistics
    if table is not None and Path(table).exists():
        tables.append(read_user_statistics(table))
    return reference_statistic(province, tables, world=run.world_seed is not None)


def province_comparison(
    *,
    mapped_m2: float,
    land_m2: float,
    sample_y: Iterable[float],
    sample_x: Iterable[float],
    province_area_m2: float,
    blocks_in_province: int,
    complete: bool,
    spread_sample: bool,
    statistic=None,
    same_area_truth_m2: float | None = None,
    truth_label: str = "",
    sample_truth: Iterable[float] | None = None,
) -> dict:
    """The area comparison of one province (see the module docstring). `mapped_m2`, `land_m2`: the final map's
    cropland and land inside the province over the mapped blocks; `sample_y`, `sample_x`: the same per mapped
    block; `statistic`: a whole-province mapper.maps.statistics.Statistic, or None when the reference is the
    world's truth of the mapped pixels (`same_area_truth_m2`); `sample_truth`: that truth per mapped block (as
    `sample_y`), for the block bootstrap of the like-for-like PCS."""
    from mapper.validation.sampling import ratio_estimate

    from mapper.maps.statistics import within_criterion

    y = np.asarray(list(sample_y), np.float64)
    x = np.asarray(list(sample_x), np.float64)
    out = {
        "mapped_ha": None,
        "mapped_ha_in_blocks": mapped_m2 / HA,
        "land_ha_in_blocks": land_m2 / HA,
        "mapped_share": land_m2 / province_area_m2 if province_area_m2 else None,
        "estimate": False,
        "ci95": None,
        "statistic_ha": None,
        "statistic_source": None,
        "pcs": None,
        "pcs_ci95": None,
        "pcs_ci95_from": None,
        "within_10pct": None,
        "comparison": "none",
        "note": "",
    }
    if len(y) == 0:
        out["note"] = "no block of the province was mapped"
        return out
    est = ratio_estimate(y, x, province_area_m2, max(int(blocks_in_province), len(y))) if spread_sample else None
    if statistic is None:  # the world's truth of the same pixels
        _compare_with_same_area_truth(out, mapped_m2, complete, same_area_truth_m2, truth_label)
        _like_for_like_interval(out, y, sample_truth, complete)
    else:
        _compare_with_statistic(out, mapped_m2, complete, statistic, est)
    out["within_10pct"] = within_criterion(out["pcs"])
    if est is not None and "sample" not in out:
        out["province_estimate"] = {"estimate_ha": est.total / HA, "ci95": _ci95_ha(est), "sample": _estimate_dict(est)}
    return out


def _compare_with_same_area_truth(
    out: dict, mapped_m2: float, complete: bool, truth_m2: float | None, truth_label: str
) -> None:
    """Fill `out` with the comparison against the world's true cropland of the mapped pixels."""
    from mapper.maps.statistics import Statistic, pcs

    ref = Statistic("", (truth_m2 or 0.0) / HA, truth_label, None)
    out.update(
        {
            "mapped_ha": mapped_m2 / HA,
            "statistic_ha": ref.hectares,
            "statistic_source": ref.source,
            "comparison": "whole province" if complete else "same area (world truth)",
        }
    )
    out["pcs"] = pcs(out["mapped_ha"], ref)
    if out["pcs"] is None:
        out["note"] = "the truth has no cropland in the mapped pixels: PCS is undefined"


def _compare_with_statistic(out: dict, mapped_m2: float, complete: bool, statistic, est) -> None:
    """Fill `out` with the comparison against a whole-province statistic: the mapped area of a whole province,
    the ratio estimate of a spread sample (`est`), else none."""
    from mapper.maps.statistics import pcs

    out["statistic_ha"], out["statistic_source"] = statistic.hectares, statistic.source
    if statistic.note:
        out["statistic_note"] = statistic.note
    if complete:
        out.update({"mapped_ha": mapped_m2 / HA, "comparison": "whole province"})
    elif est is not None:
        out.update(
            {
                "mapped_ha": est.total / HA,
                "estimate": True,
                "comparison": "sample estimate of the province",
                "ci95": _ci95_ha(est),
                "sample": _estimate_dict(est),
            }
        )
        if statistic.hectares and est.ci95:
            out["pcs_ci95"] = [v / HA / statistic.hectares for v in est.ci95]
            out["pcs_ci95_from"] = "ratio estimator: the province total's 95 % interval / the statistic"
    else:
        out["note"] = (
            "the run mapped part of the province but not a spread sample of its blocks (a bbox); "
            "a whole-province statistic cannot be compared with it"
        )
    if out["mapped_ha"] is not None:
        out["pcs"] = pcs(out["mapped_ha"], statistic)
        if out["pcs"] is None and not statistic.available:
            out["note"] = f"no statistic: {statistic.note}"


def _like_for_like_interval(out: dict, y: np.ndarray, sample_truth, complete: bool) -> None:
    """The block bootstrap of Σ mapped / Σ truth over the mapped blocks (a census has no sampling error)."""
    from mapper.validation.intervals import METHOD, ci95

    if complete:
        out["pcs_ci95_from"] = "none: the whole province was mapped (a census has no sampling error)"
        return
    if out["pcs"] is None or sample_truth is None:
        return
    truth = np.asarray(list(sample_truth), np.float64)
    if truth.shape != y.shape:
        raise ValueError(f"sample_truth has {truth.shape} values for {y.shape} mapped blocks")
    out["pcs_ci95"] = ci95(y, truth)
    if out["pcs_ci95"] is not None:
        out["pcs_ci95_from"] = METHOD


def _ci95_ha(est) -> list[float] | None:
    return [v / HA for v in est.ci95] if est.ci95 else None


def _estimate_dict(est) -> dict:
    """A RatioEstimate in hectares, with the method."""
    from mapper.validation.sampling import METHOD

    return {
        "n": est.n,
        "population_blocks": est.population,
        "ratio": est.ratio,
        "estimate_ha": est.total / HA,
        "se_ha": est.se / HA if est.se is not None else None,
        "ci95": _ci95_ha(est),
        "fpc": est.fpc,
        "method": METHOD,
    }


@dataclass
class _ProvinceBlocks:
    """How much of a province the run planned and mapped."""

    done: int
    planned: int
    in_province: int  # the province's blocks in the run's region
    covers: bool  # the run's region covers the whole province

    @property
    def complete(self) -> bool:
        return self.covers and self.in_province > 0 and self.done == self.in_province


class _ProvinceComparer:
    """The area comparison of each province of a run; what the provinces share is read once."""

    def __init__(self, run: RunData, unit_truth: dict | None, user_stats: dict | None, block_truth: dict | None):
        self.run, self.unit_truth, self.user_stats = run, unit_truth, user_stats
        self.block_truth = block_truth if unit_truth is not None else None  # world runs: block -> {pcode: m²}
        self.seed = run.world_seed
        self.per_block_units = {b: r.get("provinces", {}) for b, r in run.final.items()}
        self.blocks_in = run.store.meta("region_blocks_per_province", {}) or {}
        self.status = {r[0]: r[0] in run.final for r in run.rows}

    def blocks(self, province) -> _ProvinceBlocks:
        run = self.run
        planned_here = [b for b, p in run.province_of.items() if p == province.name]
        return _ProvinceBlocks(
            done=sum(self.status[b] for b in planned_here),
            planned=len(planned_here),
            in_province=int(self.blocks_in.get(province.name, len(planned_here))),
            covers=run.region.kind != "bbox" or run.region.geometry.contains(province.geometry),
        )

    def compare(self, province, blocks: _ProvinceBlocks) -> dict:
        from mapper.grid.area import geodesic_area_m2

        mapped = [b for b in self.run.done if self.per_block_units[b].get(province.pcode) is not None]
        sample = [self.per_block_units[b][province.pcode] for b in mapped]
        truth = None
        if self.block_truth is not None:
            truth = [self.block_truth.get(b, {}).get(province.pcode, 0.0) for b in mapped]
        y = [c for c, _ in sample]
        x = [land for _, land in sample]
        statistic, kind = _statistic_for(province, self.run, self.user_stats)
        seed = self.seed
        comparison = province_comparison(
            mapped_m2=float(sum(y)),
            land_m2=float(sum(x)),
            sample_y=y,
            sample_x=x,
            province_area_m2=geodesic_area_m2(province.geometry),
            blocks_in_province=blocks.in_province,
            complete=blocks.complete,
            spread_sample=blocks.covers and not blocks.complete,
            statistic=statistic,
            same_area_truth_m2=(self.unit_truth or {}).get("provinces", {}).get(province.pcode, 0.0),
            truth_label=(f"simulated world, seed {seed}: true cropland of the same pixels" if seed is not None else ""),
            sample_truth=truth,
        )
        if kind == "world" and "province_estimate" in comparison:
            _add_world_statistic(comparison["province_estimate"], seed, province)
        return comparison


def _add_world_statistic(estimate: dict, seed: int, province) -> None:
    """The world's province statistic beside a sample's whole-province estimate."""
    from mapper.maps.statistics import pcs, world_statistic

    stat = world_statistic(seed, province)
    estimate.update(
        {
            "statistic_ha": stat.hectares,
            "statistic_source": stat.source,
            "pcs": pcs(estimate["estimate_ha"], stat),
            "ci95_covers_statistic": (
                (estimate["ci95"][0] <= stat.hectares <= estimate["ci95"][1]) if estimate["ci95"] else None
            ),
        }
    )


def province_sections(
    run: RunData,
    per_province: dict[str, Totals],
    unit_truth,
    user_stats,
    extra_rounds: int,
    truth_label: str | None,
    *,
    block_truth: dict | None = None,
    stop_rule: str = "point",
) -> list[dict]:
    """The report's provinces: each province's area comparison, the final map's IoU and semantic correctness
    over its blocks with their intervals, its share of poor imagery, and its stop verdict (by `stop_rule`)."""
    from mapper.validation.imagery import poor_imagery

    comparer = _ProvinceComparer(run, unit_truth, user_stats, block_truth)
    poor = poor_imagery(run)
    out = []
    for province in run.region.provinces:
        blocks = comparer.blocks(province)
        comparison = comparer.compare(province, blocks)
        scores = _final_map_scores(per_province.get(province.name) or Totals(run.maps))
        entry = {
            "province": province.name,
            "pcode": province.pcode,
            **comparison,
            "blocks_done": int(blocks.done),
            "blocks_planned": blocks.planned,
            "blocks_in_province": blocks.in_province,
            "region_covers_province": bool(blocks.covers),
            **scores,
            "poor_imagery": poor.get(province.name),
        }
        entry["stop"] = _province_stop(entry, extra_rounds, truth_label, stop_rule)
        out.append(entry)
    return out


def _province_stop(p: dict, extra_rounds: int, truth_label: str | None, stop_rule: str) -> dict:
    """The stop verdict of one province's entry: its values, intervals and share of poor imagery."""
    unmeasured = {
        "iou": f"no block of {p['province']} has truth" + ("" if truth_label else " (give --labels DIR)"),
        "semantic_correctness": f"no block of {p['province']} mapped",
        "pcs": p["note"] or "no comparison",
    }
    intervals = {"iou": p["iou_ci95"], "semantic_correctness": p["semantic_correctness_ci95"], "pcs": p["pcs_ci95"]}
    share = (p["poor_imagery"] or {}).get("share")
    return stop_verdict(p["iou"], p["semantic_correctness"], p["pcs"], extra_rounds, unmeasured=unmeasured,
                        intervals=intervals, rule=stop_rule, poor_imagery_share=share)  # fmt: skip


def _final_map_scores(totals: Totals) -> dict:
    """The final map's pooled IoU, and its semantic correctness (from the truth where any, else the model),
    with their block-bootstrap intervals."""
    from mapper.validation.intervals import ci95

    iou = pixel_metrics(totals.counts[FINAL])["iou"] if totals.blocks[FINAL] else None
    if totals.truth_classes[FINAL]:
        classes, source = totals.truth_classes[FINAL], "truth"
    else:
        classes, source = totals.model_classes[FINAL], "model"
    return {
        "iou": iou,
        "iou_ci95": ci95(*totals.iou_parts(FINAL)) if iou is not None else None,
        "truth_blocks": int(totals.blocks[FINAL]),
        "semantic_correctness": correct_rate(classes),
        "semantic_correctness_ci95": correct_ci95(classes),
        "semantic_correctness_from": source,
        "semantic_correctness_n": len(classes),
    }


def prefecture_sections(run: RunData, unit_truth, units) -> list[dict]:
    """World runs: each prefecture with mapped blocks against the world's truth of the same pixels."""
    from mapper.maps.statistics import within_criterion

    if unit_truth is None:
        return []
    sums: dict[str, np.ndarray] = {}
    for block_id in run.done:
        for code, (crop, land) in run.final[block_id].get("prefectures", {}).items():
            sums.setdefault(code, np.zeros(3))
            sums[code] += (crop, land, 1)
    frame = units["prefectures"]
    names = dict(zip(frame["code"], frame["name"], strict=True))
    out = []
    for code, (crop, land, blocks) in sums.items():
        if land <= 0:
            continue
        truth = unit_truth["prefectures"].get(code, 0.0)
        value = crop / truth if truth > 0 else None
        out.append(
            {
                "prefecture": names.get(code, code),
                "code": code,
                "province_pcode": code[:5],
                "mapped_ha": crop / HA,
                "statistic_ha": truth / HA,
                "statistic_source": f"simulated world, seed {run.world_seed}: true cropland of the same pixels",
                "pcs": value,
                "within_10pct": within_criterion(value),
                "land_ha_in_blocks": land / HA,
                "blocks_done": int(blocks),
                "comparison": "same area (world truth)",
            }
        )
    return sorted(out, key=lambda p: p["code"])
