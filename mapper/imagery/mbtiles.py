"""The tile cache: one MBTiles 1.3 file per source, shared across runs and processes, readable by QGIS/GDAL.

Only bodies that decoded as imagery are stored; errors, placeholders and missing tiles never are, so a
cached tile is always served as-is and a missing one is asked for again next time.

Layout (https://github.com/mapbox/mbtiles-spec/blob/master/1.3/spec.md): `metadata(name, value)` and
`tiles(zoom_level, tile_column, tile_row, tile_data)` with a unique index; `tile_row` counts from the south
(TMS), i.e. `(2**z - 1) - y` of the XYZ scheme used everywhere else in mapper.

Concurrency: WAL journal and a busy timeout, so several processes (fetch actors, a second run) can share a
file; within a process one connection is guarded by a lock, since the HTTP pool fetches in many threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mercantile

from mapper.imagery.decode import (
    TileDecodeError,
    check_complete,
    decode_tile,
    sniff_format,
)
from mapper.imagery.tiles import TileKey

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 60.0
# `PRAGMA quick_check` reads every page; beyond this size it is left to `mapper cache check`.
QUICK_CHECK_MAX_BYTES = 1 << 30
METADATA_FLUSH_EVERY = 2000
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_TILE_COLUMNS = {"zoom_level", "tile_column", "tile_row", "tile_data"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS metadata (name TEXT, value TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS name ON metadata (name);
CREATE TABLE IF NOT EXISTS tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB);
CREATE UNIQUE INDEX IF NOT EXISTS tile_index ON tiles (zoom_level, tile_column, tile_row);
"""


class CacheCorruptError(RuntimeError):
    """The cache file is damaged or not an MBTiles file; the message names the fix."""

    def __init__(self, path: Path | str, problem: str, source: str | None = None):
        path = Path(path)
        name = source or path.stem
        super().__init__(
            f"tile cache {path} is unusable: {problem}. Fix: run `mapper cache rebuild --source {name}` "
            f"(it moves the file aside and keeps every readable tile), "
            f"or delete {path} to start an empty cache"
        )
        self.path = path
        self.problem = problem


def tms_row(z: int, y: int) -> int:
    """XYZ row -> MBTiles (TMS) row; the flip is its own inverse."""
    return (1 << z) - 1 - y


