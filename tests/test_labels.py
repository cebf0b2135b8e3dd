"""Labelled blocks: on-disk form, validation, world labels (resumable), polygon ingest, CLI."""

import json
import shutil

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from rasterio.features import shapes

from mapper.cli.labels import labels
from mapper.grid.blocks import Block
from mapper.imagery.mosaic import BlockMosaic
from mapper.labels.store import LabelError, ingest_polygons, read_labelled_block, write_labelled_block
from mapper.labels.world import block_estimates, make_world_labels, select_training_blocks
from mapper.world.truth import block_truth
from mapper.world.world import get_world

NODATA_BLOCK = Block.parse("5889_2460")  # world seed 0: ~75 % cropland, 44 % without imagery in rendering a
BBOX = ["114.4", "34.0", "114.7", "34.3"]


def synthetic_mosaic(block: Block, nodata_rows: int = 0) -> BlockMosaic:
    """A blank image on the block's grid (no rendering), optionally without imagery in its top rows."""
    w = block.window()
    valid = np.ones(w.shape, bool)
    valid[:nodata_rows] = False
    return BlockMosaic(w, np.full((*w.shape, 3), 90, np.uint8), valid, block_id=block.id)


def rewrite_mask(path, fn) -> None:
    """Rewrite mask.tif through fn(array, profile) -> (array, profile)."""
    with rasterio.open(path) as src:
        data, profile = src.read(1), src.profile
    data, profile = fn(data, profile)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[None])


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two world blocks written by `mapper labels make` (both sources)."""
    out = tmp_path_factory.mktemp("labels") / "world"
    res = CliRunner().invoke(
        labels, ["make", "--world-seed", "0", "--bbox", *BBOX, "--n", "2", "--out", str(out), "-q"]
    )
    assert res.exit_code == 0, res.output
    assert "2 labelled blocks written" in res.output
    return out


@pytest.fixture(scope="module")
def nodata_block(tmp_path_factory):
    """A world block with a stretch of nodata in rendering a, labelled from source a only."""
    out = tmp_path_factory.mktemp("labels") / "nodata"
    summary = make_world_labels(0, [NODATA_BLOCK], out, sources=["a"], progress=False)
    assert summary.written == [NODATA_BLOCK.id] and not summary.failed
    return out / NODATA_BLOCK.id


@pytest.fixture
def synthetic(tmp_path):
    """A labelled block written from a blank image and a striped mask (no rendering)."""
    block = Block.parse("6045_2252")
    m = synthetic_mosaic(block)
    mask = np.zeros(m.window.shape, np.uint8)
    mask[:, ::3] = 1
    mask[:5] = 255
    return write_labelled_block(tmp_path, block, {"a": m}, mask, {"a": "Planting"}, "human")


def test_round_trip_world_block(nodata_block):
    lb = read_labelled_block(nodata_block)
    truth = block_truth(get_world(0), NODATA_BLOCK)
    assert lb.block == NODATA_BLOCK and lb.sources == ["a"] and lb.origin == "world seed 0"
    assert lb.mask.dtype == np.uint8 and set(np.unique(lb.mask)) <= {0, 1}
    assert np.array_equal(lb.mask, truth.cropland.astype(np.uint8))
    assert lb.coverage == {"a": truth.coverage_name("a")} == {"a": "Nodata"}
    # the mask is the truth everywhere; the image's own nodata is ignored for that source
    valid = lb.images["a"].valid
    assert 0.3 < 1 - valid.mean() < 0.6
    target = lb.target("a")
    assert np.array_equal(target == 255, ~valid) and np.array_equal(target[valid], lb.mask[valid])
    meta = json.loads((nodata_block / "label.json").read_text())
    assert meta["images"] == {"a": "image_a.tif"} and meta["world"]["seed"] == 0
    assert {"created", "mapper_version", "mask_convention"} <= set(meta)
    with rasterio.open(nodata_block / "mask.tif") as m, rasterio.open(nodata_block / "image_a.tif") as i:
        assert (m.crs, m.transform, m.shape) == (i.crs, i.transform, i.shape) and m.nodata == 255


def test_synthetic_round_trip(synthetic):
    lb = read_labelled_block(synthetic)
    assert lb.coverage == {"a": "Planting"} and lb.origin == "human"
    assert (lb.mask[:5] == 255).all() and lb.mask[10, 0] == 1 and lb.mask[10, 1] == 0
    assert lb.cropland_fraction == pytest.approx(1 / 3, abs=0.01)


def test_label_json_is_written_last(tmp_path, monkeypatch):
    import mapper.labels.store as store

    def crash(*a, **k):
        raise KeyboardInterrupt  # killed while writing label.json

    monkeypatch.setattr(store, "atomic_write_text", crash)
    block = Block.parse("6045_2252")
    m = synthetic_mosaic(block)
    with pytest.raises(KeyboardInterrupt):
        write_labelled_block(tmp_path, block, {"a": m}, np.zeros(m.window.shape, np.uint8), {"a": None}, "human")
    d = tmp_path / block.id
    assert (d / "image_a.tif").exists() and (d / "mask.tif").exists() and not (d / "label.json").exists()
    with pytest.raises(LabelError, match="incomplete"):
        read_labelled_block(d)


def test_resume_redoes_only_incomplete_blocks(made, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(made, root)
    ids = sorted(p.name for p in root.iterdir())
    (root / ids[0] / "label.json").unlink()  # as if the run had been killed before finishing this block
    kept = (root / ids[1] / "image_a.tif").stat().st_mtime_ns
    summary = make_world_labels(0, ids, root, progress=False)
    assert summary.written == [ids[0]] and summary.skipped == [ids[1]]
    assert (root / ids[0] / "label.json").exists()
    assert (root / ids[1] / "image_a.tif").stat().st_mtime_ns == kept
    with pytest.raises(LabelError, match="another --out"):  # another world into the same root
        make_world_labels(1, ids, root, progress=False)


def test_mask_values_are_enforced(synthetic, tmp_path):
    def add_twos(data, profile):
        data[100:110, 100:110] = 2
        data[0, 0] = 7
        return data, profile

    rewrite_mask(synthetic / "mask.tif", add_twos)
    with pytest.raises(LabelError, match=r"2 \(100 px\), 7 \(1 px\)"):
        read_labelled_block(synthetic)
    # and nothing is written from a bad mask in the first place
    block = Block.parse("6045_2253")
    m = synthetic_mosaic(block)
    bad = np.full(m.window.shape, 2, np.uint8)
    with pytest.raises(LabelError, match=r"values other than 0.*2 \("):
        write_labelled_block(tmp_path / "w", block, {"a": m}, bad, {"a": None}, "human")
    assert not (tmp_path / "w").exists()


def test_mask_grid_mismatch_is_named(synthetic):
    def shift(data, profile):
        t = profile["transform"]
        return data, {**profile, "transform": t @ rasterio.Affine.translation(1, 0)}

    rewrite_mask(synthetic / "mask.tif", shift)
    with pytest.raises(LabelError, match=r"(?s)not on the grid of image_a.tif.*mask:.*image:.*gdalwarp"):
        read_labelled_block(synthetic)

    def crop(data, profile):
        return data[:-1], {**profile, "height": profile["height"] - 1}

    rewrite_mask(synthetic / "mask.tif", crop)
    h, w = Block.parse(synthetic.name).window().shape
    with pytest.raises(LabelError, match=rf"mask:  EPSG:3857, {w} × {h - 1} px"):
        read_labelled_block(synthetic)


def test_wrong_dtype_bands_and_missing_files(synthetic):
    rewrite_mask(synthetic / "mask.tif", lambda d, p: (d, {**p, "nodata": 0}))
    with pytest.raises(LabelError, match="declares nodata = 0"):
        read_labelled_block(synthetic)
    rewrite_mask(synthetic / "mask.tif", lambda d, p: (d.astype(np.float32), {**p, "dtype": "float32", "nodata": None}))
    with pytest.raises(LabelError, match="float32; label masks are uint8"):
        read_labelled_block(synthetic)
    (synthetic / "image_a.tif").unlink()
    with pytest.raises(LabelError, match=r"missing image_a\.tif"):
        read_labelled_block(synthetic)


def test_polygons_from_truth_ingest_back_to_truth(nodata_block, tmp_path):
    lb = read_labelled_block(nodata_block)
    image = lb.images["a"]
    crop = lb.mask
    geoms = [shapely.geometry.shape(g) for g, _ in shapes(crop, mask=crop == 1, transform=image.window.transform)]
    path = tmp_path / "labels.gpkg"
    gpd.GeoDataFrame(geometry=geoms, crs="EPSG:3857").to_crs("EPSG:4326").to_file(path)
    mask = ingest_polygons(NODATA_BLOCK, path, image)
    valid = image.valid
    assert np.array_equal(mask == 255, ~valid)
    inter = np.count_nonzero((mask == 1) & (crop == 1) & valid)
    union = np.count_nonzero(((mask == 1) | (crop == 1)) & valid)
    assert inter / union > 0.99

    # the CLI stores it in the same on-disk form, and check accepts it
    out = tmp_path / "human"
    res = CliRunner().invoke(
        labels,
        ["ingest", "--block", NODATA_BLOCK.id, "--polygons", str(path), "--image",
         f"a={nodata_block / 'image_a.tif'}", "--out", str(out), "--coverage", "Nodata"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    human = read_labelled_block(out / NODATA_BLOCK.id)
    assert human.origin == "human" and human.coverage == {"a": "Nodata"}
    assert np.array_equal(human.mask, mask)
    res = CliRunner().invoke(labels, ["check", str(out)])
    assert res.exit_code == 0 and "1 valid labelled block" in res.output


def test_polygon_class_column_and_bad_polygons(tmp_path):
    block = Block.parse("6045_2252")
    image = synthetic_mosaic(block, nodata_rows=10)
    w, s, *_ = block.bounds
    field = shapely.box(w + 0.01, s + 0.01, w + 0.03, s + 0.03)
    pond = shapely.box(w + 0.015, s + 0.015, w + 0.02, s + 0.02)
    path = tmp_path / "p.geojson"
    gpd.GeoDataFrame({"class": [0, 1]}, geometry=[pond, field], crs="EPSG:4326").to_file(path)
    mask = ingest_polygons(block, path, image)
    assert (mask[:10] == 255).all() and set(np.unique(mask[10:])) == {0, 1}
    no_pond = tmp_path / "nopond.geojson"
    gpd.GeoDataFrame(geometry=[field], crs="EPSG:4326").to_file(no_pond)
    without = ingest_polygons(block, no_pond, image)
    pond_px = np.count_nonzero(without == 1) - np.count_nonzero(mask == 1)
    assert pond_px / np.count_nonzero(without == 1) == pytest.approx(1 / 16, rel=0.05)  # the pond is cut out

    bad = tmp_path / "bad.geojson"
    gpd.GeoDataFrame({"label": ["cropland", "maybe"]}, geometry=[field, pond], crs="EPSG:4326").to_file(bad)
    with pytest.raises(LabelError, match=r"'maybe'.*allowed: 1 or 'cropland'"):
        ingest_polygons(block, bad, image)
    far = tmp_path / "far.geojson"
    gpd.GeoDataFrame(geometry=[shapely.box(100, 30, 100.01, 30.01)], crs="EPSG:4326").to_file(far)
    with pytest.raises(LabelError, match=f"do not overlap block {block.id}"):
        ingest_polygons(block, far, image)
    with pytest.raises(LabelError, match="not the mosaic of block"):
        ingest_polygons(Block.parse("6046_2252"), no_pond, image)


def test_select_training_blocks_is_spread_and_stratified():
    geometry = shapely.box(113.0, 33.0, 114.5, 34.5)
    picks = select_training_blocks(0, geometry, 8, rng_seed=1, max_candidates=250)
    assert len(set(picks)) == 8
    assert picks == select_training_blocks(0, geometry, 8, rng_seed=1, max_candidates=250)
    est = block_estimates(0, picks)
    assert est["cropland_est"].max() - est["cropland_est"].min() > 0.3  # rich and poor both present
    kinds = set(est["coverage_a"]) | set(est["coverage_b"])
    assert len(kinds) >= 3  # rarer coverage types are sought out, not just planting / non-planting
    lon, lat = est["lon"].to_numpy(), est["lat"].to_numpy()
    assert np.ptp(lon) > 0.75 and np.ptp(lat) > 0.75  # spread over the region


def test_cli_make_check(made, tmp_path):
    res = CliRunner().invoke(labels, ["check", str(made)])
    assert res.exit_code == 0, res.output
    ids = sorted(p.name for p in made.iterdir())
    assert all(i in res.output for i in ids) and "2 valid labelled block(s)" in res.output
    again = CliRunner().invoke(labels, ["make", "--bbox", *BBOX, "--n", "2", "--out", str(made), "-q"])
    assert again.exit_code == 0 and "0 labelled blocks written, 2 already there" in again.output

    broken = tmp_path / "broken"
    shutil.copytree(made, broken)
    rewrite_mask(broken / ids[0] / "mask.tif", lambda d, p: (np.where(d == 1, 2, d).astype(np.uint8), p))
    (broken / ids[1] / "label.json").unlink()
    res = CliRunner().invoke(labels, ["check", str(broken)])
    assert res.exit_code == 1
    assert "2 of 2 have problems" in res.output and "values other than 0" in res.output
    assert "incomplete" in res.output

    res = CliRunner().invoke(labels, ["make", "--province", "Macao", "--bbox", *BBOX, "--out", str(tmp_path)])
    assert res.exit_code == 2 and "exactly one of" in res.output
