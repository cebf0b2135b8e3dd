"""Three-level validation of a finished run (DESIGN.md §8; CropLayer paper Sect. 3.2.3-3.2.4, 4.2.3, 4.2.5).

    validate_run(run_dir, labels=None, statistics=None, extra_rounds=0, stop_rule="point") -> dict   the report
    stop_verdict(iou, semantic_correctness, pcs, extra_rounds=0, *, intervals, rule, poor_imagery_share)
                                                                                     the active-learning stop
    pixel_counts(pred, truth, row_areas) / pixel_metrics(counts)                     area-weighted IoU parts
    format_text(report) -> str                                                       the short readable table

This module puts the report together; each part is documented in its own module:

    run_data.py    the run directory, read-only, and what is missing from it
    truth.py       the truth: labelled blocks (--labels), else the simulated world's
    pixels.py      1. pixel level: IoU, precision, recall in true ground area
    semantic.py    2. block level: the semantic correctness rate, from the truth or the correctness model
    blocks.py      the one pass over the done blocks that scores levels 1 and 2
    provinces.py   3. province level: mapped cropland against a reference area (PCS)
    stop.py        4. the active-learning stop verdict per province (rule point or lower_bound)
    intervals.py   the 95 % intervals (`ci95`) of the pooled ratios: a block bootstrap, seeded
    sampling.py    the ratio estimator of a province from a sample of its blocks, with its interval
    imagery.py     each province's share of blocks with poor imagery (the waiver for cloudy provinces)
    sample_size.py how many validation blocks a decision needs at the spread seen
    text.py        the readable summary

Every headline number carries its 95 % interval beside it: `ci95` in pixel_iou.<map> and
semantic_correctness.<map>, `iou_ci95`, `semantic_correctness_ci95` and `pcs_ci95` (with `pcs_ci95_from`) in
each province; `intervals` says how they were computed.
"""

from __future__ import annotations

import json
from pathlib import Path

from mapper.validation.basis import validation_basis
from mapper.validation.blocks import evaluate_blocks
from mapper.validation.errors import ValidationInputError
from mapper.validation.intervals import CONFIDENCE, METHOD, RESAMPLES, SEED
from mapper.validation.jsonready import json_ready
from mapper.validation.pixels import pixel_counts, pixel_metrics, pixel_section
from mapper.validation.provinces import prefecture_sections, province_comparison, province_sections
from mapper.validation.run_data import RunData, open_run
from mapper.validation.semantic import final_coverage, final_model_class, semantic_section
from mapper.validation.stop import RULES, STOP_THRESHOLDS, stop_verdict
from mapper.validation.text import format_text
from mapper.validation.truth import LabelSet

INTERVALS = {
    "confidence": CONFIDENCE,
    "method": METHOD,
    "resamples": RESAMPLES,
    "seed": SEED,
    "pcs": "pcs_ci95_from in each province: the ratio estimator for a sample estimate, else the block bootstrap",
}

__all__ = [  # the public names, importable from here as before the split
    "STOP_THRESHOLDS",
    "RunData",
    "ValidationInputError",
    "final_coverage",
    "final_model_class",
    "format_text",
    "open_run",
    "pixel_counts",
    "pixel_metrics",
    "province_comparison",
    "stop_verdict",
    "validate_run",
]


