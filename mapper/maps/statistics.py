"""The statistic a province's mapped cropland area is compared with (the paper's PCS = mapped / statistical).

Order of preference: a table the user supplies; the Third National Land Survey (TNLS, 2019), which the
CropLayer paper validates against but which is packaged for 16 provinces only; the complete but old 1996
land survey, always labelled with its year; otherwise "no statistic". Values are never invented: a
province without one says so, and its PCS is None.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import shapely

from mapper.grid.admin import Province, UnknownProvinceError, resolve_province

TNLS_SOURCE = "TNLS 2019 (Third National Land Survey)"
SURVEY1996_SOURCE = "1996 land survey (China Statistical Yearbook 2004)"
NO_STATISTIC = "no statistic"
REQUIRED_COLUMNS = ("province", "cropland_ha")
OPTIONAL_COLUMNS = ("source", "year")
DEFAULT_TOLERANCE = 0.10  # the paper's evaluation criterion |PCS − 1| ≤ 10 %

# In 1996 Chongqing was still part of Sichuan (it became a municipality in 1997).
_SURVEY1996_INCLUDED_IN = {"Chongqing": "Sichuan"}
_SURVEY1996_INCLUDES = {"Sichuan": "Chongqing"}
_NATIONAL = re.compile(r"national|全国", re.IGNORECASE)


class StatisticsError(ValueError):
    """A statistics table that cannot be used as it is; the message names the file, the row and the fix."""


@dataclass(frozen=True)
class Statistic:
    """One province's reference cropland area, with where it comes from (shown next to every PCS)."""

    province: str  # short English name, as Province.name
    hectares: float | None
    source: str
    year: int | None
    note: str = ""

    @property
    def available(self) -> bool:
        return self.hectares is not None


# ---------------------------------------------------------------------------------------------------- lookup


def official_statistic(province: Province | str, user_table: Path | str | None = None) -> Statistic:
    """The best statistic for a province: user table, else TNLS 2019, else the 1996 survey, else none."""
    prov = as_province(province)
    if user_table is not None:
        stat = read_user_statistics(user_table).get(prov.name)
        if stat is not None:
            return stat
    return tnls_statistic(prov) or survey1996_statistic(prov)


def reference_statistic(province: Province | str, tables=(), world: bool = False) -> tuple[Statistic | None, str]:
    """The rule both the run's outputs and `mapper validate` follow, as (statistic, kind): the first of
    `tables` (dicts of province name -> Statistic: --statistics, then the run config's table) that names
    the province ("table"); else, for a run of the simulated world, (None, "world") — the caller computes
    `world_statistic`, which takes seconds, only where it needs it; else the official one ("official")."""
    prov = as_province(province)
    for table in tables:
        if table and prov.name in table:
            return table[prov.name], "table"
    if world:
        return None, "world"
    return official_statistic(prov), "official"


def tnls_statistic(province: Province | str) -> Statistic | None:
    """The packaged TNLS 2019 value, or None for the provinces whose value was not found in public sources."""
    prov = as_province(province)
    row = _tnls_rows().get(prov.name)
    if row is None:
        return None
    return Statistic(prov.name, float(row["cropland_ha"]), TNLS_SOURCE, 2019, _tnls_note(row))


def survey1996_statistic(province: Province | str) -> Statistic:
    """The 1996 survey value (kha -> ha); Chongqing has none of its own, Sichuan's includes Chongqing."""
    prov = as_province(province)
    if prov.name in _SURVEY1996_INCLUDED_IN:
        within = _SURVEY1996_INCLUDED_IN[prov.name]
        return no_statistic(
            prov.name,
            f"the 1996 survey counts {prov.name} within {within} (separate only since 1997) and no TNLS 2019 "
            "value is packaged; supply one with a user table (columns province, cropland_ha)",
        )
    row = _survey1996_rows().get(prov.name)
    if row is None:
        return no_statistic(
            prov.name,
            f"neither TNLS 2019 nor the 1996 survey has a value for {prov.name}; "
            "supply one with a user table (columns province, cropland_ha)",
        )
    note = "1996 value: old, a fallback where no TNLS 2019 value is packaged"
    if prov.name in _SURVEY1996_INCLUDES:
        note += f"; includes {_SURVEY1996_INCLUDES[prov.name]}, so it overstates {prov.name} alone"
    return Statistic(prov.name, float(row["cultivated_land_kha"]) * 1000.0, SURVEY1996_SOURCE, 1996, note)


def no_statistic(province: str, note: str) -> Statistic:
    return Statistic(province, None, NO_STATISTIC, None, note)


def as_province(province: Province | str) -> Province:
    if isinstance(province, Province):
        return province
    if isinstance(province, str):
        return resolve_province(province)
    raise TypeError(f"expected a Province or a province name, got {type(province).__name__}")


def _tnls_note(row: dict[str, str]) -> str:
    precision = row["precision"].strip()
    if precision.upper().startswith("ROUNDED"):
        kind = f"rounded value ({precision}); the exact bulletin value was not found"
    elif precision == "exact(mu)":
        kind = "published in mu, converted at 15 mu = 1 ha"
    else:
        kind = "exact published value"
    return f"{kind}; published {row['source_date']}; {row['source_url']}"


# ------------------------------------------------------------------------------------------ packaged tables


@cache
def _tnls_rows() -> dict[str, dict[str, str]]:
    return _packaged_rows("tnls2019_cultivated_land.csv")


@cache
def _survey1996_rows() -> dict[str, dict[str, str]]:
    return _packaged_rows("survey1996_cultivated_land.csv")


