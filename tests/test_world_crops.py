"""Crops of the simulated world: one crop per field, regional mixes, rotation, statistics without rendering,
and the world's Sentinel-2: UTM 10 m grid, mixed edge pixels, clouds marked in SCL, calendars that move
with the climate."""

import numpy as np
import pytest
from pyproj import CRS

from mapper.croptype.taxonomy import packaged_taxonomy
from mapper.grid.area import masked_area_m2
from mapper.grid.blocks import Block
from mapper.grid.tilegrid import TILE_SIZE, lonlat_to_global_pixel
from mapper.world import crops
from mapper.world.landscape import CROPLAND
from mapper.world.phenology import field_cover
from mapper.world.sentinel2 import SCL_CLOUD_HIGH, SCL_CLOUD_MED, simulate_block, utm_grid
from mapper.world.truth import block_cover, block_crops, crop_area_in_polygon
from mapper.world.world import get_world

HENAN = Block.containing(114.2, 34.6)


def test_world_crops_are_the_packaged_taxonomy_leaves():
    tax = packaged_taxonomy()
    for code, name in zip([*crops.CODES.tolist(), crops.FALLOW_CODE], crops.NAMES, strict=True):
        assert tax.leaf_names()[tax.leaf_index(code)] == name


def test_every_field_has_one_crop_and_only_cropland_has_crops():
    world = get_world(0)
    w = HENAN.window()
    tx, ty = w.tiles()[40]
    patch = world.tile_patch(tx, ty)[0]
    codes = crops.crop_codes(world.landscape, patch.cover, patch.zone_key, patch.field_rand)
    assert ((codes > 0) == CROPLAND[patch.cover]).all()
    fid = crops.field_ids(patch.zone_key, patch.field_rand)[codes > 0]
    per_field = {}
    for f, c in zip(fid.tolist(), codes[codes > 0].tolist(), strict=True):
        assert per_field.setdefault(f, c) == c
    assert len(per_field) > 20


def test_crops_are_seamless_across_tiles():
    world = get_world(0)
    tx, ty = HENAN.window().tiles()[12]
    cols = np.arange(tx * TILE_SIZE, (tx + 2) * TILE_SIZE)
    rows = np.arange(ty * TILE_SIZE, (ty + 1) * TILE_SIZE)
    wide = world.landscape.patch(cols, rows)
    both = crops.crop_codes(world.landscape, wide.cover, wide.zone_key, wide.field_rand)
    tiles = []
    for x in (tx, tx + 1):
        p = world.tile_patch(x, ty)[0]
        tiles.append(crops.crop_codes(world.landscape, p.cover, p.zone_key, p.field_rand))
    assert np.array_equal(both, np.hstack(tiles))


def _mix(world, lon, lat, n=60000):
    rng = np.random.default_rng(1)
    x, y = lonlat_to_global_pixel(lon + rng.uniform(-0.4, 0.4, n), lat + rng.uniform(-0.4, 0.4, n), 16)
    t = world.landscape.truth_at_points(x, y)
    codes = crops.crop_codes(world.landscape, t["cover"], t["zone_key"], t["field_rand"])
    counts = np.bincount(codes, minlength=26)[1:].astype(float)
    return counts / counts.sum()


def test_regional_crop_mixes():
    """Rice and sugarcane in the warm south, wheat and maize on the North China Plain, spring wheat and
    cotton in the arid north-west: shares of the leaf codes (index = code - 1)."""
    world = get_world(0)
    south = _mix(world, 110.3, 21.5)  # western Guangdong
    plain = _mix(world, 115.0, 35.0)  # North China Plain
    north_west = _mix(world, 104.0, 37.0)  # Gansu
    assert south[2 - 1] + south[16 - 1] > 0.25  # double rice + sugarcane
    assert plain[2 - 1] + plain[16 - 1] < 0.02
    assert plain[3 - 1] + plain[6 - 1] > 0.2  # winter wheat + grain maize
    assert south[3 - 1] < 0.02
    assert north_west[4 - 1] + north_west[15 - 1] > 3 * (plain[4 - 1] + plain[15 - 1])  # spring wheat + cotton


def test_rotation_keeps_some_crops_and_changes_others():
    world = get_world(0)
    now = block_crops(world, HENAN)
    before = block_crops(world, HENAN, last_year=True)
    grows = (now > 0) & (now != crops.FALLOW_CODE)
    same = (now == before)[grows].mean()
    assert 0.4 < same < 0.9
    rice = now == 1
    assert (before[rice] == 1).mean() > 0.8  # paddies stay rice (keep probability 0.9)
    assert ((before > 0) == (now > 0)).all()  # rotation changes the crop, never the cropland


