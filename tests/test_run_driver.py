"""The run store and the driver's scheduling, with trivial stage workers (no imagery, no models)."""

from __future__ import annotations

import json
import time
from typing import ClassVar

import pytest

from mapper.run.driver import BlockState, Driver, DriverSettings, ready_tasks
from mapper.run.executor import InProcessExecutor, WorkerLost
from mapper.run.stage import NoopWorker, RunContext
from mapper.run.stages import STAGES
from mapper.store.run_store import BLOCK_LEVEL, RunStore, RunStoreError

SOURCES = ("demo-a", "demo-b")
IDENTITY = {"region": {"kind": "bbox", "bounds": [113.0, 23.0, 113.2, 23.1]}, "sources": list(SOURCES),
            "config": {"zoom": 16, "run": {"dem": "auto"}}}  # fmt: skip


def _store(tmp_path, n_blocks=6) -> RunStore:
    store = RunStore.create(tmp_path / "run", IDENTITY, "zoom: 16\n")
    store.add_blocks((f"{5000 + i}_2200", 5000 + i, 2200, "Guangdong", 1.0) for i in range(n_blocks))
    return store


def _ctx(store) -> RunContext:
    return RunContext({}, str(store.layout.root), SOURCES, {})


BAD = "5001_2200"


class Recording(NoopWorker):
    """A trivial worker that records every item it runs; on `BAD` it fails once or always when told to."""

    calls: ClassVar[list] = []
    stage = ""
    fail_first = fail_always = False

    def one(self, item):
        key = (item["block_id"], item.get("source", ""), self.stage)
        Recording.calls.append(key)
        if item["block_id"] == BAD and (self.fail_always or (self.fail_first and Recording.calls.count(key) == 1)):
            raise (ValueError("this block's imagery is corrupt") if self.fail_always else OSError("connection reset"))
        return super().one(item)


def _workers(fail_stage=None, always=False) -> dict:
    Recording.calls = []
    flags = {s: {"stage": s, "fail_first": s == fail_stage and not always, "fail_always": s == fail_stage and always}
             for s in STAGES}  # fmt: skip
    return {s: type(f"{s}Worker", (Recording,), flags[s]) for s in STAGES}


def test_ready_tasks_follow_the_stage_order():
    state = BlockState("1_1")
    assert ready_tasks(state, SOURCES) == [("demo-a", "fetch"), ("demo-b", "fetch")]
    state.done[("demo-a", "fetch")] = {}
    assert ready_tasks(state, SOURCES) == [("demo-a", "iqa"), ("demo-a", "segment"), ("demo-b", "fetch")]
    for s in SOURCES:
        for st in ("fetch", "iqa", "segment"):
            state.done[(s, st)] = {}
    assert ready_tasks(state, SOURCES) == [(BLOCK_LEVEL, "features")]
    state.scheduled.add((BLOCK_LEVEL, "features"))
    assert ready_tasks(state, SOURCES) == []
    state.done[(BLOCK_LEVEL, "features")] = {}
    assert ready_tasks(state, SOURCES) == [(BLOCK_LEVEL, "decide")]


def test_every_block_passes_every_stage_once(tmp_path):
    store = _store(tmp_path)
    outcome = Driver(store, InProcessExecutor(_ctx(store), dry_run=True), SOURCES,
                     DriverSettings(blocks_in_flight=2)).run()  # fmt: skip
    assert outcome == {"finished": 6, "failed": 0}
    counts = store.stage_counts()
    assert {s: counts[(s, "done")] for s in STAGES} == {"fetch": 12, "iqa": 12, "segment": 12, "features": 6,
                                                        "decide": 6, "final": 6}  # fmt: skip
    assert all(t.attempts == 1 for ts in store.tasks_of([f"{5000 + i}_2200" for i in range(6)]).values() for t in ts)


