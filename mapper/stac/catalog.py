"""`mapper export stac`: a run as a STAC collection (pystac), written atomically.

    OUT/collection.json          the run: extent, providers, method, models and their sha256, what is missing,
                                 the run-level files as assets
    OUT/<block>/<block>.json     an item per done block (mapper.stac.items)

Without a base URL the catalog is self-contained: every href is relative, assets point into the run's own
files, so the catalog works wherever the run directory is copied. With `href_base` (the URL the run directory
will be served at) it is an absolute published catalog: every link and asset href is a URL under it. OUT is
written to a temporary folder beside it and renamed, so a kill leaves the old catalog or the new, never half.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlparse

import pystac
from pystac.utils import make_relative_href

from mapper.stac.items import block_item
from mapper.stac.run_assets import add_run_assets, run_files
from mapper.stac.runinfo import RunInfo, StacExportError, read_run
from mapper.stac.summary import collection_fields, description, file_note, providers

EXPORT_FORMAT = "mapper-stac/1"  # marks OUT as a catalog mapper wrote, which a new export may replace
ROOT_FILE = "collection.json"


@dataclass
class ExportResult:
    root_file: Path
    items: int
    planned: int
    assets: int
    pending: int
    failed: int
    in_progress: bool
    notes: list[str] = field(default_factory=list)


def export_stac(run_dir: Path | str, out: Path | str | None = None, href_base: str | None = None) -> ExportResult:
    """Write the STAC catalog of a run directory (default OUT: RUN_DIR/stac) and say what it holds."""
    from mapper.store.atomic import atomic_directory

    base = _check_href_base(href_base)
    root = Path(run_dir).resolve()  # every path below is built from it, so hrefs never depend on symlinks
    run = read_run(root)
    out_dir = Path(out).resolve() if out is not None else root / "stac"
    _check_out(out_dir, root, base is not None)
    href_of = _href_maker(root, base)
    collection = build_collection(run, href_of, out_dir)
    if base is None:
        collection.normalize_hrefs(str(out_dir))
        collection.make_all_asset_hrefs_relative()  # the items' assets; the collection's own below
        for asset in collection.assets.values():
            asset.href = make_relative_href(asset.href, collection.self_href)
        kind = pystac.CatalogType.SELF_CONTAINED
    else:
        collection.normalize_hrefs(base + quote(out_dir.relative_to(root).as_posix()) + "/")
        kind = pystac.CatalogType.ABSOLUTE_PUBLISHED
    _refuse_secrets(collection, run)
    with atomic_directory(out_dir) as tmp:
        collection.save(catalog_type=kind, dest_href=str(tmp))
    return _result(run, out_dir, collection)


def build_collection(run: RunInfo, href_of, out_dir: Path) -> pystac.Collection:
    """The run's collection with an item per done block and the run-level files as assets."""
    items = [block_item(run, block_id, province, href_of) for block_id, province in run.done]
    collection = pystac.Collection(
        id=f"mapper-{_slug(run.root.name)}",
        title=f"Cropland at 2 m: {run.region_name} (mapper run {run.root.name})",
        description=description(run),
        extent=_extent(items),
        license="other",
        keywords=["cropland", "CropLayer", "agriculture", "land cover", "2 m"],
        providers=providers(run),
        extra_fields={"mapper:export": EXPORT_FORMAT, **collection_fields(run)},
    )
    add_run_assets(collection, run_files(run.root, exclude=out_dir), href_of)
    collection.add_items(items)
    return collection


def _extent(items: list[pystac.Item]) -> pystac.Extent:
    bboxes = [i.bbox for i in items]
    bbox = [min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes), max(b[3] for b in bboxes)]
    starts = [i.common_metadata.start_datetime or i.datetime for i in items]
    ends = [i.common_metadata.end_datetime or i.datetime for i in items]
    return pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[min(starts), max(ends)]]))


