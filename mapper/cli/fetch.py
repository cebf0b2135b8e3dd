"""`mapper fetch`: block mosaics of a province from one imagery source (resumable)."""

from __future__ import annotations

from pathlib import Path

import click

from mapper.cli.options import config_option, load, world_seed_option


@click.command()
@click.option("--province", "-p", required=True)
@click.option("--source", "-s", "source_name", required=True, help="A configured source or set (demo, mapbox, ...).")
@click.option("--max-blocks", type=int, default=None, help="A spread sample of N blocks, for trying it out.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/mosaics"), show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@config_option
@world_seed_option
def fetch(province, source_name, max_blocks, out, quiet, config_files, world_seed) -> None:
    """Write one GeoTIFF per block and source under OUT/SOURCE/; blocks already written are kept."""
    from mapper.grid.admin import resolve_province
    from mapper.grid.region import province_blocks
    from mapper.imagery.fetch import fetch_blocks, spread_sample

    config = load(config_files, world_seed)
    names = config.resolve_sources(source_name)
    prov = resolve_province(province)
    ids = list(province_blocks(prov)["block_id"])
    if max_blocks is not None:
        ids = spread_sample(ids, max_blocks)
    for name in names:
        summary = fetch_blocks(config, name, ids, out, progress=not quiet)
        click.echo(
            f"{name}: {summary.written} written, {summary.skipped} already there, {summary.failed} failed; "
            f"{summary.missing_tiles} tiles missing -> {out / name}"
        )
        for block_id, why in list(summary.failures.items())[:10]:
            click.echo(f"  {block_id}: {why}", err=True)
