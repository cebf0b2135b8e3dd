"""What a stage of a run is: the context its workers get, the worker base class (per-item errors, timing,
disk room), and the spec a stage registers with (mapper.run.registry): its worker, its inputs, its item, its
batch size and its Ray pool. The cropland stages are in mapper.run.stages; other capabilities declare theirs
in their own package and register them through the "mapper.stages" entry points.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mapper.store.run_store import RunLayout

log = logging.getLogger("mapper.run.stages")


@dataclass(frozen=True)
class RunContext:
    """What every worker needs to know about the run (picklable: it travels to Ray actors)."""

    config: dict  # MapperConfig.model_dump(mode="json")
    root: str
    sources: tuple[str, str]
    units: dict  # {"provinces": [pcode, ...], "prefectures": [pcode, ...], "region": WKT of the region}

    @property
    def layout(self) -> RunLayout:
        return RunLayout(Path(self.root))

    def mapper_config(self):
        from mapper.config.models import MapperConfig

        return MapperConfig.model_validate(self.config)


def error_result(e: BaseException) -> dict:
    """An item's failure as recorded in the state database (type, message, where); a full disk is marked, so
    the driver stops the run instead of counting it against the block."""
    from mapper.store.space import is_disk_full, reason

    where = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    loc = f" ({Path(where[0].filename).name}:{where[0].lineno})" if where else ""
    out = {"error": f"{type(e).__name__}: {e}{loc}"}
    if is_disk_full(e):
        out["disk_full"] = reason(e)
    return out


def _timed(fn, item) -> dict:
    t0 = time.perf_counter()
    try:
        out = fn(item)
    except Exception as e:  # recorded per item; the batch and the run go on
        out = error_result(e)
        if "disk_full" not in out:  # a full disk is said once, by the driver
            log.warning("%s %s failed: %s", type(fn).__name__, item.get("block_id"), e)
    out["seconds"] = time.perf_counter() - t0
    return out


class Worker:
    """Base: `__call__(items)` maps `one(item)` over a batch, catching per-item errors."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.layout = ctx.layout

    def __call__(self, items: Sequence[dict]) -> list[dict]:
        return [_timed(self.one, item) for item in items]

    def one(self, item: dict) -> dict:
        raise NotImplementedError

    def make_room(self, path: Path, need_bytes: int) -> None:
        """Before writing `path` (about `need_bytes`): DiskFullError unless run.min_free_mb stays free."""
        from mapper.store.space import ensure_free_space

        keep = self.ctx.config.get("run", {}).get("min_free_mb", 0) * 1e6
        ensure_free_space(path.parent, need_bytes, int(keep))

    def mosaics(self, items: Sequence[dict], out: list) -> Iterator[tuple[int, object]]:
        """(index, mosaic) of the items' block mosaics; an unreadable one fails its item only (in `out`)."""
        from mapper.imagery.mosaic import read_mosaic

        for i, item in enumerate(items):
            try:
                mosaic = read_mosaic(self.layout.mosaic(item["source"], item["block_id"]))
            except Exception as e:
                out[i] = error_result(e)
                continue
            yield i, mosaic


def set_torch_threads(n: int | None) -> None:
    """torch's intra-op threads for this process's models (None: leave torch's default)."""
    if n is not None:
        import torch

        torch.set_num_threads(n)


def per_item_seconds(out: list[dict], t0: float) -> list[dict]:
    """A batch's results with its time shared evenly among its items."""
    seconds = (time.perf_counter() - t0) / max(len(out), 1)
    return [{**o, "seconds": seconds} for o in out]


def jsonable(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no NaN; None reads back as a missing value
    return v


class NoopWorker(Worker):
    """A trivial stage for dry runs: measures planning and scheduling alone (no files, no models)."""

    def one(self, item: dict) -> dict:
        return {"decision": "Neither"} if "features" in item else {"probs": {}, "features": {}}


@dataclass(frozen=True)
class Pool:
    """A stage's Ray actor pool: how many actors and what each holds, on a CPU-only cluster and on one with GPUs.

    `actors` is a number or `f(run config, cluster CPUs, cluster GPUs)`. `cpus` None: the actors share the CPUs
    the other pools leave (segmentation, the bottleneck on CPUs). `set_aside`: the pool's CPUs are counted before
    that share is made; a small pool that may wait beside it is not. `model`: a torch model that, on a CPU node,
    uses the node's cores (not Ray's one-thread default)."""

    actors: int | Callable[[object, float, float], int] = 1
    cpus: float | None = 0.1
    gpus: float = 0.0  # per actor, when the cluster has GPUs
    cpus_with_gpus: float | None = None  # per actor, when the cluster has GPUs (default: `cpus`)
    set_aside: bool = True
    model: bool = False

    def size(self, run_cfg, cpus: float, gpus: float) -> int:
        return self.actors(run_cfg, cpus, gpus) if callable(self.actors) else self.actors


def no_inputs(done: dict, sources: Sequence[str]) -> dict:
    return {}


def one_at_a_time(run_cfg) -> int:
    return 1


@dataclass(frozen=True)
class StageSpec:
    """A stage of a run, as the driver, the executors and the outputs know it.

    `after`: the stages whose results a task of this stage waits for (of the same source when both are per
    source; of every source when this one is per block). `item(done, sources)`: the earlier results an item
    carries beside its block id (and source), from the block's done results {(source, stage): result}.
    `enabled(config)`: for an optional stage, whether the run's config (a dict) turns it on. `outputs(store, ctx,
    units)`: run-level outputs written at the end of every session, when some block is done."""

    name: str
    worker: Callable[[RunContext], Worker]
    after: tuple[str, ...] = ()
    per_source: bool = False
    item: Callable[[dict, Sequence[str]], dict] = no_inputs
    batch: Callable[[object], int] = one_at_a_time  # items per batch, from the run config's `run` section
    pool: Pool = Pool()
    enabled: Callable[[dict], bool] | None = None  # None: always part of a run
    outputs: Callable[[object, RunContext, dict], object] | None = None
