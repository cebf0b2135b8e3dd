"""The statistic a province's mapped area is compared with: user table > TNLS 2019 > 1996 survey > none."""

from __future__ import annotations

import csv
from importlib import resources

import pytest
from shapely.geometry import box

from mapper.grid.admin import Province, all_provinces, resolve_province
from mapper.maps.statistics import (
    NO_STATISTIC,
    SURVEY1996_SOURCE,
    TNLS_SOURCE,
    Statistic,
    StatisticsError,
    official_statistic,
    packaged_provinces,
    pcs,
    read_user_statistics,
    reference_statistic,
    resolve_packaged_name,
    survey1996_statistic,
    within_criterion,
    world_statistic,
)


def _packaged(filename: str) -> list[dict[str, str]]:
    text = resources.files("mapper.data").joinpath("stats", filename).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


TNLS = {row["province_en"]: row for row in _packaged("tnls2019_cultivated_land.csv")}
SURVEY1996 = {row["province_en"]: row for row in _packaged("survey1996_cultivated_land.csv")}


def test_every_packaged_row_resolves_to_one_province():
    tnls = [n for n in TNLS if "national" not in n.lower()]
    survey = [n for n in SURVEY1996 if "national" not in n.lower()]
    assert len(tnls) == 16 and len(survey) == 30
    for name in tnls:
        prov = resolve_packaged_name(name)
        assert prov.pcode == f"CN{int(TNLS[name]['adcode']) // 10000:03d}", name  # adcode agrees with the name
    assert resolve_packaged_name("Tibet (Xizang)").name == "Tibet"
    for name in survey:
        resolve_packaged_name(name)
    covered = packaged_provinces()
    assert len(covered["tnls2019"]) == 16 and len(covered["survey1996"]) == 30
    assert "Chongqing" not in covered["survey1996"]


def test_tnls_value_with_its_source():
    stat = official_statistic("Hebei")
    assert stat == Statistic("Hebei", float(TNLS["Hebei"]["cropland_ha"]), TNLS_SOURCE, 2019, stat.note)
    assert stat.hectares == 6034173.0
    assert TNLS["Hebei"]["source_url"] in stat.note
    assert official_statistic("Tibet").hectares == float(TNLS["Tibet (Xizang)"]["cropland_ha"])
    assert official_statistic("西藏自治区").province == "Tibet"


def test_rounded_tnls_values_say_so():
    for name in ("Heilongjiang", "Xinjiang"):
        stat = official_statistic(name)
        assert stat.source == TNLS_SOURCE and stat.hectares == float(TNLS[name]["cropland_ha"])
        assert "rounded" in stat.note
    assert "rounded" not in official_statistic("Henan").note


def test_province_without_tnls_falls_back_to_1996():
    for name in ("Guangdong", "Inner Mongolia", "Hunan"):  # Guangdong's TNLS value is not packaged
        stat = official_statistic(name)
        assert stat.source == SURVEY1996_SOURCE and stat.year == 1996
        assert stat.hectares == pytest.approx(float(SURVEY1996[name]["cultivated_land_kha"]) * 1000)
    assert official_statistic("Guangdong").hectares == pytest.approx(3272200.0)


def test_chongqing_and_sichuan_in_1996():
    chongqing = survey1996_statistic("Chongqing")
    assert chongqing.source == NO_STATISTIC and chongqing.hectares is None and "Sichuan" in chongqing.note
    sichuan = survey1996_statistic("Sichuan")
    assert sichuan.hectares == pytest.approx(9169100.0) and "includes Chongqing" in sichuan.note
    # both have TNLS values, which come first
    assert official_statistic("Chongqing").source == TNLS_SOURCE
    assert official_statistic("Sichuan").source == TNLS_SOURCE


def test_no_statistic_is_never_invented():
    for name in ("Hong Kong", "Macao", "Taiwan"):
        stat = official_statistic(name)
        assert stat.hectares is None and stat.source == NO_STATISTIC and not stat.available
        assert "user table" in stat.note
    assert all(official_statistic(p).province == p.name for p in all_provinces())


