"""Which layer of which file holds which date and band: the plan `read_s2` reads, made from headers only.

Each file is one of three kinds, told by its layer descriptions first:
- per date (layout a): descriptions name bands (B2, B02, B8A, SCL); the file's date comes from its tags or
  name, or the user's dates, one per file in file order;
- per band (layout b): descriptions are dates (YYYY-MM-DD), or there are none and the file name or a BAND
  tag names one band; the layers are dates (descriptions, the user's dates one per layer, or for a single
  layer the file's own date);
- a stack (layout c): no descriptions, no band in the name, and the user names the bands: the layers are
  dates × bands, date-major, dates from the user (or the file's own date when it holds one date).
Every (date, band) must come from exactly one layer, every date needs every band, and SCL is there for all
dates or none. All checks run here, before a pixel is read, and each error names the file and the fix.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from mapper.croptype import s2names
from mapper.croptype.s2names import SCL, S2ReadError

PIXEL_M = 10.0
_TOL = 1e-6  # metres: grids closer than this are the same grid
BAND_TAGS = ("BAND", "BAND_NAME")


@dataclass(frozen=True)
class Header:
    path: Path
    count: int
    width: int
    height: int
    crs: CRS | None
    transform: Affine
    dtype: str
    nodata: float | None
    descriptions: tuple[str | None, ...]
    tags: dict[str, str]

    @property
    def res(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform @ (0, 0)
        right, bottom = self.transform @ (self.width, self.height)
        return min(left, right), min(top, bottom), max(left, right), max(top, bottom)

    def same_grid(self, other: Header) -> bool:
        return (self.width, self.height) == (other.width, other.height) and self.transform.almost_equals(
            other.transform, precision=_TOL
        )


@dataclass(frozen=True)
class Layer:
    header: Header
    index: int  # 1-based layer of the file
    date: dt.date
    band: str  # normalised band name or SCL


@dataclass(frozen=True)
class Plan:
    layers: tuple[Layer, ...]
    dates: tuple[dt.date, ...]  # ascending
    bands: tuple[str, ...]  # reflectance bands in output order (SCL apart)
    has_scl: bool
    grid: Header  # the 10 m grid everything is read onto
    layout: str  # "per-date", "per-band", "stack" or "mixed"


def read_header(path: Path) -> Header:
    import rasterio

    try:
        with rasterio.open(path) as ds:
            return Header(path, ds.count, ds.width, ds.height, ds.crs, ds.transform, ds.dtypes[0], ds.nodata,
                          tuple(ds.descriptions), dict(ds.tags()))  # fmt: skip
    except rasterio.errors.RasterioIOError as e:
        raise S2ReadError(f"{path} cannot be opened as a raster ({e}); pass GeoTIFF files") from None


def list_files(paths) -> list[Path]:
    """A folder means its *.tif / *.tiff files, sorted by name; files are kept in the order given."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    files: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            # Hidden files are left out: half-written temporaries, macOS "._" resource forks.
            tifs = (p for p in item.iterdir() if p.suffix.lower() in (".tif", ".tiff") and not p.name.startswith("."))
            found = sorted(tifs)
            if not found:
                raise S2ReadError(f"folder {item} holds no .tif files; pass the Sentinel-2 GeoTIFFs")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise S2ReadError(f"{item} not found; pass Sentinel-2 GeoTIFFs or a folder of them")
    if not files:
        raise S2ReadError("no files given; pass Sentinel-2 GeoTIFFs or a folder of them")
    if len(set(files)) < len(files):
        raise S2ReadError("the same file is given twice; pass each file once")
    return files


# ---- CRS and grid ------------------------------------------------------------------------------------------


