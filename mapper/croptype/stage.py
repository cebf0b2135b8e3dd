"""The crop-type stage of a run: per block, after its final mask, the crops of its cropland fields.

    final mask + field polygons (2 m) ─┐
    Sentinel-2 L2A of the block ───────┴→ composite (43 steps, SCL-masked) → fields delineated inside the
        cropland polygons → CropNet (consistent decoding) on every field pixel's series (croptype.unit pixel,
        the default: a field polygon takes its pixels' commonest crop) or on each field's mean over its pure
        pixels (unit parcel) → leaf, levels, probability
    unit field: the fields are the 2 m pieces of the run's fields stage (fields/blocks/<block>.tif); a piece's
        series is the mean of its pure 10 m pixels (footprint wholly in the piece), else of the 10 m pixels
        whose centre it holds; each 2 m cropland pixel of a piece takes the piece's crop, the 10 m map each
        pixel the crop of the piece holding its centre (`field_pieces`, `field_unit`)

Written per block (atomically) under RUN/croptype/:
    blocks/<block>.tif      10 m GeoTIFF on the UTM grid of the Sentinel-2 data: band 1 leaf code (styled
                            by the zone VRT's .qml), bands 2-5 the class of levels 1-4 (index + 1), band 6 the
                            leaf probability (%); 0 outside cropland (a 10 m pixel is cropland when
                            ≥ croptype.min_cropland_share of its 2 m final-mask pixels are) and where no
                            field holds the pixel
    parcels/<block>.parquet the block's field polygons (EPSG:4326, cut by prefecture) with their crop
    fields/<block>.parquet  unit field: each piece's crop (label, crop_code, crop, level1-4, crop_prob, n_pure,
                            fallback, area_m2), mapper.fields.paths.field_crops_path
The result carries the block's crop area per unit and leaf code in true ground m² (the 2 m final mask's
pixels, each taking its field's crop), and on the simulated world the same for the truth crops plus an
area confusion matrix (truth × mapped, m², over pixels that are cropland in both).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mapper.maps.units import unit_frames
from mapper.run.stage import Pool, RunContext, StageSpec, Worker
from mapper.run.stages import decision_item

UNCLASSIFIED = 0
CROP_COLUMNS = ["block_id", "unit_code", "unit_name", "area_m2", "crop_code", "crop", "level1", "level2", "level3",
                "level4", "crop_prob", "n_pure", "fallback"]  # fmt: skip  # the fields' table and GeoPackages


def croptype_dir(root: Path | str) -> Path:
    return Path(root) / "croptype"


def block_raster_path(root, block_id: str) -> Path:
    return croptype_dir(root) / "blocks" / f"{block_id}.tif"


def block_parcels_path(root, block_id: str) -> Path:
    return croptype_dir(root) / "parcels" / f"{block_id}.parquet"


class S2Provider:
    """Sentinel-2 of a block from the configured source: the simulated world, or the user's files (their
    headers checked once, when the stage starts)."""

    def __init__(self, cfg: dict, world_seed: int):
        self.kind = cfg["kind"]
        self.world_seed = world_seed
        self.cfg = cfg
        if self.kind == "files":
            from mapper.croptype.s2read import S2ReadError, check_s2, read_s2

            if not cfg["paths"]:
                raise S2ReadError("croptype.s2.kind is files but croptype.s2.paths is empty; list the L2A files")
            self._read = read_s2
            plan = check_s2(cfg["paths"], bands=cfg.get("bands"), dates_file=cfg.get("dates_file"))
            self.crs = plan.grid.crs
            self.bands = plan.bands

    def stack(self, block):
        if self.kind == "world":
            from mapper.croptype.worldsource import simulate_stack
            from mapper.world.world import get_world

            return simulate_stack(get_world(self.world_seed), block.bounds)[0]
        from rasterio.warp import transform_bounds

        bounds = transform_bounds("EPSG:4326", self.crs, *block.bounds, densify_pts=21)
        return self._read(
            self.cfg["paths"], bands=self.cfg.get("bands"), dates_file=self.cfg.get("dates_file"), window=bounds
        )


class CropTypeWorker(Worker):
    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        from mapper.croptype.kinds import load_model
        from mapper.models.registry import resolve_checkpoint

        cfg = ctx.config["croptype"]
        self.cfg = cfg
        self.zoom = ctx.config["zoom"]
        self.model = load_model(resolve_checkpoint(cfg["model"]))  # any kind: CropNet, the forest, …
        self.model.to(cfg.get("device"))
        self.taxonomy = self.model.taxonomy
        self.bands = tuple(self.model.bands)
        self.steps = np.asarray(self.model.steps)
        self.s2 = S2Provider(cfg["s2"], ctx.config["world"]["seed"])
        self.units = unit_frames(ctx.units)
        self.truth = cfg["s2"]["kind"] == "world"  # the world knows what grows where

    def one(self, item: dict) -> dict:
        from mapper.croptype.composite import composite_bands
        from mapper.grid.blocks import Block
        from mapper.maps.polygons import read_block_polygons

        t = {"start": time.perf_counter()}
        block = Block.parse(item["block_id"])
        window = block.window(self.zoom)
        final = _read_final(self.layout.final(block.id))
        polygons = read_block_polygons(self.layout.block_polygons(block.id)).reset_index(drop=True)
        unit = self.cfg.get("unit", "pixel")
        labels = None
        if unit == "field":
            from mapper.croptype.fieldunit import read_field_labels

            labels = read_field_labels(self.layout.root, block.id, window)
        stack = self.s2.stack(block)
        t["read"] = time.perf_counter()
        comp = composite_bands(stack, self.bands, steps=self.steps)
        t["composite"] = time.perf_counter()
        if unit == "field":
            out = self._field_unit(block, window, final, polygons, labels, comp, t)
            t["end"] = time.perf_counter()
            return _with_seconds(out, t)
        parcels = block_fields(comp, polygons)
        if unit == "pixel":  # every field pixel its own series
            map_labels, series, owner = pixel_samples(comp, parcels)
            map_crops = self._classify(series)
            crops = field_majority(map_crops, owner, len(parcels.series), self.taxonomy)
        else:
            crops = self._classify(parcels.series)
            map_labels, map_crops = parcels.fields, crops
        t["classify"] = time.perf_counter()
        crop10 = _field_lut(map_crops["code"])[map_labels + 1]
        fields_gdf = field_polygons(parcels, crops, polygons, comp, self.taxonomy)
        path = block_parcels_path(self.layout.root, block.id)
        self.make_room(path, 1 << 20)
        _write_parcels(fields_gdf, path)
        cropland10 = _cropland_share_10m(final, window, comp)
        raster = _crop_raster(map_labels, map_crops, cropland10 >= self.cfg["min_cropland_share"])
        _write_raster(raster, comp, block_raster_path(self.layout.root, block.id), self.taxonomy, block.id)
        main = main_crop_of_polygons(parcels, crops, len(polygons))
        codes2m = codes_on_block_grid(crop10, comp, window, final, polygons, main)
        out = {
            "parcels": len(parcels.series),
            "polygons": len(polygons),
            "classified": int((crops["code"] > 0).sum()),
            "areas": self._areas(codes2m, final == 1, window, block),
        }
        if self.truth:
            out.update(self._truth(block, window, codes2m, final))
        t["end"] = time.perf_counter()
        return _with_seconds(out, t)

    def _field_unit(self, block, window, final, polygons, labels, comp, t: dict) -> dict:
        """Unit field: the run's 2 m field pieces classified by their pure 10 m pixels' mean (module docstring)."""
        from mapper.croptype.fieldunit import field_main_crops, field_pieces, field_table, piece_polygons, write_table
        from mapper.fields.paths import field_crops_path

        pieces = field_pieces(comp, labels, window)
        crops = self._classify(pieces.series)
        t["classify"] = time.perf_counter()
        lut = _field_lut(crops["code"])
        crop10 = lut[pieces.centre + 1]
        cropland10 = _cropland_share_10m(final, window, comp)
        raster = _crop_raster(pieces.centre, crops, cropland10 >= self.cfg["min_cropland_share"])
        _write_raster(raster, comp, block_raster_path(self.layout.root, block.id), self.taxonomy, block.id)
        field_code = lut[labels]  # each 2 m pixel its piece's crop (0: no piece, or an unclassified one)
        in_field = (field_code > 0) & (final == 1)
        main = lambda poly: field_main_crops(poly, labels, lut, len(polygons))  # noqa: E731
        codes2m = codes_on_block_grid(crop10, comp, window, final, polygons, main, skip=in_field)
        codes2m[in_field] = field_code[in_field]
        table = field_table(pieces, crops, labels, window, self.taxonomy)
        path = field_crops_path(self.layout.root, block.id)
        self.make_room(path, 1 << 20)
        write_table(table, path)
        gdf = piece_polygons(labels, window, table, self._prefectures(block, window), block.id)
        path = block_parcels_path(self.layout.root, block.id)
        self.make_room(path, 1 << 20)
        _write_parcels(gdf, path)
        out = {
            "parcels": pieces.n,
            "polygons": len(polygons),
            "classified": int((crops["code"] > 0).sum()),
            "fallback": int(pieces.fallback.sum()),
            "no_pixels": int(pieces.no_pixels.sum()),
            "areas": self._areas(codes2m, final == 1, window, block),
        }
        if self.truth:
            out.update(self._truth(block, window, codes2m, final))
        return out

    def _prefectures(self, block, window):
        """(labels on the block grid: i + 1 where prefecture i holds the pixel centre, codes, names)."""
        from mapper.maps.areas import unit_labels

        units = self.units["prefectures"]
        near = units[units.intersects(block.polygon)]
        return unit_labels(window, list(near.geometry)), list(near["code"]), list(near["name"])

    def _classify(self, series: np.ndarray) -> dict:
        n = len(series)
        ok = np.isfinite(series).all(axis=(1, 2))
        out = {"code": np.zeros(n, np.int64), "levels": np.full((n, 4), -1, np.int64), "prob": np.zeros(n)}
        if ok.any():
            pred = self.model.predict(series[ok], batch_size=self.cfg["batch_parcels"])
            out["code"][ok] = pred["code"]
            out["levels"][ok] = pred["levels"]
            out["prob"][ok] = pred["leaf_prob"]
        return out

    def _areas(self, codes2m, cropland, window, block) -> dict:
        from mapper.maps.areas import unit_labels

        out = {}
        for kind in ("region", "provinces", "prefectures"):
            units = self.units[kind]
            near = units[units.intersects(block.polygon)]
            labels = unit_labels(window, list(near.geometry))
            table = area_by_unit_and_code(codes2m, cropland, window, labels, len(near))
            out[kind] = _sparse(near["code"], table)
        return out

    def _truth(self, block, window, codes2m, final) -> dict:
        from mapper.world.truth import block_crops
        from mapper.world.world import get_world

        truth = block_crops(get_world(self.ctx.config["world"]["seed"]), block)
        both = (final == 1) & (truth > 0)
        # Rows: truth code c as unit label c, so row c - 1 of the table.
        conf = area_by_unit_and_code(codes2m, both, window, truth.astype(np.uint16), 255)
        return {
            "truth_areas": self._areas(truth, truth > 0, window, block),
            "confusion_m2": {f"{t + 1},{p}": float(v) for (t, p), v in np.ndenumerate(conf) if v > 0},
        }


def area_by_unit_and_code(codes: np.ndarray, mask: np.ndarray, window, labels: np.ndarray, n_units: int) -> np.ndarray:
    """(n_units, 256) true ground m² of the masked pixels per unit (labels 1..n; 0 = none) and code."""
    from mapper.grid.area import row_pixel_areas

    rows = np.broadcast_to(row_pixel_areas(window)[:, None], mask.shape)
    idx = labels[mask].astype(np.int64) * 256 + codes[mask]
    table = np.bincount(idx, weights=rows[mask], minlength=(n_units + 1) * 256)
    return table.reshape(n_units + 1, 256)[1:] if n_units else np.zeros((0, 256))


def _sparse(codes, table: np.ndarray) -> dict:
    return {str(u): {str(c): float(table[i, c]) for c in np.flatnonzero(table[i])} for i, u in enumerate(codes)}


def _read_final(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def _write_parcels(gdf, path: Path) -> None:
    from mapper.maps.polygons import write_block_polygons

    write_block_polygons(gdf, path)


def _cropland_share_10m(final: np.ndarray, window, comp) -> np.ndarray:
    """Share of each 10 m pixel's area that the 2 m final mask calls cropland (average resampling)."""
    from rasterio.warp import Resampling, reproject

    src = (final == 1).astype(np.float32)
    src[final == 255] = np.nan
    dst = np.zeros(comp.values.shape[2:], np.float32)
    reproject(
        src,
        dst,
        src_transform=window.transform,
        src_crs="EPSG:3857",
        src_nodata=np.nan,
        dst_transform=comp.transform,
        dst_crs=comp.crs,
        dst_nodata=0,
        resampling=Resampling.average,
    )
    return np.nan_to_num(dst)


