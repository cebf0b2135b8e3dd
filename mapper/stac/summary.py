"""The collection-level record of a run: who made the data (providers), how (the CropLayer method, the models
and their sha256, mapper's version, the world seed), and what the catalog lacks (pending and failed blocks).

Everything comes from run.json, the saved config and the state database; no URL of a source is taken (a
source's URL template is configuration, and tokens must never reach a catalog), only its name, kind and
attribution.
"""

from __future__ import annotations

import pystac

from mapper.secrets import redact
from mapper.stac.runinfo import RunInfo

MAX_LISTED = 1000  # block ids listed in mapper:missing; the counts are always whole


def description(run: RunInfo) -> str:
    sample = (f" {len(run.done)} of the {run.planned} blocks planned are in this catalog."
              if len(run.done) < run.planned else "")  # fmt: skip
    world = (f" The imagery is mapper's simulated world (seed {run.world_seed}), not real imagery."
             if run.world_seed is not None else "")  # fmt: skip
    return (
        f"Cropland of {run.region_name} at 2 m (z16 web-map pixels, EPSG:3857) mapped by mapper with the "
        "CropLayer method: block mosaics of two imagery sources, image quality classes, Mask2Former "
        "segmentation, block features, two XGBoost decisions (semantic correctness and integration of the "
        f"sources) and a final mask per 0.05° block. One item per block.{sample}{world} Item times are the "
        "run's, not the imagery's, unless an item's mapper:datetime_basis says imagery."
    )


def providers(run: RunInfo) -> list[pystac.Provider]:
    """Each imagery source (by its attribution) and mapper as the processor."""
    out = []
    for name in run.sources:
        source = run.config.sources.get(name)
        kind = getattr(source, "kind", "unknown")
        attribution = redact(getattr(source, "attribution", None) or name)
        roles = ["producer"] if kind == "world" else ["producer", "licensor"]
        out.append(pystac.Provider(name=attribution, roles=roles,
                                   description=f"imagery source {name!r} of the run (kind {kind})"))  # fmt: skip
    version = run.identity.get("mapper_version", "unknown")
    out.append(pystac.Provider(name="mapper", roles=["processor"],
                               description=f"mapper {version}: cropland at 2 m by the CropLayer method"))  # fmt: skip
    return out


def collection_fields(run: RunInfo) -> dict:
    """The mapper: fields of the collection."""
    blocks = {"planned": run.planned, "exported": len(run.done),
              "pending": len(run.missing.get("blocks_pending", [])),
              "failed": len(run.missing.get("blocks_failed", []))}  # fmt: skip
    fields = {
        "mapper:method": "CropLayer",
        "mapper:version": run.identity.get("mapper_version"),
        "mapper:models": _models(run),
        "mapper:region": run.identity.get("region"),
        "mapper:sources": [_source(run, s) for s in run.sources],
        "mapper:run_created": run.identity.get("created"),
        "mapper:blocks": blocks,
        "mapper:run_in_progress": run.in_progress,
    }
    if run.world_seed is not None:
        fields["mapper:world_seed"] = run.world_seed
    missing = _missing(run)
    if missing:
        fields["mapper:missing"] = missing
    return {k: v for k, v in fields.items() if v is not None}


def _models(run: RunInfo) -> dict[str, dict]:
    """{role: {name, sha256}}: the names from the config, the hashes run.json recorded when the run began."""
    names = run.identity.get("config", {}).get("run", {}).get("models", {})
    return {role: {"name": names.get(role), "sha256": sha} for role, sha in (run.identity.get("models") or {}).items()}


def _source(run: RunInfo, name: str) -> dict:
    source = run.config.sources.get(name)
    out = {"name": name, "kind": getattr(source, "kind", None), "attribution": getattr(source, "attribution", None)}
    if getattr(source, "rendering", None):
        out["rendering"] = source.rendering
    return {k: (redact(v) if isinstance(v, str) else v) for k, v in out.items() if v is not None}


def _missing(run: RunInfo) -> dict:
    """The blocks not in the catalog and why, and files the run lacks (validation's words)."""
    pending = run.missing.get("blocks_pending", [])
    failed = run.missing.get("blocks_failed", [])
    out: dict = {}
    if pending:
        out["pending"] = pending[:MAX_LISTED]
    if failed:
        out["failed"] = [{**f, "error": _public(run, f.get("error") or "")[:500]} for f in failed[:MAX_LISTED]]
    if len(pending) > MAX_LISTED or len(failed) > MAX_LISTED:
        out["note"] = f"the first {MAX_LISTED} of each are listed; mapper:blocks has the counts"
    if run.missing.get("files"):
        out["files"] = [_public(run, file_note(f)) for f in run.missing["files"][:MAX_LISTED]]
    if out:
        out["fix"] = "`mapper run --resume RUN_DIR` (with --retry-failed for failed blocks), then export again"
    return out


def file_note(text: str) -> str:
    """A block's absent file as the catalog says it ('masks/a/X.tif (absent)'), without validation's comment on
    what it does without it; run-level notes (blocks.parquet stale) are kept whole."""
    if text.startswith(("masks/", "final/", "mosaics/")):
        return text.split(" (", 1)[0] + " (absent)"
    return text


def _public(run: RunInfo, text: str) -> str:
    """A message fit for a published catalog: tokens masked, this machine's path of the run as RUN_DIR."""
    for path in sorted({str(run.root.resolve()), str(run.root)}, key=len, reverse=True):
        text = text.replace(path, "RUN_DIR")
    return redact(text)