def test_a_failed_item_is_retried_and_then_done(tmp_path):
    store = _store(tmp_path)
    executor = InProcessExecutor(_ctx(store), workers=_workers("segment"))
    assert Driver(store, executor, SOURCES, DriverSettings(max_attempts=3)).run() == {"finished": 6, "failed": 0}
    tasks = store.tasks_of([BAD])[BAD]
    seg = {t.source: t for t in tasks if t.stage == "segment"}
    assert {s: (t.status, t.attempts) for s, t in seg.items()} == {"demo-a": ("done", 2), "demo-b": ("done", 2)}


def test_a_block_failing_every_attempt_is_recorded_and_the_run_goes_on(tmp_path):
    store = _store(tmp_path)
    executor = InProcessExecutor(_ctx(store), workers=_workers("features", always=True))
    assert Driver(store, executor, SOURCES, DriverSettings(max_attempts=2)).run() == {"finished": 5, "failed": 1}
    (failure,) = store.failures()
    assert (failure.block_id, failure.stage, failure.status, failure.attempts) == (BAD, "features", "failed", 2)
    assert "corrupt" in failure.error
    assert not [t for t in store.tasks_of([BAD])[BAD] if t.stage in ("decide", "final")]
    # resuming does not retry a block recorded as failed, nor redo anything done
    again = Driver(store, InProcessExecutor(_ctx(store), dry_run=True), SOURCES, DriverSettings()).run()
    assert again == {"finished": 5, "failed": 1}


def test_a_lost_batch_counts_one_attempt_for_each_of_its_items(tmp_path):
    store = _store(tmp_path, n_blocks=2)

    class Broken(InProcessExecutor):
        lost = 0

        def submit(self, stage, items):
            if stage == "iqa" and Broken.lost < 1:
                Broken.lost += 1
                ticket = next(self.tickets)
                self.done.append((ticket, ConnectionError("node lost")))
                return ticket
            return super().submit(stage, items)

    settings = DriverSettings(batch={"iqa": 4})
    assert Driver(store, Broken(_ctx(store), dry_run=True), SOURCES, settings).run() == {"finished": 2, "failed": 0}
    attempts = sorted(t.attempts for ts in store.tasks_of(["5000_2200", "5001_2200"]).values() for t in ts
                      if t.stage == "iqa")  # fmt: skip
    assert attempts.count(2) >= 1 and set(attempts) <= {1, 2}


class Losing(InProcessExecutor):
    """Loses every `stage` batch holding block BAD with its worker, `times` times (None: always)."""

    def __init__(self, *a, stage="features", times=None, **kw):
        super().__init__(*a, **kw)
        self.stage, self.times, self.lost = stage, times, 0

    def submit(self, stage, items):
        lose = stage == self.stage and any(i["block_id"] == BAD for i in items)
        if lose and (self.times is None or self.lost < self.times):
            self.lost += 1
            ticket = next(self.tickets)
            self.done.append((ticket, WorkerLost("ActorDiedError: the actor died unexpectedly")))
            return ticket
        return super().submit(stage, items)


def test_a_lost_worker_costs_time_not_the_blocks_attempts(tmp_path):
    store = _store(tmp_path, n_blocks=3)
    executor = Losing(_ctx(store), dry_run=True, times=4)  # more losses than max_attempts: a slow-to-notice cluster
    settings = DriverSettings(max_attempts=2, loss_pause_s=0.05)
    start = time.monotonic()
    assert Driver(store, executor, SOURCES, settings).run() == {"finished": 3, "failed": 0}
    assert time.monotonic() - start >= 0.05 + 0.1 + 0.2 + 0.4  # each retry waited, longer after each loss
    (task,) = [t for t in store.tasks_of([BAD])[BAD] if t.stage == "features"]
    assert (task.status, task.attempts) == ("done", 5)  # every try recorded


def test_an_item_that_always_kills_its_worker_fails_after_a_bounded_number_of_tries(tmp_path):
    store = _store(tmp_path, n_blocks=3)
    settings = DriverSettings(max_attempts=2, worker_losses=3, loss_pause_s=0.01)
    assert Driver(store, Losing(_ctx(store), dry_run=True), SOURCES, settings).run() == {"finished": 2, "failed": 1}
    (failure,) = store.failures()
    assert (failure.block_id, failure.stage, failure.status, failure.attempts) == (BAD, "features", "failed", 5)
    assert "ActorDiedError" in failure.error


