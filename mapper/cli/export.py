"""`mapper export`: a run in the standard forms other tools read (`mapper export stac`: a STAC catalog)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group(short_help="Export a run for other tools: a STAC catalog.")
def export() -> None:
    """Export a run directory in standard forms that other tools read."""


@export.command("stac", short_help="Write a run as a STAC catalog (a collection, an item per block).")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="The catalog's folder, replaced as a whole [default: RUN_DIR/stac].")  # fmt: skip
@click.option("--href-base", metavar="URL",
              help="The URL RUN_DIR will be served at: writes an absolute published catalog whose links and asset "
                   "hrefs are URLs under it [default: a self-contained catalog with relative hrefs].")  # fmt: skip
def stac(run_dir: Path, out: Path | None, href_base: str | None) -> None:
    """Write RUN_DIR as a STAC 1.1 catalog (pystac): OUT/collection.json describes the run (extent,
    providers, the CropLayer method, the models and their sha256, mapper's version, the world seed, the
    blocks left out) with the map, polygons, tables, figures and the crop-type and allocation outputs as
    assets; OUT/<block>/<block>.json is an item per done block with the final COG, each source's mask and
    mosaic and the block's polygons as assets (projection and raster extensions from the GeoTIFF headers).

    Without --href-base every href is relative and points into RUN_DIR's own files, so the catalog keeps
    working when RUN_DIR is copied or moved. A run still being written, or with pending or failed blocks,
    is exported as it stands, and what is left out is named.
    Example: mapper export stac runs/guangdong --href-base https://example.org/runs/guangdong/"""
    from mapper.stac.catalog import export_stac
    from mapper.stac.runinfo import StacExportError

    try:
        result = export_stac(run_dir, out=out, href_base=href_base)
    except StacExportError as e:  # one line and exit status 2, as mapper.cli.main does for USER_ERRORS
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    kind = "published" if href_base else "self-contained"
    click.echo(f"{result.root_file} ({kind}): {result.items} item(s) of {result.planned} planned block(s), "
               f"{result.assets} collection asset(s)")  # fmt: skip
    for note in result.notes:
        click.echo(f"warning: {note}", err=True)