def _href_maker(root: Path, base: str | None):
    """path -> href: the absolute path (made relative once the catalog's place is known), or base + its path
    inside the run directory."""
    if base is None:
        return lambda path: str(path)
    return lambda path: base + quote(Path(path).relative_to(root).as_posix())


def _check_href_base(href_base: str | None) -> str | None:
    if href_base is None:
        return None
    parsed = urlparse(href_base)
    if not parsed.scheme or not parsed.netloc or parsed.query or parsed.fragment:
        raise StacExportError(f"--href-base {href_base!r} is not a URL; give the URL the run directory will be "
                              "served at, e.g. https://example.org/runs/gd/")  # fmt: skip
    return href_base if href_base.endswith("/") else href_base + "/"


def _check_out(out_dir: Path, root: Path, published: bool) -> None:
    """OUT is replaced as a whole: refuse anything but a new or empty folder or an earlier export."""
    if out_dir == root or root.is_relative_to(out_dir):
        raise StacExportError(f"--out {out_dir} holds the run directory {root}, and the export replaces --out as a "
                              f"whole; give a folder of its own, e.g. {root / 'stac'} (the default)")  # fmt: skip
    if published and not out_dir.is_relative_to(root):
        raise StacExportError(f"--href-base is the URL the run directory will be served at, so --out must lie "
                              f"inside {root} to be served with it; leave --out out (default {root / 'stac'})")
    if out_dir.exists() and not out_dir.is_dir():
        raise StacExportError(f"--out {out_dir} is a file; give a folder for the catalog")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _earlier_export(out_dir):
        raise StacExportError(f"--out {out_dir} holds other files, and the export replaces --out as a whole; "
                              "give a new or empty folder")  # fmt: skip


def _earlier_export(out_dir: Path) -> bool:
    try:
        data = json.loads((out_dir / ROOT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("mapper:export") == EXPORT_FORMAT


def _refuse_secrets(collection: pystac.Collection, run: RunInfo) -> None:
    """Belt and braces: no token value of the run's sources may be in the catalog (mapper never saves them in
    a run, and the catalog takes no URL from the configuration; this would catch a future slip)."""
    secrets = [os.environ.get(getattr(run.config.sources.get(s), "token_env", None) or "") for s in run.sources]
    secrets = [s for s in secrets if s and len(s) >= 4]
    if not secrets:
        return
    texts = [json.dumps(collection.to_dict(include_self_link=False))]
    texts += [json.dumps(i.to_dict(include_self_link=False)) for i in collection.get_items()]
    if any(secret in text for secret in secrets for text in texts):
        raise StacExportError("a source token was about to be written into the catalog; nothing was written "
                              "(please report this as a bug)")  # fmt: skip


def _result(run: RunInfo, out_dir: Path, collection: pystac.Collection) -> ExportResult:
    missing = run.missing
    notes = []
    if missing.get("blocks_pending") or missing.get("blocks_failed"):
        notes.append(f"left out: {len(missing.get('blocks_pending', []))} pending and "
                     f"{len(missing.get('blocks_failed', []))} failed block(s) (listed in the collection's "
                     f"mapper:missing); `mapper run --resume {run.root}` maps them, then export again")  # fmt: skip
    if run.in_progress:
        notes.append(f"{run.root} has a driver.lock: the run may still be in progress (or was killed); the "
                     "catalog holds the blocks done so far")  # fmt: skip
    files = missing.get("files", [])
    if files:
        notes.append(f"{len(files)} file(s) of the run are absent or stale, e.g. {file_note(files[0])}; "
                     "the collection's mapper:missing lists them")  # fmt: skip
    return ExportResult(out_dir / ROOT_FILE, len(run.done), run.planned, len(collection.assets),
                        len(missing.get("blocks_pending", [])), len(missing.get("blocks_failed", [])),
                        run.in_progress, notes)  # fmt: skip


def _slug(name: str) -> str:
    text = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.lower()).strip("-")
    return text or "run"
