import pytest

from mapper.grid.admin import UnknownProvinceError, all_provinces, resolve_province
from mapper.grid.blocks import Block, blocks_in_bounds, lonlat_to_block_index
from mapper.grid.region import province_blocks


@pytest.mark.parametrize(
    "name", ["Guangdong", "guangdong", "Guangdong Province", "广东省", "广东", "CN044", " GUANGDONG "]
)
def test_province_name_variants(name):
    assert resolve_province(name).pcode == "CN044"


@pytest.mark.parametrize(
    ("name", "pcode"),
    [("Inner Mongolia", "CN015"), ("内蒙古自治区", "CN015"), ("Gansu", "CN062"), ("Xizang", "CN054"),
     ("Tibet", "CN054"), ("Xinjiang", "CN065"), ("Guangxi", "CN045"), ("Beijing", "CN011")],
)
def test_other_provinces(name, pcode):
    assert resolve_province(name).pcode == pcode


def test_unknown_province_names_close_matches():
    with pytest.raises(UnknownProvinceError, match="Did you mean: Guangdong"):
        resolve_province("Guandong")


def test_all_34_units():
    assert len(all_provinces()) == 34


def test_guangdong_has_6662_blocks():
    blocks = province_blocks(resolve_province("Guangdong"))
    assert len(blocks) == 6662
    assert int((blocks["frac_inside"] >= 1.0).sum()) == 5640
    assert blocks["block_id"].is_unique
    assert (blocks["frac_inside"] > 0).all() and (blocks["frac_inside"] <= 1).all()
    assert (blocks["prefectures"].str.len() > 0).all()
    # Border blocks can touch several prefectures; interior ones mostly one.
    assert blocks["prefectures"].str.contains(";").any()
    # Sum of inside fractions × block area ≈ the polygon area (deg²).
    prov = resolve_province("Guangdong")
    assert float(blocks["frac_inside"].sum()) * 0.05**2 == pytest.approx(prov.geometry.area, rel=1e-6)


def test_block_ids_and_edges():
    b = Block.containing(113.35, 23.05)
    assert b.bounds[0] == pytest.approx(113.35) and b.bounds[1] == pytest.approx(23.05)
    assert Block.parse(b.id) == b
    with pytest.raises(ValueError, match="not a block id"):
        Block.parse("113.3,23.1")
    ix, iy = lonlat_to_block_index([-180.0, 179.99], [-90.0, 89.99])
    assert list(ix) == [0, 7199] and list(iy) == [0, 3599]
    assert len(blocks_in_bounds(113.0, 23.0, 113.1, 23.1)) == 4


def test_country_blocks_are_unique_and_assigned_to_the_larger_share():
    from mapper.grid.region import country_blocks

    provs = [resolve_province(n) for n in ("Guangdong", "Hong Kong", "Macao")]
    blocks = country_blocks(provs)
    assert blocks["block_id"].is_unique
    gd = province_blocks(provs[0])
    assert set(gd["block_id"]) <= set(blocks["block_id"])
    shared = blocks[blocks["provinces"].str.contains(";")]
    assert len(shared) > 0  # border blocks of Guangdong and Hong Kong / Macao
    for row in shared.itertuples():
        shares = {p.name: 0.0 for p in provs}
        for p in provs:
            sub = province_blocks(p) if p.name != "Guangdong" else gd
            hit = sub[sub["block_id"] == row.block_id]
            if len(hit):
                shares[p.name] = float(hit["frac_inside"].iloc[0])
        assert row.province == max(shares, key=shares.get)
        break  # one is enough to check the rule; the full set is checked by uniqueness above


@pytest.mark.slow
def test_china_has_about_383k_blocks():
    from mapper.grid.region import country_blocks

    blocks = country_blocks(all_provinces())
    assert len(blocks) == 383_267 and blocks["block_id"].is_unique