def _packaged_rows(filename: str) -> dict[str, dict[str, str]]:
    """Rows of a packaged stats CSV keyed by the admin table's short province name (national rows skipped)."""
    text = resources.files("mapper.data").joinpath("stats", filename).read_text(encoding="utf-8")
    rows: dict[str, dict[str, str]] = {}
    for row in csv.DictReader(text.splitlines()):
        name = row["province_en"]
        if _NATIONAL.search(name):
            continue
        prov = resolve_packaged_name(name)
        if prov.name in rows:
            raise StatisticsError(f"packaged {filename} lists {prov.name} twice")
        rows[prov.name] = row
    return rows


def resolve_packaged_name(name: str) -> Province:
    """Resolve a stats CSV name; 'Tibet (Xizang)' style names are tried whole, then each spelling."""
    candidates = [name, *(part.strip() for part in re.split(r"[()]", name) if part.strip())]
    for candidate in candidates:
        try:
            return resolve_province(candidate)
        except UnknownProvinceError:
            continue
    raise UnknownProvinceError(f"packaged statistics name {name!r} matches no province of the admin table")


def packaged_provinces() -> dict[str, list[str]]:
    """Which provinces each packaged table covers (short names), e.g. for reports and tests."""
    return {"tnls2019": sorted(_tnls_rows()), "survey1996": sorted(_survey1996_rows())}


# ---------------------------------------------------------------------------------------------- user table


def read_user_statistics(path: Path | str) -> dict[str, Statistic]:
    """A user CSV (columns province, cropland_ha; optional source, year) as {short province name: Statistic}."""
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise StatisticsError(
            f"statistics table {path} {what}; give a CSV file with columns {', '.join(REQUIRED_COLUMNS)}"
        )
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        _check_columns(path, reader.fieldnames)
        stats: dict[str, Statistic] = {}
        first_line: dict[str, tuple[int, str]] = {}
        for row in reader:
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
            if not any(row.values()):
                continue  # blank line
            line = reader.line_num
            stat = _user_row(path, line, row)
            if stat.province in first_line:
                prev_line, prev_name = first_line[stat.province]
                raise StatisticsError(
                    f"{path}: {stat.province} appears twice (line {prev_line} as {prev_name!r}, line {line} as "
                    f"{row['province']!r}); keep one row per province"
                )
            first_line[stat.province] = (line, row["province"])
            stats[stat.province] = stat
    if not stats:
        raise StatisticsError(f"statistics table {path} has no rows; add one row per province")
    return stats


def _check_columns(path: Path, fieldnames) -> None:
    present = {(name or "").strip().lower() for name in fieldnames or ()}
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing:
        raise StatisticsError(
            f"statistics table {path} lacks column(s) {', '.join(missing)}; it needs columns "
            f"{', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)}) in a header row"
        )


def _user_row(path: Path, line: int, row: dict[str, str]) -> Statistic:
    where = f"{path} line {line}"
    name = row["province"]
    if not name:
        raise StatisticsError(f"{where}: the province is empty")
    try:
        prov = resolve_province(name)
    except UnknownProvinceError as e:
        raise StatisticsError(f"{where}: {e} `mapper grid --province NAME` accepts the same names.") from None
    hectares = _number(where, "cropland_ha", row["cropland_ha"])
    year = _year(where, row.get("year", ""))
    return Statistic(prov.name, hectares, f"user table {path.name}", year, row.get("source", ""))


def _number(where: str, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise StatisticsError(
            f"{where}: {column} {text!r} is not a number; write plain hectares, e.g. 3272200 or 3272200.5 "
            "(leave the row out if there is no value)"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise StatisticsError(f"{where}: {column} {text!r} must be a finite number of hectares >= 0")
    return value


def _year(where: str, text: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise StatisticsError(f"{where}: year {text!r} is not a whole year such as 2019 (or leave it empty)") from None


# ------------------------------------------------------------------------------------------ simulated world

_WORLD_CACHE: dict[tuple[int, str, str], float] = {}


def world_statistic(seed: int, province: Province | str, hectares: float | None = None) -> Statistic:
    """The simulated world's own statistic: its true cropland inside the province polygon.

    Takes seconds for a big province, so it is cached per (seed, pcode, geometry); `hectares`: the value a
    caller kept from an earlier computation (a run keeps it in its directory).
    """
    prov = as_province(province)
    key = (int(seed), prov.pcode, _geometry_digest(prov.geometry))
    if hectares is not None:
        _WORLD_CACHE[key] = float(hectares)
    if key not in _WORLD_CACHE:
        from mapper.world.truth import cropland_area_in_polygon
        from mapper.world.world import get_world

        _WORLD_CACHE[key] = float(cropland_area_in_polygon(get_world(int(seed)), prov.geometry)["cropland_ha"])
    return Statistic(
        prov.name,
        _WORLD_CACHE[key],
        f"simulated world, seed {int(seed)}",
        None,
        "ground truth of the world's parcel model inside the province polygon",
    )


def _geometry_digest(geometry) -> str:
    return hashlib.sha1(shapely.to_wkb(geometry)).hexdigest()


# ------------------------------------------------------------------------------------------------------ PCS


def pcs(mapped_ha: float | None, statistic: Statistic) -> float | None:
    """Mapped area / statistical area (the paper's PCS); None when either is missing or the statistic is 0."""
    if mapped_ha is None or statistic.hectares is None or statistic.hectares == 0:
        return None
    if not (math.isfinite(mapped_ha) and math.isfinite(statistic.hectares)):
        return None
    return float(mapped_ha) / float(statistic.hectares)


def within_criterion(pcs_value: float | None, tolerance: float = DEFAULT_TOLERANCE) -> bool | None:
    """|PCS − 1| ≤ tolerance (10 % in the paper); None without a PCS. Inclusive up to float rounding."""
    if pcs_value is None or not math.isfinite(pcs_value):
        return None
    return abs(pcs_value - 1.0) <= tolerance + 1e-12
