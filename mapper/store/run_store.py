"""The run directory and its state database.

    RUN/
      run.json           what the run is: region, sources, world seed, models (sha256), mapper version
      config.yaml        the resolved config (tokens are never in it: configs name environment variables)
      state.sqlite       block × source × stage: status, attempts, error, seconds, small JSON results
      run.log            the log of every session of the run
      mosaics/SOURCE/BLOCK.tif   masks/SOURCE/BLOCK.tif   final/BLOCK.tif   polygons/blocks/BLOCK.parquet
      blocks.parquet  map/  polygons/  area.csv  report/  summary.json     (the outputs, rebuilt at the end)

**Only the driver writes state.sqlite** (workers write their files and return small results), so the run works
unchanged on a cluster whose nodes share the run directory. A stage's file is written atomically before the
driver records the stage done; a kill between the two only makes the stage run again, which rewrites the
same bytes. Each record is committed in its own transaction (SQLite's journal makes it atomic), so a
`kill -9` loses at most the results that were in flight.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mapper.store.atomic import atomic_write_text
from mapper.store.json_file import read_json

RUN_FORMAT = "mapper-run/1"
RUN_FILE = "run.json"
STATE_FILE = "state.sqlite"
BLOCK_LEVEL = ""  # the `source` of block-level stages (features, decide, final)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    seq INTEGER PRIMARY KEY,         -- planning order: the order blocks are worked through
    block_id TEXT NOT NULL UNIQUE,
    ix INTEGER NOT NULL, iy INTEGER NOT NULL,
    province TEXT, frac_inside REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    block_id TEXT NOT NULL, source TEXT NOT NULL, stage TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'retry', 'failed')),
    attempts INTEGER NOT NULL, error TEXT, seconds REAL, result TEXT, updated REAL NOT NULL,
    PRIMARY KEY (block_id, source, stage)
);
"""


class RunStoreError(ValueError):
    """A run directory that cannot be used as asked (another run's, unwritable); the message names the fix."""


@dataclass(frozen=True)
class RunLayout:
    """Where each file of a run lives."""

    root: Path

    def mosaic(self, source: str, block_id: str) -> Path:
        return self.root / "mosaics" / source / f"{block_id}.tif"

    def mask(self, source: str, block_id: str) -> Path:
        return self.root / "masks" / source / f"{block_id}.tif"

    def final(self, block_id: str) -> Path:
        return self.root / "final" / f"{block_id}.tif"

    def block_polygons(self, block_id: str) -> Path:
        return self.root / "polygons" / "blocks" / f"{block_id}.parquet"

    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def log_file(self) -> Path:
        return self.root / "run.log"


@dataclass(frozen=True)
class TaskRecord:
    block_id: str
    source: str
    stage: str
    status: str
    attempts: int
    error: str | None
    seconds: float | None
    result: dict | None


def describe_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """'key: saved -> now' for every leaf that differs between two JSON-like dicts."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += describe_differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {json.dumps(a)} in the run directory, {json.dumps(b)} now")
    return out


def check_writable(root: Path) -> None:
    """Fail before any work when the run directory cannot be created or written."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{time.time_ns()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RunStoreError(f"cannot write the run directory {root}: {e.strerror or e}; choose another --out") from None


