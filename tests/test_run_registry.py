"""The stage registry: the cropland stages and the ones other packages register (crop types through its entry
point), their order, the driver walking a registered stage, and the Ray pools sized from the stages' specs."""

from __future__ import annotations

from typing import ClassVar

import pytest
from mapper.pipelines.ray_executor import PoolSpec, pool_specs

from mapper.config.models import RunConfig
from mapper.run.driver import BlockState, Driver, DriverSettings, batch_sizes, ready_tasks
from mapper.run.executor import InProcessExecutor
from mapper.run.registry import (
    StageRegistryError,
    active_stages,
    all_stages,
    register_stage,
    stage,
    unregister_stage,
)
from mapper.run.stage import NoopWorker, Pool, RunContext, StageSpec
from mapper.run.stages import CROPLAND_STAGES, STAGES
from mapper.store.run_store import BLOCK_LEVEL, RunStore

SOURCES = ("demo-a", "demo-b")


def test_crop_types_register_through_their_entry_point_after_the_final_mask():
    names = [s.name for s in all_stages()]
    assert names[: len(STAGES)] == list(STAGES) == ["fetch", "iqa", "segment", "features", "decide", "final"]
    assert "croptype" in names and stage("croptype").after == ("final", "fields")  # fields: when the run has it
    assert names.index("croptype") > names.index("fields")
    assert "croptype" not in [s.name for s in active_stages({})]
    assert [s.name for s in active_stages({"croptype": {"enabled": True}})][-1] == "croptype"


class Counting(NoopWorker):
    seen: ClassVar[list] = []

    def one(self, item):
        Counting.seen.append((item["block_id"], item.get("decision")))
        return {"ok": 1}


@pytest.fixture
def extra_stage():
    spec = StageSpec("count", Counting, after=("final",), item=lambda done, sources: {
        "decision": done[(BLOCK_LEVEL, "decide")]["decision"]}, enabled=lambda cfg: cfg.get("count", False))
    register_stage(spec)
    yield spec
    unregister_stage("count")


def test_a_registered_stage_is_walked_by_the_driver_with_its_item(tmp_path, extra_stage):
    store = RunStore.create(tmp_path / "run", {"sources": list(SOURCES)}, "")
    store.add_blocks((f"{5000 + i}_2200", 5000 + i, 2200, "Guangdong", 1.0) for i in range(3))
    ctx = RunContext({}, str(store.layout.root), SOURCES, {})
    stages = active_stages({"count": True})
    assert [s.name for s in stages][-1] == "count"
    Counting.seen = []
    workers = {s.name: NoopWorker for s in CROPLAND_STAGES}
    executor = InProcessExecutor(ctx, workers=workers)
    assert Driver(store, executor, SOURCES, DriverSettings(stages=stages)).run() == {"finished": 3, "failed": 0}
    assert sorted(Counting.seen) == [(f"{5000 + i}_2200", "Neither") for i in range(3)]


def test_ready_tasks_wait_for_every_input_of_a_stage():
    state = BlockState("1_1")
    for s in SOURCES:
        state.done[(s, "fetch")] = {}
        state.done[(s, "iqa")] = {}
    state.done[("demo-a", "segment")] = {}
    assert ready_tasks(state, SOURCES) == [("demo-b", "segment")], "features wait for both sources' segmentation"


def test_bad_registrations_are_refused_by_name():
    with pytest.raises(StageRegistryError, match="registered twice: final"):
        register_stage(StageSpec("final", NoopWorker))
    with pytest.raises(StageRegistryError, match="unknown stage"):
        register_stage(StageSpec("orphan", NoopWorker, after=("nothing",)))
    with pytest.raises(StageRegistryError, match="per source but waits for a per-block stage"):
        register_stage(StageSpec("early", NoopWorker, after=("final",), per_source=True))
    assert [s.name for s in all_stages()].count("final") == 1 and "orphan" not in [s.name for s in all_stages()]
    with pytest.raises(StageRegistryError, match="no stage 'nothing'"):
        stage("nothing")


def test_batch_sizes_come_from_the_stages_and_the_run_config():
    cfg = RunConfig(iqa_batch_blocks=5, segment_batch_blocks=3)
    assert batch_sizes(CROPLAND_STAGES, cfg) == {"fetch": 1, "iqa": 5, "segment": 3, "features": 1, "decide": 16,
                                                 "final": 1}  # fmt: skip


def test_ray_pools_from_the_stage_specs():
    """The pools as they were sized by hand before the registry: light stages take CPU shares, segmentation the
    rest (capped at a node less one), crop types a share not set aside; with GPUs, segmentation one each."""
    cfg = RunConfig()
    stages = active_stages({"croptype": {"enabled": True}})
    cpu = pool_specs(cfg, stages, cpus=16.0, gpus=0.0, node_cpus=16.0)
    assert cpu == {"fetch": PoolSpec(2, 0.1), "iqa": PoolSpec(1, 0.1), "features": PoolSpec(4, 0.2),
                   "decide": PoolSpec(1, 0.05), "final": PoolSpec(4, 0.2), "croptype": PoolSpec(1, 0.1),
                   "segment": PoolSpec(1, 14.0)}  # fmt: skip  # 16 - 0.2 - 0.1 - 0.8 - 0.05 - 0.8 = 14.05
    assert pool_specs(cfg, stages, cpus=2.0, gpus=0.0)["segment"] == PoolSpec(1, 1.0)  # 2 - 0.75 left: one CPU
    assert pool_specs(cfg, stages, cpus=1.0, gpus=0.0)["segment"] == PoolSpec(1, 0.25)  # 1 - 0.75: a share
    gpu = pool_specs(cfg, stages, cpus=32.0, gpus=2.0)
    assert gpu["segment"] == PoolSpec(2, 1.0, 1.0) and gpu["iqa"] == PoolSpec(1, 0.1, 0.25)
    assert gpu["croptype"] == PoolSpec(1, 1.0, 0.25) and gpu["fetch"] == PoolSpec(2, 0.1)
    assert Pool(actors=3).size(cfg, 1, 0) == 3


def test_ray_errors_of_a_lost_worker_are_told_from_the_batchs_own():
    import ray.exceptions as rex
    from mapper.pipelines.ray_executor import _worker_lost

    assert _worker_lost(rex.ActorDiedError())  # the actor's process or node went away
    assert _worker_lost(rex.ActorUnavailableError("node unreachable", None))
    assert _worker_lost(rex.NodeDiedError("node gone"))
    assert not _worker_lost(rex.RayActorError(actor_init_failed=True))  # cannot be built: fails every time
    assert not _worker_lost(rex.RayTaskError("run", "Traceback ...", ValueError("corrupt")))
    assert not _worker_lost(rex.OutOfMemoryError("the batch took the node's memory"))