def _utm_epsg_at(h: Header) -> str:
    """The UTM zone's EPSG code at the file's centre (for the fix in an error message)."""
    from rasterio.warp import transform as warp

    left, bottom, right, top = h.bounds
    try:
        (lon,), (lat,) = warp(h.crs, "EPSG:4326", [(left + right) / 2], [(bottom + top) / 2])
    except Exception:  # an odd CRS: fall back to the pattern
        return "EPSG:326NN"
    zone = min(int((lon + 180) // 6) + 1, 60)
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def _is_utm(crs: CRS) -> bool:
    epsg = crs.to_epsg()
    if epsg is not None and (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760):
        return True
    import pyproj

    return pyproj.CRS.from_user_input(crs.to_wkt()).utm_zone is not None


def _warp_fix(h: Header, target: str, grid: Header | None = None) -> str:
    extent = "" if grid is None else " -te {:.0f} {:.0f} {:.0f} {:.0f}".format(*grid.bounds)
    return f"gdalwarp -t_srs {target} -tr 10 10 -tap{extent} {h.path.name} {h.path.stem}_utm10m.tif"


def check_file(h: Header) -> None:
    if h.crs is None:
        raise S2ReadError(f"{h.path} has no CRS; assign its UTM zone: gdal_edit.py -a_srs EPSG:326NN {h.path.name}")
    if not _is_utm(h.crs):
        target = _utm_epsg_at(h)
        raise S2ReadError(
            f"{h.path} is in {h.crs.to_string()}, not a UTM zone; the models need 10 m pixels in UTM: "
            f"{_warp_fix(h, target)}"
        )
    if h.transform.b != 0 or h.transform.d != 0 or h.transform.e >= 0:
        raise S2ReadError(f"{h.path} is rotated or south-up; warp it north-up: {_warp_fix(h, h.crs.to_string())}")
    if not np.issubdtype(np.dtype(h.dtype), np.integer):
        raise S2ReadError(
            f"{h.path} is {h.dtype}; the reader expects L2A digital numbers (reflectance × 10 000, uint16): "
            f"gdal_translate -ot UInt16 -scale 0 1 0 10000 {h.path.name} {h.path.stem}_dn.tif"
        )


def reference_grid(headers: list[Header]) -> Header:
    """The first 10 m file's grid. Coarser files (20 m, 60 m bands) on the same extent are resampled to it
    on read (nearest: each 20 m pixel becomes its 2 × 2 pixels); any other grid is an error."""
    for h in headers:
        check_file(h)
    ten = [h for h in headers if abs(h.res[0] - PIXEL_M) < _TOL and abs(h.res[1] - PIXEL_M) < _TOL]
    if not ten:
        h = headers[0]
        raise S2ReadError(
            f"{h.path} has {h.res[0]:g} m pixels and no file has 10 m ones; the models need 10 m: resample with "
            f"gdalwarp -tr 10 10 -tap -r near {h.path.name} {h.path.stem}_10m.tif (20 m bands beside 10 m "
            "files on the same extent are resampled on read)"
        )
    grid = ten[0]
    for h in headers:
        if h.crs != grid.crs:
            raise S2ReadError(
                f"{h.path} is in {h.crs.to_string()} but {grid.path.name} in {grid.crs.to_string()}; put every "
                f"file on one grid: {_warp_fix(h, grid.crs.to_string(), grid)}"
            )
        if h.same_grid(grid):
            continue
        coarse = all(abs(r / PIXEL_M - round(r / PIXEL_M)) < _TOL for r in h.res)
        if not (coarse and np.allclose(h.bounds, grid.bounds, rtol=0, atol=_TOL)):
            raise S2ReadError(
                f"{h.path} ({h.width} × {h.height} pixels of {h.res[0]:g} m at {h.bounds[0]:.0f}, {h.bounds[3]:.0f}) "
                f"is on another grid than {grid.path.name} ({grid.width} × {grid.height} of 10 m at "
                f"{grid.bounds[0]:.0f}, {grid.bounds[3]:.0f}); warp it onto that grid: "
                f"{_warp_fix(h, grid.crs.to_string(), grid)}"
            )
    return grid


# ---- layers: which date and band each is ---------------------------------------------------------------------


def _band_of_file(h: Header) -> str | None:
    for key in BAND_TAGS:
        found = s2names.normalise_band(h.tags.get(key))
        if found:
            return found
    return s2names.band_in_name(h.path)


def file_kind(h: Header, user_bands: tuple[str, ...] | None) -> str:
    """'per-date' (layers are bands), 'per-band' (layers are dates) or 'stack' (dates × bands)."""
    described = [d for d in h.descriptions if d and d.strip()]
    if described:
        if len(described) == h.count and all(s2names.normalise_band(d) for d in described):
            return "per-date"
        if len(described) == h.count and all(s2names.parse_date(d) for d in described):
            return "per-band"
        raise S2ReadError(
            f"{h.path}: layer descriptions {list(h.descriptions)} name neither bands (B2, B8A, SCL) nor dates "
            "(YYYY-MM-DD) for every layer; fix them (gdal_edit.py -setband… or rasterio's set_band_description) or "
            "clear them and pass the bands and dates"
        )
    if _band_of_file(h) is not None:
        return "per-band"
    if user_bands:
        return "stack"
    raise S2ReadError(
        f"{h.path}: its layers are not named; pass the bands in layer order (e.g. bands=('B2','B3','B4','B8'), "
        "--bands B2,B3,B4,B8), or describe each layer with its band name"
    )


def _no_dates(h: Header, what: str) -> S2ReadError:
    return S2ReadError(f"{h.path}: no date found for {what}; pass --dates or a dates file (one YYYY-MM-DD a line)")


def _per_date_layers(h: Header, when: dt.date | None, names: list[str]) -> list[Layer]:
    when = when or s2names.date_from_tags(h.tags) or s2names.date_from_name(h.path)
    if when is None:
        raise _no_dates(h, "the file (tag ACQUISITION_DATE, or a YYYYMMDD in its name)")
    return [Layer(h, i + 1, when, b) for i, b in enumerate(names)]


def _per_band_layers(h: Header, dates: list[dt.date] | None) -> list[Layer]:
    band = _band_of_file(h)
    if band is None:
        raise S2ReadError(f"{h.path}: its layers are dates but no band is named; name it in the file name "
                          "(e.g. B04.tif) or a BAND tag")  # fmt: skip
    if dates is None:
        described = [s2names.parse_date(d) for d in h.descriptions]
        if all(described):
            dates = described
        elif h.count == 1 and (own := s2names.date_from_tags(h.tags) or s2names.date_from_name(h.path)):
            dates = [own]
        else:
            raise _no_dates(h, f"its {h.count} layers (descriptions YYYY-MM-DD)")
    if len(dates) != h.count:
        raise S2ReadError(f"{h.path} has {h.count} layers (dates) but {len(dates)} dates are given; give one date "
                          "per layer")  # fmt: skip
    return [Layer(h, i + 1, d, band) for i, d in enumerate(dates)]


def _stack_layers(h: Header, names: tuple[str, ...], dates: list[dt.date] | None) -> list[Layer]:
    if h.count % len(names):
        raise S2ReadError(
            f"{h.path} has {h.count} layers, not a multiple of the {len(names)} bands given "
            f"({', '.join(names)}); a stack holds dates × bands, date-major: check the band list"
        )
    n_dates = h.count // len(names)
    if dates is None:
        own = s2names.date_from_tags(h.tags) or s2names.date_from_name(h.path)
        if n_dates != 1 or own is None:
            raise _no_dates(h, f"its {n_dates} dates × {len(names)} bands")
        dates = [own]
    if len(dates) != n_dates:
        raise S2ReadError(
            f"{h.path} has {h.count} layers = {n_dates} dates × {len(names)} bands but {len(dates)} dates are "
            "given; give one date per date"
        )
    return [Layer(h, d * len(names) + b + 1, when, name) for d, when in enumerate(dates) for b, name in
            enumerate(names)]  # fmt: skip


def _check_user_dates(headers, kinds, bands, dates) -> bool:
    """Whether the user's dates go one per file (True) or one per layer / date group of every file."""
    if len(set(kinds)) > 1:
        raise S2ReadError("the files mix layouts, so the dates given cannot be matched to them; name each file's "
                          "date in the file (tag ACQUISITION_DATE or YYYYMMDD in the name) instead")  # fmt: skip
    per_file = kinds[0] == "per-date" or (kinds[0] == "stack" and len(headers) > 1)
    if kinds[0] == "stack" and per_file and any(h.count != len(bands) for h in headers):
        raise S2ReadError("several multi-date stacks given with one list of dates; read one stack at a time")
    if per_file and len(dates) != len(headers):
        raise S2ReadError(f"{len(headers)} files (one date each) but {len(dates)} dates are given; give one date "
                          "per file, in the files' order (a folder's files sorted by name)")  # fmt: skip
    return per_file


def _layers(headers, kinds, bands, dates) -> list[Layer]:
    per_file = dates is not None and _check_user_dates(headers, kinds, bands, dates)
    layers = []
    for i, (h, kind) in enumerate(zip(headers, kinds, strict=True)):
        file_dates = [dates[i]] if per_file else dates
        if kind == "per-date":
            names = [s2names.normalise_band(d) for d in h.descriptions]
            layers += _per_date_layers(h, file_dates[0] if file_dates else None, names)
        elif kind == "per-band":
            layers += _per_band_layers(h, file_dates)
        else:
            layers += _stack_layers(h, bands, file_dates)
    return layers


# ---- the whole plan --------------------------------------------------------------------------------------------


def _check_dates(dates: list[dt.date] | None) -> None:
    if dates is None:
        return
    seen = [d for i, d in enumerate(dates) if d in dates[:i]]
    if seen:
        raise S2ReadError(f"the dates given repeat {', '.join(map(str, sorted(set(seen))))}; give each date once")


def _check_table(layers: list[Layer]) -> tuple[list[dt.date], list[str], bool]:
    """Each (date, band) once; every date has every band; SCL for all dates or none."""
    where: dict[tuple[dt.date, str], Layer] = {}
    for layer in layers:
        key = (layer.date, layer.band)
        if key in where:
            a = where[key]
            raise S2ReadError(
                f"{layer.date} {layer.band} is in both {a.header.path.name} (layer {a.index}) and "
                f"{layer.header.path.name} (layer {layer.index}): duplicate dates; give each date once (remove a "
                "file or fix its date)"
            )
        where[key] = layer
    dates = sorted({d for d, _ in where})
    names = sorted({b for _, b in where}, key=s2names.band_order)
    for d in dates:
        lacking = [b for b in names if (d, b) not in where and b != SCL]
        if lacking:
            files = sorted({lay.header.path.name for (dd, _), lay in where.items() if dd == d})
            raise S2ReadError(f"{d} lacks {', '.join(lacking)} ({', '.join(files)}); every date needs the same bands")
    with_scl = [d for d in dates if (d, SCL) in where]
    if with_scl and len(with_scl) < len(dates):
        lacking = [str(d) for d in dates if d not in with_scl]
        raise S2ReadError(f"SCL is given for {len(with_scl)} of {len(dates)} dates, not for {', '.join(lacking)}; "
                          "add it for those dates or drop it everywhere")  # fmt: skip
    years = sorted({d.year for d in dates})
    if len(years) > 1:
        raise S2ReadError(
            f"the dates span {dates[0]} … {dates[-1]} ({', '.join(map(str, years))}); the series is days of one "
            "year: read one year's dates at a time"
        )
    return dates, [b for b in names if b != SCL], bool(with_scl)


def _select(names: list[str], bands: tuple[str, ...] | None) -> tuple[str, ...]:
    """The output bands: the user's (their order) or all found, in Sentinel-2's order."""
    if bands is None:
        return tuple(names)
    wanted = tuple(b for b in bands if b != SCL)
    missing = [b for b in wanted if b not in names]
    if missing:
        raise S2ReadError(f"the files lack {', '.join(missing)} (they hold {', '.join(names)}); ask for bands "
                          "they hold or add files with those bands")  # fmt: skip
    return wanted


def normalise_bands(bands) -> tuple[str, ...] | None:
    if bands is None:
        return None
    if isinstance(bands, str):
        bands = [b for b in bands.replace(",", " ").split() if b]
    out = []
    for b in bands:
        name = s2names.normalise_band(b)
        if name is None:
            raise S2ReadError(f"{b!r} is not a Sentinel-2 band; name bands B2 … B12, B8A or SCL")
        if name in out:
            raise S2ReadError(f"band {name} is given twice; name each band once")
        out.append(name)
    return tuple(out)


def plan_read(paths, bands=None, dates: list[dt.date] | None = None) -> Plan:
    files = list_files(paths)
    headers = [read_header(p) for p in files]
    grid = reference_grid(headers)
    bands = normalise_bands(bands)
    _check_dates(dates)
    kinds = [file_kind(h, bands) for h in headers]
    layers = _layers(headers, kinds, bands, dates)
    all_dates, names, has_scl = _check_table(layers)
    out_bands = _select(names, bands)
    keep = [lay for lay in layers if lay.band in out_bands or lay.band == SCL]
    layout = kinds[0] if len(set(kinds)) == 1 else "mixed"
    return Plan(tuple(keep), tuple(all_dates), out_bands, has_scl, grid, layout)
