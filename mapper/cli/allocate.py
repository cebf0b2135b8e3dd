"""`mapper allocate RUN`: crop statistics onto the grid (seed 003's equations 1-7) from a run's maps."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("allocate", short_help="Crop statistics per unit onto a grid, from a run's cropland and crop maps.")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--statistics", "statistics", default="world", show_default=True,
              help="A CSV of unit, crop, area_ha (harvested ha; units: provinces or prefectures by pcode or "
                   "name), or `world`: the simulated world's own for the part of each unit the run mapped.")
@click.option("--level", type=click.Choice(["province", "prefecture"]), default="prefecture", show_default=True,
              help="The units of --statistics world.")
@click.option("--grid", "grid", type=click.Choice(["block", "5arcmin"]), default="block", show_default=True,
              help="The 0.05° block grid, or the seed's 5′ (~10 km) grid.")
@click.option("--probability", type=click.Choice(["map", "regression"]), default="map", show_default=True,
              help="Each crop's share of a cell from the run's crop-type map, or the seed's random-forest "
                   "regression on spatial indicators trained on the mapped cells.")
@click.option("--cropland", default="run", show_default=True,
              help="`run` (the final 2 m map) or a GeoTIFF of the cropland share (0-1) on the grid.")
@click.option("--intensity", default="auto", show_default=True,
              help="Cropping intensity (harvests a year): `world` (the simulated world's), `1`, or a GeoTIFF on "
                   "the grid; auto: the world's for a run on the simulated world, else 1.")
@click.option("--indicator", "indicators", multiple=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A GeoTIFF on the grid whose bands join the regression's indicators; repeatable.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder [RUN/allocation].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def allocate(run_dir, statistics, level, grid, probability, cropland, intensity, indicators, out, as_json):
    """Allocate crop statistics to the grid cells of a finished run (after `mapper croptype map RUN`):
    each statistic spread over its unit by probability × cell area, capped by cropland × cropping
    intensity, crops in the seed's order, the rest re-allocated by probability, then by room left. Writes a
    GeoTIFF (a band per crop), a GeoParquet, a per-unit table (statistic, allocated, unplaced) and a PNG
    per crop; what cannot be placed is reported per unit and crop."""
    import json

    from mapper.allocate.job import AllocationSettings, allocate_run

    settings = AllocationSettings(statistics=str(statistics), level=level, grid=grid, probability=probability,
                                  cropland=str(cropland), intensity=str(intensity),
                                  indicators=[str(p) for p in indicators])  # fmt: skip
    summary = allocate_run(run_dir, settings, out, log=lambda m: click.echo(m, err=True))
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=float))
        return
    folder = Path(summary["outputs"]["geotiff"]).parent
    counts = f"{summary['units']} units, {len(summary['crops'])} crops, {summary['pieces']:,} pieces"
    click.echo(f"allocated {summary['allocated_ha']:,.1f} of {summary['statistic_ha']:,.1f} ha ({counts}) -> {folder}")
    if summary["unplaced_ha"] > 0:
        click.echo(f"{summary['unplaced_ha']:,.1f} ha could not be placed (no room or no probability): per unit "
                   f"and crop in {folder / 'units.csv'} (column unplaced_ha)")  # fmt: skip
    ev = summary.get("evaluation")
    if ev:
        m, p = ev["method"], ev["cropland_proportional"]
        click.echo(f"against the world's truth per cell: R² {m['r2']:.3f}, MAE {m['mae_ha']:.2f} ha "
                   f"(proportional to cropland: R² {p['r2']:.3f}, MAE {p['mae_ha']:.2f} ha)")  # fmt: skip
