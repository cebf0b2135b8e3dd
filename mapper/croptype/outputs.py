"""The crop-type outputs of a run, from its blocks' crop-type results (written after the driver, like the
cropland outputs; cheap, so rewritten on every run or resume):

    croptype/areas_provinces.csv     unit_code, unit_name, level, class, mapped_ha, truth_ha (world), ratio
    croptype/areas_prefectures.csv   the same per prefecture
    croptype/map_<EPSG>.vrt (+ .qml) the blocks' 10 m crop-type GeoTIFFs, one VRT per UTM zone, with a QGIS
                                     style (paletted leaf codes with the crop names)
    croptype/polygons/<code>_<name>.gpkg   field polygons per prefecture with crop, levels, probability
    croptype/summary.json            totals, area-weighted accuracy per level against the truth (world),
                                     time per step, the unit classified
    fields/fields.parquet (unit field) the run's stitched fields again, now with their crops (fiboa crop
                                     extension; mapper.fields.outputs.write_fields_outputs)
    report/croptype_blocks.png, report/croptype_confusion.png   what the report shows
Areas are true ground area: the 2 m final mask's cropland pixels, each with its field's crop.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from mapper.croptype.stage import CROP_COLUMNS, block_parcels_path, block_raster_path, croptype_dir
from mapper.croptype.style import qgis_style
from mapper.croptype.taxonomy import Taxonomy


def write_croptype_outputs(store, ctx, units: dict) -> dict:
    from mapper.croptype.kinds import load_model
    from mapper.maps.polygons import write_unit_geopackages
    from mapper.models.registry import resolve_checkpoint

    root = store.layout.root
    results = dict(store.results("croptype"))
    if not results:
        return {}
    out_dir = croptype_dir(root)
    taxonomy = load_model(resolve_checkpoint(ctx.config["croptype"]["model"])).taxonomy
    names = {
        "provinces": dict(zip(units["provinces"]["code"], units["provinces"]["name"], strict=True)),
        "prefectures": dict(zip(units["prefectures"]["code"], units["prefectures"]["name"], strict=True)),
    }
    outputs = {}
    for kind in ("provinces", "prefectures"):
        table = area_table(results.values(), kind, names[kind], taxonomy)
        path = out_dir / f"areas_{kind}.csv"
        _write_csv(table, path)
        outputs[f"areas_{kind}"] = str(path)
    blocks = sorted(results)
    outputs["maps"] = [str(p) for p in zone_vrts([block_raster_path(root, b) for b in blocks], out_dir, taxonomy)]
    gpkgs = write_unit_geopackages(
        [block_parcels_path(root, b) for b in blocks],
        out_dir / "polygons",
        units["prefectures"],
        columns=CROP_COLUMNS,
        layer="croptype",
    )
    outputs["polygons"] = [str(p) for p in gpkgs]
    summary = run_summary(results, taxonomy)
    if summary.get("confusion_m2") is not None:
        from mapper.croptype.figures import confusion_area_png

        outputs["confusion_png"] = str(
            confusion_area_png(summary, taxonomy, root / "report" / "croptype_confusion.png")
        )
    from mapper.croptype.figures import blocks_png

    busiest = sorted(blocks, key=lambda b: -results[b].get("parcels", 0))[:6]  # blocks with fields show crops
    gallery = [block_raster_path(root, b) for b in sorted(busiest)]
    outputs["blocks_png"] = str(blocks_png(gallery, taxonomy, root / "report" / "croptype_blocks.png"))
    if ctx.config["croptype"].get("unit") == "field":  # the stitched fields take their pieces' crops (fiboa crop)
        from mapper.fields.outputs import write_fields_outputs

        fields = write_fields_outputs(root, units, store=store, zoom=ctx.config["zoom"])
        if fields:
            outputs["fields"] = fields["fields"]
    summary["unit"] = ctx.config["croptype"].get("unit", "pixel")
    summary["outputs"] = outputs
    from mapper.store.atomic import atomic_write_text

    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1, default=float))
    return outputs


def area_table(results, kind: str, names: dict, taxonomy: Taxonomy) -> pd.DataFrame:
    """Mapped (and truth) hectares per unit, level and class: leaf codes summed up their taxonomy paths."""
    rows = [
        (source, unit, int(code), m2)
        for r in results
        for source, key in (("mapped", "areas"), ("truth", "truth_areas"))
        for unit, per_code in r.get(key, {}).get(kind, {}).items()
        for code, m2 in per_code.items()
    ]
    columns = ["unit_code", "unit_name", "level", "class", "mapped_ha", "truth_ha", "ratio"]
    if not rows:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(rows, columns=["source", "unit_code", "code", "m2"])
    lookup = dict(zip(taxonomy.codes, range(taxonomy.n_leaves), strict=True))
    parts = []
    for level in range(4):
        cls = {c: taxonomy.names[level][taxonomy.paths[i, level]] for c, i in lookup.items()}
        part = df.assign(level=level + 1, **{"class": df["code"].map(cls).fillna("unclassified")})
        parts.append(part.pivot_table(index=["unit_code", "level", "class"], columns="source", values="m2",
                                      aggfunc="sum", fill_value=0.0))  # fmt: skip
    table = pd.concat(parts).reset_index()
    has_truth = "truth" in table
    table["mapped_ha"] = table.get("mapped", 0.0) / 1e4
    table["truth_ha"] = table["truth"] / 1e4 if has_truth else np.nan
    table["ratio"] = (table["mapped_ha"] / table["truth_ha"].where(table["truth_ha"] > 0)) if has_truth else np.nan
    table["unit_name"] = table["unit_code"].map(lambda u: names.get(u, u))
    return table[columns].sort_values(["unit_code", "level", "class"]).reset_index(drop=True)


def run_summary(results: dict, taxonomy: Taxonomy) -> dict:
    """Totals, time per step and (world) the area confusion and accuracy per level."""
    seconds = defaultdict(float)
    for r in results.values():
        for k, v in r.get("stage_seconds", {}).items():
            seconds[k] += v
    out = {
        "blocks": len(results),
        "parcels": sum(r["parcels"] for r in results.values()),
        "classified": sum(r["classified"] for r in results.values()),
        "seconds": dict(seconds),
    }
    for key in ("fallback", "no_pixels"):  # unit field: pieces without a pure 10 m pixel / without any
        if any(key in r for r in results.values()):
            out[key] = sum(r.get(key, 0) for r in results.values())
    pairs = defaultdict(float)
    for r in results.values():
        for key, m2 in r.get("confusion_m2", {}).items():
            t, p = (int(v) for v in key.split(","))
            pairs[(t, p)] += m2
    if not pairs:
        out["confusion_m2"] = None
        return out
    lookup = dict(zip(taxonomy.codes, range(taxonomy.n_leaves), strict=True))
    cm = np.zeros((taxonomy.n_leaves, taxonomy.n_leaves + 1))  # last column: unclassified
    for (t, p), m2 in pairs.items():
        if t in lookup:
            cm[lookup[t], lookup.get(p, taxonomy.n_leaves)] += m2
    out["confusion_m2"] = cm.tolist()
    out["accuracy_by_area"] = {}
    for level in range(4):
        path = taxonomy.paths[:, level]
        pred_class = np.append(path, -1)
        agree = sum(cm[i, j] for i in range(cm.shape[0]) for j in range(cm.shape[1]) if pred_class[j] == path[i])
        out["accuracy_by_area"][f"level{level + 1}"] = float(agree / cm.sum()) if cm.sum() else None
    return out


def zone_vrts(paths: list[Path], out_dir: Path, taxonomy: Taxonomy) -> list[Path]:
    """One VRT per CRS (UTM zone) over the block GeoTIFFs (all on 10 m grids aligned to multiples of 10 m,
    so each block is placed at an integer offset, no resampling), each with its QGIS style beside it."""
    import rasterio

    from mapper.store.atomic import atomic_write_text

    by_crs = defaultdict(list)
    for p in paths:
        with rasterio.open(p) as src:
            by_crs[src.crs.to_epsg()].append((p, src.transform, src.width, src.height, src.count))
    written = []
    for epsg, items in sorted(by_crs.items()):
        x0 = min(t.c for _, t, *_ in items)
        y1 = max(t.f for _, t, *_ in items)
        x1 = max(t.c + w * t.a for _, t, w, _, _ in items)
        y0 = min(t.f + h * t.e for _, t, _, h, _ in items)
        res = items[0][1].a
        width, height = round((x1 - x0) / res), round((y1 - y0) / res)
        vrt = out_dir / f"map_{epsg}.vrt"
        bands = []
        for b in range(1, items[0][4] + 1):
            srcs = "".join(
                f'<SimpleSource><SourceFilename relativeToVRT="1">{Path(p).relative_to(out_dir)}</SourceFilename>'
                f'<SourceBand>{b}</SourceBand><SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
                f'<DstRect xOff="{round((t.c - x0) / res)}" yOff="{round((y1 - t.f) / res)}" xSize="{w}" ySize="{h}"/>'
                "</SimpleSource>"
                for p, t, w, h, _ in items
            )
            bands.append(
                f'<VRTRasterBand dataType="Byte" band="{b}"><NoDataValue>0</NoDataValue>{srcs}</VRTRasterBand>'
            )
        from rasterio.crs import CRS

        wkt = CRS.from_epsg(epsg).to_wkt().replace("&", "&amp;").replace("<", "&lt;")
        text = (
            f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{wkt}</SRS>'
            f"<GeoTransform>{x0}, {res}, 0, {y1}, 0, {-res}</GeoTransform>" + "".join(bands) + "</VRTDataset>\n"
        )
        atomic_write_text(vrt, text)
        qgis_style(taxonomy, vrt.with_suffix(".qml"))
        written.append(vrt)
    return written


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    from mapper.store.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, df.to_csv(index=False, float_format="%.4f"))
