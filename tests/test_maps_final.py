"""mapper.maps.final_map, block_maps and gallery: block COGs, the VRT mosaic, and the PNG maps."""

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
from mapper.grid.tilegrid import PixelWindow
from mapper.maps.block_maps import area_fraction_png, auto_vmax, block_category_png, is_sparse
from mapper.maps.final_map import build_map_vrt, map_preview_png, overview_factors, write_block_cog
from mapper.maps.gallery import OVERLAY, block_gallery_png

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


def test_block_category_png_colours_each_class_and_greys_unmapped_blocks(tmp_path):
    """A categorical block map (decision, coverage type): each class in its colour, None as not mapped."""
    from mapper.grid.admin import resolve_province
    from mapper.grid.region import province_blocks

    province = resolve_province("Guangdong")
    blocks = province_blocks(province).iloc[::700].copy()
    values = ["Merge", "Only A", None] * len(blocks)
    blocks["decision"] = values[: len(blocks)]
    classes = {"Only A": "#0000ff", "Merge": "#ff0000"}
    out = block_category_png(blocks, "decision", classes, tmp_path / "dec.png", region_geometry=province.geometry)
    rgb = imread(out)[..., :3]

    def share(colour):
        target = np.array(colour, float) / 255
        return float((np.abs(rgb - target).max(axis=-1) < 0.05).sum())

    assert share((0, 0, 255)) > 30 * blocks["decision"].eq("Only A").sum()  # enlarged squares, not pixels
    assert share((255, 0, 0)) > 30 * blocks["decision"].eq("Merge").sum()
    assert share((0xD4, 0xD4, 0xD4)) > 30 * blocks["decision"].isna().sum()  # not mapped: grey squares
    with pytest.raises(ValueError, match="no column"):
        block_category_png(blocks, "coverage", classes, tmp_path / "bad.png")


def test_auto_vmax_and_sparsity():
    assert auto_vmax([0.01, 0.093, np.nan]) == 0.1
    assert auto_vmax([0.12, 0.267]) == 0.3
    assert auto_vmax([0.3]) == 0.3 and auto_vmax([0.31]) == 0.5
    assert auto_vmax([0.0, 0.0]) == 0.1
    assert auto_vmax([0.51]) == 1.0 and auto_vmax([np.nan]) == 1.0
    assert is_sparse(8, 6662) and is_sparse(199, 100_000)
    assert is_sparse(1000, 100_000) and not is_sparse(5000, 100_000)
    assert not is_sparse(0, 6662) and not is_sparse(300, 400)


def non_white(image: np.ndarray) -> np.ndarray:
    return (image[..., :3] < 0.9).any(axis=-1)


def test_area_fraction_png_draws_a_sparse_sample_as_markers(tmp_path):
    region = shapely.box(110.0, 21.0, 117.0, 25.0)  # a province-sized box: 140 × 80 = 11,200 block cells
    ids = [(5800 + 20 * k, 2230 + 7 * k) for k in range(6)]
    frame = gpd.GeoDataFrame(
        {
            "block_id": [f"{i}_{j}" for i, j in ids],
            "cropland_fraction": [0.0, 0.01, 0.05, 0.12, 0.2, np.nan],  # small fractions, one failed block
        },
        geometry=[Block(i, j).polygon for i, j in ids],
        crs=4326,
    )
    plain = imread(area_fraction_png(frame, tmp_path / "plain.png", region_geometry=region, markers=False))
    auto = imread(area_fraction_png(frame, tmp_path / "auto.png", region_geometry=region, title="sample"))
    assert no_temporaries(tmp_path)
    assert plain.shape == auto.shape
    # The markers fill squares of ~9 pt (~19 px at 150 dpi) where a block is a ~6 px cell.
    assert non_white(auto).sum() > non_white(plain).sum() + 6 * 15**2
    # Around one sample block, the picture is not uniform: a black edge and the fill colour.
    ys, xs = np.nonzero(non_white(auto) & ~non_white(plain))
    assert len(ys) and np.ptp(auto[ys, xs, :3]) > 0.5


