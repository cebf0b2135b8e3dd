"""`mapper segment`: cropland masks of blocks, from a source or from mosaics already fetched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from mapper.cli.options import config_option, load, world_seed_option


class SegmentUsageError(click.ClickException):
    exit_code = 2


def _lonlat(text: str) -> tuple[float, float]:
    try:
        lon, lat = (float(v) for v in text.split(","))
    except ValueError:
        raise SegmentUsageError(f"--at {text!r}: give LON,LAT in degrees, e.g. --at 113.3,23.1") from None
    return lon, lat


@click.command(short_help="Segment cropland in blocks (from a source, or from mosaic GeoTIFFs).")
@click.option("--source", "-s", "source_name", help="A configured imagery source or set (demo, mapbox, naip, ...).")
@click.option("--block", "block_ids", multiple=True, help="Block id (e.g. 5866_2262); repeatable.")
@click.option("--at", "points", multiple=True, help="LON,LAT: the block containing this point; repeatable.")
@click.option("--province", "-p", help="Blocks of a province (with --max-blocks for a spread sample).")
@click.option("--max-blocks", type=click.IntRange(min=1), help="A spread sample of N of the province's blocks.")
@click.option(
    "--mosaic", "mosaics", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A block mosaic GeoTIFF written by `mapper fetch` (repeatable), instead of --source.",
)  # fmt: skip
@click.option("--checkpoint", default="seg-default", show_default=True, help="Checkpoint directory or packaged name.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/seg"), show_default=True)
@click.option("--device", help="torch device (default: cuda when available, else cpu).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Windows per batch [default: 8 on CPUs, 32 on GPUs].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@config_option
@world_seed_option
def segment(source_name, block_ids, points, province, max_blocks, mosaics, checkpoint, out, device, batch_size,
            quiet, config_files, world_seed):  # fmt: skip
    """Write one prediction GeoTIFF per block on the block's own grid: band 1 cropland (1/0, 255 where there is
    no imagery), band 2 the cropland probability (scale 0.004). With --source they go to OUT/SOURCE/BLOCK.tif;
    with --mosaic to OUT/<mosaic's folder>/<mosaic name>.tif. Predictions already written are kept."""
    from mapper.seg.predict import load_segmenter

    if bool(mosaics) == bool(source_name):
        raise SegmentUsageError("give either --source (with --block, --at or --province) or --mosaic files")
    config = load(config_files, world_seed)
    opened: list = []  # sources to close at the end
    if mosaics:
        jobs = _mosaic_jobs(mosaics, out)
    else:
        jobs = _source_jobs(config, source_name, block_ids, points, province, max_blocks, out, opened)
    try:
        _segment_jobs(jobs, load_segmenter(checkpoint, device=device, batch_size=batch_size), out, quiet)
    finally:
        for source in opened:
            source.close()


def _segment_jobs(jobs: list[tuple[Path, Callable]], segmenter, out: Path, quiet: bool) -> None:
    """Predict and write every job (path, mosaic maker); a block whose mosaic fails is reported, not fatal."""
    from tqdm import tqdm

    from mapper.seg.predict import write_prediction

    bar = tqdm(total=len(jobs), desc="segment", unit="block", disable=quiet)
    loaded, failures, empty = {}, {}, []

    def items():
        for i, (path, make) in enumerate(jobs):
            try:
                loaded[i] = make()
            except Exception as e:  # one block that cannot be read must not stop the others; it is reported
                failures[str(path)] = f"{type(e).__name__}: {e}"
                bar.update()
                continue
            yield i, loaded[i]

    for i, result in segmenter.predict(items()):
        mosaic = loaded.pop(i)
        write_prediction(result, mosaic.window, jobs[i][0], block_id=mosaic.block_id)
        if not result.valid.any():  # written all-nodata (as IQA would class it), and said
            empty.append(mosaic.block_id or str(jobs[i][0]))
        bar.update()
    bar.close()
    click.echo(f"{len(jobs) - len(failures)} block(s) segmented -> {out}")
    if empty:
        click.echo(f"  {len(empty)} without any imagery (all nodata): {', '.join(empty[:10])}", err=True)
    for path, why in failures.items():
        click.echo(f"  failed: {path}: {why}", err=True)
    if failures:
        raise SystemExit(1)


def _mosaic_jobs(paths, out: Path) -> list[tuple[Path, Callable]]:
    from mapper.imagery.mosaic import read_mosaic

    # OUT/<folder>/<name>.tif keeps both layouts apart: fetch's SOURCE/BLOCK.tif and labels' BLOCK/image_S.tif
    jobs = [(out / p.resolve().parent.name / f"{p.stem}.tif", lambda p=p: read_mosaic(p)) for p in paths]
    return [(path, make) for path, make in jobs if not path.exists()]  # written ones are kept: resumable


def _source_jobs(config, name, block_ids, points, province, max_blocks, out: Path, opened: list) -> list:
    from mapper.grid.blocks import Block
    from mapper.imagery.mosaic import mosaic_block
    from mapper.imagery.sources import open_source

    blocks = [Block.parse(b) for b in block_ids] + [Block.containing(*_lonlat(p)) for p in points]
    if province:
        from mapper.grid.admin import resolve_province
        from mapper.grid.region import province_blocks
        from mapper.imagery.fetch import spread_sample

        ids = list(province_blocks(resolve_province(province))["block_id"])
        blocks += [Block.parse(b) for b in (spread_sample(ids, max_blocks) if max_blocks else ids)]
    if not blocks:
        raise SegmentUsageError("no blocks: give --block, --at or --province")
    jobs = []
    for source in config.resolve_sources(name):
        opened.append(open_source(source, config))  # fails here, before any work, on a missing token
        for block in blocks:
            path = out / source / f"{block.id}.tif"
            if not path.exists():
                jobs.append((path, lambda s=opened[-1], b=block: mosaic_block(s, b, config.zoom)))
    return jobs
