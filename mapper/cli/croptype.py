"""`mapper croptype`: crop types inside the cropland map from Sentinel-2 time series (CropNet with
hierarchical heads) — parcel datasets of the simulated world, training, held-out evaluation, the crop-type
stage of a run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mapper.cli.options import world_seed_option


class CropTypeUsageError(click.ClickException):
    exit_code = 2


@click.group("croptype", short_help="Crop types from Sentinel-2: simulate, train, evaluate, map a run.")
def croptype() -> None:
    """Crop types of the mapped fields from Sentinel-2 L2A time series.

    Parcels are fields of the cropland map (on the simulated world: its truth fields); a parcel's series is
    the mean of its pure 10 m pixels, composited onto 43 five-day steps (days 121-331). The model is CropNet
    (joint spectral-temporal convolutions) with one head per taxonomy level, each conditioned on the level
    above; every prediction is a valid path through the taxonomy."""


def _world(world_seed: int | None):
    from mapper.world.world import get_world

    return get_world(0 if world_seed is None else world_seed)


@croptype.command("simulate", short_help="Write a parcel dataset (series + crops) of the simulated world.")
@click.option("--province", "-p", required=True, help="Where the parcels are sampled (any province name).")
@click.option(
    "--windows",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Sampled windows (each in a different block wholly inside the province).",
)
@click.option("--window-km", type=click.FloatRange(0.2, 5.5), default=2.0, show_default=True, help="Window side.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the window sample.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Dataset directory.")
@world_seed_option
def simulate(province, windows, window_km, seed, out, world_seed):
    """Sample windows of a province of the world, composite its Sentinel-2 acquisitions (clouds masked by
    SCL) and write the truth fields' parcel series with this year's and last year's crop."""
    from mapper.croptype.dataset import save_dataset, simulate_dataset

    ds = simulate_dataset(_world(world_seed), province, windows, window_km, seed, log=lambda m: click.echo(m, err=True))
    save_dataset(ds, out)
    counts = ds.parcels["code"].value_counts()
    click.echo(f"{len(ds)} parcels of {counts.size} crops from {windows} windows -> {out}")


@croptype.command("export-s2", short_help="Write the world's Sentinel-2 over a box as per-date GeoTIFFs.")
@click.option("--bbox", required=True, help="west,south,east,north in degrees (at most one block, 0.05°, a side).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder for the files.")
@world_seed_option
def export_s2(bbox, out, world_seed):
    """What a user downloads: one L2A-like GeoTIFF per date (B2…B12 then SCL, uint16, the date in the
    ACQUISITION_DATE tag) on the UTM 10 m grid of the box's zone; `mapper croptype` reads these as it
    reads real files."""
    from mapper.croptype.s2write import write_dates
    from mapper.world.sentinel2 import simulate_block

    try:
        west, south, east, north = (float(v) for v in bbox.split(","))
    except ValueError:
        raise CropTypeUsageError(f"--bbox {bbox!r}: give west,south,east,north in degrees") from None
    if not (west < east and south < north) or east - west > 0.05 + 1e-9 or north - south > 0.05 + 1e-9:
        raise CropTypeUsageError(f"--bbox {bbox}: need west < east, south < north and sides of at most 0.05°")
    sim = simulate_block(_world(world_seed), (west, south, east, north))
    paths = write_dates(out, sim.data, sim.scl, sim.bands, sim.dates, sim.crs, sim.transform)
    click.echo(f"{len(paths)} dates ({sim.dates[0]} … {sim.dates[-1]}), {sim.data.shape[3]} × {sim.data.shape[2]} "
               f"px, {sim.crs.to_string()} -> {out}")  # fmt: skip


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))
