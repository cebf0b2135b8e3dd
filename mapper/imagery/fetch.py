"""Fetch block mosaics for a list of blocks: resumable (existing files are kept), failures recorded."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from mapper.config.loader import save_resolved_config
from mapper.grid.blocks import Block
from mapper.imagery.mosaic import write_block_mosaic
from mapper.imagery.sources import open_source
from mapper.store.atomic import atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class FetchSummary:
    written: int = 0
    skipped: int = 0
    failed: int = 0
    missing_tiles: int = 0
    failures: dict[str, str] = field(default_factory=dict)


def spread_indices(n_items: int, n: int) -> list[int]:
    """Indices of n items evenly spread over n_items (deterministic), so a small trial covers the whole region."""
    if n <= 0:
        raise ValueError("--max-blocks must be at least 1")
    if n >= n_items:
        return list(range(n_items))
    step = n_items / n
    return [int(i * step + step / 2) for i in range(n)]


def spread_sample(ids: list[str], n: int) -> list[str]:
    """n ids evenly spread over the list (see spread_indices)."""
    return [ids[i] for i in spread_indices(len(ids), n)]


def fetch_blocks(config, source_name: str, block_ids: list[str], out_dir: Path, progress: bool = True) -> FetchSummary:
    from tqdm import tqdm

    source = open_source(source_name, config)  # fails here, before any work, on a missing token
    out = Path(out_dir) / source_name
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(config, out / "config.yaml")
    summary = FetchSummary()
    try:
        for block_id in tqdm(block_ids, desc=source_name, unit="block", disable=not progress):
            path = out / f"{block_id}.tif"
            if path.exists():
                summary.skipped += 1
                continue
            try:
                mosaic = write_block_mosaic(source, Block.parse(block_id), path, zoom=config.zoom,
                                            **config.mosaic.model_dump())  # fmt: skip
            except Exception as e:  # one bad block must not stop the others; it is recorded
                log.exception("block %s failed", block_id)
                summary.failed += 1
                summary.failures[block_id] = f"{type(e).__name__}: {e}"
                continue
            summary.written += 1
            summary.missing_tiles += len(mosaic.missing_tiles)
    finally:
        source.close()
    failures_file = out / "failures.json"
    if summary.failures:
        atomic_write_text(failures_file, json.dumps(summary.failures, indent=1))
    elif failures_file.exists():  # everything from an earlier run's failures has been done now
        failures_file.unlink()
    return summary
