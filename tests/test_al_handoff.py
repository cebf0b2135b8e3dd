"""The hand-off of an active-learning round to QGIS and back: export (checked in real QGIS), edits made through
QGIS's own editing API, ingest pixel for pixel, bad returns, the simulated annotator, no clobbering."""

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from skimage.measure import label as cc_label

from mapper.al.annotator import COST_FILE, Degrade, drawn_mask, shift_mask, simulate_annotator
from mapper.al.handoff import ExportBlock, ExportError, IngestError, export_round, ingest_round, read_manifest
from mapper.grid.area import row_pixel_areas
from mapper.grid.blocks import Block
from mapper.imagery.mosaic import geotiff_profile, mosaic_block, write_mosaic
from mapper.labels.store import read_label_json, read_labelled_block
from mapper.world.source import WorldTileSource
from mapper.world.truth import block_truth
from mapper.world.world import get_world

QGIS_PYTHON = "/usr/bin/python3"
# A: stretches without imagery in rendering a (exported with source a only); B, C: Guangdong, both sources.
A, B, C = "5889_2460", "5886_2256", "5887_2256"
SOURCES = {A: "a", B: "ab", C: "ab"}
pytestmark = pytest.mark.slow

OPEN_SCRIPT = r"""
import json, sys
from qgis.core import QgsApplication, QgsMapLayerType, QgsProject, QgsVectorDataProvider, QgsVectorLayer
app = QgsApplication([], False); app.initQgis()
project, gpkg = sys.argv[1], sys.argv[2]
out = {}
for name in ("cropland", "blocks"):  # added from the file alone: the GeoPackage's default style applies
    v = QgsVectorLayer(f"{gpkg}|layername={name}", name, "ogr")
    out["direct_" + name] = {"valid": v.isValid(), "renderer": v.renderer().type(), "features": v.featureCount()}
    del v
p = QgsProject.instance()
out.update(read=p.read(project), crs=p.crs().authid(), layers=[])
for lyr in p.mapLayers().values():
    d = {"name": lyr.name(), "valid": lyr.isValid(), "crs": lyr.crs().authid(), "renderer": lyr.renderer().type()}
    if lyr.type() == QgsMapLayerType.VectorLayer:
        caps = lyr.dataProvider().capabilities()
        d.update(features=lyr.featureCount(), editable=bool(caps & QgsVectorDataProvider.AddFeatures),
                 widgets={f.name(): lyr.editorWidgetSetup(i).type() for i, f in enumerate(lyr.fields())})
    out["layers"].append(d)
ext = p.viewSettings().defaultViewExtent()
out["extent"] = [ext.xMinimum(), ext.yMinimum(), ext.xMaximum(), ext.yMaximum()]
print("JSON" + json.dumps(out))
app.exitQgis()
"""

EDIT_SCRIPT = r"""
import json, sys
from qgis.core import (QgsApplication, QgsFeature, QgsFeatureRequest, QgsGeometry, QgsPointXY, QgsRectangle,
                       QgsVectorLayer)
app = QgsApplication([], False); app.initQgis()
args = json.loads(sys.argv[2])
crop = QgsVectorLayer(f"{sys.argv[1]}|layername=cropland", "cropland", "ogr")
blocks = QgsVectorLayer(f"{sys.argv[1]}|layername=blocks", "blocks", "ogr")
assert crop.isValid() and blocks.isValid()
crop.startEditing()
pt = QgsGeometry.fromPointXY(QgsPointXY(*args["delete_at"]))
hits = [f.id() for f in crop.getFeatures(QgsFeatureRequest().setFilterRect(pt.boundingBox()))
        if f.geometry().contains(pt)]
assert len(hits) == 1, hits
crop.deleteFeature(hits[0])
for rect, cls in args["add"]:
    f = QgsFeature(crop.fields())
    g = QgsGeometry.fromRect(QgsRectangle(*rect))
    g.convertToMultiType()
    f.setGeometry(g)
    f["block_id"] = args["block"]
    f["class"] = cls
    assert crop.addFeature(f)
assert crop.commitChanges(), crop.commitErrors()
blocks.startEditing()
idx = blocks.fields().indexOf("status")
for f in blocks.getFeatures():
    if f["block_id"] in args["status"]:
        blocks.changeAttributeValue(f.id(), idx, args["status"][f["block_id"]])
assert blocks.commitChanges(), blocks.commitErrors()
print("JSON" + json.dumps({"deleted": hits}))
del crop, blocks  # closes the GeoPackage (checkpoints its journal) before QGIS goes down
app.exitQgis()
"""


