"""Label campaigns on a Ray cluster: the campaign's runs (pool, decision and validation samples — all of its
provinces at once, one run each) go through the stage actor pools of mapper.pipelines.ray_executor like any
`mapper run`; the fine-tune goes to one GPU of the cluster when it has GPUs (a task with num_gpus=1), else to
a node's CPUs. mapper.al calls `trainer(fn, *args)` and never imports Ray.
"""

from __future__ import annotations

import logging

import ray
from mapper.pipelines.ray_auth import prepare_cluster_auth

from mapper.run.executor import check_reachable

log = logging.getLogger(__name__)


def cluster_trainer(address: str):
    """A trainer for mapper.al.rounds.Campaign that runs the training function on the cluster at `address`."""

    def trainer(fn, *args, **kwargs):
        if not ray.is_initialized():
            check_reachable(address)
            prepare_cluster_auth(address)
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        resources = ray.cluster_resources()
        if resources.get("GPU", 0) >= 1:
            options = {"num_gpus": 1, "num_cpus": 1}
        else:
            node_cpus = max((n["Resources"].get("CPU", 1.0) for n in ray.nodes() if n["Alive"]), default=1.0)
            options = {"num_cpus": node_cpus}
        log.info("training %s on the cluster with %s", getattr(fn, "__name__", fn), options)
        task = ray.remote(max_retries=2, **options)(fn)  # a lost node retries it: the fine-tune resumes
        return ray.get(task.remote(*args, **kwargs))

    return trainer
