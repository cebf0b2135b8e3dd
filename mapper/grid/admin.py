"""Administrative units (OCHA COD-AB China, packaged in mapper/data) and province-name resolution."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import geopandas as gpd

_SUFFIXES = re.compile(
    r"\s+(province|municipality|autonomous region|special administrative region|"
    r"zhuang autonomous region|hui autonomous region|uygur autonomous region|uyghur autonomous region)$"
)
_ZH_SUFFIXES = ("维吾尔自治区", "壮族自治区", "回族自治区", "特别行政区", "自治区", "省", "市")
# Names that people use but that the OCHA table spells otherwise.
_ALIASES = {"xizang": "tibet", "inner mongolia": "inner mongolia", "nei mongol": "inner mongolia"}


class UnknownProvinceError(ValueError):
    pass


@dataclass(frozen=True)
class Province:
    name: str  # short English name, e.g. "Guangdong"
    name_en: str  # as in the source table, e.g. "Guangdong Province"
    name_zh: str
    pcode: str  # e.g. "CN044"
    geometry: object  # shapely (Multi)Polygon, EPSG:4326


def _data_path(*parts: str):
    return resources.files("mapper.data").joinpath(*parts)


@cache
def provinces_frame() -> gpd.GeoDataFrame:
    with resources.as_file(_data_path("admin", "chn_admin1.geojson")) as p:
        gdf = gpd.read_file(p)
    gdf["name"] = [short_english_name(n) for n in gdf["ADM1_EN"]]
    return gdf.to_crs("EPSG:4326")


@cache
def prefectures_frame() -> gpd.GeoDataFrame:
    with resources.as_file(_data_path("admin", "chn_admin2.gpkg")) as p:
        gdf = gpd.read_file(p)
    return gdf[["ADM2_EN", "ADM2_ZH", "ADM2_PCODE", "ADM1_EN", "ADM1_PCODE", "geometry"]].to_crs("EPSG:4326")


def short_english_name(name_en: str) -> str:
    """'Guangdong Province' -> 'Guangdong'; 'Inner Mongolia Autonomous Region' -> 'Inner Mongolia'."""
    words = _SUFFIXES.sub("", name_en.strip().lower())
    return " ".join(w.capitalize() for w in words.split())


def _normalise(name: str) -> str:
    s = name.strip()
    for suffix in _ZH_SUFFIXES:
        if s.endswith(suffix) and len(s) > len(suffix):
            return s[: -len(suffix)]
    s = _SUFFIXES.sub("", s.lower())
    s = re.sub(r"[\s_\-]+", " ", s).strip()
    return _ALIASES.get(s, s)


@cache
def _index() -> dict[str, int]:
    gdf = provinces_frame()
    keys: dict[str, int] = {}
    for i, row in enumerate(gdf.itertuples()):
        for key in (row.ADM1_EN, row.ADM1_ZH, row.ADM1_PCODE, row.name):
            keys[_normalise(key)] = i
            keys[key.strip().lower()] = i
    return keys


def resolve_province(name: str) -> Province:
    """A province by any common spelling: 'Guangdong', 'guangdong', 'Guangdong Province', '广东省', 'CN044'."""
    key = _normalise(name)
    index = _index()
    if key not in index and name.strip().lower() not in index:
        choices = sorted(set(provinces_frame()["name"]))
        close = difflib.get_close_matches(key.title(), choices, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownProvinceError(
            f"unknown province {name!r}.{hint} Known provinces: {', '.join(choices)} "
            "(Chinese names and codes such as '广东省' or 'CN044' also work)."
        )
    i = index.get(key, index.get(name.strip().lower()))
    row = provinces_frame().iloc[i]
    return Province(row["name"], row["ADM1_EN"], row["ADM1_ZH"], row["ADM1_PCODE"], row.geometry)


def all_provinces() -> list[Province]:
    return [resolve_province(pcode) for pcode in provinces_frame()["ADM1_PCODE"]]
