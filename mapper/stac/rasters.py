"""A raster asset's projection and band fields, read from the file's header with rasterio (no pixels read).

The projection extension (`proj:code`, `proj:shape`, `proj:transform`, `proj:bbox`) and the raster extension
(`raster:bands`: data type, nodata, scale, what the values mean) describe the file exactly as GDAL opens it,
so a client can place and decode a block without opening it first.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

import pystac
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterBand, RasterExtension

# What mapper's band values mean, by band description, for files that do not say it in a MAPPER_VALUES tag.
BAND_MEANINGS = {
    "cropland": "1 = cropland, 0 = not cropland, 255 = no imagery",
    "probability": "cropland probability × 250 (scale 0.004), 255 = no imagery",
}
_RASTER_DATA_TYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                      "float32", "float64", "cint16", "cint32", "cfloat32", "cfloat64"}  # fmt: skip


@dataclass(frozen=True)
class BandFacts:
    data_type: str
    nodata: float | None
    scale: float
    offset: float
    description: str | None


@dataclass(frozen=True)
class RasterFacts:
    """What a raster's header says about its grid and bands."""

    epsg: int | None
    wkt2: str | None  # only when the CRS has no EPSG code
    shape: tuple[int, int]  # (rows, columns)
    transform: tuple[float, ...]  # the six affine coefficients a, b, c, d, e, f
    bounds: tuple[float, float, float, float]  # in the raster's CRS
    bands: tuple[BandFacts, ...]
    is_cog: bool
    acquired: dt.date | None  # an ACQUISITION_DATE tag (imagery from a source that gives dates)

    @property
    def grid(self) -> tuple:
        """What makes two rasters share a grid."""
        return (self.epsg, self.wkt2, self.shape, self.transform)


def read_facts(path: Path) -> RasterFacts:
    """The header facts of a GeoTIFF or VRT."""
    import rasterio
    from rasterio.enums import MaskFlags

    with rasterio.open(path) as src:
        epsg = src.crs.to_epsg() if src.crs else None
        wkt2 = src.crs.to_wkt(version="WKT2_2019") if src.crs and epsg is None else None
        values = src.tags().get("MAPPER_VALUES")
        masked = any(MaskFlags.per_dataset in flags for flags in src.mask_flag_enums)
        names = [d or _colour(c) for d, c in zip(src.descriptions, src.colorinterp, strict=True)]
        bands = tuple(
            BandFacts(src.dtypes[i], src.nodatavals[i], float(src.scales[i]), float(src.offsets[i]),
                      _band_meaning(names[i], values if i == 0 else None, masked))
            for i in range(src.count)
        )
        return RasterFacts(
            epsg=epsg,
            wkt2=wkt2,
            shape=(src.height, src.width),
            transform=tuple(float(v) for v in src.transform[:6]),
            bounds=tuple(float(v) for v in src.bounds),
            bands=bands,
            is_cog=src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG",
            acquired=_acquired(src.tags().get("ACQUISITION_DATE")),
        )


def _band_meaning(name: str | None, values: str | None, masked: bool = False) -> str | None:
    """'cropland: 0 = not cropland, 1 = cropland, 255 = no imagery' — the file's own words (its MAPPER_VALUES
    tag) first, then mapper's; a band without nodata whose file has a mask (mosaics) says so."""
    meaning = values.replace(";", ", ").replace("=", " = ") if values else BAND_MEANINGS.get(name or "")
    if masked:
        meaning = "; ".join(filter(None, [meaning, "pixels without imagery are in the file's internal mask"]))
    if name and meaning:
        return f"{name}: {meaning}"
    return name or meaning


def _colour(interp) -> str | None:
    """The colour of an RGB(A) band ('red'), for bands without a description."""
    return interp.name if interp.name in ("red", "green", "blue", "alpha") else None


def _acquired(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip()[:10]) if text else None
    except ValueError:
        return None


def _nodata(value: float) -> float | str:
    """JSON has no NaN or infinity: the raster extension spells them "nan", "inf", "-inf"."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return int(value) if float(value).is_integer() else value


def media_type_of(facts: RasterFacts, path: Path) -> str:
    if path.suffix.lower() == ".vrt":
        return pystac.MediaType.XML
    return pystac.MediaType.COG if facts.is_cog else pystac.MediaType.GEOTIFF


def add_projection(target: pystac.Item | pystac.Asset, facts: RasterFacts) -> None:
    """proj:code (or proj:wkt2), proj:shape, proj:transform, proj:bbox on an item's properties or an asset."""
    proj = ProjectionExtension.ext(target, add_if_missing=True)
    if facts.epsg is not None:
        proj.epsg = facts.epsg  # written as proj:code "EPSG:3857" (projection extension v2 has no proj:epsg)
    else:
        proj.code = None
        proj.wkt2 = facts.wkt2
    proj.shape = list(facts.shape)
    proj.transform = list(facts.transform)
    proj.bbox = list(facts.bounds)


def add_bands(asset: pystac.Asset, facts: RasterFacts, gsd_m: float | None = None) -> None:
    """raster:bands of an asset: data type, nodata, scale/offset where not 1/0, meaning, resolution."""
    bands = []
    for band in facts.bands:
        data_type = band.data_type if band.data_type in _RASTER_DATA_TYPES else "other"
        props: dict = {"data_type": data_type, "sampling": "area"}
        if band.nodata is not None:
            props["nodata"] = _nodata(band.nodata)
        if band.scale != 1.0 or band.offset != 0.0:
            props["scale"], props["offset"] = band.scale, band.offset
        if gsd_m is not None:
            props["spatial_resolution"] = round(gsd_m, 3)
        if band.description:
            props["description"] = band.description
        bands.append(RasterBand(props))
    RasterExtension.ext(asset, add_if_missing=True).bands = bands
