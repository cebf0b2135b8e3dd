"""The run's stages as Ray actor pools (the executor interface of mapper.run.executor).

One pool of long-lived actors per stage; each actor builds its worker once (sources and their connection
pools, a model on its GPU, the DEM) and then takes batches of small items — block ids, source names, earlier
results — never pixels: mosaics and masks go through the shared run directory. The segmentation and IQA pools
get a GPU per actor (a share for IQA) when the cluster has GPUs, and CPUs otherwise. Each actor holds at most
`depth` batches, so the work in flight is bounded by the pools, whatever the size of the region.

Actors are restarted by Ray after a crash or the loss of their node (max_restarts=-1); the batches they held
fail with RayActorError, which reaches the driver as WorkerLost: it retries them after a pause long enough for
Ray to notice the loss and restart the actor, without using up the blocks' attempts, so a lost node costs time,
not blocks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import ray
from mapper.pipelines.ray_auth import prepare_cluster_auth

from mapper.run.executor import ExecutorError, WorkerLost, check_reachable
from mapper.run.registry import active_stages
from mapper.run.registry import stage as stage_spec
from mapper.run.stage import NoopWorker, RunContext, StageSpec

log = logging.getLogger(__name__)


class StageActor:
    """Holds one stage's worker; `run(items)` is one batch."""

    def __init__(self, stage: str, ctx: RunContext, dry_run: bool):
        spec = stage_spec(stage)
        if spec.pool.model and not ray.get_gpu_ids():
            _use_the_nodes_cpus(ctx)
        self.worker = (NoopWorker if dry_run else spec.worker)(ctx)

    def run(self, items: list[dict]) -> list[dict]:
        return self.worker(items)

    def node_id(self) -> str:
        """The node this actor runs on (for tests and diagnostics)."""
        return ray.get_runtime_context().get_node_id()


def _use_the_nodes_cpus(ctx: RunContext) -> None:
    """Ray gives an actor OMP_NUM_THREADS = its CPU share (1 here); a model on a CPU node should use the node's
    cores, as it does in-process (run.torch_threads, when set, wins)."""
    import torch

    threads = ctx.config.get("run", {}).get("torch_threads") or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class PoolSpec:
    size: int
    num_cpus: float
    num_gpus: float = 0.0


def pool_specs(run_cfg, stages: Sequence[StageSpec], cpus: float, gpus: float,
               node_cpus: float | None = None) -> dict[str, PoolSpec]:  # fmt: skip
    """Actors and resources per stage, from each stage's declared Pool. Light stages take CPU shares, so that on
    a small machine the pools still fit beside the segmentation actor(s), which take the CPUs the others leave
    (or one GPU each) — never more than one node has, less one for the light actors that may share it."""
    gpu_count = int(gpus)
    specs: dict[str, PoolSpec] = {}
    for st in stages:
        p = st.pool
        n = p.size(run_cfg, cpus, gpus)
        if gpu_count and p.gpus:
            specs[st.name] = PoolSpec(n, p.cpus_with_gpus if p.cpus_with_gpus is not None else p.cpus, p.gpus)
        elif p.cpus is not None:
            specs[st.name] = PoolSpec(n, p.cpus)
    set_aside = sum(specs[st.name].size * specs[st.name].num_cpus for st in stages
                    if st.pool.set_aside and st.name in specs and not specs[st.name].num_gpus)  # fmt: skip
    for st in stages:  # the stages that share what is left
        if st.name in specs:
            continue
        n = st.pool.size(run_cfg, cpus, gpus)
        spare = cpus - set_aside
        per_actor = max(1, int(spare // n))
        if node_cpus is not None:
            per_actor = max(1, min(per_actor, int(node_cpus) - 1))
        specs[st.name] = PoolSpec(n, float(per_actor) if spare >= 1 else max(spare, 0.1))
    return specs


def _worker_lost(e: BaseException) -> bool:
    """Whether a batch went down with its actor's process or node (not an error of its own, nor an actor that
    cannot be built: that one fails every time)."""
    if isinstance(e, ray.exceptions.RayActorError):
        return not e.actor_init_failed
    return isinstance(e, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                          ray.exceptions.ObjectLostError))  # fmt: skip


class RayExecutor:
    def __init__(self, ctx: RunContext, address: str | None = None, dry_run: bool = False, depth: int = 2):
        self.started_ray = False
        if not ray.is_initialized():
            if address:
                check_reachable(address)
                prepare_cluster_auth(address)  # a cluster from `ray start` wants its token
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except ConnectionError as e:
                raise ExecutorError(f"cannot join the Ray cluster at --address {address}: {e}") from None
            self.started_ray = True
        resources = ray.cluster_resources()
        node_cpus = max((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["Alive"]), default=None)
        stages = active_stages(ctx.config if not dry_run else {})
        self.specs = pool_specs(
            ctx.mapper_config().run, stages, resources.get("CPU", 1.0), resources.get("GPU", 0.0), node_cpus
        )
        log.info("ray pools: %s", {s: (p.size, p.num_cpus, p.num_gpus) for s, p in self.specs.items()})
        self.depth = depth
        remote = ray.remote(StageActor)
        self.pools: dict[str, list] = {}
        for st in stages:
            spec = self.specs[st.name]
            opts = {"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus, "max_restarts": -1, "max_task_retries": 0}
            self.pools[st.name] = [remote.options(**opts).remote(st.name, ctx, dry_run) for _ in range(spec.size)]
        self.load = {(stage, i): 0 for stage, pool in self.pools.items() for i in range(len(pool))}
        self.refs: dict = {}  # ref -> (stage, actor index)

    def capacity(self, stage: str) -> int:
        return sum(self.depth - self.load[(stage, i)] for i in range(len(self.pools[stage])))

    def submit(self, stage: str, items: list[dict]):
        i = min(range(len(self.pools[stage])), key=lambda j: self.load[(stage, j)])
        ref = self.pools[stage][i].run.remote(items)
        self.load[(stage, i)] += 1
        self.refs[ref] = (stage, i)
        return ref

    def wait(self, timeout: float | None = None) -> list:
        if not self.refs:
            return []
        ready, _ = ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        if not ready:
            return []
        ready, _ = ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
        out = []
        for ref in ready:
            stage, i = self.refs.pop(ref)
            self.load[(stage, i)] -= 1
            try:
                out.append((ref, ray.get(ref)))
            except (ray.exceptions.RayError, OSError) as e:  # actor or node lost, or the batch raised: retried
                out.append((ref, WorkerLost(f"{type(e).__name__}: {e}") if _worker_lost(e) else e))
        return out

    def close(self) -> None:
        for pool in self.pools.values():
            for actor in pool:
                ray.kill(actor)
        self.pools.clear()
        if self.started_ray:
            ray.shutdown()
