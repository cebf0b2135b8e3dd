"""What a validation was computed from, so that `mapper report` can reuse RUN_DIR/validation.json instead of
validating a province-sized run again (hours of truth rendering or label reading).

    validation_basis(run, labels, statistics, extra_rounds, stop_rule="point") -> dict

The basis names the package version, the run's identity (run.json), every done block's final result and
final-map file (size and modification time), the labels (every file's size and modification time) and
the statistics table (its SHA-256), the extra rounds, the stop rule, the intervals' method (seed and
resamples of the bootstrap; a report saved before intervals existed is not reused) and what a block's record
holds (one saved before the per-block areas is not reused). Two validations with equal bases read the same
inputs, so their reports are equal; anything that changes a number changes the basis."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# what each block's record holds: a saved report without it is validated again (a campaign's paired acceptance
# reads the final map's areas per block)
BLOCK_RECORDS = "iou, precision, recall, truth class and TP/FP/FN hectares per map"


def validation_basis(
    run, labels: Path | str | None, statistics: Path | str | None, extra_rounds: int, stop_rule: str = "point"
) -> dict:
    from mapper.validation.intervals import METHOD

    from mapper import __version__

    return {
        "mapper_version": __version__,
        "run": _digest(json.dumps(run.identity, sort_keys=True, default=str).encode()),
        "final_blocks": _final_digest(run),
        "labels": _tree_digest(Path(labels)) if labels is not None else None,
        "statistics": _digest(Path(statistics).read_bytes()) if statistics is not None else None,
        "extra_rounds": int(extra_rounds),
        "stop_rule": stop_rule,
        "intervals": METHOD,
        "block_records": BLOCK_RECORDS,
    }


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _final_digest(run) -> str:
    h = hashlib.sha256()
    for block_id in sorted(run.final):
        stat = run.layout.final(block_id).stat()
        record = [block_id, run.final[block_id], stat.st_size, stat.st_mtime_ns]
        h.update(json.dumps(record, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _tree_digest(root: Path) -> str:
    """Sizes and modification times of every file under a labels directory (a file names itself)."""
    h = hashlib.sha256()
    paths = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for p in paths:
        stat = p.stat() if p.exists() else None
        entry = [str(p.relative_to(root) if root.is_dir() else p), stat.st_size if stat else None,
                 stat.st_mtime_ns if stat else None]  # fmt: skip
        h.update(json.dumps(entry).encode())
    return h.hexdigest()