def run_qgis(script: str, *args: str, tmp: Path) -> dict:
    """Run `script` with the system python's QGIS, headless, in a throw-away HOME; its JSON line."""
    try:
        probe = subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        probe = None
    if probe is None or probe.returncode != 0:
        pytest.fail(f"QGIS for {QGIS_PYTHON} is missing: install Debian's python3-qgis (`apt-get install "
                    "python3-qgis`; .ci/run does this). The hand-off test opens the export in real QGIS.")  # fmt: skip
    home = tmp / "qgis-home"
    (home / "run").mkdir(parents=True, exist_ok=True)
    os.chmod(home / "run", 0o700)
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run"), "QT_QPA_PLATFORM": "offscreen",
           "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}  # fmt: skip
    (tmp / "script.py").write_text(script)
    res = subprocess.run([QGIS_PYTHON, str(tmp / "script.py"), *args], capture_output=True, text=True, env=env,
                         timeout=180)  # fmt: skip
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("JSON")]
    assert res.returncode == 0 and lines, res.stdout[-2000:] + res.stderr[-3000:]
    return json.loads(lines[-1][4:])


# ---------------------------------------------------------------------------------------------- inputs
def changed_prediction(truth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The 'model's' mask: the truth without cropland in its top-left quarter, plus a false field; 255 where
    no image has imagery (as `mapper run` writes final masks)."""
    pred = truth.astype(np.uint8)
    h, w = pred.shape
    pred[: h // 4, : w // 4] = 0
    pred[h // 2 : h // 2 + 60, w // 2 : w // 2 + 90] = 1
    pred[~valid] = 255
    return pred


@pytest.fixture(scope="module")
def world_round(tmp_path_factory):
    """Block mosaics and predictions of three world blocks (seed 0), and their round exported once."""
    root = tmp_path_factory.mktemp("handoff")
    world, blocks, preds = get_world(0), [], {}
    for bid, sources in SOURCES.items():
        block = Block.parse(bid)
        mosaics = {s: mosaic_block(WorldTileSource(s, 0, s), block) for s in sources}
        images = {s: write_mosaic(m, root / "mosaics" / s / f"{bid}.tif") for s, m in mosaics.items()}
        valid = np.logical_or.reduce([m.valid for m in mosaics.values()])
        preds[bid] = changed_prediction(block_truth(world, block).cropland, valid)
        path = root / "final" / f"{bid}.tif"
        path.parent.mkdir(exist_ok=True)
        with rasterio.open(path, "w", **geotiff_profile(block.window(), 1, "uint8", "deflate", 256, 6)) as dst:
            dst.write(preds[bid][None])
        coverage = {s: "Planting" for s in sources} | ({"b": float("nan")} if bid == C else {})  # NaN: not predicted
        blocks.append(ExportBlock(bid, images, path, coverage, reason=f"test block {bid}"))
    export = root / "round"
    manifest = export_round(export, blocks, round_no=3, title="test round")
    return {"root": root, "export": export, "manifest": manifest, "blocks": blocks, "preds": preds}


def copy_round(world_round, tmp_path: Path) -> Path:
    return Path(shutil.copytree(world_round["export"], tmp_path / "round"))


def valid_of(export: Path, bid: str) -> np.ndarray:
    entry = next(b for b in read_manifest(export)["blocks"] if b["block_id"] == bid)
    masks = []
    for name in entry["images"].values():
        with rasterio.open(export / name) as src:
            masks.append(src.dataset_mask() > 0)
    return np.logical_or.reduce(masks)


def imaged_window(valid: np.ndarray, crop: np.ndarray, size: int) -> tuple[int, int]:
    """(row, col) of the first size × size window with imagery everywhere and some, not all, cropland."""
    h, w = valid.shape
    for r in range(0, h - size, size):
        for c in range(0, w - size, size):
            share = crop[r : r + size, c : c + size].mean()
            if valid[r : r + size, c : c + size].all() and 0.2 < share < 0.8:
                return r, c
    raise AssertionError("no imaged window with cropland in the test block")


def pixel_rect(bid: str, c0: float, r0: float, c1: float, r1: float) -> list[float]:
    """EPSG:3857 (xmin, ymin, xmax, ymax) of block pixels [c0, c1) × [r0, r1)."""
    t = Block.parse(bid).window().transform
    (x0, y0), (x1, y1) = t @ (c0, r0), t @ (c1, r1)
    return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]


# ---------------------------------------------------------------------------------------------- 1. export
def test_export_opens_in_qgis(world_round, tmp_path):
    export, manifest, preds = world_round["export"], world_round["manifest"], world_round["preds"]
    components = {bid: int(cc_label(p == 1, connectivity=2).max()) for bid, p in preds.items()}
    out = run_qgis(OPEN_SCRIPT, str(export / "round.qgz"), str(export / "labels.gpkg"), tmp=tmp_path)

    assert out["read"] and out["crs"] == "EPSG:3857"
    layers = {d["name"]: d for d in out["layers"]}
    assert all(d["valid"] and d["crs"] == "EPSG:3857" for d in layers.values()), layers
    rasters = {n for n, d in layers.items() if d["renderer"] == "multibandcolor"}
    assert rasters == {f"{bid} {s}" for bid, sources in SOURCES.items() for s in sources}
    assert layers["cropland"]["features"] == sum(components.values()) > 3  # one polygon per component
    assert layers["blocks"]["features"] == 3
    for name in ("cropland", "blocks"):
        assert layers[name]["renderer"] == "categorizedSymbol" and layers[name]["editable"]
        assert out["direct_" + name]["renderer"] == "categorizedSymbol", out  # the GeoPackage default style
    assert layers["cropland"]["widgets"]["class"] == "ValueMap" == layers["blocks"]["widgets"]["status"]
    bounds = np.array([Block.parse(bid).window().mercator_bounds for bid in SOURCES])
    expected = [bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max()]
    assert np.allclose(out["extent"], expected, atol=1e-3)

    # The manifest and the files beside it.
    assert manifest["round"] == 3 and manifest["crs"] == "EPSG:3857"
    assert [b["block_id"] for b in manifest["blocks"]] == list(SOURCES)
    assert {b["block_id"]: b["predicted_polygons"] for b in manifest["blocks"]} == components
    for entry in manifest["blocks"]:
        for s, name in entry["images"].items():
            src = world_round["root"] / "mosaics" / s / f"{entry['block_id']}.tif"
            assert (export / name).read_bytes() == src.read_bytes()
    readme = (export / "README.txt").read_text()
    assert "255 = ignore" in readme and "negative" in readme and "labels.gpkg" in readme
    with sqlite3.connect(export / "labels.gpkg") as con:  # the table QGIS itself writes (checked against 3.22)
        cols = [r[1] for r in con.execute("pragma table_info(layer_styles)")]
        rows = con.execute("select f_table_name, useAsDefault from layer_styles").fetchall()
    assert cols == ["id", "f_table_catalog", "f_table_schema", "f_table_name", "f_geometry_column", "styleName",
                    "styleQML", "styleSLD", "useAsDefault", "description", "owner", "ui", "update_time"]  # fmt: skip
    assert sorted(rows) == [("blocks", 1), ("cropland", 1)]
    assert not list(export.parent.glob(".round.*"))  # the temporary build folder was renamed, none left


# ---------------------------------------------------------------------------------------------- 2. edit + ingest
@pytest.fixture(scope="module")
def edited(world_round, tmp_path_factory):
    """A copy of the round edited through QGIS's editing API: in A one polygon deleted, a rectangle of
    cropland, one of not cropland and one of 'cannot tell' drawn (overlapping), A done; B negative; C left todo."""
    tmp = tmp_path_factory.mktemp("edited")
    export = Path(shutil.copytree(world_round["export"], tmp / "round"))
    pred = world_round["preds"][A]
    comps = cc_label(pred == 1, connectivity=2)
    biggest = int(np.argmax(np.bincount(comps.ravel())[1:])) + 1
    rows, cols = np.nonzero(comps == biggest)
    t = Block.parse(A).window().transform
    at = t @ (cols[len(cols) // 2] + 0.5, rows[len(rows) // 2] + 0.5)
    # Rectangles in pixel coordinates (col0, row0, col1, row1), where there is imagery and predicted cropland,
    # with the pixels whose centres they hold: the first off the pixel edges (pixel centres count, not
    # touching), the others overlapping (0 wins over 1, 255 over both).
    r, c = imaged_window(valid_of(export, A), pred == 1, 120)
    drawn = [
        ((c + 0.6, r + 10.4, c + 60.2, r + 50.7), np.s_[r + 10 : r + 51, c + 1 : c + 60], 1),
        ((c + 50, r, c + 70, r + 20), np.s_[r : r + 20, c + 50 : c + 70], 0),
        ((c + 40, r + 40, c + 100, r + 70), np.s_[r + 40 : r + 70, c + 40 : c + 100], 255),
        ((c + 90, r + 60, c + 110, r + 110), np.s_[r + 60 : r + 110, c + 90 : c + 110], 0),
    ]
    args = {"block": A, "delete_at": list(at), "status": {A: "done", B: "negative"},
            "add": [[pixel_rect(A, *px), cls] for px, _, cls in drawn]}  # fmt: skip
    run_qgis(EDIT_SCRIPT, str(export / "labels.gpkg"), json.dumps(args), tmp=tmp)

    expected = ((pred == 1) & (comps != biggest)).astype(np.uint8)
    for _, pixels, cls in sorted(drawn, key=lambda d: [1, 0, 255].index(d[2])):
        expected[pixels] = cls
    expected[~valid_of(export, A)] = 255
    window = np.s_[r : r + 120, c : c + 120]
    return {"export": export, "expected": expected, "window": window, "preds": world_round["preds"]}


def test_ingest_edits_made_in_qgis(edited, tmp_path):
    export, labels = edited["export"], tmp_path / "labels"
    report = ingest_round(export, labels, extra={"campaign": "test"})

    assert report.positive == [A] and report.negative == [B] and report.todo == [C] and not report.skipped
    assert sorted(p.name for p in labels.iterdir()) == sorted([A, B])  # todo: nothing written
    lb = read_labelled_block(labels / A)
    assert 0 < np.count_nonzero(edited["expected"] == 255) < lb.mask.size  # the ignore and no-imagery pixels
    assert len(np.unique(edited["expected"][edited["window"]])) == 3  # the drawn overlaps are all visible
    assert np.array_equal(lb.mask, edited["expected"])
    neg = read_labelled_block(labels / B)
    assert np.array_equal(neg.mask, np.where(valid_of(export, B), 0, 255).astype(np.uint8))
    meta = read_label_json(labels / A)
    assert meta["al"]["round"] == 3 and meta["al"]["status"] == "done" and meta["origin"] == "human"
    assert meta["al"]["polygons"] == report.polygons[A] and meta["campaign"] == "test"
    assert meta["coverage"] == {"a": "Planting"} and lb.sources == ["a"] and neg.sources == ["a", "b"]
    assert "1 positive, 1 negative" in report.text() and report.to_dict()["ingested"] == [A, B]

    before = (labels / A / "mask.tif").read_bytes()
    again = ingest_round(export, labels, extra={"campaign": "test"})  # idempotent
    assert again.to_dict() == report.to_dict() and (labels / A / "mask.tif").read_bytes() == before

    # C marked done with polygons within one pixel outside its west and north edges (snapping slop, where the
    # prediction has no cropland): they burn nothing; one over the east edge burns only the last column.
    pred = edited["preds"][C]
    w = pred.shape[1]
    slop = [pixel_rect(C, -0.9, 40, 0, 80), pixel_rect(C, 40, -0.9, 80, 0), pixel_rect(C, w - 0.6, 40, w + 0.8, 80)]
    returned = tmp_path / "slop.gpkg"
    shutil.copyfile(export / "labels.gpkg", returned)
    _edit_layer(returned, "blocks", _set_first("status", "done", C))
    frame = gpd.GeoDataFrame({"block_id": [C] * 3, "class": [1] * 3}, geometry=[shapely.box(*r) for r in slop],
                             crs="EPSG:3857")  # fmt: skip
    pyogrio.write_dataframe(frame, returned, layer="cropland", append=True, promote_to_multi=True)
    ingest_round(export, tmp_path / "slop", returned=returned)
    expected = (pred == 1).astype(np.uint8)
    expected[40:80, w - 1] = 1
    expected[~valid_of(export, C)] = 255
    assert not expected[40:80, 0].any() and not expected[0, 40:80].any()
    assert np.array_equal(read_labelled_block(tmp_path / "slop" / C).mask, expected)


# ---------------------------------------------------------------------------------------------- 3. bad returns
def _bow_tie(gpkg: Path) -> None:
    x0, y0, x1, y1 = pixel_rect(A, 300, 300, 340, 340)
    bow = shapely.MultiPolygon([shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])])
    frame = gpd.GeoDataFrame({"block_id": [A], "class": [1]}, geometry=[bow], crs="EPSG:3857")
    pyogrio.write_dataframe(frame, gpkg, layer="cropland", append=True)


def _far_outside(gpkg: Path) -> None:
    x0, y0, x1, y1 = pixel_rect(A, 300, 300, 340, 340)
    far = shapely.MultiPolygon([shapely.box(x0 + 20_000, y0, x1 + 20_000, y1)])
    frame = gpd.GeoDataFrame({"block_id": [A], "class": [1]}, geometry=[far], crs="EPSG:3857")
    pyogrio.write_dataframe(frame, gpkg, layer="cropland", append=True)


def _edit_layer(gpkg: Path, layer: str, fn) -> None:
    frame = pyogrio.read_dataframe(gpkg, layer=layer)
    pyogrio.write_dataframe(fn(frame), gpkg, layer=layer, promote_to_multi=True)


def _set_first(column: str, value, bid: str):
    def fn(frame):
        frame.loc[np.flatnonzero(frame["block_id"] == bid)[0], column] = value
        return frame

    return fn


def _without_blocks(gpkg: Path) -> None:
    crop = pyogrio.read_dataframe(gpkg, layer="cropland")
    gpkg.unlink()
    pyogrio.write_dataframe(crop, gpkg, layer="cropland", promote_to_multi=True)


BAD_RETURNS = {
    "bow-tie": (_bow_tie, [A, "Self-intersection", "Vector ▸ Geometry Tools ▸ Check Validity / Fix Geometries"]),
    "EPSG:4326": (lambda p: _edit_layer(p, "cropland", lambda f: f.to_crs("EPSG:4326")),
                  ["'cropland' is in EPSG:4326", "Save Features As"]),
    "outside": (_far_outside, [A, "outside its block", "move it into the block"]),
    "class 7": (lambda p: _edit_layer(p, "cropland", _set_first("class", 7, A)),
                [A, "class '7'", "255 (ignore: cannot tell)"]),
    "maybe": (lambda p: _edit_layer(p, "blocks", _set_first("status", "maybe", B)),
              [B, "status 'maybe'", "todo, done, negative, skip"]),
    "no blocks layer": (_without_blocks, ["layer 'blocks' is missing", "hand back the round's labels.gpkg"]),
}  # fmt: skip


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_bad_returns_are_refused_and_nothing_is_lost(edited, tmp_path):
    export, labels = edited["export"], tmp_path / "labels"
    ingest_round(export, labels)
    before = _snapshot(labels)
    for case, (spoil, needles) in BAD_RETURNS.items():
        returned = tmp_path / f"{case}.gpkg"
        shutil.copyfile(export / "labels.gpkg", returned)
        spoil(returned)
        with pytest.raises(IngestError) as err:
            ingest_round(export, labels, returned=returned)
        message = str(err.value)
        for needle in ["nothing was ingested", *needles]:
            assert needle in message, (case, message)
        assert _snapshot(labels) == before, case


# ---------------------------------------------------------------------------------------------- 4. annotator
def _truth(bid: str) -> np.ndarray:
    return block_truth(get_world(0), Block.parse(bid)).cropland


def test_simulated_annotator_returns_the_truth(world_round, tmp_path):
    export, labels = copy_round(world_round, tmp_path), tmp_path / "labels"
    cost = simulate_annotator(export, 0)
    report = ingest_round(export, labels, origin="simulated annotator (world seed 0)")

    assert sorted(report.positive) == sorted(SOURCES) and not report.todo  # every block has cropland
    assert read_labelled_block(labels / C).coverage == {"a": "Planting", "b": None}
    edited_m2 = labelled_m2 = 0.0
    for bid in SOURCES:
        lb, truth, valid = read_labelled_block(labels / bid), _truth(bid), valid_of(export, bid)
        assert np.array_equal(lb.mask == 255, ~valid)  # ignored exactly where no image has imagery
        assert np.array_equal(lb.mask[valid], truth[valid].astype(np.uint8))
        areas = np.broadcast_to(row_pixel_areas(lb.block.window())[:, None], truth.shape)
        pred = world_round["preds"][bid]
        edited_m2 += areas[valid & (truth != (pred == 1))].sum()
        labelled_m2 += areas[valid].sum()
    assert cost.blocks_positive == 3 and cost.blocks_negative == 0
    assert cost.polygons == sum(report.polygons.values()) and cost.vertices > 4 * cost.polygons
    assert cost.edited_m2 == pytest.approx(edited_m2, rel=1e-9) and cost.edited_m2 > 0
    assert cost.labelled_m2 == pytest.approx(labelled_m2, rel=1e-9)
    recorded = json.loads((export / COST_FILE).read_text())
    assert recorded["edited_share"] == pytest.approx(edited_m2 / labelled_m2)

    sloppy = copy_round(world_round, tmp_path / "sloppy")
    small = simulate_annotator(sloppy, 0, degrade=Degrade(min_field_m2=5000.0))
    assert 0 < small.polygons < cost.polygons
    ingest_round(sloppy, tmp_path / "sloppy_labels")
    mask = read_labelled_block(tmp_path / "sloppy_labels" / B).mask
    comps = cc_label(mask == 1, connectivity=2)
    areas = np.bincount(comps.ravel(), weights=np.broadcast_to(row_pixel_areas(Block.parse(B).window())[:, None],
                                                               mask.shape).ravel())  # fmt: skip
    assert areas[1:].min() >= 5000.0  # no field under the threshold was drawn (none touch nodata in B)


def test_annotator_negative_blocks_and_shift(world_round, tmp_path):
    export = copy_round(world_round, tmp_path)
    cost = simulate_annotator(export, 0, degrade=Degrade(min_field_m2=1e12))  # draws nothing: all negative
    assert cost.blocks_negative == 3 and cost.polygons == 0
    blocks = pyogrio.read_dataframe(export / "labels.gpkg", layer="blocks")
    assert set(blocks["status"]) == {"negative"}
    assert len(pyogrio.read_dataframe(export / "labels.gpkg", layer="cropland")) == 0
    report = ingest_round(export, tmp_path / "labels")
    assert sorted(report.negative) == sorted(SOURCES)

    world, block = get_world(0), Block.parse(B)
    one = drawn_mask(world, block, block.window(), Degrade(shift_px=3), seed=5)
    assert np.array_equal(one, drawn_mask(world, block, block.window(), Degrade(shift_px=3), seed=5))
    truth = _truth(B)
    shifted = [np.array_equal(one, shift_mask(truth, 3 * dy, 3 * dx)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    assert sum(shifted) == 1 and not shifted[4]  # moved 3 px in one of the eight directions

    m = np.zeros((5, 6), bool)
    m[1:3, 2:4] = True
    assert np.array_equal(np.argwhere(shift_mask(m, 2, -1)), np.argwhere(m) + np.array([2, -1]))


# ---------------------------------------------------------------------------------------------- 5. no clobbering
def test_export_refuses_to_clobber_returned_edits(world_round, tmp_path):
    export, blocks = copy_round(world_round, tmp_path), world_round["blocks"]
    export_round(export, blocks, round_no=3)  # unedited: replaced without fuss
    _edit_layer(export / "labels.gpkg", "blocks", _set_first("status", "done", B))
    edited_bytes = (export / "labels.gpkg").read_bytes()
    with pytest.raises(ExportError, match=r"was edited since round 3 was exported.*replace=True"):
        export_round(export, blocks, round_no=3)
    assert (export / "labels.gpkg").read_bytes() == edited_bytes
    manifest = export_round(export, blocks, round_no=3, replace=True)
    assert set(pyogrio.read_dataframe(export / "labels.gpkg", layer="blocks")["status"]) == {"todo"}
    assert manifest["labels_digest"] == read_manifest(export)["labels_digest"]

    other = tmp_path / "not_a_round"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an exported round"):
        export_round(other, blocks, round_no=4)
    assert (other / "notes.txt").read_text() == "mine"
