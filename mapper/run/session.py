"""One session of a run: check everything that can be checked before work starts, plan (or reopen) the run
directory, drive the blocks through the stages on an executor, and write the outputs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mapper.config.loader import resolved_config_yaml
from mapper.imagery.fetch import spread_indices
from mapper.run.driver import Driver, DriverSettings, batch_sizes
from mapper.run.plan import Region, plan_blocks, region_units, run_identity
from mapper.run.preflight import check_dem, check_models, check_sources
from mapper.run.registry import active_stages
from mapper.run.stage import RunContext
from mapper.store.atomic import atomic_write_text, remove_stale_temporary_files, remove_stale_temporary_files_under
from mapper.store.run_lock import RunLock
from mapper.store.run_store import RUN_FILE, RunLayout, RunStore, RunStoreError, check_writable
from mapper.store.space import free_bytes, is_disk_full, reason

log = logging.getLogger("mapper.run")
BLOCKS_FILE = "blocks.txt"  # the explicit block list of a run over chosen blocks


@dataclass
class RunRequest:
    config: object  # MapperConfig
    region: Region
    source: str  # a source set or "a,b"
    out: Path | None = None
    resume: Path | None = None
    max_blocks: int | None = None
    quiet: bool = False
    dry_run: bool = False
    retry_failed: bool = False  # failed tasks get their attempts again (after their cause was fixed)
    blocks: list[str] | None = None  # exactly these blocks of the region (a label campaign's pool or sample)
    on_planned: Callable[[RunStore], None] | None = None  # called once the blocks are planned, before any work


def open_store(req: RunRequest, sources) -> RunStore:
    """A new run directory or the one to resume (its identity must match); `plan_if_needed` plans it."""
    identity = run_identity(req.config, req.region, sources, req.max_blocks, req.dry_run, req.blocks)
    if req.resume is not None:
        store = RunStore.open(req.resume, identity)
    else:
        created = {**identity, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if not (Path(req.out) / RUN_FILE).exists():  # a creation killed mid-write left these; nobody writes them now
            for name in (BLOCKS_FILE, "config.yaml", RUN_FILE):
                remove_stale_temporary_files(Path(req.out) / name)
        if req.blocks is not None:  # the list itself, for `mapper run --resume` (run.json keeps its digest)
            atomic_write_text(Path(req.out) / BLOCKS_FILE, "\n".join(sorted(set(req.blocks))) + "\n")
        store = RunStore.create(req.out, created, resolved_config_yaml(req.config))
    return store


def plan_if_needed(store: RunStore, req: RunRequest) -> None:
    if store.planned() == 0:  # a new run, or one killed while planning (the plan is one transaction)
        t0 = time.perf_counter()
        plan = plan_blocks(req.region)
        region_blocks = {str(k): int(v) for k, v in plan["province"].value_counts().items()}
        if req.blocks is not None:
            plan = _only(plan, req.blocks, req.region)
        if req.max_blocks:
            plan = plan.iloc[spread_indices(len(plan), req.max_blocks)]
        rows = plan[["block_id", "ix", "iy", "province", "frac_inside"]].itertuples(index=False, name=None)
        store.add_blocks(rows, meta={"region_blocks_per_province": region_blocks})
        log.info("planned %d blocks of %s in %.1f s", store.planned(), req.region.name, time.perf_counter() - t0)


def _only(plan, block_ids, region):
    """The plan's rows of the given blocks (in planning order); blocks outside the region are named."""
    wanted = set(block_ids)
    outside = sorted(wanted - set(plan["block_id"]))
    if outside:
        shown = ", ".join(outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
        raise RunStoreError(f"{len(outside)} of the given blocks are not blocks of {region.name}: {shown}")
    return plan[plan["block_id"].isin(wanted)]


def run(req: RunRequest, executor_factory) -> dict:
    """Run (or resume) to the end; returns the summary. `executor_factory(ctx) -> executor`."""
    sources = check_sources(req.config, req.source)
    if not req.dry_run:
        check_models(req.config.run.models)  # before any work: a bad model would fail every block, one by one
        check_dem(req.config.run.dem)
    root = prepare_root(req)
    handler = _log_to(RunLayout(root).log_file)
    try:
        with RunLock.acquire(root, what="mapper run") as lock:  # one driver per run directory
            if RunLayout(root).run_file.exists():  # a run begun before: what its killed driver's writes left
                remove_stale_temporary_files_under(root)  # (the lock is ours; a new --out may be any folder)
            store = open_store(req, sources)
            try:
                return _drive(req, store, sources, executor_factory, lock)
            finally:
                store.close()
    except Exception as e:
        if is_disk_full(e):  # one clear error, whichever write met the full disk
            raise RunDiskFullError(root, e) from None
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


class RunDiskFullError(RuntimeError):
    """The run directory's disk is full; the run stopped, nothing finished is lost."""

    def __init__(self, root: Path, cause: BaseException):
        free = free_bytes(root)
        room = f" ({free / 1e6:.0f} MB free)" if free is not None else ""
        super().__init__(
            f"the disk holding the run directory {root} is full{room}, so the run stopped: {reason(cause)}. "
            f"Nothing finished is lost: free space on that disk (or move {root} to a larger one), then continue "
            f"with `mapper run --resume {root}`"
        )


def prepare_root(req: RunRequest) -> Path:
    """The run directory, made (a new run) or checked to be a run (a resume), before it is locked."""
    if req.resume is not None:
        root = Path(req.resume)
        if not RunLayout(root).run_file.exists():
            raise RunStoreError(f"{root} is not a run directory (no run.json); start a run with --out")
        return root
    check_writable(Path(req.out))
    return Path(req.out)


def _drive(req: RunRequest, store: RunStore, sources, executor_factory, lock: RunLock) -> dict:
    from mapper.run.outputs import write_outputs
    from mapper.run.progress import Progress

    layout: RunLayout = store.layout
    plan_if_needed(store, req)
    if req.on_planned is not None:  # e.g. the estimate `mapper run` prints (mapper.estimate.inrun)
        req.on_planned(store)
    if req.retry_failed:
        log.info("--retry-failed: %d failed task(s) get their attempts again", store.retry_failed())
    log.info("run %s: %s, sources %s, %d blocks", layout.root, req.region.name, ",".join(sources), store.planned())
    ctx = RunContext(req.config.model_dump(mode="json"), str(layout.root), sources, region_units(req.region))
    cfg = req.config.run
    stages = active_stages(ctx.config if not req.dry_run else {})  # a dry run: the cropland stages, trivially
    settings = DriverSettings(
        max_attempts=cfg.max_attempts,
        blocks_in_flight=cfg.blocks_in_flight if not req.dry_run else max(cfg.blocks_in_flight, 512),
        batch=batch_sizes(stages, cfg) if not req.dry_run else {s.name: 256 for s in stages},
        stages=stages,
    )
    progress = Progress(store.planned(), len(sources), store.stage_counts(), quiet=req.quiet, stages=settings.stages)
    t0 = time.perf_counter()
    executor = executor_factory(ctx)
    try:
        outcome = Driver(store, executor, sources, settings, progress, guard=lock.check).run()
    finally:
        executor.close()
        progress.close()
    summary = {"blocks": store.planned(), **outcome, "seconds": time.perf_counter() - t0}
    if not req.dry_run:
        summary = write_outputs(store, ctx, req.region, summary)
    log.info("run %s finished: %s", layout.root, summary)
    return summary


class _RunLogHandler(logging.FileHandler):
    """run.log: a record that cannot be written because the disk is full is dropped quietly (the run stops
    with one clear error of its own) rather than printing a traceback to the console for every line."""

    def handleError(self, record: logging.LogRecord) -> None:
        import sys

        if not is_disk_full(sys.exc_info()[1] or Exception()):
            super().handleError(record)


def _log_to(path: Path) -> logging.Handler:
    """Append this session's log to the run's log file (INFO and up, whatever the console shows)."""
    handler = _RunLogHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
        for h in root.handlers:
            if h is not handler and h.level == logging.NOTSET:
                h.setLevel(logging.WARNING)  # the console keeps its verbosity
    return handler
