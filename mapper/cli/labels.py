"""`mapper labels`: labelled blocks (imagery + cropland mask + coverage type) from the world or from people."""

from __future__ import annotations

from pathlib import Path

import click

from mapper.cli.options import config_option, load, world_seed_option


class LabelUsageError(click.ClickException):
    """Bad labels or arguments: one clear line, exit 2 like the other user errors of `mapper`."""

    exit_code = 2


labels = click.Group(
    "labels", help="Labelled blocks (image + cropland mask): make them from the simulated world, ingest, check."
)


@labels.command("make", short_help="Labelled blocks from the simulated world (spread, stratified).")
@click.option("--province", "-p", help="Pick blocks in this province (name, Chinese name or code).")
@click.option("--bbox", nargs=4, type=float, metavar="W S E N", help="…or in this lon/lat box (degrees).")
@click.option("--block", "block_ids", multiple=True, help="…or exactly these blocks (repeatable).")
@click.option("--n", "n", type=int, help="How many blocks to pick in the province or box.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Labelled blocks root.")
@click.option(
    "--sources", default="a,b", show_default=True,
    help="World renderings to image each block with: a, b, NAME=a, or configured world sources (demo-a, demo).",
)  # fmt: skip
@click.option("--rng-seed", type=int, default=0, show_default=True, help="Seeds the block selection.")
@click.option("--workers", type=int, default=1, show_default=True, help="Processes rendering blocks.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@config_option
@world_seed_option
def make(province, bbox, block_ids, n, out, sources, rng_seed, workers, quiet, config_files, world_seed) -> None:
    """Write N labelled blocks from the simulated world's imagery and truth under OUT/<block_id>/.

    Blocks are spread over the region and stratified by cropland share and coverage type, without rendering
    anything to choose them. Resumable: blocks already complete under OUT are kept."""
    from mapper.labels.store import LabelError
    from mapper.labels.world import make_world_labels, parse_world_sources, select_training_blocks

    chosen = sum(x is not None and x != () for x in (province, bbox, block_ids or None))
    if chosen != 1:
        raise click.UsageError("give exactly one of --province, --bbox or --block")
    if (province or bbox) and not n:
        raise click.UsageError("--n is required with --province or --bbox (how many blocks to label)")
    if n is not None and n < 1:
        raise click.UsageError("--n must be at least 1")
    config = load(config_files, world_seed)
    seed = config.world.seed
    try:
        src = parse_world_sources(sources, config)
        if block_ids:
            from mapper.grid.blocks import Block

            try:
                blocks = [Block.parse(b) for b in block_ids]
            except ValueError as e:
                raise click.UsageError(str(e)) from e
            where = f"{len(blocks)} given block(s)"
        else:
            if province:
                from mapper.grid.admin import resolve_province

                prov = resolve_province(province)
                geometry, where = prov.geometry, prov.name
            else:
                import shapely

                w, s, e, nn = bbox
                if not (w < e and s < nn and w >= -180 and e <= 180 and s >= -85 and nn <= 85):
                    raise click.UsageError(f"--bbox {w} {s} {e} {nn} is not a lon/lat box W S E N with W < E, S < N")
                geometry, where = shapely.box(w, s, e, nn), f"box {w} {s} {e} {nn}"
            blocks = select_training_blocks(seed, geometry, n, rng_seed)
        summary = make_world_labels(
            seed, blocks, out, src, progress=not quiet, workers=workers, mosaic_options=config.mosaic.model_dump()
        )
    except LabelError as e:
        raise LabelUsageError(str(e)) from e
    click.echo(
        f"world seed {seed}, {where}: {len(summary.written)} labelled blocks written, "
        f"{len(summary.skipped)} already there, {len(summary.failed)} failed -> {out}"
    )
    for block_id, why in summary.failed.items():
        click.echo(f"  {block_id}: {why}", err=True)
    if summary.failed:
        raise SystemExit(1)
    click.echo(f"check them with: mapper labels check {out}")


@labels.command("check", short_help="Validate labelled blocks and chips and summarise them; exit 1 if any is bad.")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
def check(root: Path) -> None:
    """Validate every labelled block and chip under ROOT (or ROOT itself) and print a summary.

    Exit code 1, with each problem listed, if any is incomplete or invalid."""
    from collections import Counter

    from mapper.labels.chips import CHIP_SOURCE, chip_dirs, read_labelled_chip
    from mapper.labels.store import LABEL_FILE, LabelError, block_dirs, image_file, read_labelled_block

    if (root / LABEL_FILE).exists() or (root / image_file(CHIP_SOURCE)).exists():
        dirs = [root]
    else:  # blocks, chips, and chips left without label.json by an interrupted import
        half = [d for d in root.iterdir() if (d / image_file(CHIP_SOURCE)).exists() and not (d / LABEL_FILE).exists()]
        dirs = sorted({*block_dirs(root), *chip_dirs(root), *half})
    if not dirs:
        click.echo(f"error: no labelled blocks (directories named like blocks, e.g. 5889_2460/) or chips in {root}",
                   err=True)  # fmt: skip
        raise SystemExit(1)
    rows, errors = [], []
    coverage_counts: Counter = Counter()
    crop = []
    for d in dirs:
        try:
            if (d / image_file(CHIP_SOURCE)).exists():
                chip = read_labelled_chip(d)
                what = f"chip {chip.mask.shape[1]}x{chip.mask.shape[0]} px at {chip.gsd_m:g} m"
                dataset = chip.meta.get("dataset")
                what += f" ({dataset})" if dataset else ""
                row = (chip.chip_id, chip.meta["origin"], chip.cropland_fraction, what)
                coverage_counts.update(["chip (no coverage type)"])
            else:
                lb = read_labelled_block(d)
                cov = "  ".join(f"{s}: {lb.coverage[s] or '-'} (ignore {lb.ignore(s).mean():.0%})" for s in lb.sources)
                coverage_counts.update(c or "not recorded" for c in lb.coverage.values())
                row = (lb.block.id, lb.origin, lb.cropland_fraction, cov)
        except LabelError as e:
            errors.append((d.name, str(e)))
            continue
        crop.append(row[2])
        rows.append((row[0], row[1], f"{row[2]:.1%}".rjust(8), row[3]))
    if rows:
        widths = [max(len(r[i]) for r in [("block", "origin", "cropland", ""), *rows]) for i in range(3)]
        header = ("block", "origin", "cropland", "coverage per source")
        for r in [header, *rows]:
            click.echo("  ".join([*(v.ljust(w) for v, w in zip(r[:3], widths, strict=True)), r[3]]))
        by_type = ", ".join(f"{k} {v}" for k, v in sorted(coverage_counts.items()))
        click.echo(
            f"{len(rows)} valid labelled block(s) or chip(s); mean cropland {sum(crop) / len(crop):.1%}; "
            f"images by coverage type: {by_type}"
        )
    if errors:
        click.echo(f"{len(errors)} of {len(dirs)} have problems:", err=True)
        for name, why in errors:
            click.echo(f"- {name}: {why}", err=True)
        raise SystemExit(1)


def _parse_image(spec: str, block_id: str) -> tuple[str, Path]:
    """'NAME=PATH' or 'PATH'; without a name, `mapper fetch`'s layout OUT/<source>/<block>.tif gives it."""
    name, _, path = spec.rpartition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
    p = Path(path)
    if not p.exists():
        raise click.BadParameter(f"image file not found: {p}", param_hint="--image")
    if not name:
        name = p.parent.name if p.stem == block_id and p.parent.name else p.stem
    return name, p


@labels.command("ingest", short_help="Human polygon labels -> a labelled block on the image grid.")
@click.option("--block", "block_id", required=True, help="The block the labels are for (id as `mapper grid` prints).")
@click.option(
    "--polygons", required=True, type=click.Path(exists=True, dir_okay=True, path_type=Path),
    help="Cropland polygons (GeoPackage, GeoJSON, Shapefile; any CRS). Optional column class/label: 1 or 0.",
)  # fmt: skip
@click.option(
    "--image", "images", required=True, multiple=True,
    help="The block's mosaic GeoTIFF (repeatable, one per source): PATH or NAME=PATH. Without NAME the source "
    "is the folder name of `mapper fetch`'s OUT/<source>/<block>.tif.",
)  # fmt: skip
@click.option(
    "--coverage", type=click.Choice(["Planting", "Non-planting", "Cloudy", "Snow/Ice", "Nodata"]),
    help="Coverage type of the image(s), if the labeller recorded it.",
)  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Labelled blocks root.")
def ingest(block_id, polygons, images, coverage, out) -> None:
    """Rasterise human polygon labels onto a block's image grid and store them as a labelled block.

    Pixels outside every polygon are not cropland; pixels without imagery are ignored (255). An existing
    labelled block of the same id under OUT is replaced."""
    import hashlib

    from mapper.grid.blocks import Block
    from mapper.imagery.mosaic import read_mosaic
    from mapper.labels.store import (
        LabelError,
        check_image_file,
        ingest_polygons,
        is_complete,
        read_label_json,
        write_labelled_block,
    )

    try:
        block = Block.parse(block_id)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--block") from e
    parsed = [_parse_image(s, block.id) for s in images]
    names = [n for n, _ in parsed]
    if len(set(names)) != len(names):
        raise click.BadParameter(f"two images of one source among {names}; name them NAME=PATH", param_hint="--image")
    try:
        mosaics = {}
        for name, path in parsed:
            check_image_file(path, block)
            mosaics[name] = read_mosaic(path)
        mask = ingest_polygons(block, polygons, list(mosaics.values()))
        existing = out / block.id
        replaced = is_complete(existing) and read_label_json(existing).get("origin")
        digest = hashlib.sha256(polygons.read_bytes()).hexdigest() if polygons.is_file() else None
        extra = {"human": {"polygons": str(polygons.resolve()), "polygons_sha256": digest}}
        d = write_labelled_block(out, block, mosaics, mask, dict.fromkeys(mosaics, coverage), "human", extra)
    except LabelError as e:
        raise LabelUsageError(str(e)) from e
    labelled = mask != 255
    frac = (mask == 1).sum() / max(1, labelled.sum())
    click.echo(
        f"block {block.id}: {frac:.1%} cropland of {labelled.mean():.1%} labelled pixels "
        f"(sources {', '.join(names)}) -> {d}" + (f" (replaced labels from {replaced})" if replaced else "")
    )


@labels.group("import", short_help="Labelled chips from real labelled imagery that is not a mapper block.")
def import_group() -> None:
    """Import real labelled imagery (public datasets' image/mask pairs, a georeferenced image with polygons) as
    labelled chips that keep their own pixel size; training, evaluation and label rounds take them beside
    labelled blocks."""


# Each import command lives in its own module and is added here.
from mapper.cli.import_chips import import_chips  # noqa: E402
from mapper.cli.import_raster import import_raster  # noqa: E402

import_group.add_command(import_chips)
import_group.add_command(import_raster)
