"""What the STAC export reads of a run directory, read-only: the run as validation reads it (identity, config,
state, what is missing), plus each done block's times and coverage types, and whether a driver holds the run.

A run still being written, or with pending or failed blocks, is exported as it stands: the done blocks
become items and the rest is named, so the catalog says what it lacks.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from mapper.store.json_file import read_json
from mapper.store.run_lock import LOCK_FILE
from mapper.store.run_store import RUN_FILE, RUN_FORMAT, RunLayout

_FIX = "give the directory a `mapper run --out DIR` created"


class StacExportError(ValueError):
    """A run directory, --out or --href-base that cannot be exported as given; the message names the fix."""


@dataclass(frozen=True)
class BlockTimes:
    """When the run fetched a block's imagery and finished its final mask (UTC)."""

    fetched: dt.datetime | None
    finished: dt.datetime | None


@dataclass
class RunInfo:
    """A run directory as the export sees it."""

    root: Path
    identity: dict
    config: object  # MapperConfig
    sources: list[str]
    region_name: str
    done: list[tuple[str, str | None]]  # (block_id, province) of the blocks with a final mask, in planning order
    final: dict[str, dict]  # block_id -> result of the final stage
    coverage: dict[str, dict[str, str]]  # block_id -> {source: coverage type}
    times: dict[str, BlockTimes]
    planned: int
    missing: dict = field(default_factory=dict)  # blocks_pending, blocks_failed, files (as validation names them)
    in_progress: bool = False  # a driver.lock is there: a driver works on the run (or was killed)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root)

    @property
    def zoom(self) -> int:
        return int(self.config.zoom)

    @property
    def world_seed(self) -> int | None:
        """The world seed when every source is the simulated world, else None."""
        if self.sources and self.config.simulated(self.sources):
            return int(self.config.world.seed)
        return None

    @property
    def created(self) -> dt.datetime | None:
        return _parse_time(self.identity.get("created"))


def read_run(run_dir: Path | str) -> RunInfo:
    """The run in `run_dir`; StacExportError when it is not one or has no block to export."""
    from mapper.validation.errors import ValidationInputError
    from mapper.validation.run_data import open_run

    root = Path(run_dir)
    _refuse_dry_run(root)
    try:
        run = open_run(root)
    except ValidationInputError as e:
        raise StacExportError(str(e)) from None
    try:
        if not run.done:
            raise StacExportError(
                f"{root} has no finished block yet (none has a final mask): nothing to export; "
                f"finish it with `mapper run --resume {root}`"
            )
        return RunInfo(
            root=root,
            identity=run.identity,
            config=run.config,
            sources=run.sources,
            region_name=run.region.name,
            done=[(r[0], r[3]) for r in run.rows if r[0] in run.final],
            final=run.final,
            coverage=_coverage(run.store, run.sources),
            times=_block_times(run.store.conn),
            planned=len(run.rows),
            missing=run.missing,
            in_progress=(root / LOCK_FILE).exists(),
        )
    finally:
        run.close()


def _refuse_dry_run(root: Path) -> None:
    """A dry run has no imagery and no maps (validation's reader would say "nothing to validate")."""
    run_file = root / RUN_FILE
    if root.is_dir() and run_file.is_file():
        identity = read_json(run_file, RUN_FORMAT, "a mapper run", _FIX, StacExportError)
        if identity.get("dry_run"):
            raise StacExportError(f"{root} is a dry run (no imagery, no maps): there is nothing to export; "
                                  "export a run made without --dry-run")  # fmt: skip


def _coverage(store, sources: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for source in sources:
        for block_id, result in store.results("iqa", source):
            if isinstance(result, dict) and result.get("coverage"):
                out.setdefault(block_id, {})[source] = str(result["coverage"])
    return out


def _block_times(conn: sqlite3.Connection) -> dict[str, BlockTimes]:
    """Per block, when its imagery was last fetched and its final mask recorded (the state database keeps the
    time of each task's last record; RunStore has no reader of it, so it is read here, read-only)."""
    rows = conn.execute(
        "SELECT block_id, MAX(CASE WHEN stage = 'fetch' THEN updated END), "
        "MAX(CASE WHEN stage = 'final' THEN updated END) FROM tasks WHERE status = 'done' GROUP BY block_id"
    )
    return {b: BlockTimes(_from_epoch(f), _from_epoch(d)) for b, f, d in rows}


def _from_epoch(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, tz=dt.UTC).replace(microsecond=0)


def _parse_time(text: object) -> dt.datetime | None:
    """run.json's "created" ("2026-12-07T00:40:54+0000") as an aware datetime in UTC."""
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").astimezone(dt.UTC)
    except ValueError:
        return None