def _is_corruption(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(e).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


def _check_body(body: bytes) -> str:
    """Cheap guard on `put`: the body must be a whole PNG/JPEG/WebP. Returns the MBTiles format name."""
    if not isinstance(body, bytes | bytearray | memoryview) or not body:
        raise ValueError("only non-empty image bodies can be cached")
    try:
        fmt = sniff_format(bytes(body[:64]))
        check_complete(bytes(body), fmt)
    except TileDecodeError as e:
        raise ValueError(f"refusing to cache a body that is not a whole image: {e}") from None
    return {"jpeg": "jpg"}.get(fmt, fmt)


@dataclass
class VerifyReport:
    """What `MBTilesCache.verify` found."""

    path: Path
    readable: bool = False
    integrity: list[str] = field(default_factory=list)  # PRAGMA quick_check lines other than 'ok'
    tiles: int = 0
    bad: list[tuple[int, int, int, str]] = field(default_factory=list)  # (z, x, y XYZ, reason)
    unreadable: list[str] = field(default_factory=list)  # rows SQLite could not read
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.readable and self.error is None and not self.integrity and not self.bad and not self.unreadable

    def summary(self) -> str:
        if not self.readable:
            return f"{self.path}: unreadable ({self.error})"
        lines = [f"{self.path}: {self.tiles} tiles read, {len(self.bad)} bad, {len(self.unreadable)} unreadable"]
        if self.error:
            lines.append(f"  problem: {self.error}")
        lines += [f"  integrity: {line}" for line in self.integrity[:10]]
        lines += [f"  {line}" for line in self.unreadable[:10]]
        if len(self.unreadable) > 10:
            lines.append(f"  ... and {len(self.unreadable) - 10} more unreadable rows")
        lines += [f"  bad tile {z}/{x}/{y}: {why}" for z, x, y, why in self.bad[:10]]
        if len(self.bad) > 10:
            lines.append(f"  ... and {len(self.bad) - 10} more bad tiles")
        lines.append("  OK" if self.ok else "  NOT OK")
        return "\n".join(lines)


@dataclass
class RebuildReport:
    path: Path
    moved_to: Path | None
    salvaged: int
    dropped: int
    note: str = ""

    def summary(self) -> str:
        where = f"old file moved to {self.moved_to}" if self.moved_to else "no old file"
        extra = f"; {self.note}" if self.note else ""
        return f"{self.path}: rebuilt with {self.salvaged} tiles kept, {self.dropped} dropped ({where}){extra}"


class MBTilesCache:
    """An MBTiles file of raw tile bodies keyed by XYZ (z, x, y)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, name: str):
        self.path = path
        self.name = name
        self._conn = conn
        self._lock = threading.RLock()
        self._extent: dict[int, list[int]] = {}  # z -> [xmin, xmax, ymin, ymax] (XYZ) of tiles put since open
        self._puts_since_flush = 0
        self._closed = False
        self._format_known = self._has_tiles()

    # ---------------------------------------------------------------------------------------------- open
    @classmethod
    def open(
        cls,
        path: Path | str,
        name: str | None = None,
        attribution: str = "",
        *,
        description: str | None = None,
        check: bool = True,
    ) -> MBTilesCache:
        """Open or create the cache; CacheCorruptError (naming the fix) when the file is damaged."""
        path = Path(path)
        name = name or path.stem
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists() and path.stat().st_size > 0
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as e:
            raise CacheCorruptError(path, f"cannot open it as SQLite ({e})", name) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if existed:
                cls._check_existing(conn, path, name, quick=check and path.stat().st_size <= QUICK_CHECK_MAX_BYTES)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.debug("tile cache %s: journal mode is %s (WAL unavailable here)", path, mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            for stmt in filter(None, (s.strip() for s in SCHEMA.split(";"))):
                conn.execute(stmt)
            defaults = {
                "name": name,
                "type": "baselayer",
                "version": "1",
                "description": description or f"mapper tile cache of source {name}",
                "attribution": attribution,
                "format": "png",
            }
            conn.executemany("INSERT OR IGNORE INTO metadata (name, value) VALUES (?, ?)", defaults.items())
            if attribution:
                conn.execute("UPDATE metadata SET value = ? WHERE name = 'attribution'", (attribution,))
            conn.execute("COMMIT")
        except CacheCorruptError:
            conn.close()
            raise
        except sqlite3.Error as e:
            conn.close()
            if _is_corruption(e):
                raise CacheCorruptError(path, f"SQLite reports: {e}", name) from None
            raise
        return cls(path, conn, name)

    @staticmethod
    def _check_existing(conn: sqlite3.Connection, path: Path, name: str, quick: bool) -> None:
        try:
            rows = conn.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')").fetchall()
        except sqlite3.DatabaseError as e:
            if _is_corruption(e) or "not a database" in str(e).lower():
                raise CacheCorruptError(path, f"it is not an SQLite database ({e})", name) from None
            raise
        kinds = dict(rows)
        missing = [t for t in ("metadata", "tiles") if t not in kinds]
        if missing:
            raise CacheCorruptError(path, f"it has no {' or '.join(missing)} table, so it is not an MBTiles file", name)
        if kinds["tiles"] != "table":
            raise CacheCorruptError(
                path, "its tiles are a view (a deduplicated MBTiles layout that mapper does not write)", name
            )
        cols = {r[1] for r in conn.execute("PRAGMA table_info(tiles)")}
        if not cols >= _TILE_COLUMNS:
            raise CacheCorruptError(path, f"its tiles table lacks {sorted(_TILE_COLUMNS - cols)}", name)
        if quick:
            try:
                result = [r[0] for r in conn.execute("PRAGMA quick_check")]
            except sqlite3.DatabaseError as e:
                raise CacheCorruptError(path, f"SQLite quick_check failed ({e})", name) from None
            if result != ["ok"]:
                raise CacheCorruptError(path, f"SQLite quick_check found damage: {'; '.join(result[:3])}", name)

    def _has_tiles(self) -> bool:
        row = self._conn.execute("SELECT 1 FROM tiles LIMIT 1").fetchone()
        return row is not None

    # ------------------------------------------------------------------------------------------- access
    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"tile cache {self.path} is closed")
            try:
                yield self._conn
            except sqlite3.DatabaseError as e:
                if _is_corruption(e):
                    raise CacheCorruptError(self.path, f"SQLite reports: {e}", self.name) from None
                raise

    def get(self, z: int, x: int, y: int) -> bytes | None:
        with self._db() as db:
            row = db.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                (z, x, tms_row(z, y)),
            ).fetchone()
        return bytes(row[0]) if row is not None and row[0] is not None else None

    def get_many(self, keys: Iterable[TileKey]) -> dict[TileKey, bytes]:
        out: dict[TileKey, bytes] = {}
        with self._db() as db:
            for z, x, y in keys:
                row = db.execute(
                    "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                    (z, x, tms_row(z, y)),
                ).fetchone()
                if row is not None and row[0] is not None:
                    out[(z, x, y)] = bytes(row[0])
        return out

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 3):
            return False
        z, x, y = key
        with self._db() as db:
            row = db.execute(
                "SELECT 1 FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                (z, x, tms_row(z, y)),
            ).fetchone()
        return row is not None

    def count(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT count(*) FROM tiles").fetchone()[0])

    def stored_keys(self) -> list[TileKey]:
        with self._db() as db:
            rows = db.execute("SELECT zoom_level, tile_column, tile_row FROM tiles").fetchall()
        return [(z, x, tms_row(z, r)) for z, x, r in rows]

    def metadata(self) -> dict[str, str]:
        with self._db() as db:
            return dict(db.execute("SELECT name, value FROM metadata").fetchall())

    def put(self, z: int, x: int, y: int, body: bytes) -> None:
        """Store a body that decoded as valid imagery (a cheap completeness check guards misuse)."""
        self.put_many([((z, x, y), body)])

    def put_many(self, items: Iterable[tuple[TileKey, bytes]]) -> int:
        rows = []
        fmt = None
        for (z, x, y), body in items:
            if not (0 <= x < (1 << z) and 0 <= y < (1 << z)):
                raise ValueError(f"tile {z}/{x}/{y} is outside the z{z} grid")
            fmt = fmt or _check_body(body)
            if rows:
                _check_body(body)
            rows.append((z, x, tms_row(z, y), sqlite3.Binary(bytes(body))))
        if not rows:
            return 0
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO tiles (zoom_level, tile_column, tile_row, tile_data) VALUES (?, ?, ?, ?)",
                    rows,
                )
                if not self._format_known and fmt:
                    db.execute("INSERT OR REPLACE INTO metadata (name, value) VALUES ('format', ?)", (fmt,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._format_known = True
            for z, x, r, _ in rows:
                y = tms_row(z, r)
                e = self._extent.get(z)
                if e is None:
                    self._extent[z] = [x, x, y, y]
                else:
                    e[0], e[1], e[2], e[3] = min(e[0], x), max(e[1], x), min(e[2], y), max(e[3], y)
            self._puts_since_flush += len(rows)
            if self._puts_since_flush >= METADATA_FLUSH_EVERY:
                self._flush_metadata(db)
        return len(rows)

    def delete(self, z: int, x: int, y: int) -> None:
        with self._db() as db:
            db.execute(
                "DELETE FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                (z, x, tms_row(z, y)),
            )

    def flush(self) -> None:
        with self._db() as db:
            self._flush_metadata(db)

    def _flush_metadata(self, db: sqlite3.Connection) -> None:
        """Union minzoom/maxzoom/bounds with the tiles put since the last flush (other processes' too)."""
        self._puts_since_flush = 0
        if not self._extent:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            meta = dict(db.execute("SELECT name, value FROM metadata WHERE name IN ('minzoom', 'maxzoom', 'bounds')"))
            zooms = list(self._extent)
            minzoom, maxzoom = min(zooms), max(zooms)
            w = s = float("inf")
            e = n = float("-inf")
            for z, (x0, x1, y0, y1) in self._extent.items():
                nw = mercantile.bounds(x0, y0, z)
                se = mercantile.bounds(x1, y1, z)
                w, s, e, n = min(w, nw.west), min(s, se.south), max(e, se.east), max(n, nw.north)
            try:
                if "minzoom" in meta:
                    minzoom = min(minzoom, int(meta["minzoom"]))
                if "maxzoom" in meta:
                    maxzoom = max(maxzoom, int(meta["maxzoom"]))
                if "bounds" in meta:
                    ow, os_, oe, on = (float(v) for v in meta["bounds"].split(","))
                    w, s, e, n = min(w, ow), min(s, os_), max(e, oe), max(n, on)
            except ValueError:
                pass  # unparsable old values: replace them
            values = {
                "minzoom": str(minzoom),
                "maxzoom": str(maxzoom),
                "bounds": f"{w!r},{s!r},{e!r},{n!r}",
                "center": f"{(w + e) / 2!r},{(s + n) / 2!r},{maxzoom}",
            }
            db.executemany("INSERT OR REPLACE INTO metadata (name, value) VALUES (?, ?)", values.items())
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._extent.clear()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                with contextlib.suppress(sqlite3.Error):
                    self._flush_metadata(self._conn)
            finally:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> MBTilesCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MBTilesCache({str(self.path)!r})"

    # ------------------------------------------------------------------------------- check and rebuild
    @staticmethod
    def verify(path: Path | str) -> VerifyReport:
        """quick_check plus a decode of every stored tile; never raises for a damaged file."""
        path = Path(path)
        report = VerifyReport(path)
        if not path.exists():
            report.error = "the file does not exist"
            return report
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
        except sqlite3.Error as e:
            report.error = f"cannot open it ({e})"
            return report
        try:
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            except sqlite3.DatabaseError as e:
                report.error = f"not an SQLite database ({e})"
                return report
            report.readable = True
            if not {"tiles", "metadata"} <= tables:
                report.error = "no tiles/metadata table: not an MBTiles file"
                return report
            try:
                report.integrity = [r[0] for r in conn.execute("PRAGMA quick_check") if r[0] != "ok"]
            except sqlite3.DatabaseError as e:
                report.integrity = [f"quick_check failed: {e}"]
            for item in _iter_tiles(conn):
                if isinstance(item, str):
                    report.unreadable.append(item)
                    continue
                z, col, row, blob = item
                report.tiles += 1
                why = _tile_problem(z, col, row, blob)
                if why:
                    y = tms_row(z, row) if isinstance(z, int) and isinstance(row, int) else row
                    report.bad.append((z, col, y, why))
        finally:
            conn.close()
        return report

    @classmethod
    def rebuild(cls, path: Path | str, name: str | None = None, attribution: str | None = None) -> RebuildReport:
        """Move the file aside to `<file>.corrupt-<timestamp>`; write a fresh one with every readable tile."""
        path = Path(path)
        name = name or path.stem
        if not path.exists():
            cls.open(path, name=name, attribution=attribution or "").close()
            return RebuildReport(path, None, 0, 0, note="there was no cache file; created an empty one")
        stamp = time.strftime("%Y%m%dT%H%M%S")
        moved = path.with_name(f"{path.name}.corrupt-{stamp}")
        i = 1
        while moved.exists():
            moved = path.with_name(f"{path.name}.corrupt-{stamp}-{i}")
            i += 1
        os.replace(path, moved)
        for suffix in ("-wal", "-shm", "-journal"):
            side = Path(f"{path}{suffix}")
            if side.exists():
                os.replace(side, Path(f"{moved}{suffix}"))

        salvaged = dropped = 0
        note = ""
        meta: dict[str, str] = {}
        tmp = path.with_name(f".{path.name}.rebuild-{os.getpid()}")
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
        new = None
        try:
            old = None
            try:
                old = sqlite3.connect(moved, timeout=BUSY_TIMEOUT_S)
                with contextlib.suppress(sqlite3.Error):
                    meta = dict(old.execute("SELECT name, value FROM metadata").fetchall())
                old.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as e:
                note = f"the old file is not readable SQLite ({e}); nothing salvaged"
                if old is not None:
                    old.close()
                old = None
            new = cls.open(
                tmp,
                name=meta.get("name", name),
                attribution=attribution if attribution is not None else meta.get("attribution", ""),
                description=meta.get("description"),
            )
            if old is not None:
                try:
                    batch: list[tuple[TileKey, bytes]] = []
                    for item in _iter_tiles(old):
                        if isinstance(item, str):
                            dropped += 1
                            continue
                        z, col, row, blob = item
                        if _tile_problem(z, col, row, blob):
                            dropped += 1
                            continue
                        batch.append(((z, col, tms_row(z, row)), bytes(blob)))
                        if len(batch) >= 500:
                            salvaged += new.put_many(batch)
                            batch = []
                    salvaged += new.put_many(batch)
                finally:
                    old.close()
            new.close()
            new = None
            os.replace(tmp, path)
        finally:
            if new is not None:
                new.close()
            for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                leftover.unlink(missing_ok=True)
        log.warning("tile cache %s rebuilt: %d tiles kept, %d dropped; old file at %s", path, salvaged, dropped, moved)
        return RebuildReport(path, moved, salvaged, dropped, note)


def _tile_problem(z, col, row, blob) -> str | None:
    if not all(isinstance(v, int) for v in (z, col, row)) or not 0 <= z <= 30:
        return f"bad tile address ({z!r}, {col!r}, {row!r})"
    if not (0 <= col < (1 << z) and 0 <= row < (1 << z)):
        return "tile address outside its zoom level"
    if not isinstance(blob, bytes):
        return "tile_data is not a blob"
    try:
        decode_tile(blob)
    except TileDecodeError as e:
        return str(e)
    return None


def _iter_tiles(conn: sqlite3.Connection, chunk: int = 256) -> Iterator[tuple | str]:
    """Every readable row as (z, col, tms_row, blob); a string describing each unreadable stretch.

    Rows are read in rowid windows so that a damaged page costs only the rows on it.
    """
    try:
        max_rowid = conn.execute("SELECT max(rowid) FROM tiles").fetchone()[0]
    except sqlite3.DatabaseError as e:
        max_rowid = None
        fallback_error = str(e)
    else:
        fallback_error = ""
    if max_rowid is None:
        if fallback_error:
            # Cannot even find the extent of the table: read what a plain scan gives.
            try:
                yield from conn.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles")
            except sqlite3.DatabaseError as e:
                yield f"table scan stopped: {e}"
        return
    sql = "SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles WHERE rowid BETWEEN ? AND ?"
    for start in range(0, int(max_rowid) + 1, chunk):
        stop = start + chunk - 1
        try:
            rows = conn.execute(sql, (start, stop)).fetchall()
        except sqlite3.DatabaseError:
            rows = None
        if rows is not None:
            yield from rows
            continue
        for rowid in range(start, stop + 1):
            try:
                yield from conn.execute(sql, (rowid, rowid)).fetchall()
            except sqlite3.DatabaseError as e:
                yield f"unreadable row {rowid}: {e}"
