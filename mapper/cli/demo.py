"""`mapper demo`: the simulated world — serve it over HTTP, preview blocks."""

from __future__ import annotations

from pathlib import Path

import click

from mapper.cli.options import world_seed_option


@click.group()
def demo() -> None:
    """The simulated world: a deterministic imagery source with ground truth."""


@demo.command()
@click.option("--port", type=int, default=8765, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (keep it on loopback).")
@world_seed_option
def serve(port: int, host: str, world_seed: int | None) -> None:
    """Serve both renderings as XYZ tiles: /a/{z}/{x}/{y}.png and /b/{z}/{x}/{y}.png."""
    import time

    from mapper.world.server import WorldServer

    with WorldServer(world_seed or 0, host, port) as server:
        click.echo(f"serving world seed {world_seed or 0}:")
        click.echo(f"  A: {server.url_template('a')}")
        click.echo(f"  B: {server.url_template('b')}")
        click.echo("Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


@demo.command()
@click.option("--block", "blocks", multiple=True, help="Block id (repeatable); default: four sample blocks.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--crop", "crop_px", type=int, default=None, help="Show only the top-left N × N pixels.")
@world_seed_option
def preview(blocks: tuple[str, ...], out: Path, crop_px: int | None, world_seed: int | None) -> None:
    """Draw both renderings of blocks and their truth side by side."""
    from mapper.world.preview import render_preview, sample_block_ids

    ids = list(blocks) or sample_block_ids(4)
    render_preview(ids, out, world_seed or 0, crop_px)
    click.echo(f"wrote {out}")


@demo.command()
@click.option("--province", "-p", required=True)
@click.option("--samples", type=int, default=40, show_default=True, help="Samples per block side (40: ~140 m).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@world_seed_option
def stats(province: str, samples: int, as_json: bool, world_seed: int | None) -> None:
    """The simulated world's own cropland statistic for a province (true area inside the polygon)."""
    import json

    from mapper.grid.admin import resolve_province
    from mapper.world.truth import cropland_area_in_polygon
    from mapper.world.world import get_world

    if samples < 1:
        raise click.BadParameter("must be at least 1", param_hint="--samples")
    prov = resolve_province(province)
    seed = world_seed or 0
    area = cropland_area_in_polygon(get_world(seed), prov.geometry, samples)
    result = {"province": prov.name, "world_seed": seed, **area}
    if as_json:
        click.echo(json.dumps(result, indent=1))
    else:
        click.echo(
            f"{prov.name}, world seed {seed}: cropland {result['cropland_ha']:,.0f} ha "
            f"({result['cropland_fraction']:.1%} of {result['area_ha']:,.0f} ha, {result['blocks']:,} blocks)"
        )
