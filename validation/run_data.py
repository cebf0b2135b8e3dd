"""What validation reads of a run directory, read-only: its identity, config, region, state database, and what
is missing from it (pending and failed blocks, absent files, outputs older than the state database)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from mapper.validation.errors import ValidationInputError

from mapper.store.json_file import read_json
from mapper.store.run_store import RUN_FILE, RUN_FORMAT, STATE_FILE, RunLayout, RunStore

FINAL = "final"  # the final map's name among the maps validated, beside the run's source names
_RUN_DIR_HINT = "give the directory a `mapper run --out DIR` created"


@dataclass
class RunData:
    """What validation reads of a run directory (read-only)."""

    root: Path
    identity: dict
    config: object  # MapperConfig
    sources: list[str]
    region: object  # mapper.run.plan.Region
    store: RunStore
    rows: list[tuple]  # (block_id, ix, iy, province, frac_inside) in planning order
    final: dict[str, dict]  # block_id -> result of the final stage (done, file present)
    decide: dict[str, dict]  # block_id -> result of the decide stage
    missing: dict = field(default_factory=dict)

    @property
    def layout(self) -> RunLayout:
        return self.store.layout

    @property
    def zoom(self) -> int:
        return int(self.config.zoom)

    @property
    def maps(self) -> list[str]:
        """The maps validated: each source's masks, then the final map."""
        return [*self.sources, FINAL]

    @property
    def world_seed(self) -> int | None:
        """The world seed when every source of the run is a simulated-world source, else None."""
        if self.sources and self.config.simulated(self.sources):
            return int(self.config.world.seed)
        return None

    def rendering(self, source: str) -> str | None:
        return getattr(self.config.sources.get(source), "rendering", None)

    @property
    def done(self) -> list[str]:
        return [r[0] for r in self.rows if r[0] in self.final]

    @property
    def province_of(self) -> dict[str, str | None]:
        return {r[0]: r[3] for r in self.rows}

    def close(self) -> None:
        self.store.close()


def open_run(run_dir: Path | str) -> RunData:
    """Read a run directory without writing to it; ValidationInputError when it is not one."""
    from mapper.config import load_config

    root = Path(run_dir)
    identity = _read_identity(root)
    config = load_config([root / "config.yaml"])
    sources = list(identity.get("sources") or [])
    region = _region(identity.get("region") or {}, root / RUN_FILE)
    store = RunStore(RunLayout(root), _connect_read_only(root / STATE_FILE), identity)
    rows, final_results, decide, failures = _read_state(store, root)
    run = RunData(root, identity, config, sources, region, store, rows, {}, decide)
    absent_finals = _keep_present_finals(run, final_results)
    run.missing = _missing(run, failures, absent_finals)
    return run


def _read_identity(root: Path) -> dict:
    """The run's identity (run.json), once the directory is known to be a finished plan of a real run."""
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise ValidationInputError(f"{root} {what}; {_RUN_DIR_HINT}")
    run_file = root / RUN_FILE
    if not run_file.exists():
        raise ValidationInputError(f"{root} is not a run directory (no {RUN_FILE}); {_RUN_DIR_HINT}")
    fix = f"{_RUN_DIR_HINT} (was it written by another mapper version?)"
    identity = read_json(run_file, RUN_FORMAT, "a mapper run", fix, ValidationInputError)
    for name in ("config.yaml", STATE_FILE):
        if not (root / name).exists():
            raise ValidationInputError(
                f"{root} is an incomplete run directory: it has no {name} (the run stopped before planning); "
                f"finish it with `mapper run --resume {root}`"
            )
    if identity.get("dry_run"):
        raise ValidationInputError(f"{root} is a dry run (no imagery, no maps): there is nothing to validate")
    return identity


def _region(spec: dict, run_file: Path):
    from mapper.run.plan import RegionError, region_from_spec

    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValidationInputError(f"{run_file} names no region; it was not written by `mapper run`")
    try:
        return region_from_spec(spec)
    except RegionError as e:
        raise ValidationInputError(f"{run_file}: {e}") from None


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """The state database opened read-only (a run being written by its driver can be validated meanwhile); a
    directory we may not write falls back to SQLite's immutable mode."""
    uri = path.resolve().as_uri()
    last: Exception | None = None
    for query in ("?mode=ro", "?immutable=1"):
        conn = None
        try:
            conn = sqlite3.connect(uri + query, uri=True, check_same_thread=False)
            conn.execute("SELECT COUNT(*) FROM blocks").fetchone()
            return conn
        except sqlite3.Error as e:
            last = e
            if conn is not None:
                conn.close()
    raise ValidationInputError(f"cannot read {path}: {last}; is it a mapper run's state database?")


def _read_state(store: RunStore, root: Path) -> tuple[list[tuple], dict, dict, list]:
    """The planned blocks, the final and decide results and the failed tasks of the state database."""
    try:
        rows = list(store.block_rows())
        final_results = dict(store.results("final"))
        decide = dict(store.results("decide"))
        failures = [f for f in store.failures() if f.status == "failed"]
    except sqlite3.Error as e:
        store.close()
        raise ValidationInputError(f"cannot read {root / STATE_FILE}: {e}; is it a mapper run's state database?") from e
    return rows, final_results, decide, failures


def _keep_present_finals(run: RunData, final_results: dict[str, dict]) -> list[str]:
    """Fill run.final with the done blocks whose final map exists; the others are named (validated as pending)."""
    absent = []
    for block_id, result in final_results.items():
        if run.layout.final(block_id).exists():
            run.final[block_id] = result
        else:
            absent.append(f"final/{block_id}.tif (recorded done, file absent: the block is validated as pending)")
    return absent


def _missing(run: RunData, failures: list, absent_finals: list[str]) -> dict:
    """What the run lacks: pending blocks, failed blocks (their failed tasks), absent or stale files."""
    failed_blocks = sorted({f.block_id for f in failures} - set(run.final))
    pending = [r[0] for r in run.rows if r[0] not in run.final and r[0] not in failed_blocks]
    files = list(absent_finals)
    for block_id in run.final:
        for source in run.sources:
            if not run.layout.mask(source, block_id).exists():
                files.append(f"masks/{source}/{block_id}.tif (the source's pixel and block scores skip this block)")
    files += _stale_outputs(run.root, run)
    return {
        "blocks_pending": pending,
        "blocks_failed": [
            {"block_id": f.block_id, "stage": f.stage, "source": f.source, "error": f.error}
            for f in failures
            if f.block_id in failed_blocks
        ],
        "files": files,
    }


def _stale_outputs(root: Path, run: RunData) -> list[str]:
    """blocks.parquet absent, or older than the state database (block statuses differ)."""
    path = root / "blocks.parquet"
    if not path.exists():
        return [f"blocks.parquet (the run's outputs were not written; `mapper run --resume {root}` writes them)"]
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["block_id", "status"]).to_pydict()
    except Exception as e:  # a damaged table is reported, not fatal: validation reads the state database
        return [f"blocks.parquet is unreadable ({type(e).__name__}: {e}); `mapper run --resume {root}` rewrites it"]
    differ = [b for b, s in zip(table["block_id"], table["status"], strict=True) if (s == "done") != (b in run.final)]
    if differ:
        return [
            f"blocks.parquet is older than state.sqlite ({len(differ)} block(s) with another status, e.g. "
            f"{differ[0]}); validation follows state.sqlite; `mapper run --resume {root}` rewrites the outputs"
        ]
    return []
