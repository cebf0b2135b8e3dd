"""One session of a run: check everything that can be checked before work starts, plan (or reopen) the run
directory, drive the blocks through the stages on an executor, and write the outputs."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from mapper.config.loader import resolved_config_yaml
from mapper.imagery.fetch import spread_indices
from mapper.run.driver import Driver, DriverSettings
from mapper.run.plan import Region, plan_blocks, region_units, run_identity
from mapper.run.stages import RunContext
from mapper.store.run_store import RunLayout, RunStore

log = logging.getLogger("mapper.run")


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


def check_sources(config, source: str) -> tuple[str, str]:
    """The run's two sources, with their tokens present; fails before any work, naming the problem."""
    from mapper.config.models import ConfigError, GoogleTilesConfig, XYZSourceConfig

    names = config.resolve_sources(source)
    if len(names) != 2:
        raise ConfigError(
            f"--source {source!r} gives {len(names)} source(s) ({', '.join(names)}); a run integrates two: "
            "give a source set (e.g. demo, web) or two names (e.g. mapbox,google)"
        )
    for name in names:
        sc = config.sources[name]
        if isinstance(sc, XYZSourceConfig | GoogleTilesConfig):
            sc.token()  # MissingTokenError names the variable
    return names[0], names[1]


def open_store(req: RunRequest, sources) -> RunStore:
    """A new run directory or the one to resume (its identity must match); `plan_if_needed` plans it."""
    identity = run_identity(req.config, req.region, sources, req.max_blocks, req.dry_run)
    if req.resume is not None:
        store = RunStore.open(req.resume, identity)
    else:
        created = {**identity, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        store = RunStore.create(req.out, created, resolved_config_yaml(req.config))
    return store


def plan_if_needed(store: RunStore, req: RunRequest) -> None:
    if store.planned() == 0:  # a new run, or one killed while planning (the plan is one transaction)
        t0 = time.perf_counter()
        plan = plan_blocks(req.region)
        region_blocks = {str(k): int(v) for k, v in plan["province"].value_counts().items()}
        if req.max_blocks:
            plan = plan.iloc[spread_indices(len(plan), req.max_blocks)]
        rows = plan[["block_id", "ix", "iy", "province", "frac_inside"]].itertuples(index=False, name=None)
        store.add_blocks(rows, meta={"region_blocks_per_province": region_blocks})
        log.info("planned %d blocks of %s in %.1f s", store.planned(), req.region.name, time.perf_counter() - t0)


def run(req: RunRequest, executor_factory) -> dict:
    """Run (or resume) to the end; returns the summary. `executor_factory(ctx) -> executor`."""
    from mapper.run.outputs import write_outputs
    from mapper.run.progress import Progress

    sources = check_sources(req.config, req.source)
    store = open_store(req, sources)
    layout: RunLayout = store.layout
    handler = _log_to(layout.log_file)
    try:
        plan_if_needed(store, req)
        log.info("run %s: %s, sources %s, %d blocks", layout.root, req.region.name, ",".join(sources), store.planned())
        ctx = RunContext(req.config.model_dump(mode="json"), str(layout.root), sources, region_units(req.region))
        cfg = req.config.run
        settings = DriverSettings(
            max_attempts=cfg.max_attempts,
            blocks_in_flight=cfg.blocks_in_flight if not req.dry_run else max(cfg.blocks_in_flight, 512),
            batch={"iqa": cfg.iqa_batch_blocks, "segment": cfg.segment_batch_blocks, "decide": 16}
            if not req.dry_run else dict.fromkeys(("fetch", "iqa", "segment", "features", "decide", "final"), 256),
        )  # fmt: skip
        progress = Progress(store.planned(), len(sources), store.stage_counts(), quiet=req.quiet)
        t0 = time.perf_counter()
        executor = executor_factory(ctx)
        try:
            outcome = Driver(store, executor, sources, settings, progress).run()
        finally:
            executor.close()
            progress.close()
        elapsed = time.perf_counter() - t0
        summary = {"blocks": store.planned(), **outcome, "seconds": elapsed}
        if not req.dry_run:
            summary = write_outputs(store, ctx, req.region, summary)
        log.info("run %s finished: %s", layout.root, summary)
        return summary
    finally:
        store.close()
        logging.getLogger().removeHandler(handler)
        handler.close()


def _log_to(path: Path) -> logging.Handler:
    """Append this session's log to the run's log file (INFO and up, whatever the console shows)."""
    handler = logging.FileHandler(path, encoding="utf-8")
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