def small_window(block: Block, w: int, h: int) -> PixelWindow:
    win = block.window()
    return PixelWindow(win.zoom, win.col0, win.row0, win.col0 + w, win.row0 + h)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory of four blocks, cut to small windows: two complete, one without its final mask, one
    without mosaics; plus a failed block and run.json with the sources."""
    import json

    from mapper.imagery.mosaic import BlockMosaic, write_mosaic

    root = tmp_path_factory.mktemp("gallery")
    (root / "run.json").write_text(json.dumps({"sources": ["src-a", "src-b"]}))
    specs = [  # block, window size, files written
        (Block(5866, 2262), (900, 820), ("final", "src-a", "src-b")),
        (Block(5867, 2262), (300, 260), ("final", "src-b")),  # A's mosaic missing: B shown
        (Block(5868, 2262), (300, 260), ("src-a",)),  # no final mask: skipped
        (Block(5869, 2262), (300, 260), ("final",)),  # no mosaic: skipped
    ]
    rows = []
    for k, (block, (w, h), files) in enumerate(specs):
        window = small_window(block, w, h)
        rng = np.random.default_rng(k)
        rgb = np.empty((*window.shape, 3), np.uint8)
        rgb[...] = (60 + 40 * k, 110, 50)
        rgb += rng.integers(0, 30, rgb.shape, dtype=np.uint8)
        valid = np.ones(window.shape, bool)
        valid[: h // 5, : w // 4] = False
        mask = random_map(window.shape, k)
        if "final" in files:
            write_block_cog(mask, window, root / "final" / f"{block.id}.tif", block_id=block.id)
        for source in ("src-a", "src-b"):
            if source in files:
                write_mosaic(
                    BlockMosaic(window, rgb, valid, block_id=block.id), root / "mosaics" / source / f"{block.id}.tif"
                )
        rows.append((block, "done", float((mask == 1).sum() / (mask != 255).sum())))
    rows.append((Block(5870, 2262), "failed", np.nan))
    frame = gpd.GeoDataFrame(
        {
            "block_id": [b.id for b, _, _ in rows],
            "ix": [b.ix for b, _, _ in rows],
            "iy": [b.iy for b, _, _ in rows],
            "status": [s for _, s, _ in rows],
            "decision": ["Only A", "Merge", "Only B", "Neither", None],
            "cropland_fraction": [f for _, _, f in rows],
            "a_coverage": ["Planting", "Cloudy", "Planting", "Planting", None],
            "b_coverage": ["Non-planting", "Planting", "Planting", "Cloudy", None],
            "frac_inside": [0.6, 1.0, 1.0, 1.0, 1.0],
        },
        geometry=[b.polygon for b, _, _ in rows],
        crs=4326,
    )
    return root, frame


def test_block_gallery_png(run_dir, tmp_path):
    import time

    import matplotlib.pyplot as plt

    root, frame = run_dir
    figures = plt.get_fignums()
    region = shapely.box(113.0, 23.0, 113.31, 23.5)  # crosses the first block's window (113.30-113.32°E)
    t0 = time.perf_counter()
    out = block_gallery_png(frame, root, tmp_path / "report" / "gallery.png", region_geometry=region)
    assert time.perf_counter() - t0 < 10
    assert plt.get_fignums() == figures  # no pyplot state
    assert no_temporaries(out.parent)
    image = imread(out)
    assert image.shape[0] > 300 and image.shape[1] > 600
    rgb = (image[..., :3] * 255).round().astype(int)
    # The cropland outline is drawn in the overlay colour.
    target = np.array(OVERLAY) * 255
    assert (np.abs(rgb - target).max(axis=-1) < 20).sum() > 50
    # Without run.json sources: given explicitly, or a clear error.
    out2 = block_gallery_png(frame, root, tmp_path / "g2.png", sources=("src-a", "src-b"), max_blocks=1)
    assert imread(out2).shape[0] > 300
    with pytest.raises(ValueError, match="sources"):
        block_gallery_png(frame, tmp_path, tmp_path / "g3.png")
    with pytest.raises(ValueError, match="two imagery sources"):
        block_gallery_png(frame, root, tmp_path / "g3.png", sources="src-a")


def test_block_gallery_png_with_no_block_to_show(run_dir, tmp_path):
    root, frame = run_dir
    only_missing = frame[frame["block_id"].isin(["5868_2262", "5869_2262", "5870_2262"])]
    out = block_gallery_png(only_missing, root, tmp_path / "empty.png")
    assert imread(out).shape[0] > 100
