"""Executors run stage batches for the driver. The in-process one is here; the Ray one is in mapper.pipelines.

    capacity(stage) -> int          how many more batches of the stage it takes now
    submit(stage, items) -> ticket  start a batch (items: small dicts)
    wait(timeout) -> [(ticket, results | exception)]   finished batches; WorkerLost when the batch went down
                                                        with its worker (a crashed process, a lost node)
    close()

Both build each stage's worker from its registered spec (mapper.run.registry), so a run gives the same outputs
in-process and on Ray.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from mapper.run.registry import all_stages
from mapper.run.stage import NoopWorker, RunContext


class ExecutorError(RuntimeError):
    """An executor that cannot start (an unreachable Ray cluster); the message names the fix."""


class WorkerLost(RuntimeError):
    """A batch lost with the worker that held it (its process crashed, its node went away), not failed by its
    items: the driver retries it after a pause without using up the blocks' attempts (up to a bound)."""


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once, naming the fix, when a Ray address does not accept connections (Ray itself would retry
    for minutes). 'auto' and ray:// client addresses are left to Ray."""
    import socket

    if address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ExecutorError(f"--address {address!r}: give the Ray head as HOST:PORT, e.g. 10.0.0.5:6379")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise ExecutorError(
            f"cannot reach the Ray cluster at --address {address} ({e.strerror or e}); check that the head is "
            "running (`ray status` on it) and that HOST:PORT is its GCS address (port 6379 by default)"
        ) from None


class InProcessExecutor:
    """Runs each batch when it is submitted, in this process (one worker per stage, made on first use)."""

    def __init__(self, ctx: RunContext, dry_run: bool = False, workers: Mapping[str, type] | None = None):
        self.ctx = ctx
        self.classes = {s.name: NoopWorker if dry_run else s.worker for s in all_stages()}
        self.classes.update(workers or {})  # tests replace a stage's worker
        self.workers: dict = {}
        self.done: list = []
        self.tickets = itertools.count()

    def capacity(self, stage: str) -> int:
        return 1

    def submit(self, stage: str, items: list[dict]):
        ticket = next(self.tickets)
        try:
            if stage not in self.workers:
                self.workers[stage] = self.classes[stage](self.ctx)
            self.done.append((ticket, self.workers[stage](items)))
        except Exception as e:  # a worker that cannot start (a model that fails to load): the batch fails
            self.done.append((ticket, e))
        return ticket

    def wait(self, timeout: float | None = None) -> list:
        out, self.done = self.done, []
        return out

    def close(self) -> None:
        for w in self.workers.values():
            close = getattr(w, "close", None)
            if close:
                close()
        self.workers.clear()
