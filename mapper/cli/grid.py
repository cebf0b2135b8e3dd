"""`mapper grid`: the 0.05° blocks of a province."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--province", "-p", help="Name, Chinese name or code: Guangdong, 广东省, CN044.")
@click.option("--country", type=click.Choice(["China"], case_sensitive=False), help="All provinces (each block once).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the blocks as GeoParquet.")
@click.option("--list", "list_ids", is_flag=True, help="Print one block id per line.")
def grid(province: str | None, country: str | None, out: Path | None, list_ids: bool) -> None:
    """List the blocks that intersect a province (or the whole country), with the fraction inside."""
    from mapper.grid.admin import all_provinces, resolve_province
    from mapper.grid.region import country_blocks, province_blocks

    if (province is None) == (country is None):
        raise click.UsageError("give exactly one of --province NAME or --country China")
    if province is not None:
        prov = resolve_province(province)
        blocks = province_blocks(prov)
        label = f"{prov.name} ({prov.name_zh}, {prov.pcode})"
    else:
        blocks = country_blocks(all_provinces())
        label = f"China ({blocks['province'].nunique()} provincial units)"
    inside = int((blocks["frac_inside"] >= 1.0).sum())
    if list_ids:
        click.echo("\n".join(blocks["block_id"]))
    click.echo(
        f"{label}: {len(blocks):,} blocks of 0.05° ({inside:,} wholly inside, {len(blocks) - inside:,} on the border)",
        err=list_ids,
    )
    if out is not None:
        from mapper.store.geoparquet import write_geoparquet

        write_geoparquet(blocks, out)
        click.echo(f"wrote {out}", err=list_ids)