class RunStore:
    """The state database of one run (driver side). Open with `create` or `open`."""

    def __init__(self, layout: RunLayout, conn: sqlite3.Connection, identity: dict):
        self.layout = layout
        self.conn = conn
        self.identity = identity
        self._in_transaction = False

    # ------------------------------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, root: Path | str, identity: dict, config_yaml: str) -> RunStore:
        """A new run directory (refused when `root` already holds a run: resume it or choose another)."""
        layout = RunLayout(Path(root))
        check_writable(layout.root)
        if layout.run_file.exists():
            raise RunStoreError(
                f"{layout.root} already holds a run; continue it with `mapper run --resume {layout.root}`, "
                "or give another --out"
            )
        atomic_write_text(layout.root / "config.yaml", config_yaml)
        store = cls(layout, _connect(layout.state_file), identity)
        atomic_write_text(layout.run_file, json.dumps({"format": RUN_FORMAT, **identity}, indent=1))  # last: marks it
        return store

    @classmethod
    def open(cls, root: Path | str, identity: dict | None = None) -> RunStore:
        """An existing run; with `identity`, refused when it differs from the saved one (differences named)."""
        layout = RunLayout(Path(root))
        if not layout.run_file.exists():
            raise RunStoreError(f"{layout.root} is not a run directory (no {RUN_FILE}); start a run with --out")
        fix = "start a new run with another --out (was it written by another mapper version?)"
        saved = read_json(layout.run_file, RUN_FORMAT, "a mapper run", fix, RunStoreError)
        saved.pop("format")
        if identity is not None:
            diff = describe_differences(_comparable(saved), _comparable(identity))
            if diff:
                raise RunStoreError(
                    f"--resume {layout.root}: this run was started with another configuration, so its blocks "
                    "would not match; resume it with the same options and config, or start a new run with --out. "
                    "Differences: " + "; ".join(diff)
                )
        check_writable(layout.root)
        return cls(layout, _connect(layout.state_file), saved)

    @classmethod
    def read_only(cls, root: Path | str) -> RunStore:
        """An existing run opened for reading only (a viewer beside a driver that may still be writing it)."""
        layout = RunLayout(Path(root))
        if not layout.run_file.exists() or not layout.state_file.exists():
            raise RunStoreError(f"{layout.root} is not a run directory (no {RUN_FILE} and {STATE_FILE}); "
                                "give a directory that `mapper run --out DIR` created")  # fmt: skip
        saved = read_json(layout.run_file, RUN_FORMAT, "a mapper run", "give a run of this mapper version",
                          RunStoreError)  # fmt: skip
        saved.pop("format")
        uri = f"{layout.state_file.resolve().as_uri()}?mode=ro"
        return cls(layout, sqlite3.connect(uri, uri=True, check_same_thread=False), saved)

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group records into one commit (rolled back as a whole on error or kill)."""
        self._in_transaction = True
        try:
            with self.conn:
                yield
        finally:
            self._in_transaction = False

    # ------------------------------------------------------------------------------------------ blocks
    def planned(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]

    def add_blocks(self, rows: Iterable[tuple[str, int, int, str | None, float]], meta: dict | None = None) -> int:
        """Record the planned blocks (block_id, ix, iy, province, frac_inside) and facts about the plan (JSON
        values) in one transaction."""
        with self.conn:
            self.conn.executemany(
                "INSERT INTO blocks (block_id, ix, iy, province, frac_inside) VALUES (?, ?, ?, ?, ?)", rows
            )
            self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                  [(k, json.dumps(v)) for k, v in (meta or {}).items()])  # fmt: skip
        return self.planned()

    def meta(self, key: str, default=None):
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value) -> None:
        """Record a fact about the run (a JSON value), replacing what the key held."""
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def blocks(self, after_seq: int = 0, limit: int = 10_000) -> list[tuple[int, str]]:
        """(seq, block_id) in planning order, a page at a time (a country has 383,000 blocks)."""
        return self.conn.execute(
            "SELECT seq, block_id FROM blocks WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        ).fetchall()

    def block_rows(self) -> Iterator[tuple]:
        yield from self.conn.execute("SELECT block_id, ix, iy, province, frac_inside FROM blocks ORDER BY seq")

    # ------------------------------------------------------------------------------------------ tasks
    def tasks_of(self, block_ids: Sequence[str]) -> dict[str, list[TaskRecord]]:
        """Every recorded task of these blocks."""
        out: dict[str, list[TaskRecord]] = {b: [] for b in block_ids}
        for i in range(0, len(block_ids), 500):
            chunk = list(block_ids[i : i + 500])
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(
                "SELECT block_id, source, stage, status, attempts, error, seconds, result FROM tasks "
                f"WHERE block_id IN ({marks})",
                chunk,
            ):
                out[row[0]].append(_record(row))
        return out

    def record(self, block_id: str, source: str, stage: str, *, result: dict | None = None, error: str | None = None,
               seconds: float | None = None, max_attempts: int = 1) -> TaskRecord:  # fmt: skip
        """Record one attempt: done (with its result) or failed (retry until `max_attempts`, then failed).
        Committed at once, or with the enclosing `transaction()`."""
        row = self.conn.execute(
            "SELECT attempts FROM tasks WHERE block_id = ? AND source = ? AND stage = ?", (block_id, source, stage)
        ).fetchone()
        attempts = (row[0] if row else 0) + 1
        status = "done" if error is None else ("failed" if attempts >= max_attempts else "retry")
        payload = json.dumps(result, sort_keys=True, allow_nan=True) if result is not None else None
        self.conn.execute(
            "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (block_id, source, stage, status, attempts, error, seconds, payload, time.time()),
        )
        if not self._in_transaction:
            self.conn.commit()
        return TaskRecord(block_id, source, stage, status, attempts, error, seconds, result)

    def retry_failed(self) -> int:
        """Give every failed task its attempts again (after their cause was fixed); returns how many."""
        with self.conn:
            cur = self.conn.execute("UPDATE tasks SET status = 'retry', attempts = 0 WHERE status = 'failed'")
        return cur.rowcount

    def stage_counts(self) -> dict[tuple[str, str], int]:
        """{(stage, status): tasks}."""
        rows = self.conn.execute("SELECT stage, status, COUNT(*) FROM tasks GROUP BY stage, status")
        return {(stage, status): n for stage, status, n in rows}

    def results(self, stage: str, source: str = BLOCK_LEVEL) -> Iterator[tuple[str, dict]]:
        """(block_id, result) of the done tasks of a stage, in planning order."""
        rows = self.conn.execute(
            "SELECT t.block_id, t.result FROM tasks t JOIN blocks b ON b.block_id = t.block_id "
            "WHERE t.stage = ? AND t.source = ? AND t.status = 'done' ORDER BY b.seq",
            (stage, source),
        )
        for block_id, payload in rows:
            yield block_id, json.loads(payload)

    def failures(self) -> list[TaskRecord]:
        rows = self.conn.execute(
            "SELECT block_id, source, stage, status, attempts, error, seconds, result FROM tasks "
            "WHERE status != 'done' ORDER BY block_id, stage, source"
        )
        return [_record(r) for r in rows]

    def stage_seconds(self) -> dict[str, float]:
        """Worker seconds per stage over the done tasks (the per-stage time breakdown)."""
        rows = self.conn.execute("SELECT stage, SUM(seconds) FROM tasks WHERE status = 'done' GROUP BY stage")
        return {stage: float(s or 0.0) for stage, s in rows}


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")  # readers (progress, a second terminal) never block the driver
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses nothing committed
    conn.executescript(_SCHEMA)
    conn.isolation_level = "DEFERRED"
    return conn


def _record(row) -> TaskRecord:
    return TaskRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7]) if row[7] else None)


def _comparable(identity: dict) -> dict:
    """The parts of a run's identity that must match to resume it (not when or where it was created)."""
    return {k: v for k, v in identity.items() if k != "created"}
