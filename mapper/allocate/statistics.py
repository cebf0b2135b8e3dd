"""Crop statistics per administrative unit: reading a user's table, checked before any work, and the
simulated world's own.

A statistics table is a CSV with the columns `unit` (a province or prefecture of the packaged boundaries: its
ADM pcode, English or Chinese name), `crop` (a leaf of the crop taxonomy: its name or code) and `area_ha`
(harvested area, hectares). All units must be of one level (provinces or prefectures: nested units would
count the same hectares twice). Any other columns (year, source) are kept out of the way.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from mapper.croptype.taxonomy import Taxonomy

LEVELS = ("province", "prefecture")
REQUIRED = ("unit", "crop", "area_ha")


class StatisticsError(ValueError):
    """A statistics table that cannot be allocated; the message names the file, line, unit or crop."""


@dataclass
class CropStatistics:
    level: str  # province | prefecture
    units: gpd.GeoDataFrame  # code, name, geometry: the units with a statistic, in index order
    codes: np.ndarray  # (J,) taxonomy leaf codes of the crops, in column order
    names: tuple[str, ...]  # (J,) their leaf names
    stat_ha: np.ndarray  # (K, J)

    def table(self) -> pd.DataFrame:
        k, j = np.nonzero(self.stat_ha > 0)
        units = self.units
        return pd.DataFrame({"unit_code": units["code"].to_numpy()[k], "unit_name": units["name"].to_numpy()[k],
                             "crop_code": self.codes[j], "crop": np.asarray(self.names)[j],
                             "area_ha": self.stat_ha[k, j]})  # fmt: skip


def unit_frame(level: str) -> gpd.GeoDataFrame:
    """Every packaged unit of a level: code, name (English), name_zh, geometry."""
    from mapper.grid.admin import prefectures_frame, provinces_frame

    if level == "province":
        f = provinces_frame()
        return gpd.GeoDataFrame({"code": f["ADM1_PCODE"], "name": f["name"], "name_zh": f["ADM1_ZH"]},
                                geometry=f.geometry.values, crs="EPSG:4326")  # fmt: skip
    if level == "prefecture":
        f = prefectures_frame()
        return gpd.GeoDataFrame({"code": f["ADM2_PCODE"], "name": f["ADM2_EN"], "name_zh": f["ADM2_ZH"]},
                                geometry=f.geometry.values, crs="EPSG:4326")  # fmt: skip
    raise StatisticsError(f"unknown unit level {level!r}; use province or prefecture")


def _unit_lookup() -> dict[str, list[tuple[str, str]]]:
    """Lower-cased code / name / Chinese name → [(level, code)] (a name may be ambiguous)."""
    from mapper.grid.admin import short_english_name

    out: dict[str, list[tuple[str, str]]] = {}
    for level in LEVELS:
        f = unit_frame(level)
        for code, name, zh in zip(f["code"], f["name"], f["name_zh"], strict=True):
            keys = {str(code), str(name), str(zh), short_english_name(str(name))}
            for key in keys:
                out.setdefault(key.strip().lower(), []).append((level, str(code)))
    return out


def _crop_lookup(taxonomy: Taxonomy) -> dict[str, int]:
    out = {}
    for code, name in zip(taxonomy.codes, taxonomy.leaf_names(), strict=True):
        out[str(code)] = int(code)
        out[name.lower()] = int(code)
    return out


def read_statistics(path: Path | str, taxonomy: Taxonomy) -> CropStatistics:
    path = Path(path)
    if not path.is_file():
        raise StatisticsError(f"{path}: no such statistics file (a CSV with columns unit, crop, area_ha)")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            found = ", ".join(reader.fieldnames or []) or "none"
            raise StatisticsError(f"{path}: missing column(s) {', '.join(missing)}; the table needs "
                                  f"{', '.join(REQUIRED)} (found {found})")  # fmt: skip
        rows = [(line, row) for line, row in enumerate(reader, start=2)]
    if not rows:
        raise StatisticsError(f"{path}: no rows")
    units, crops = _unit_lookup(), _crop_lookup(taxonomy)
    records = [_record(path, line, row, units, crops, taxonomy) for line, row in rows]
    return _assemble(path, records, taxonomy)


def _record(path: Path, line: int, row: dict, units: dict, crops: dict, taxonomy: Taxonomy):
    where = f"{path} line {line}"
    unit, crop, text = (row.get("unit", "") or "").strip(), (row.get("crop", "") or "").strip(), row.get("area_ha", "")
    hits = units.get(unit.lower(), [])
    if not hits:
        raise StatisticsError(f"{where}: unknown unit {unit!r}; give a province or prefecture of the packaged "
                              "boundaries by its pcode (e.g. CN044 or CN044010), English or Chinese name")  # fmt: skip
    if len(set(hits)) > 1:
        options = ", ".join(f"{lv} {code}" for lv, code in sorted(set(hits)))
        raise StatisticsError(f"{where}: unit {unit!r} is ambiguous ({options}); give its pcode instead")
    code = crops.get(crop.lower())
    if code is None:
        raise StatisticsError(f"{where}: crop {crop!r} is not a leaf of the crop taxonomy; use one of: "
                              + ", ".join(taxonomy.leaf_names()))  # fmt: skip
    try:
        area = float(str(text).replace(",", "").strip())
    except ValueError:
        raise StatisticsError(f"{where}: area_ha {text!r} is not a number (unit {unit}, crop {crop})") from None
    if not np.isfinite(area) or area < 0:
        raise StatisticsError(f"{where}: area_ha {text!r} must be a non-negative number (unit {unit}, crop {crop})")
    level, unit_code = hits[0]
    return where, level, unit_code, code, area


def _assemble(path: Path, records: list, taxonomy: Taxonomy) -> CropStatistics:
    levels = {r[1] for r in records}
    if len(levels) > 1:
        first = {lv: next(r[0] for r in records if r[1] == lv) for lv in levels}
        raise StatisticsError(f"{path}: mixes provinces ({first['province']}) and prefectures "
                              f"({first['prefecture']}); give one level per table (nested units would count "
                              "the same hectares twice)")  # fmt: skip
    seen: dict[tuple[str, int], str] = {}
    for where, _, unit, code, _ in records:
        if (unit, code) in seen:
            raise StatisticsError(f"{where}: unit {unit}, crop {code} is already given at {seen[unit, code]}")
        seen[unit, code] = where
    level = levels.pop()
    frame = unit_frame(level).set_index("code")
    unit_codes = sorted({r[2] for r in records})
    crop_codes = np.array(sorted({r[3] for r in records}), np.int64)
    stat = np.zeros((len(unit_codes), len(crop_codes)))
    u_ix = {c: i for i, c in enumerate(unit_codes)}
    c_ix = {int(c): i for i, c in enumerate(crop_codes)}
    for _, _, unit, code, area in records:
        stat[u_ix[unit], c_ix[code]] = area
    units = gpd.GeoDataFrame({"code": unit_codes, "name": frame.loc[unit_codes, "name"].to_numpy()},
                             geometry=frame.loc[unit_codes].geometry.values, crs="EPSG:4326")  # fmt: skip
    names = dict(zip(taxonomy.codes, taxonomy.leaf_names(), strict=True))
    return CropStatistics(level, units, crop_codes, tuple(names[int(c)] for c in crop_codes), stat)


def write_statistics(stats: CropStatistics, path: Path | str) -> Path:
    """The table as a user would give it (unit pcode, crop name, area_ha), written atomically."""
    from mapper.store.atomic import atomic_write_text

    t = stats.table()
    lines = ["unit,unit_name,crop,area_ha"]
    lines += [f"{u},\"{n}\",{c},{a:.4f}" for u, n, c, a in zip(t["unit_code"], t["unit_name"], t["crop"],
                                                                 t["area_ha"], strict=True)]  # fmt: skip
    atomic_write_text(Path(path), "\n".join(lines) + "\n")
    return Path(path)


def statistics_from_pieces(level: str, units: gpd.GeoDataFrame, unit: np.ndarray, crop_codes, crop_ha: np.ndarray,
                           taxonomy: Taxonomy) -> CropStatistics:  # fmt: skip
    """Per-unit sums of per-piece crop hectares (the simulated world's truth) as a statistics table; crops
    without any area are left out."""
    stat = np.stack([np.bincount(unit, crop_ha[:, j], len(units)) for j in range(crop_ha.shape[1])], 1)
    keep = stat.sum(0) > 0
    names = dict(zip(taxonomy.codes, taxonomy.leaf_names(), strict=True))
    codes = np.asarray(crop_codes, np.int64)[keep]
    return CropStatistics(level, units, codes, tuple(names[int(c)] for c in codes), stat[:, keep])