def validate_run(
    run_dir: Path | str,
    labels: Path | str | None = None,
    statistics: Path | str | None = None,
    extra_rounds: int = 0,
    progress: bool = False,
    write: bool = True,
    reuse: bool = False,
    stop_rule: str = "point",
) -> dict:
    """The three-level validation of a run directory (see the module docstrings), as a JSON-ready dict with the
    keys pixel_iou, semantic_correctness, provinces, prefectures, blocks, missing, run, and `basis` (what it was
    computed from: mapper.validation.basis). With `write` it is
    also saved atomically as RUN_DIR/validation.json (`written` names the file, or `write_error` says why not).
    With `reuse`, a saved validation.json whose basis equals the current one is returned as it is (with
    `reused` naming the file) instead of validating again. `stop_rule`: point or lower_bound
    (validation/stop.py)."""
    from mapper.maps.statistics import read_user_statistics

    if extra_rounds < 0:
        raise ValidationInputError(f"--extra-rounds {extra_rounds}: give the number of extra rounds, 0 or more")
    if stop_rule not in RULES:
        raise ValidationInputError(f"--stop-rule {stop_rule}: give one of {', '.join(RULES)}")
    user_stats = read_user_statistics(statistics) if statistics is not None else None  # StatisticsError names rows
    saved_path = Path(run_dir) / "validation.json"
    run = open_run(run_dir)
    try:
        basis = validation_basis(run, labels, statistics, extra_rounds, stop_rule)
        saved = _saved_report(saved_path) if reuse else None
        if saved is not None and saved.get("basis") == basis:
            return {**saved, "reused": str(saved_path)}
        report = _build_report(run, labels, user_stats, extra_rounds, progress, stop_rule)
        report["basis"] = basis
    finally:
        run.close()
    report = json_ready(report)
    if write:
        _write_report(report, Path(run_dir) / "validation.json")
    return report


def _build_report(
    run: RunData, labels: Path | str | None, user_stats, extra_rounds: int, progress: bool, stop_rule: str
) -> dict:
    from mapper.maps.units import unit_frames
    from mapper.run.plan import region_units

    units = unit_frames(region_units(run.region))
    seed = run.world_seed
    label_set = LabelSet(Path(labels), run) if labels is not None else None
    if label_set is not None:
        truth_label = f"labels {Path(labels)}"
    else:
        truth_label = f"world seed {seed}" if seed is not None else None
    evaluation = evaluate_blocks(run, label_set, seed, units, progress)
    pixel = pixel_section(evaluation.overall, run.maps, truth_label)
    if label_set is not None:
        pixel["labels"] = label_set.summary()
    missing = {**run.missing, "files": run.missing["files"] + evaluation.problems}
    unit_truth = evaluation.unit_truth
    report = {
        "run": _run_summary(run),
        "complete": not (missing["blocks_pending"] or missing["blocks_failed"] or missing["files"]),
        "missing": missing,
        "thresholds": dict(STOP_THRESHOLDS),
        "stop_rule": stop_rule,
        "extra_rounds": int(extra_rounds),
        "intervals": INTERVALS,
        "pixel_iou": pixel,
        "semantic_correctness": semantic_section(evaluation.overall, run.maps, truth_label),
        "provinces": _provinces(run, evaluation, user_stats, extra_rounds, truth_label, stop_rule),
        "prefectures": prefecture_sections(run, unit_truth, units),
        "blocks": evaluation.records,
    }
    if unit_truth is None:
        report["prefectures_note"] = "official statistics are per province; prefectures are compared in world runs"
    return report


def _provinces(run: RunData, evaluation, user_stats, extra_rounds: int, truth_label, stop_rule: str) -> list[dict]:
    return province_sections(
        run,
        evaluation.per_province,
        evaluation.unit_truth,
        user_stats,
        extra_rounds,
        truth_label,
        block_truth=evaluation.block_truth,
        stop_rule=stop_rule,
    )


def _run_summary(run: RunData) -> dict:
    return {
        "dir": str(run.root),
        "region": run.region.name,
        "region_kind": run.region.kind,
        "sources": run.sources,
        "world_seed": run.identity.get("world_seed"),
        "max_blocks": run.identity.get("max_blocks"),
        "blocks_planned": len(run.rows),
        "blocks_done": len(run.done),
    }


def _saved_report(path: Path) -> dict | None:
    """An earlier validation.json, or None when there is none or it cannot be read (then validate again)."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict):
        return None
    return {k: v for k, v in saved.items() if k != "written"}


def _write_report(report: dict, path: Path) -> None:
    """Save the report atomically; `written` names the file, or `write_error` says why not."""
    from mapper.store.atomic import atomic_write_text

    try:
        atomic_write_text(path, json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        report["written"] = str(path)
    except OSError as e:
        report["write_error"] = f"cannot write {path}: {e.strerror or e}"