def _field_lut(codes: np.ndarray) -> np.ndarray:
    """Index with field label + 1 (so -1, no field, reads 0)."""
    return np.concatenate([[UNCLASSIFIED], codes]).astype(np.uint8)


def pixel_samples(comp, parcels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel classification: (label raster: each field pixel its own index, -1 none; their series
    (n, B, T); the field each belongs to)."""
    has = parcels.fields >= 0
    labels = np.full(has.shape, -1, np.int64)
    labels[has] = np.arange(int(has.sum()))
    return labels, np.ascontiguousarray(comp.values[:, :, has].transpose(2, 0, 1)), parcels.fields[has]


def field_majority(px: dict, owner: np.ndarray, n_fields: int, taxonomy) -> dict:
    """A field's crop from its pixels' crops: the commonest code, its path, the mean probability of the
    pixels that have it (for the field polygons; the map keeps each pixel's own crop)."""
    counts = np.zeros((n_fields, 256), np.int64)
    np.add.at(counts, (owner, px["code"]), 1)
    counts[:, UNCLASSIFIED] = 0
    code = np.where(counts.max(axis=1) > 0, counts.argmax(axis=1), UNCLASSIFIED)
    lookup = np.full(256, -1, np.int64)
    lookup[list(taxonomy.codes)] = np.arange(taxonomy.n_leaves)
    levels = np.where(code[:, None] > 0, taxonomy.paths[np.maximum(lookup[code], 0)], -1)
    agree = px["code"] == code[owner]
    prob_sum = np.bincount(owner, weights=np.where(agree, px["prob"], 0), minlength=n_fields)
    prob = np.divide(prob_sum, counts.max(axis=1), out=np.zeros(n_fields), where=counts.max(axis=1) > 0)
    return {"code": code.astype(np.int64), "levels": levels, "prob": prob}


def _crop_raster(fields: np.ndarray, crops: dict, cropland: np.ndarray) -> np.ndarray:
    """(6, H, W) uint8: leaf code, level 1-4 class index + 1, probability in %; 0 off cropland / no field."""
    out = np.zeros((6, *fields.shape), np.uint8)
    has = (fields >= 0) & cropland
    f = fields[has]
    code = crops["code"][f]
    out[0][has] = code
    for lv in range(4):
        out[lv + 1][has] = np.where(code > 0, crops["levels"][f, lv] + 1, 0)
    out[5][has] = np.where(code > 0, np.round(100 * crops["prob"][f]), 0)
    return out


def _write_raster(raster: np.ndarray, comp, path: Path, taxonomy, block_id: str) -> None:
    import rasterio

    from mapper.store.atomic import atomic_path

    profile = {
        "driver": "GTiff",
        "count": raster.shape[0],
        "height": raster.shape[1],
        "width": raster.shape[2],
        "dtype": "uint8",
        "crs": comp.crs,
        "transform": comp.transform,
        "nodata": 0,
        "compress": "deflate",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    names = ["leaf code", "level 1 class", "level 2 class", "level 3 class", "level 4 class", "leaf probability %"]
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(raster)
        for i, n in enumerate(names, start=1):
            dst.set_band_description(i, n)
        dst.update_tags(MAPPER_BLOCK=block_id, MAPPER_TAXONOMY_SHA256=taxonomy.sha256)


def _with_seconds(out: dict, t: dict) -> dict:
    steps = ("read", "composite", "classify", "end")
    out["stage_seconds"] = {k: t[k] - t[p] for p, k in zip(("start", *steps[:-1]), steps, strict=True)}
    out["stage_seconds"]["write"] = out["stage_seconds"].pop("end")
    return out


def codes_on_block_grid(crop10, comp, window, final, polygons, main, skip: np.ndarray | None = None) -> np.ndarray:
    """Crop code of every cropland pixel of the 2 m block grid: that of the field holding the 10 m pixel
    its centre falls in, else (no field there: a sliver of a polygon) the polygon's main crop (`main`: per
    polygon, or a function of the polygons' label raster giving it). Pixels in `skip` are left 0 (the caller
    fills them)."""
    from pyproj import Transformer

    from mapper.grid.tilegrid import global_pixel_to_lonlat
    from mapper.maps.areas import unit_labels

    out = np.zeros(window.shape, np.uint8)
    crop = final == 1
    if skip is not None:
        crop &= ~skip
    if not crop.any():
        return out
    rows, cols = np.nonzero(crop)
    lon, lat = global_pixel_to_lonlat(window.col0 + cols + 0.5, window.row0 + rows + 0.5, window.zoom)
    x, y = Transformer.from_crs(4326, comp.crs, always_xy=True).transform(lon, lat)
    c10, r10 = ~comp.transform @ (x, y)  # `*` is deprecated in affine 3
    r10, c10 = np.floor(r10).astype(np.int64), np.floor(c10).astype(np.int64)
    h, w = crop10.shape
    ok = (r10 >= 0) & (r10 < h) & (c10 >= 0) & (c10 < w)
    codes = np.zeros(len(rows), np.uint8)
    codes[ok] = crop10[r10[ok], c10[ok]]
    missing = codes == UNCLASSIFIED
    if missing.any() and len(polygons):
        labels = unit_labels(window, list(polygons.geometry))
        main = main(labels) if callable(main) else main
        codes[missing] = np.concatenate([[UNCLASSIFIED], main]).astype(np.uint8)[labels[rows[missing], cols[missing]]]
    out[rows, cols] = codes
    return out


def main_crop_of_polygons(parcels, crops, n_polygons: int) -> np.ndarray:
    """The code covering most 10 m pixels of each polygon (0 where none)."""
    f = parcels.fields
    has = f >= 0
    poly = parcels.field_polygon[f[has]]
    code = crops["code"][f[has]]
    counts = np.zeros((n_polygons, 256), np.int64)
    np.add.at(counts, (poly, code), 1)
    counts[:, UNCLASSIFIED] = 0
    return np.where(counts.max(axis=1) > 0, counts.argmax(axis=1), UNCLASSIFIED)


@dataclass
class BlockFields:
    fields: np.ndarray  # (H, W) int64 field label on the 10 m grid, -1 none
    field_polygon: np.ndarray  # (n,) the cropland polygon (row) each field lies in
    series: np.ndarray  # (n, B, T) mean over the field's pixels that are pure for its polygon
    n_pure: np.ndarray  # (n,)
    fallback: np.ndarray  # (n,) bool: no pure pixel, so all its pixels were averaged


def block_fields(comp, polygons) -> BlockFields:
    """The fields of a block's cropland polygons on the composite's grid, with their parcel series."""
    from mapper.croptype.fields import delineate_fields
    from mapper.croptype.parcels import means_by_label, pixel_membership, polygonal_geoms

    h, w = comp.values.shape[2:]
    if not len(polygons):
        return BlockFields(
            np.full((h, w), -1, np.int64),
            np.zeros(0, np.int64),
            np.zeros((0, *comp.values.shape[:2]), np.float32),
            np.zeros(0, np.int64),
            np.zeros(0, bool),
        )
    geoms = polygonal_geoms(polygons.to_crs(comp.crs.to_wkt()).geometry.to_numpy())
    centre, pure = pixel_membership(geoms, comp.transform, (h, w))
    fields = delineate_fields(comp.values, comp.bands, centre)
    n = int(fields.max()) + 1 if (fields >= 0).any() else 0
    has = fields >= 0
    field_polygon = np.zeros(n, np.int64)
    field_polygon[fields[has]] = centre[has]
    use_pure = has & pure
    n_pure = np.bincount(fields[use_pure], minlength=n)
    fallback = n_pure == 0
    use = use_pure | (has & fallback[np.where(has, fields, 0)])
    series = means_by_label(comp.values[:, :, use], fields[use], n)
    return BlockFields(fields, field_polygon, series, n_pure, fallback)


def crop_names(code: np.ndarray, taxonomy) -> dict:
    """crop and level1-4 names of leaf codes ("unclassified" / "" for 0)."""
    lookup = dict(zip(taxonomy.codes, range(taxonomy.n_leaves), strict=True))
    leaf = [lookup.get(int(c)) for c in code]
    return {
        "crop": [taxonomy.leaf_names()[i] if i is not None else "unclassified" for i in leaf],
        **{
            f"level{lv + 1}": [taxonomy.names[lv][taxonomy.paths[i, lv]] if i is not None else "" for i in leaf]
            for lv in range(4)
        },
    }


def field_polygons(parcels: BlockFields, crops: dict, polygons, comp, taxonomy):
    """The fields as polygons (10 m outlines cut to their cropland polygon), EPSG:4326, with unit, true
    area and crop attributes: what the prefecture GeoPackages hold."""
    import geopandas as gpd
    import shapely
    from rasterio.features import shapes

    from mapper.grid.area import equal_area_m2

    columns = CROP_COLUMNS
    if not len(parcels.series):
        return gpd.GeoDataFrame(columns=columns, geometry=[], crs="EPSG:4326")
    labels = parcels.fields.astype(np.int32)
    parts = [(shapely.geometry.shape(g), int(v)) for g, v in shapes(labels, mask=labels >= 0, transform=comp.transform)]
    ids = np.array([v for _, v in parts])
    by_field = gpd.GeoDataFrame({"field": ids}, geometry=[g for g, _ in parts], crs=comp.crs.to_wkt())
    by_field = by_field.dissolve("field").to_crs("EPSG:4326")
    field = by_field.index.to_numpy()
    owner = polygons.geometry.to_numpy()[parcels.field_polygon[field]]
    cut = shapely.intersection(shapely.make_valid(by_field.geometry.to_numpy()), owner)
    code = crops["code"][field]
    src = polygons.iloc[parcels.field_polygon[field]]
    out = gpd.GeoDataFrame(
        {
            "block_id": src["block_id"].to_numpy(),
            "unit_code": src["unit_code"].to_numpy() if "unit_code" in src else None,
            "unit_name": src["unit_name"].to_numpy() if "unit_name" in src else None,
            "area_m2": equal_area_m2(cut),
            "crop_code": code.astype(np.int16),
            **crop_names(code, taxonomy),
            "crop_prob": crops["prob"][field].astype(np.float32),
            "n_pure": parcels.n_pure[field].astype(np.int32),
            "fallback": parcels.fallback[field],
        },
        geometry=cut,
        crs="EPSG:4326",
    )
    return out[~out.geometry.is_empty & (out["area_m2"] > 0)].reset_index(drop=True)


# ------------------------------------------------------------------------------------------ unit field
def _enabled(config: dict) -> bool:
    return bool(config.get("croptype", {}).get("enabled"))


def _outputs(store, ctx: RunContext, units: dict) -> dict:
    from mapper.croptype.outputs import write_croptype_outputs

    return write_croptype_outputs(store, ctx, units)


# The stage, registered with the run through the "mapper.stages" entry point (pyproject.toml): per block after
# its final mask, when croptype.enabled, and after its fields when the run has the fields stage too (unit field
# classifies them; the driver ignores a stage waited for that the run does not have). Its Ray pool: a CPU share
# like the light stages, so it fits beside segmentation on any machine (it would otherwise wait for CPUs that the
# segmentation actors hold for the whole run), not set aside from segmentation's CPUs; with GPUs a whole CPU and a
# GPU share (the model is small). Its torch threads stay at one beside segmentation (threads thrash otherwise).
STAGE = StageSpec("croptype", CropTypeWorker, after=("final", "fields"), item=decision_item, enabled=_enabled,
                  pool=Pool(cpus=0.1, gpus=0.25, cpus_with_gpus=1.0, set_aside=False), outputs=_outputs)  # fmt: skip
