"""Atomic file writes: write to a temporary name in the same directory, fsync, rename.

A kill at any moment leaves either the old file or the new one, never half of one. `atomic_directory` does
the same for a directory of files (a model checkpoint); its temporary directory names its writer (host and
pid), so the next writer of the same directory removes what a killed one left (a kill -9 mid-write of a
checkpoint would otherwise leave a hidden copy of it behind for good).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str | None = None, check=None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on error removed.

    Writers that need a real file name (GDAL, SQLite) write to the yielded path. `check(tmp)`, when given,
    runs on the finished temporary file before the rename and raises if it is not whole (GDAL does not always
    raise when a write fails: mapper.imagery.tiff_check).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name that the writer creates itself, so the file gets the user's umask (mkstemp's files are
    # 0600, which would leave results unreadable to a team on shared storage).
    tmp_path = path.parent / f".{path.name}.{uuid.uuid4().hex}{suffix or path.suffix + '.tmp'}"
    try:
        yield tmp_path
        if check is not None:
            check(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temporary_files(path: Path | str) -> int:
    """Remove the temporary files `atomic_path` left beside `path` when its writer was killed mid-write; returns
    how many. Only for a file no other process is writing (e.g. a run's files before run.json exists)."""
    path = Path(path)
    stale = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return len(stale)


# the names atomic_path gives its temporaries: ".<name>.<32 hex digits><suffix>"
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}(\.[^.]+)*$")


def remove_stale_temporary_files_under(root: Path | str, skip: tuple[str, ...] = ()) -> int:
    """Remove every temporary file `atomic_path` left under `root`, and every temporary directory of
    `atomic_directory` whose writer on this host no longer runs (writers killed mid-write), except under the
    top-level folders named in `skip`; returns how many. Only for a tree that no other process writes: the
    caller holds the tree's lock (mapper.store.run_lock) and nothing of its own is writing yet."""
    root, removed = Path(root), 0
    for folder, dirs, files in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d not in skip]
        stale = [d for d in dirs if _dead_writer(d)]
        for name in stale:
            shutil.rmtree(Path(folder) / name, ignore_errors=True)
        removed += len(stale)
        dirs[:] = [d for d in dirs if d not in stale]
        for name in files:
            if _TEMPORARY.match(name):
                (Path(folder) / name).unlink(missing_ok=True)
                removed += 1
    return removed


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        f.write(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_dir(path: Path) -> None:
    """fsync a directory (its entries), where the platform allows opening one."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(directory: Path | str) -> Iterator[Path]:
    """Yield an empty temporary directory beside `directory`; on success its files (subfolders included) are
    fsynced and it replaces `directory`, on error it is removed. Replacing an existing directory takes two
    renames: a kill between them leaves the old one as `.<name>.old-<id>` beside it (readers may point to it)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory)
    tmp = directory.parent / f".{directory.name}.{_writer()}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    try:
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                with open(Path(folder) / name, "rb+") as f:
                    os.fsync(f.fileno())
            fsync_dir(Path(folder))
        old = None
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex}"
            os.replace(directory, old)
        os.replace(tmp, directory)
        fsync_dir(directory.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _writer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary directories of `directory` whose writer, a process on this host, no longer runs
    (killed mid-write); a live writer's, and other hosts' (shared storage), are left alone. Returns them."""
    removed = []
    for p in directory.parent.glob(f".{glob.escape(directory.name)}.*.tmp"):
        if _dead_writer(p.name):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _dead_writer(name: str) -> bool:
    """A directory name of atomic_directory's temporaries, ".<name>.<host>-<pid>.<hex>.tmp", written on this host
    by a process that no longer runs."""
    marker = f".{socket.gethostname()}-"
    if not (name.startswith(".") and name.endswith(".tmp") and marker in name):
        return False
    pid = name.rsplit(marker, 1)[1].split(".", 1)[0]
    return pid.isdigit() and not _running(int(pid))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        return True
    return True
