"""Disk space: a full disk stops a run with one clear error, before GDAL or SQLite meet it.

Every worker checks, before it writes a block's file, that the run directory's disk keeps `run.min_free_mb`
free after the write (sized by the raw, uncompressed bytes, which a compressed GeoTIFF never exceeds); an
error that still comes from a full disk (another program filled it) is recognised by `is_disk_full`. The
driver stops at the first such result without counting it as a failed attempt, so `mapper run --resume`
after space was freed redoes nothing that had finished and retries nothing in vain.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

FULL_MARKERS = ("no space left on device", "database or disk is full", "disk quota exceeded")


class DiskFullError(OSError):
    """The disk holding the run directory has no room for the next write (the message says what)."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)


def free_bytes(directory: Path | str) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def ensure_free_space(directory: Path | str, need_bytes: int, keep_free_bytes: int) -> None:
    """Raise DiskFullError unless `need_bytes` can be written to `directory` leaving `keep_free_bytes` free."""
    directory = Path(directory)
    probe = directory
    while not probe.exists() and probe != probe.parent:  # the file's directory may not exist yet
        probe = probe.parent
    free = free_bytes(probe)
    if free is not None and free - need_bytes < keep_free_bytes:
        keep = f"run.min_free_mb = {keep_free_bytes / 1e6:.0f} MB"
        raise DiskFullError(f"writing up to {need_bytes / 1e6:.0f} MB in {directory} would leave less than {keep} "
                            f"free ({free / 1e6:.0f} MB are)")  # fmt: skip


def is_disk_full(e: BaseException) -> bool:
    """An error that comes from a full disk (OSError ENOSPC/EDQUOT, SQLite's 'disk is full', GDAL's text)."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(e, sqlite3.OperationalError | OSError | RuntimeError):
        text = str(e).lower()
        return any(m in text for m in FULL_MARKERS)
    return False


def reason(e: BaseException) -> str:
    """A full-disk error's own words (an OSError's text without its errno)."""
    return str(e.strerror) if isinstance(e, OSError) and e.strerror else str(e)
