"""`mapper grid`: the 0.05° blocks of a province."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--province", "-p", required=True, help="Name, Chinese name or code: Guangdong, 广东省, CN044.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the blocks as GeoParquet.")
@click.option("--list", "list_ids", is_flag=True, help="Print one block id per line.")
def grid(province: str, out: Path | None, list_ids: bool) -> None:
    """List the blocks that intersect a province, with prefectures and the fraction inside."""
    from mapper.grid.admin import resolve_province
    from mapper.grid.region import province_blocks

    prov = resolve_province(province)
    blocks = province_blocks(prov)
    inside = int((blocks["frac_inside"] >= 1.0).sum())
    if list_ids:
        click.echo("\n".join(blocks["block_id"]))
    click.echo(
        f"{prov.name} ({prov.name_zh}, {prov.pcode}): {len(blocks):,} blocks of 0.05° "
        f"({inside:,} wholly inside, {len(blocks) - inside:,} on the border)",
        err=list_ids,
    )
    if out is not None:
        from mapper.store.atomic import atomic_path

        with atomic_path(out) as tmp:
            blocks.to_parquet(tmp)
        click.echo(f"wrote {out}", err=list_ids)
