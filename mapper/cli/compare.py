"""`mapper compare`: a run's final map against another cropland product (IoU, block AF / ED deviation vs slope)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click


def _values(ctx, param, text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: give pixel values separated by commas, e.g. 1 or 40 or 10,11") from None
    if not values:
        raise click.BadParameter("give at least one pixel value, e.g. 1")
    return tuple(int(v) if v.is_integer() else v for v in values)


def folder_name(name: str) -> str:
    """A comparison's folder name: anything but letters, digits, . _ - replaced, so it stays one folder."""
    return re.sub(r"[^\w.-]+", "_", name, flags=re.ASCII).strip("._") or "other"


@click.command("compare", short_help="Compare a run's final map with another cropland map (IoU, AF/ED deviation).")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("other_map", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Name of the comparison: its folder under RUN_DIR/compare/ [default: OTHER_MAP's "
                             "file name without extension].")  # fmt: skip
@click.option("--cropland-values", "cropland_values", default="1", show_default=True, callback=_values,
              help="Comma list of OTHER_MAP's pixel values meaning cropland (e.g. 40 for ESA WorldCover).")  # fmt: skip
@click.option("--min-af", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Blocks whose cropland area fraction in the run exceeds this enter the block level.")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder [default: RUN_DIR/compare/NAME/].")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (the content of compare.json).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def compare(run_dir, other_map, name, cropland_values, min_af, out, as_json, quiet):
    """Compare a run's final map (C) with another cropland map (T), as the CropLayer paper's Sect. 4.3 does:

    \b
    1. pixel level: IoU, precision and recall of T against C in true ground area, pooled and per block;
    2. block level: area fraction (AF) and edge density (ED) of both, their deviation Div = (T - C) / C,
       and Div against the block's slope median for the blocks with AF_C > --min-af.

    OTHER_MAP is any raster GDAL reads (GeoTIFF, VRT) in any CRS and resolution; its nodata is "not
    covered" and pixels count only where both maps have data. It is warped onto each block's grid by
    nearest neighbour when coarser than the run, by mode when finer. Writes compare.json, blocks.csv,
    deviation_vs_slope.png and deviation_map.png to --out.

    \b
    Example: mapper compare runs/gd ESA_WorldCover_N21E114.tif --cropland-values 40"""
    from mapper.validation.compare import compare_run, open_other, write_comparison

    other = open_other(other_map, cropland_values)
    comparison = compare_run(run_dir, other, min_af=min_af, progress=not quiet and sys.stderr.isatty())
    out = out if out is not None else Path(run_dir) / "compare" / folder_name(name or other_map.stem)
    summary = write_comparison(comparison, out)
    click.echo(json.dumps(summary, indent=1, ensure_ascii=False) if as_json else format_text(summary))


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:+.1f} %"


def _share(v) -> str:
    return "-" if v is None else f"{100 * v:.0f} %"


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def format_text(s: dict) -> str:
    """The short readable table of a comparison summary."""
    o, b, p, lvl = s["other"], s["blocks"], s["pixel"], s["block_level"]
    res = f"{o['resolution_m']:.3g} m" if o.get("resolution_m") else "?"
    lines = [
        f"compare {s['run']['dir']} (C) with {o['path']} (T)",
        f"  other map      {o['crs']}, pixels ~{res}, cropland = {','.join(map(str, o['cropland_values']))}; "
        f"warped by {o['resampling']}",
        f"  blocks         {b['compared']} compared of {b['done']} done ({b['not_covered']} not covered by T)",
        f"  pixel level    IoU {_num(p['iou'])}  precision {_num(p['precision'])}  recall {_num(p['recall'])}"
        f"  over {p['compared_ha']:,.0f} ha",
        f"  block level    {lvl['blocks']} block(s) with AF_C > {lvl['min_af']:g}",
        f"  {'':15}{'median Div':>12}{'over':>8}{'under':>8}",
    ]
    for key, label in (("area_fraction", "area fraction"), ("edge_density", "edge density")):
        d = lvl[key]
        over, under = _share(d["over_share"]), _share(d["under_share"])
        lines.append(f"  {label:15}{_pct(d['median_div']):>12}{over:>8}{under:>8}")
    if not s["complete"]:
        m = s["missing"]
        lines.append(f"  incomplete run: {len(m['blocks_pending'])} pending, {len(m['blocks_failed'])} failed block(s),"
                     f" {len(m['files'])} missing file(s): compared on what exists")  # fmt: skip
    for problem in b["off_grid"]:
        lines.append(f"  skipped {problem}")
    lines.append(f"  written to {Path(s['outputs']['compare.json']).parent}/")
    return "\n".join(lines)
