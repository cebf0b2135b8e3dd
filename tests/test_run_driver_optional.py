"""An optional stage that a stage waits for counts only when the run has it: crop types wait for the fields stage
in a run that makes fields, and go straight after the final mask in one that does not (tiny fake stages, no
imagery, no models)."""

from __future__ import annotations

from typing import ClassVar

import pytest

from mapper.run.driver import BlockState, Driver, DriverSettings, ready_tasks
from mapper.run.executor import InProcessExecutor
from mapper.run.registry import active_stages, all_stages, register_stage, stage_names, unregister_stage
from mapper.run.stage import NoopWorker, RunContext, StageSpec
from mapper.run.stages import CROPLAND_STAGES
from mapper.store.run_store import BLOCK_LEVEL, RunStore

SOURCES = ("demo-a", "demo-b")
FINAL = StageSpec("final", NoopWorker)
FIELDS = StageSpec("fields", NoopWorker, after=("final",))
CROPS = StageSpec("croptype", NoopWorker, after=("final", "fields"))


def test_a_stage_waited_for_that_the_run_lacks_is_ignored():
    state = BlockState("1_1")
    assert ready_tasks(state, SOURCES, (FINAL, CROPS)) == [(BLOCK_LEVEL, "final")]
    state.done[(BLOCK_LEVEL, "final")] = {}
    assert ready_tasks(state, SOURCES, (FINAL, CROPS)) == [(BLOCK_LEVEL, "croptype")]


def test_a_stage_waited_for_that_the_run_has_is_waited_for():
    state = BlockState("1_1")
    state.done[(BLOCK_LEVEL, "final")] = {}
    assert ready_tasks(state, SOURCES, (FINAL, FIELDS, CROPS)) == [(BLOCK_LEVEL, "fields")]
    state.done[(BLOCK_LEVEL, "fields")] = {}
    assert ready_tasks(state, SOURCES, (FINAL, FIELDS, CROPS)) == [(BLOCK_LEVEL, "croptype")]


class Order(NoopWorker):
    seen: ClassVar[list] = []
    name = ""

    def one(self, item):
        Order.seen.append((item["block_id"], self.name))
        return super().one(item)


@pytest.fixture
def fields_stage():
    """The registry's fields stage (registered through its entry point), or a stand-in where it is not."""
    all_stages()
    added = "fields" not in stage_names()
    if added:
        register_stage(StageSpec("fields", NoopWorker, after=("final",), enabled=lambda c: c["fields"]["enabled"]))
    yield
    if added:
        unregister_stage("fields")


@pytest.mark.parametrize("with_fields", [False, True])
def test_the_driver_runs_crop_types_after_fields_only_when_the_run_makes_fields(tmp_path, fields_stage, with_fields):
    store = RunStore.create(tmp_path / "run", {"sources": list(SOURCES)}, "")
    store.add_blocks((f"{5000 + i}_2200", 5000 + i, 2200, "Guangdong", 1.0) for i in range(2))
    config = {"croptype": {"enabled": True}, "fields": {"enabled": with_fields}}
    stages = active_stages(config)
    names = [s.name for s in stages]
    assert names[-1] == "croptype" and ("fields" in names) == with_fields
    Order.seen = []
    workers = {s.name: NoopWorker for s in CROPLAND_STAGES if s.name != "final"}
    workers.update({n: type(f"{n}Order", (Order,), {"name": n}) for n in ("final", "fields", "croptype")})
    executor = InProcessExecutor(RunContext({}, str(store.layout.root), SOURCES, {}), workers=workers)
    assert Driver(store, executor, SOURCES, DriverSettings(stages=stages)).run() == {"finished": 2, "failed": 0}
    for block in ("5000_2200", "5001_2200"):
        order = [stage for b, stage in Order.seen if b == block]
        assert order == (["final", "fields", "croptype"] if with_fields else ["final", "croptype"])