def _write(tmp_path, text: str, name: str = "stats.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_user_table_overrides(tmp_path):
    path = _write(
        tmp_path,
        "province,cropland_ha,source,year\n"
        "Guangdong Province,2600000,provincial yearbook,2020\n"
        "广西壮族自治区,3300000.5,,\n",
    )
    table = read_user_statistics(path)
    assert set(table) == {"Guangdong", "Guangxi"}
    stat = official_statistic("Guangdong", user_table=path)
    assert stat == Statistic("Guangdong", 2600000.0, "user table stats.csv", 2020, "provincial yearbook")
    assert official_statistic("Guangxi", user_table=path).year is None
    assert official_statistic("Hebei", user_table=path).source == TNLS_SOURCE  # not in the table
    macao = official_statistic(
        resolve_province("Macao"), user_table=_write(tmp_path, "province,cropland_ha\nMacao,0\n")
    )
    assert macao.hectares == 0.0 and pcs(10.0, macao) is None


def test_reference_statistic_order_shared_by_run_and_validate():
    """A table naming the province first (the first table wins), then the world for world runs, then official."""
    first = Statistic("Guangdong", 1.0, "first table", None, "")
    second = Statistic("Guangdong", 2.0, "second table", None, "")
    assert reference_statistic("Guangdong", [{}, {"Guangdong": first}, {"Guangdong": second}], world=True) == (
        first,
        "table",
    )
    assert reference_statistic("Guangdong", [{"Hunan": second}], world=True) == (None, "world")
    assert reference_statistic("Guangdong", [], world=False) == (official_statistic("Guangdong"), "official")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name,cropland_ha\nHebei,1\n", "lacks column.*province.*needs columns province, cropland_ha"),
        ("province,area\nHebei,1\n", "lacks column.*cropland_ha"),
        ("province,cropland_ha\nHebei,lots\n", "line 2: cropland_ha 'lots' is not a number"),
        ("province,cropland_ha\nHebei,1\nHenan,-5\n", "line 3: cropland_ha '-5' must be .*>= 0"),
        ("province,cropland_ha\nHebei,nan\n", "line 2"),
        ("province,cropland_ha\nGuangdon,1\n", "line 2: unknown province 'Guangdon'.*Guangdong.*mapper grid"),
        (
            "province,cropland_ha\nTibet,1\nXizang,2\n",
            "Tibet appears twice \\(line 2 as 'Tibet', line 3 as 'Xizang'\\)",
        ),
        ("province,cropland_ha,year\nHebei,1,about 2019\n", "line 2: year 'about 2019'"),
        ("province,cropland_ha\n", "no rows"),
        ("province,cropland_ha\n,5\n", "line 2: the province is empty"),
    ],
)
def test_bad_user_tables_name_the_problem(tmp_path, text, match):
    path = _write(tmp_path, text)
    with pytest.raises(StatisticsError, match=match):
        read_user_statistics(path)
    with pytest.raises(StatisticsError):
        official_statistic("Hebei", user_table=path)


def test_missing_user_table(tmp_path):
    with pytest.raises(StatisticsError, match=r"not found.*columns province, cropland_ha"):
        read_user_statistics(tmp_path / "nope.csv")
    with pytest.raises(StatisticsError, match="not a file"):
        read_user_statistics(tmp_path)
    assert isinstance(StatisticsError("x"), ValueError)


def test_user_table_tolerates_bom_spaces_and_blank_lines(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_text(" Province , Cropland_ha \r\nHebei , 12.5 \r\n\r\n", encoding="utf-8-sig")
    assert read_user_statistics(path)["Hebei"].hectares == 12.5


def test_world_statistic_is_the_worlds_ground_truth():
    from mapper.world.truth import cropland_area_in_polygon
    from mapper.world.world import get_world

    hong_kong = resolve_province("Hong Kong")
    stat = world_statistic(0, "Hong Kong")
    assert stat.hectares == pytest.approx(cropland_area_in_polygon(get_world(0), hong_kong.geometry)["cropland_ha"])
    assert stat.source == "simulated world, seed 0" and stat.province == "Hong Kong"
    assert world_statistic(0, hong_kong) == stat  # cached per (seed, pcode, geometry)
    region = Province("Test", "Test region", "测试", "XX001", box(113.30, 23.10, 113.36, 23.14))
    expected = cropland_area_in_polygon(get_world(1), region.geometry)["cropland_ha"]
    assert world_statistic(1, region).hectares == pytest.approx(expected)
    assert world_statistic(1, region).hectares > 0


def test_pcs_and_the_criterion():
    stat = Statistic("Hebei", 200.0, TNLS_SOURCE, 2019)
    assert pcs(180.0, stat) == pytest.approx(0.9)
    assert pcs(None, stat) is None
    assert pcs(1.0, Statistic("Macao", None, NO_STATISTIC, None)) is None
    assert pcs(1.0, Statistic("Macao", 0.0, "user table t.csv", None)) is None
    assert within_criterion(1.0) is True
    assert within_criterion(110 / 100) is True  # the bound is inclusive despite float rounding
    assert within_criterion(0.9) is True
    assert within_criterion(1.1001) is False
    assert within_criterion(0.85) is False
    assert within_criterion(0.85, tolerance=0.2) is True
    assert within_criterion(None) is None
    assert within_criterion(pcs(None, stat)) is None