def test_resume_skips_done_work(tmp_path):
    store = _store(tmp_path)
    Driver(store, InProcessExecutor(_ctx(store), dry_run=True), SOURCES, DriverSettings()).run()
    store.close()
    store = RunStore.open(tmp_path / "run", IDENTITY)
    executor = InProcessExecutor(_ctx(store), workers=_workers())
    assert Driver(store, executor, SOURCES, DriverSettings()).run() == {"finished": 6, "failed": 0}
    assert Recording.calls == []


def test_a_run_killed_midway_resumes_where_it_stopped(tmp_path):
    """Results recorded before the stop are kept; the rest run once on resume."""
    store = _store(tmp_path)

    class Stop(Exception):
        pass

    class Stopping(InProcessExecutor):
        def wait(self, timeout=None):
            if sum(store.stage_counts().values()) >= 20:
                raise Stop
            return super().wait(timeout)

    with pytest.raises(Stop):
        Driver(store, Stopping(_ctx(store), workers=_workers()), SOURCES, DriverSettings(blocks_in_flight=3)).run()
    before = {(t.block_id, t.source, t.stage) for ts in store.tasks_of([f"{5000 + i}_2200" for i in range(6)]).values()
              for t in ts}  # fmt: skip
    assert 20 <= len(before) < 6 * 9
    executor = InProcessExecutor(_ctx(store), workers=_workers())
    assert Driver(store, executor, SOURCES, DriverSettings()).run() == {"finished": 6, "failed": 0}
    assert not before & set(Recording.calls)
    assert len(Recording.calls) == 6 * 9 - len(before)


def test_resume_with_another_configuration_is_refused_naming_the_difference(tmp_path):
    _store(tmp_path).close()
    other = json.loads(json.dumps(IDENTITY))
    other["config"]["run"]["dem"] = "none"
    with pytest.raises(RunStoreError, match=r'config\.run\.dem: "auto" in the run directory, "none" now'):
        RunStore.open(tmp_path / "run", other)
    with pytest.raises(RunStoreError, match="already holds a run"):
        RunStore.create(tmp_path / "run", IDENTITY, "")
    with pytest.raises(RunStoreError, match="not a run directory"):
        RunStore.open(tmp_path, IDENTITY)


def test_an_unwritable_run_directory_fails_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RunStoreError, match="cannot write the run directory"):
        RunStore.create(blocker / "run", IDENTITY, "")


def test_the_crop_type_stage_runs_after_final_on_finished_blocks_only_when_enabled(tmp_path):
    """A finished run given the crop-type stage (what `mapper croptype map` does): only the new stage runs,
    once per block; without it the run is complete as it was."""
    from mapper.run.registry import active_stages

    CROP_STAGE = "croptype"
    assert tuple(s.name for s in active_stages({})) == STAGES
    stages = active_stages({"croptype": {"enabled": True}})
    assert tuple(s.name for s in stages) == (*STAGES, CROP_STAGE)
    store = _store(tmp_path)
    Driver(store, InProcessExecutor(_ctx(store), dry_run=True), SOURCES, DriverSettings()).run()
    workers = {**_workers(), CROP_STAGE: type("CropWorker", (Recording,), {"stage": CROP_STAGE})}
    executor = InProcessExecutor(_ctx(store), workers=workers)
    settings = DriverSettings(stages=stages)
    assert Driver(store, executor, SOURCES, settings).run() == {"finished": 6, "failed": 0}
    assert sorted(Recording.calls) == sorted((f"{5000 + i}_2200", "", CROP_STAGE) for i in range(6))
    Recording.calls = []
    assert Driver(store, InProcessExecutor(_ctx(store), workers=workers), SOURCES, settings).run()["finished"] == 6
    assert Recording.calls == []
