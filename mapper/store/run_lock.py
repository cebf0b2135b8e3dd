"""One driver per run directory: a lock file, `RUN/driver.lock`, held while a driver works on the run.

The lock is a small JSON file (host, PID, the process's start time, when the driver started, a heartbeat)
created with O_CREAT | O_EXCL, which is atomic on local file systems and on NFS v3 and later (the storage
clusters keep run directories on). A second driver finds it and is refused, naming the first. A lock whose
holder is gone is taken over, and the log says so:

- **same host** (same host name and boot): the holder is gone when its PID is not running, or is running but
  started at another time (the PID was reused) — decided at once, so `kill -9` then `--resume` just works;
- **another host** (shared storage): its PID cannot be checked from here, so the holder refreshes the
  heartbeat every `heartbeat_s` (30 s); a lock whose heartbeat is older than `stale_after_s` (2 minutes) by
  this host's clock, and that does not change while this driver watches it for two more heartbeats, is taken
  over. Clocks of the nodes must agree to well within `stale_after_s` (NTP does).

Taking over renames the stale file aside (rename is atomic, so of two drivers taking over at once only one
succeeds) and then creates the lock anew. A driver that finds its own lock replaced (it was paused for longer
than `stale_after_s` and another took over) stops at its next check instead of writing alongside the other.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("mapper.run")

LOCK_FILE = "driver.lock"


class RunLockedError(RuntimeError):
    """Another live driver holds the run directory; the message names it and what to do."""


class LockLostError(RuntimeError):
    """This driver's lock was taken over by another driver; it must stop writing."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux /proc), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of stat; the name in (…) may hold spaces


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def this_process() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot_id": _boot_id(), "pid": pid, "pid_start": _process_start(pid)}


@dataclass
class RunLock:
    """The held lock of one run directory (use `acquire`, then `release`, or as a context manager)."""

    path: Path
    info: dict
    heartbeat_s: float = 30.0
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ acquire
    @classmethod
    def acquire(cls, root: Path | str, *, what: str = "mapper run", heartbeat_s: float = 30.0,
                stale_after_s: float = 120.0) -> RunLock:  # fmt: skip
        """Hold `root/driver.lock`, taking over a stale one; RunLockedError naming a live holder."""
        path = Path(root) / LOCK_FILE
        mine = {**this_process(), "token": uuid.uuid4().hex, "what": what,
                "started": datetime.now(UTC).isoformat(timespec="seconds"), "heartbeat": time.time()}  # fmt: skip
        for _ in range(5):
            if _create(path, mine):
                lock = cls(path, mine, heartbeat_s)
                lock._start_heartbeat()
                return lock
            held = _read(path)
            if held is None:  # vanished, or being written right now: look again
                time.sleep(0.2)
                continue
            reason = stale_reason(held, heartbeat_s, stale_after_s, path)
            if reason is None:
                raise RunLockedError(_locked_message(path, held, stale_after_s))
            if _set_aside(path, held):
                log.warning("took over the lock of %s: %s (%s)", path.parent, _holder(held), reason)
        raise RunLockedError(f"could not lock {path.parent}: its lock file {path} keeps changing; is another "
                             "driver starting on it? Try again in a minute")  # fmt: skip

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # ------------------------------------------------------------------------------------------ holding
    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            held = _read(self.path)
            if held is None or held.get("token") != self.info["token"]:
                self.lost = True
                log.error("the lock of %s was taken over by %s; this driver stops", self.path.parent,
                          _holder(held) if held else "nobody (the file is gone)")  # fmt: skip
                return
            self.info["heartbeat"] = time.time()
            try:
                _write_replace(self.path, self.info)
            except OSError as e:  # a full disk: the run stops on its own; the old lock stays in place
                log.debug("lock heartbeat not written: %s", e)

    def check(self) -> None:
        """Raise LockLostError when another driver took the lock over (called from the driver's loop)."""
        if self.lost:
            raise LockLostError(
                f"another driver took over {self.path.parent} while this one was not heard from for longer than "
                "the lock's timeout; this driver stopped so that the two do not write the same run"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        held = _read(self.path)
        if held is not None and held.get("token") == self.info["token"]:
            self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- files
def _create(path: Path, info: dict) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(info))
        f.flush()
        os.fsync(f.fileno())
    return True


def _write_replace(path: Path, info: dict) -> None:
    tmp = path.with_name(f".{path.name}.{info['token']}.tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    os.replace(tmp, path)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _set_aside(path: Path, held: dict) -> bool:
    """Rename the stale lock aside; True if it was the one judged stale (else it is put back)."""
    aside = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:  # another driver took it over first
        return False
    moved = _read(aside)
    if moved is not None and moved.get("token") != held.get("token"):  # a fresh lock, not the stale one
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)  # put it back, unless yet another lock appeared meanwhile
        aside.unlink(missing_ok=True)
        return False
    aside.unlink(missing_ok=True)
    return True


# ---------------------------------------------------------------------------------------------- staleness
def stale_reason(held: dict, heartbeat_s: float, stale_after_s: float, path: Path) -> str | None:
    """Why the holder of a lock is gone, or None when it may be alive."""
    me = this_process()
    if held.get("host") == me["host"] and held.get("boot_id", "") == me["boot_id"]:
        pid = int(held.get("pid", -1))
        if pid <= 0 or not _alive(pid):
            return "its process is no longer running"
        start = _process_start(pid)
        if start is not None and held.get("pid_start") is not None and start != held["pid_start"]:
            return "its PID now belongs to another process"
        return None
    if held.get("host") == me["host"]:
        return "the host has rebooted since"
    age = time.time() - float(held.get("heartbeat", 0))
    if age <= stale_after_s:
        return None
    deadline = time.monotonic() + 2 * heartbeat_s  # the clocks may disagree: see whether it is still beating
    while time.monotonic() < deadline:
        time.sleep(min(1.0, heartbeat_s / 4))
        now = _read(path)
        if now is None or now.get("heartbeat") != held.get("heartbeat") or now.get("token") != held.get("token"):
            return None
    return f"no heartbeat for {age:.0f} s"


def _holder(held: dict) -> str:
    what = held.get("what", "a driver")
    return f"{what} (PID {held.get('pid')} on {held.get('host')}, started {held.get('started')})"


def _locked_message(path: Path, held: dict, stale_after_s: float) -> str:
    age = time.time() - float(held.get("heartbeat", 0))
    return (
        f"{path.parent} is being worked on by {_holder(held)}, last heard from {max(age, 0):.0f} s ago; a second "
        f"driver would redo its work and write the same state. Wait for it to finish, or stop it (kill "
        f"{held.get('pid')} on {held.get('host')}) and then resume. If that host is gone, its lock is taken over "
        f"{stale_after_s:.0f} s after its last heartbeat"
    )
