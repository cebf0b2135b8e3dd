"""`mapper labels import raster`: a georeferenced image and polygons drawn over it -> labelled chips."""

from __future__ import annotations

from pathlib import Path

import click


def _values(specs: tuple[str, ...]) -> list[str]:
    """Repeatable, comma-separated values: `--cropland-values 1,2 --cropland-values rice`."""
    return [v.strip() for spec in specs for v in spec.split(",") if v.strip()]


_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("raster", short_help="A georeferenced image + label polygons -> labelled chips on its own grid.")
@click.option("--image", required=True, type=_FILE, help="GeoTIFF (any CRS): RGB uint8, or 3+ bands R, G, B first.")
@click.option(
    "--polygons", required=True, type=_FILE,
    help="Label polygons: GeoPackage, GeoParquet, GeoJSON or Shapefile, any CRS (reprojected to the image's).",
)  # fmt: skip
@click.option("--class-field", help="Column with each polygon's class. Without it every polygon is cropland.")
@click.option(
    "--cropland-values", multiple=True, metavar="V[,V…]",
    help="Values of --class-field that are cropland (repeatable or comma-separated).",
)  # fmt: skip
@click.option(
    "--ignore-values", multiple=True, metavar="V[,V…]",
    help="Values of --class-field to ignore (255: unsure, not labelled). Other values are not cropland.",
)  # fmt: skip
@click.option(
    "--extent", type=_FILE,
    help="Polygons of the areas labelled completely: their pixels outside every polygon are not cropland.",
)  # fmt: skip
@click.option("--chip", type=int, default=512, show_default=True, help="Chip size in image pixels (at least 32).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Labelled chips root.")
@click.option("--dataset", help="Dataset name recorded in each chip's label.json.")
@click.option("--gsd", type=float, help="Expected pixel size in metres; checked against the image (within 5 %).")
@click.option("--make-valid", is_flag=True, help="Repair invalid (self-intersecting) polygons instead of refusing.")
def import_raster(
    image, polygons, class_field, cropland_values, ignore_values, extent, chip, out, dataset, gsd, make_valid
) -> None:
    """Cut the --image into labelled chips of --chip px on its own grid (no reprojection) and burn the
    --polygons into each chip's mask (pixel-centre rule): 1 = cropland, 0 = not cropland, 255 = ignore.

    \b
    - Labelled pixels: inside --extent or inside a polygon. Without --extent only the polygons are labelled,
      so cropland polygons alone give no not-cropland pixel (warned): give --extent or not-cropland polygons.
    - Labelled pixels in no polygon are not cropland; the rest, and pixels without imagery, are ignored.
    - Overlaps: ignore > not cropland > cropland (a pond drawn inside a field is not cropland).
    - Chips start at the image's top-left; edge chips keep their smaller size. Ids: <image stem>_r<row>_c<col>
      (the image pixel of the chip's top-left corner). Chips with no labelled pixel are skipped.
    - GSD: the transform's pixel size for a projected CRS; for degrees (or Web Mercator away from the equator)
      the ground size of a pixel at the image centre, measured geodesically and recorded as such.

    Every input is checked before anything is written. Importing again rewrites only chips whose sources
    (hashes in label.json), classes or window changed, and never deletes chips imported before."""
    from mapper.cli.labels import LabelUsageError  # here: mapper.cli.labels imports this module at its end
    from mapper.labels.import_raster import import_raster as run_import
    from mapper.labels.store import LabelError

    try:
        summary = run_import(
            image, polygons, out, chip=chip, class_field=class_field, cropland_values=_values(cropland_values),
            ignore_values=_values(ignore_values), extent=extent, dataset=dataset, gsd=gsd, make_valid=make_valid,
        )  # fmt: skip
    except LabelError as e:
        raise LabelUsageError(str(e)) from e
    for note in summary.warnings:
        click.echo(f"warning: {note}", err=True)
    click.echo(
        f"{image.name} ({summary.crs}, GSD {summary.gsd_note}): {summary.chips} chip(s) of {chip} px on the grid: "
        f"{len(summary.written)} written, {len(summary.unchanged)} unchanged, {summary.unlabelled} skipped as "
        f"unlabelled -> {out}"
    )
    if summary.repaired:
        click.echo(f"{summary.repaired} invalid polygon(s) repaired (--make-valid)")
    if summary.earlier_kept:
        click.echo(
            f"{summary.earlier_kept} chip(s) of an earlier import of {image.name} are kept although this import did "
            "not produce them (another --chip, or labels since removed); delete them if they are stale"
        )
