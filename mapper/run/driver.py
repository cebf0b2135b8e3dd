"""The driver: walks the planned blocks through the stages on an executor, recording every outcome in the run
store. It alone writes the state database.

Blocks are admitted in planning order, at most `blocks_in_flight` at a time, so memory and in-flight work stay
flat however large the region. Ready work is dispatched downstream stages first (finishing blocks frees their
slot). A failed item is retried up to `max_attempts` times, then recorded as failed with its error: the block
stops there and the run goes on. A batch lost with its worker (a lost node) is the cluster's fault, not the
items': it is retried after a growing pause that gives the cluster time to notice and restart the worker, and
does not use up the items' attempts — up to `worker_losses` times per task, so that an item which itself kills
its worker still ends as failed. On resume, every task recorded done is skipped: no finished work is redone.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from mapper.run.executor import WorkerLost
from mapper.run.stage import StageSpec
from mapper.run.stages import CROPLAND_STAGES, STAGES
from mapper.store.run_store import BLOCK_LEVEL, RunStore
from mapper.store.space import DiskFullError, is_disk_full, reason

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (source or BLOCK_LEVEL, stage)


@dataclass
class BlockState:
    block_id: str
    done: dict[Key, dict] = field(default_factory=dict)
    scheduled: set[Key] = field(default_factory=set)
    failed: bool = False


def ready_tasks(state: BlockState, sources, stages: Sequence[StageSpec] = CROPLAND_STAGES) -> list[Key]:
    """The block's tasks whose inputs are done and that are neither done nor scheduled: per-source tasks source
    by source, then the block-level ones. An optional stage that a stage waits for counts only when the run has
    it (is among `stages`): crop types wait for the fields stage in a run that makes fields, not otherwise."""
    per_source = {st.name for st in stages if st.per_source}
    active = {st.name for st in stages}
    want = [(s, st.name) for s in sources for st in stages
            if st.per_source and _inputs_done(state, st.after, per_source, (s,), active)]  # fmt: skip
    want += [(BLOCK_LEVEL, st.name) for st in stages
             if not st.per_source and _inputs_done(state, st.after, per_source, sources, active)]  # fmt: skip
    return [k for k in want if k not in state.done and k not in state.scheduled]


def _inputs_done(state: BlockState, after: Sequence[str], per_source: set[str], sources, active=None) -> bool:
    """Whether the stages in `after` that the run has (`active`, default all) are done: a per-source one for
    each of `sources` (the task's own source, or every source for a block-level task), a block-level one for
    the block."""
    names = [a for a in after if active is None or a in active]
    keys = [(s, name) for name in names for s in (sources if name in per_source else (BLOCK_LEVEL,))]
    return all(k in state.done for k in keys)


def is_complete(state: BlockState, last_stage: str = STAGES[-1]) -> bool:
    return (BLOCK_LEVEL, last_stage) in state.done


def stage_item(state: BlockState, key: Key, spec: StageSpec, sources) -> dict:
    """The small item a worker gets: ids, plus the earlier results the stage needs."""
    source, _ = key
    item = {"block_id": state.block_id}
    if spec.per_source:
        item["source"] = source
    item.update(spec.item(state.done, sources))
    return item


def batch_sizes(stages: Sequence[StageSpec], run_cfg=None) -> dict[str, int]:
    """Items per batch of each stage, as it asks for them from the run config's `run` section (default: the
    defaults)."""
    if run_cfg is None:
        from mapper.config.models import RunConfig

        run_cfg = RunConfig()
    return {s.name: s.batch(run_cfg) for s in stages}


@dataclass
class DriverSettings:
    max_attempts: int = 3
    blocks_in_flight: int = 16
    batch: dict | None = None  # items per batch by stage (None: each stage's own, from the default run config)
    poll_s: float = 0.5
    worker_losses: int = 6  # losses of a task's worker forgiven (not counted against max_attempts)
    loss_pause_s: float = 2.0  # the pause before a lost task is retried, doubled with each loss (at most 30 s)
    stages: tuple[StageSpec, ...] = CROPLAND_STAGES  # registry.active_stages(config): in run order


class Driver:
    def __init__(self, store: RunStore, executor, sources, settings: DriverSettings, progress=None, guard=None):
        self.store = store
        self.guard = guard  # called every round; raises to stop the run (the run lock was lost)
        self.executor = executor
        self.sources = tuple(sources)
        self.settings = settings
        self.batch = settings.batch if settings.batch is not None else batch_sizes(settings.stages)
        self.progress = progress
        self.active: dict[str, BlockState] = {}
        self.specs = {s.name: s for s in settings.stages}
        self.stages = tuple(self.specs)
        self.queues: dict[str, deque[tuple[str, Key]]] = {s: deque() for s in self.stages}
        self.in_flight: dict[object, tuple[str, list[tuple[str, Key]], float]] = {}
        self.losses: dict[tuple[str, Key], int] = {}  # (block, task) -> times its worker was lost under it
        self.paused: list[tuple[float, str, Key]] = []  # (due time, block, task): lost tasks waiting to go again
        self.finished = 0
        self.failed_blocks = 0
        self._last_seq = 0
        self._page: deque[tuple[int, str]] = deque()
        self._known: dict = {}  # recorded tasks of the current page's blocks
        self._exhausted = False
        self.disk_full: str | None = None  # the first full-disk error met: the run stops after this round

    # ------------------------------------------------------------------------------------------ main loop
    def run(self) -> dict:
        while True:
            if self.guard is not None:
                self.guard()
            self._admit()
            self._resume_paused()
            self._dispatch()
            if not self.in_flight and not any(self.queues.values()):
                if self.paused:  # only lost tasks waiting out their pause
                    time.sleep(min(self.settings.poll_s, max(0.0, min(p[0] for p in self.paused) - time.monotonic())))
                    continue
                if not self.active and self._exhausted:
                    break
                if self.active:  # nothing can move these blocks any more: a bug, said rather than spun on
                    stuck = {b: sorted(s.done) for b, s in list(self.active.items())[:3]}
                    raise RuntimeError(f"blocks with no work left and not complete: {stuck}")
            outcomes = self.executor.wait(self.settings.poll_s)
            if outcomes:
                self._settle_round(outcomes)
            if self.disk_full:
                raise DiskFullError(self.disk_full)
            if self.progress:
                self.progress.refresh()
        return {"finished": self.finished, "failed": self.failed_blocks}

    def _admit(self) -> None:
        """Take blocks from the plan until `blocks_in_flight` are active (done blocks pass straight through)."""
        while len(self.active) < self.settings.blocks_in_flight:
            if not self._page:
                if self._exhausted:
                    return
                page = self.store.blocks(self._last_seq, limit=2000)
                if not page:
                    self._exhausted = True
                    return
                self._last_seq = page[-1][0]
                self._page.extend(page)
                self._known = self.store.tasks_of([b for _, b in page])
            _, block_id = self._page.popleft()
            state = BlockState(block_id)
            for t in self._known.pop(block_id, []):
                if t.status == "done":
                    state.done[(t.source, t.stage)] = t.result or {}
                elif t.status == "failed":
                    state.failed = True
            if state.failed:
                self.failed_blocks += 1
                self._count_block(state, failed=True)
                continue
            if is_complete(state, self.stages[-1]):
                self.finished += 1
                self._count_block(state)
                continue
            self.active[block_id] = state
            self._enqueue(state)

    def _enqueue(self, state: BlockState) -> None:
        for key in ready_tasks(state, self.sources, self.settings.stages):
            state.scheduled.add(key)
            self.queues[key[1]].append((state.block_id, key))

    def _resume_paused(self) -> None:
        now = time.monotonic()
        due = [p for p in self.paused if p[0] <= now]
        if due:
            self.paused = [p for p in self.paused if p[0] > now]
            for _, block_id, key in due:
                self.queues[key[1]].append((block_id, key))

    def _dispatch(self) -> None:
        for stage in reversed(self.stages):  # downstream first: finished blocks free their slots
            queue = self.queues[stage]
            size = self.batch.get(stage, 1)
            while queue and self.executor.capacity(stage) > 0:
                batch = [queue.popleft() for _ in range(min(size, len(queue)))]
                batch = [(b, key) for b, key in batch if not self._drop_if_failed(b, key)]
                if not batch:
                    continue
                items = [stage_item(self.active[b], key, self.specs[stage], self.sources) for b, key in batch]
                ticket = self.executor.submit(stage, items)
                self.in_flight[ticket] = (stage, batch, time.perf_counter())

    def _drop_if_failed(self, block_id: str, key: Key) -> bool:
        """Queued work of a block that has failed meanwhile is dropped, not run."""
        state = self.active[block_id]
        if not state.failed:
            return False
        state.scheduled.discard(key)
        self._close_failed(state)
        return True

    def _close_failed(self, state: BlockState) -> None:
        if not state.scheduled:  # nothing of it still queued or running: done with, as failed
            self.failed_blocks += 1
            del self.active[state.block_id]
            self._count_block(state, failed=True)

    # ------------------------------------------------------------------------------------------ outcomes
    def _settle_round(self, outcomes) -> None:
        try:
            with self.store.transaction():  # one per round: fast, and atomic against a kill
                for ticket, outcome in outcomes:
                    self._settle(ticket, outcome)
        except sqlite3.OperationalError as e:  # the state database could not grow: nothing of the round is lost
            if not is_disk_full(e):
                raise
            self.disk_full = f"the state database could not grow ({e})"

    def _settle(self, ticket, outcome) -> None:
        stage, batch, _ = self.in_flight.pop(ticket)
        if isinstance(outcome, BaseException):  # the whole batch failed (or went down with its worker)
            log.warning("%s batch of %d failed: %s: %s", stage, len(batch), type(outcome).__name__, outcome)
            if isinstance(outcome, WorkerLost):
                for block_id, key in batch:
                    self.losses[(block_id, key)] = self.losses.get((block_id, key), 0) + 1
            full = {"disk_full": reason(outcome)} if is_disk_full(outcome) else {}
            outcome = [{"error": f"{type(outcome).__name__}: {outcome}", **full} for _ in batch]
        for (block_id, key), result in zip(batch, outcome, strict=True):
            self._record(self.active[block_id], key, dict(result))

    def _record(self, state: BlockState, key: Key, result: dict) -> None:
        source, stage = key
        full = result.pop("disk_full", None)
        if full:  # not the block's fault: not an attempt; redone on resume
            state.scheduled.discard(key)
            self.disk_full = self.disk_full or full
            return
        error = result.pop("error", None)
        seconds = result.pop("seconds", None)
        losses = min(self.losses.get((state.block_id, key), 0), self.settings.worker_losses)
        rec = self.store.record(state.block_id, source, stage, result=None if error else result, error=error,
                                seconds=seconds, max_attempts=self.settings.max_attempts + losses)  # fmt: skip
        state.scheduled.discard(key)
        if self.progress:
            self.progress.task(stage, rec.status)
        if rec.status == "done":
            state.done[key] = result
            self.losses.pop((state.block_id, key), None)
        elif rec.status == "retry":
            log.info("retrying %s %s of block %s (attempt %d failed: %s)", stage, source, state.block_id,
                     rec.attempts, error)  # fmt: skip
            state.scheduled.add(key)
            self._retry(state.block_id, key)
            return
        else:
            log.error("block %s: %s %s failed after %d attempts: %s", state.block_id, stage, source, rec.attempts,
                      error)  # fmt: skip
            state.failed = True
        if state.failed:
            self._close_failed(state)
            return
        if is_complete(state, self.stages[-1]):
            self.finished += 1
            del self.active[state.block_id]
            self._count_block(state)
            return
        self._enqueue(state)

    def _retry(self, block_id: str, key: Key) -> None:
        """Queue a failed task again: at once, or after a pause that doubles with each loss of its worker."""
        lost = self.losses.get((block_id, key), 0)
        if not lost:
            self.queues[key[1]].append((block_id, key))
            return
        pause = min(self.settings.loss_pause_s * 2 ** (lost - 1), 30.0)
        self.paused.append((time.monotonic() + pause, block_id, key))

    def _count_block(self, state: BlockState, failed: bool = False) -> None:
        if self.progress:
            self.progress.block(failed)