def test_crop_statistics_match_a_rendered_count():
    """Per-crop area from the point samples equals the area counted on the rendered block grid."""
    world = get_world(0)
    codes = block_crops(world, HENAN)
    window = HENAN.window()
    rendered = {int(c): masked_area_m2(codes == c, window) / 1e4 for c in np.unique(codes) if c}
    sampled = crop_area_in_polygon(world, HENAN.polygon, samples_per_block_side=120)
    total_r = sum(rendered.values())
    total_s = sum(v["ha"] for v in sampled.values())
    assert total_s == pytest.approx(total_r, rel=0.02)
    big = [c for c, ha in rendered.items() if ha / total_r > 0.05]
    assert len(big) >= 3
    for c in big:
        assert sampled[c]["ha"] / total_s == pytest.approx(rendered[c] / total_r, abs=0.02), c
    # Harvested area counts double-cropped fields twice and fallow never.
    assert sampled[crops.FALLOW_CODE]["harvested_ha"] == 0
    assert sum(v["harvested_ha"] for v in sampled.values()) > total_s - sampled[crops.FALLOW_CODE]["ha"]
    # And the cropland agrees with the land cover's own count.
    assert total_r == pytest.approx(masked_area_m2(CROPLAND[block_cover(world, HENAN)], window) / 1e4, rel=1e-9)


def test_calendar_moves_with_the_climate():
    days = np.arange(100, 340, 1.0)
    codes = np.array([6, 6])
    t_opt = crops.T_OPTIMUM[[5, 5]]
    green, _, _ = field_cover(codes, np.array([t_opt[0] - 5, t_opt[0] + 5]), t_opt, np.zeros(2, bool),
                              np.zeros(2), np.ones(2), days)  # fmt: skip
    peak_cold, peak_warm = days[green.argmax(axis=1)]
    # Documented rules: 4 days later per °C colder, 1 % longer per °C warmer. Maize emerges on day 135 and
    # peaks 75 days later at its optimum: cold peak 155 + 75 × 0.95, warm 115 + 75 × 1.05.
    assert peak_cold - peak_warm == pytest.approx((155 + 75 * 0.95) - (115 + 75 * 1.05), abs=2)


@pytest.fixture(scope="module")
def small_s2():
    west, south, _, _ = HENAN.bounds
    return simulate_block(get_world(0), (west, south, west + 0.008, south + 0.008))


def test_s2_grid_is_utm_10m_and_aligned(small_s2):
    s = small_s2
    assert s.crs == CRS.from_epsg(32650)
    assert s.transform.a == 10 and s.transform.e == -10
    assert s.transform.c % 10 == 0 and s.transform.f % 10 == 0
    assert s.data.shape == (len(s.dates), 10, *s.field.shape) and s.data.dtype == np.uint16
    days = [d.timetuple().tm_yday for d in s.dates]
    assert np.all(np.diff(days) == 5) and days[0] <= 121 and days[-1] >= 331
    assert utm_grid(HENAN.bounds)[0] == s.crs


def test_s2_edges_are_mixed_pixels_and_clouds_are_marked(small_s2):
    s = small_s2
    assert (s.purity == 1).mean() > 0.3 and ((s.purity > 0.2) & (s.purity < 0.9)).mean() > 0.05
    cloud = np.isin(s.scl, (SCL_CLOUD_MED, SCL_CLOUD_HIGH))
    assert 0.02 < cloud.mean() < 0.6
    b2 = s.data[:, 0].astype(float) / 1e4
    assert b2[cloud].mean() > 0.3 > b2[~cloud].mean()


def test_s2_pure_field_pixels_follow_their_crop(small_s2):
    """The NDVI of pure maize pixels peaks in summer; a pure pixel of a field is its field's series."""
    s = small_s2
    nir, red = s.data[:, 6].astype(float), s.data[:, 2].astype(float)
    ndvi = (nir - red) / (nir + red)
    clear = ~np.isin(s.scl, (3, 8, 9))
    maize = (s.crop == 6) & (s.purity == 1)
    assert maize.sum() > 20
    per_date = np.array([np.median(ndvi[d][maize & clear[d]]) if (maize & clear[d]).any() else np.nan
                         for d in range(len(s.dates))])  # fmt: skip
    days = np.array([d.timetuple().tm_yday for d in s.dates])
    summer = (days > 190) & (days < 230)
    spring = days < 140
    assert np.nanmedian(per_date[summer]) > 0.6 > 0.35 > np.nanmedian(per_date[spring])
