"""mapper.run.maps: block COGs, the VRT mosaic with overviews, and the PNG maps."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from matplotlib.image import imread

from mapper.grid.blocks import Block
from mapper.imagery.tilegrid import PixelWindow
from mapper.run.maps import (
    area_fraction_png,
    block_gallery_png,
    build_map_vrt,
    map_preview_png,
    overview_factors,
    write_block_cog,
)

ORIGIN = Block(5866, 2262).window()  # z16 at Guangzhou


def grid_window(dc: int, dr: int, w: int, h: int, zoom: int = 16) -> PixelWindow:
    return PixelWindow(zoom, ORIGIN.col0 + dc, ORIGIN.row0 + dr, ORIGIN.col0 + dc + w, ORIGIN.row0 + dr + h)


def random_map(shape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = (rng.random((shape[0] // 8 + 1, shape[1] // 8 + 1)) < 0.45).astype(np.uint8)
    m = np.kron(m, np.ones((8, 8), np.uint8))[: shape[0], : shape[1]].copy()  # fields of 8 × 8 px
    m[: shape[0] // 4, : shape[1] // 3] = 255  # a corner without imagery
    return m


def no_temporaries(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------------ block COG
def test_block_cog_is_a_cog_with_the_exact_grid(tmp_path):
    window = grid_window(0, 0, 1100, 1300)
    mask = random_map(window.shape, 0)
    path = write_block_cog(mask, window, tmp_path / "final" / "5866_2262.tif", block_id="5866_2262", tags={"X": 1})
    assert no_temporaries(path.parent)
    with rasterio.open(path) as ds:
        assert ds.driver == "GTiff"
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.crs.to_epsg() == 3857
        assert tuple(ds.transform) == tuple(window.transform)
        assert (ds.width, ds.height, ds.count, ds.dtypes[0], ds.nodata) == (1100, 1300, 1, "uint8", 255)
        assert ds.block_shapes[0] == (512, 512)
        assert ds.compression.name.lower() in ("deflate", "zstd")
        assert ds.overviews(1) == [2, 4]
        np.testing.assert_array_equal(ds.read(1), mask)
        tags = ds.tags()
        assert tags["MAPPER_BLOCK"] == "5866_2262" and tags["MAPPER_ZOOM"] == "16" and tags["X"] == "1"
        assert ds.colormap(1)[1][:3] != ds.colormap(1)[0][:3]
        for level in range(len(ds.overviews(1))):  # nearest overviews keep the three values
            with rasterio.open(path, overview_level=level) as ov:
                assert set(np.unique(ov.read(1))) <= {0, 1, 255}
    # A minimal header check as well: COGs carry GDAL's structural metadata right after the TIFF header.
    head = path.read_bytes()[:300]
    assert b"GDAL_STRUCTURAL_METADATA_SIZE" in head and b"LAYOUT=IFDS_BEFORE_DATA" in head


def test_block_cog_rejects_bad_masks(tmp_path):
    window = grid_window(0, 0, 20, 10)
    with pytest.raises(ValueError, match="0, 1 or 255"):
        write_block_cog(np.full(window.shape, 7, np.uint8), window, tmp_path / "a.tif", block_id="a")
    with pytest.raises(ValueError, match="shape"):
        write_block_cog(np.zeros((3, 3), np.uint8), window, tmp_path / "a.tif", block_id="a")
    assert not list(tmp_path.iterdir())
    ok = write_block_cog(np.ones(window.shape, bool), window, tmp_path / "b.tif", block_id="b")
    with rasterio.open(ok) as ds:
        assert ds.read(1).min() == 1


# ------------------------------------------------------------------------------------------------ VRT
LAYOUT = [  # (dc, dr, w, h): four blocks that share edges, one apart (a gap of nodata), one far row
    (0, 0, 700, 600),
    (700, 0, 650, 600),
    (0, 600, 700, 550),
    (700, 600, 650, 550),
    (1500, 1300, 400, 300),
    (-300, 1400, 300, 200),
]


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    blocks = []
    for k, (dc, dr, w, h) in enumerate(LAYOUT):
        window = grid_window(dc, dr, w, h)
        mask = random_map(window.shape, k)
        path = write_block_cog(mask, window, root / "final" / f"b{k}.tif", block_id=f"b{k}")
        blocks.append((path, window, mask))
    vrt = build_map_vrt([p for p, _, _ in blocks], root / "map" / "cropland.vrt")
    return root, vrt, blocks


def expected_mosaic(blocks):
    col0 = min(w.col0 for _, w, _ in blocks)
    row0 = min(w.row0 for _, w, _ in blocks)
    full = PixelWindow(16, col0, row0, max(w.col1 for _, w, _ in blocks), max(w.row1 for _, w, _ in blocks))
    out = np.full(full.shape, 255, np.uint8)
    for _, w, m in blocks:
        out[w.row0 - row0 : w.row1 - row0, w.col0 - col0 : w.col1 - col0] = m
    return full, out


def test_vrt_equals_the_blocks_pixel_for_pixel(mosaic):
    _, vrt, blocks = mosaic
    full, expected = expected_mosaic(blocks)
    with rasterio.open(vrt) as ds:
        assert ds.crs.to_epsg() == 3857
        assert (ds.width, ds.height) == (full.width, full.height)
        assert tuple(ds.transform) == tuple(full.transform)  # global grid arithmetic, exactly
        assert ds.nodata == 255 and ds.dtypes[0] == "uint8"
        np.testing.assert_array_equal(ds.read(1), expected)
        assert ds.tags()["MAPPER_ZOOM"] == "16"
        assert ds.colormap(1)[1][:3] == (35, 132, 67)


def test_vrt_has_relative_paths_and_overviews(mosaic, tmp_path):
    root, vrt, blocks = mosaic
    xml = vrt.read_text()
    assert xml.count('relativeToVRT="1"') == len(LAYOUT)
    assert "../final/b0.tif" in xml and str(root) not in xml
    full, expected = expected_mosaic(blocks)
    factors = overview_factors(full.width, full.height)
    assert factors == [2, 4]  # 1,550 px high: 775, then 388 < 512
    assert Path(f"{vrt}.ovr").exists()
    assert no_temporaries(vrt.parent)
    # The run directory moves: the VRT still finds its blocks and overviews.
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    with rasterio.open(moved / "map" / "cropland.vrt") as ds:
        assert ds.overviews(1) == factors
        np.testing.assert_array_equal(ds.read(1), expected)
        small = ds.read(1, out_shape=(ds.height // 4, ds.width // 4))  # served from the overviews
        assert set(np.unique(small)) <= {0, 1, 255}
        # Nearest sampling: GDAL's phase depends on sizes that are not multiples of 4, so most, not all, agree.
        assert (small == expected[2::4, 2::4][: small.shape[0], : small.shape[1]]).mean() > 0.98


@pytest.mark.skipif(shutil.which("gdalinfo") is None, reason="no gdalinfo program here")
def test_gdalinfo_opens_the_vrt(mosaic):
    _, vrt, _ = mosaic
    run = subprocess.run(["gdalinfo", str(vrt)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "Overviews:" in run.stdout and "NoData Value=255" in run.stdout
    assert "ERROR" not in run.stderr


def test_vrt_rebuild_without_overviews_drops_stale_ones(mosaic, tmp_path):
    _, _, blocks = mosaic
    out = tmp_path / "map" / "m.vrt"
    build_map_vrt([p for p, _, _ in blocks[:2]], out)
    assert Path(f"{out}.ovr").exists()
    build_map_vrt([p for p, _, _ in blocks[:3]], out, overviews=False)
    assert not Path(f"{out}.ovr").exists()
    with rasterio.open(out) as ds:
        assert ds.overviews(1) == []
        assert ds.height == 1150


def test_vrt_refuses_mixed_zooms_and_duplicates(mosaic, tmp_path):
    _, _, blocks = mosaic
    z15 = PixelWindow(15, 1000, 1000, 1020, 1010)
    other = write_block_cog(np.zeros(z15.shape, np.uint8), z15, tmp_path / "z15.tif", block_id="z15")
    with pytest.raises(ValueError, match="several zooms"):
        build_map_vrt([blocks[0][0], other], tmp_path / "x.vrt")
    with pytest.raises(ValueError, match="same place"):
        build_map_vrt([blocks[0][0], blocks[0][0]], tmp_path / "x.vrt")
    assert not (tmp_path / "x.vrt").exists()


def test_map_preview_png(mosaic):
    root, vrt, _ = mosaic
    out = map_preview_png(vrt, root / "report" / "preview.png", max_px=500)
    image = imread(out)
    assert image.shape[0] > 400 and image.shape[1] > 400
    colours = {tuple(c) for c in (image[::7, ::7, :3] * 255).round().astype(int).reshape(-1, 3)}
    assert (35, 132, 67) in colours and (241, 236, 220) in colours  # cropland and not cropland drawn
    assert no_temporaries(out.parent)


# ------------------------------------------------------------------------------------------------ fraction map
def test_area_fraction_png_of_a_province(tmp_path):
    import matplotlib.pyplot as plt

    from mapper.grid.admin import prefectures_frame, resolve_province
    from mapper.grid.region import province_blocks

    province = resolve_province("Guangdong")
    blocks = province_blocks(province)  # 6,662 blocks
    assert len(blocks) > 6000
    rng = np.random.default_rng(0)
    blocks["cropland_fraction"] = rng.random(len(blocks))
    blocks.loc[rng.random(len(blocks)) < 0.1, "cropland_fraction"] = np.nan
    prefectures = prefectures_frame()
    prefectures = prefectures[prefectures["ADM1_PCODE"] == province.pcode]
    figures = plt.get_fignums()
    out = area_fraction_png(
        blocks, tmp_path / "af.png", region_geometry=province.geometry, units=prefectures, title="Guangdong"
    )
    assert plt.get_fignums() == figures  # no pyplot state
    image = imread(out)
    assert image.shape[1] >= 1000
    assert len({tuple(c) for c in (image[::5, ::5, :3] * 255).round().astype(int).reshape(-1, 3)}) > 50


def test_area_fraction_png_from_geometry_only(tmp_path):
    blocks = [Block(5866 + i, 2262 + j) for j in range(6) for i in range(9)]
    frame = gpd.GeoDataFrame(
        {"f": np.linspace(0, 1, len(blocks))}, geometry=[b.polygon for b in blocks], crs=4326
    )  # no ids: the block grid comes from the polygons
    frame.loc[3, "f"] = np.nan
    region = shapely.box(113.3, 23.1, 113.75, 23.4).buffer(0.02)
    out = area_fraction_png(frame, tmp_path / "small.png", region_geometry=region, column="f")
    assert imread(out).shape[2] in (3, 4)
    with pytest.raises(ValueError, match="no column"):
        area_fraction_png(frame, tmp_path / "bad.png")


def test_sparse_sample_blocks_are_drawn_enlarged(tmp_path):
    """Eight blocks of a province are one image pixel each: they are drawn as squares too, and said so."""
    from mapper.grid.admin import resolve_province
    from mapper.grid.region import province_blocks

    province = resolve_province("Guangdong")
    blocks = province_blocks(province).iloc[::800].copy()
    blocks["cropland_fraction"] = 0.9
    out = area_fraction_png(blocks, tmp_path / "sample.png", region_geometry=province.geometry)
    image = imread(out)[..., :3]
    green = (image[..., 1] > image[..., 0] + 0.2) & (image[..., 1] > image[..., 2] + 0.2)
    assert green.sum() > len(blocks) * 30  # squares of dozens of pixels, not single pixels


def test_block_gallery_shows_blocks_and_leaves_out_missing_files(tmp_path):
    from mapper.imagery.mosaic import BlockMosaic, write_mosaic

    window = grid_window(0, 0, 300, 260)
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (*window.shape, 3), dtype=np.uint8)
    write_mosaic(BlockMosaic(window, rgb, np.ones(window.shape, bool), {}, "5866_2262"), tmp_path / "m.tif")
    write_block_cog(random_map(window.shape, 2), window, tmp_path / "f.tif", block_id="5866_2262")
    panels = [{"mosaic": tmp_path / "m.tif", "final": tmp_path / "f.tif", "title": "5866_2262: Only A"},
              {"mosaic": tmp_path / "absent.tif", "final": tmp_path / "f.tif", "title": "gone"}]  # fmt: skip
    out = block_gallery_png(panels, tmp_path / "blocks.png")
    assert imread(out).shape[0] > 200 and no_temporaries(tmp_path)
    with pytest.raises(ValueError, match="no block"):
        block_gallery_png(panels[1:], tmp_path / "none.png")
