"""mapper serve: the views of a run and a campaign, tiles pixel-exact against rasterio and mercantile, the
inspector, a run still being written, requests for paths outside the directory (over real HTTP), bad input."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading

import cv2
import mercantile
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from conftest import WORLD_RUN_BLOCK
from rasterio.windows import from_bounds

from mapper.cli import cli
from mapper.serve.app import create_app
from mapper.serve.campaignview import CampaignView
from mapper.serve.runview import RunView, ServeError


def _png(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape[2] == 4
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)


@pytest.fixture(scope="module")
def client(world_run):
    return create_app(RunView(world_run)).test_client()


def _block_tile(run, z: int) -> mercantile.Tile:
    with rasterio.open(run / "final" / f"{WORLD_RUN_BLOCK}.tif") as src:
        x = (src.bounds.left + src.bounds.right) / 2
        y = (src.bounds.bottom + src.bounds.top) / 2
    return mercantile.tile(*mercantile.lnglat(x, y), z)


def test_view_describes_the_run(client):
    view = client.get("/api/view").json
    assert view["kind"] == "run"
    assert view["status"]["done"] == view["status"]["planned"] == 1 and view["status"]["complete"]
    ids = [layer["id"] for layer in view["layers"]]
    assert ids == ["imagery-demo-a", "imagery-demo-b", "final", "mask-demo-a", "mask-demo-b"]
    assert set(view["colour_by"]) >= {"decision", "semantic", "iqa", "status"}
    grid = client.get("/api/grid.geojson").json
    (feature,) = grid["features"]
    assert feature["properties"]["block_id"] == WORLD_RUN_BLOCK
    assert feature["properties"]["decision"] in view["colour_by"]["decision"]
    coords = np.array(feature["geometry"]["coordinates"][0])  # block 5886_2256: the 0.05° cell (5886, 2256)
    np.testing.assert_allclose([coords[:, 0].min(), coords[:, 1].min(), coords[:, 0].max(), coords[:, 1].max()],
                               [5886 * 0.05 - 180, 2256 * 0.05 - 90, 5887 * 0.05 - 180, 2257 * 0.05 - 90])


def test_z16_tile_equals_the_final_mask_pixels(client, world_run):
    """A z16 tile is the block's own pixels: cropland exactly where the final GeoTIFF says 1."""
    t = _block_tile(world_run, 16)
    tile = _png(client.get(f"/tiles/final/{t.z}/{t.x}/{t.y}.png").data)
    b = mercantile.xy_bounds(t)
    with rasterio.open(world_run / "final" / f"{WORLD_RUN_BLOCK}.tif") as src:
        win = from_bounds(b.left, b.bottom, b.right, b.top, src.transform).round_offsets().round_lengths()
        band = src.read(1, window=win, boundless=True, fill_value=0)
    assert band.shape == (256, 256)
    np.testing.assert_array_equal(tile[..., 3] > 0, (band == 1) | (band == 255))
    assert (band == 1).any()


def test_low_zoom_tile_places_the_block_where_mercantile_says(client, world_run):
    """At z13 the imagery tile is opaque exactly over the tile pixels whose centres lie in the block."""
    t = _block_tile(world_run, 13)
    tile = _png(client.get(f"/tiles/imagery-demo-a/{t.z}/{t.x}/{t.y}.png").data)
    b = mercantile.xy_bounds(t)
    with rasterio.open(world_run / "mosaics" / "demo-a" / f"{WORLD_RUN_BLOCK}.tif") as src:
        left, bottom, right, top = src.bounds
    centres = (np.arange(256) + 0.5) * (b.right - b.left) / 256
    inside_x = (b.left + centres >= left) & (b.left + centres < right)
    inside_y = (b.top - centres <= top) & (b.top - centres > bottom)
    expected = inside_y[:, None] & inside_x[None, :]
    assert (tile[..., 3] > 0).sum() > 1000 and not expected.all()
    np.testing.assert_array_equal(tile[..., 3] > 0, expected)


def test_tiles_outside_the_blocks_are_empty_not_errors(client):
    for url in ("/tiles/final/16/0/0.png", "/tiles/imagery-demo-a/12/5/5.png", "/tiles/final/3/99/99.png",
                "/tiles/final/25/1/1.png", "/tiles/imagery-demo-a/4/12/6.png"):  # the last: below min zoom
        r = client.get(url)
        assert r.status_code == 200 and r.mimetype == "image/png", url
        assert not _png(r.data)[..., 3].any(), url
    assert client.get("/tiles/no-such-layer/16/0/0.png").status_code == 404


def test_inspector(client):
    d = client.get(f"/api/blocks/{WORLD_RUN_BLOCK}").json
    assert d["block_id"] == WORLD_RUN_BLOCK and d["state"]["status"] == "done"
    assert d["table"]["block_id"] == WORLD_RUN_BLOCK and "decision" in d["table"]
    assert d["pictures"] == ["final", "imagery-demo-a", "imagery-demo-b", "mask-demo-a", "mask-demo-b"]
    img = _png(client.get(f"/api/blocks/{WORLD_RUN_BLOCK}/final.png").data)
    assert max(img.shape[:2]) == 512
    assert client.get("/api/blocks/1_1").status_code == 404
    assert client.get(f"/api/blocks/{WORLD_RUN_BLOCK}/nothing.png").status_code == 404


def test_validation_numbers_when_validated(world_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world_run, run)
    report = {"blocks": [{"block_id": WORLD_RUN_BLOCK, "maps": {"final": {"iou": 0.9, "model_class": "TP",
                                                                          "truth_class": "TP"}}}]}  # fmt: skip
    (run / "validation.json").write_text(json.dumps(report))
    c = create_app(RunView(run)).test_client()
    (feature,) = c.get("/api/grid.geojson").json["features"]
    assert feature["properties"]["semantic"] == "correct"
    assert c.get(f"/api/blocks/{WORLD_RUN_BLOCK}").json["validation"]["maps"]["final"]["iou"] == 0.9


def test_a_run_being_written_is_served_as_it_stands(world_run, tmp_path, monkeypatch):
    """The state database changes under a running server (as the driver writes it): the page follows."""
    monkeypatch.setattr("mapper.serve.app.REFRESH_S", 0.0)
    run = tmp_path / "run"
    shutil.copytree(world_run, run)
    c = create_app(RunView(run)).test_client()
    assert c.get("/api/view").json["status"]["complete"]
    (run / "blocks.parquet").unlink()
    (run / "final" / f"{WORLD_RUN_BLOCK}.tif").unlink()
    with sqlite3.connect(run / "state.sqlite") as conn:
        conn.execute("DELETE FROM tasks WHERE stage IN ('decide', 'final')")
    view = c.get("/api/view").json
    assert view["status"]["pending"] == 1 and not view["status"]["complete"]
    assert any("not done yet" in n for n in view["status"]["notes"])
    assert any("blocks.parquet" in n for n in view["status"]["notes"])
    assert "final" not in [layer["id"] for layer in view["layers"]]
    assert "imagery-demo-a" in [layer["id"] for layer in view["layers"]]


def _http_get(port: int, raw_path: str) -> tuple[int, bytes]:
    """A GET with the path sent exactly as written (http.client does not normalise `..` or `%2e`)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", raw_path, skip_accept_encoding=True)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_nothing_outside_the_directory_can_be_requested(world_run, tmp_path):
    from werkzeug.serving import make_server

    run = tmp_path / "run"
    shutil.copytree(world_run, run)
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-OUTSIDE-THE-RUN")
    (run / "link.txt").symlink_to(secret)
    server = make_server("127.0.0.1", 0, create_app(RunView(run)), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_port
        assert _http_get(port, "/files/run.json")[0] == 200
        attempts = ["/files/../secret.txt", "/files/..%2fsecret.txt", "/files/%2e%2e/secret.txt",
                    "/files/%2e%2e%2fsecret.txt", "/files/..%5csecret.txt", f"/files/{secret}",
                    f"/files//{secret}", "/files/%2f" + str(secret).lstrip("/").replace("/", "%2f"),
                    "/files/link.txt", "/files/../../../../../../etc/passwd", "/files/....//secret.txt",
                    "/files/%252e%252e/secret.txt", "/tiles/..%2f..%2fsecret.txt/16/0/0.png",
                    f"/api/blocks/..%2f..%2f{secret.name}", "/static/../secret.txt", "/static/%2e%2e/app.py",
                    "/../secret.txt"]  # fmt: skip
        for path in attempts:
            status, body = _http_get(port, path)
            assert status != 200 or b"SECRET" not in body, path
            assert b"SECRET-OUTSIDE" not in body and b"root:" not in body, path
            if path.startswith("/files/"):
                assert status == 404, path
    finally:
        server.shutdown()
        server.server_close()


def _serve(*args: str) -> subprocess.CompletedProcess:
    """`mapper serve` as a user runs it (errors: one line, exit 2), for commands that stop at once."""
    return subprocess.run([sys.executable, "-m", "mapper.cli", "serve", *args], capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_bad_input_names_the_fix(tmp_path):
    res = _serve(str(tmp_path))
    assert res.returncode == 2 and "not a run directory" in res.stderr and "mapper run --out" in res.stderr
    assert "Traceback" not in res.stderr
    res = _serve(str(tmp_path / "missing"))
    assert res.returncode == 2 and "not a directory" in res.stderr
    with pytest.raises(ServeError):
        CampaignView(tmp_path)


def test_a_port_in_use_is_named(world_run):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = _serve(str(world_run), "--port", str(port))
    assert res.returncode != 0
    assert f"port {port}" in res.stderr and "in use" in res.stderr and "--port" in res.stderr


def test_campaign_rounds_show_the_returned_labels(world_run, tmp_path):
    """A campaign's round: its blocks over the exported images, the labeller's polygons and statuses as the
    labels.gpkg holds them (read again after the labeller saves)."""
    from mapper.al.handoff import ExportBlock, export_round
    from mapper.al.labels_gpkg import BLOCKS_LAYER, CROPLAND_LAYER, read_layer, write_layers

    camp = tmp_path / "camp"
    camp.mkdir()
    (camp / "campaign.json").write_text(json.dumps({"format": "mapper-al-campaign/1", "provinces": ["Guangdong"],
                                                    "sources": ["demo-a", "demo-b"]}))  # fmt: skip
    images = {s: world_run / "mosaics" / s / f"{WORLD_RUN_BLOCK}.tif" for s in ("demo-a", "demo-b")}
    block = ExportBlock(WORLD_RUN_BLOCK, images, world_run / "final" / f"{WORLD_RUN_BLOCK}.tif",
                        {"demo-a": "Planting", "demo-b": "Planting"}, reason="uncertain")  # fmt: skip
    export = camp / "rounds" / "001" / "export"
    export_round(export, [block], round_no=1)
    view = CampaignView(camp)
    c = create_app(view).test_client()
    d = c.get("/api/view").json
    assert d["kind"] == "campaign" and d["rounds"] == ["001"]
    assert [layer["id"] for layer in d["layers"]] == ["round-001-demo-a", "round-001-demo-b"]
    (feature,) = c.get("/api/grid.geojson").json["features"]
    assert feature["properties"]["label_status"] == "todo" and feature["properties"]["reason"] == "uncertain"
    labels = c.get("/api/labels/001.geojson").json
    assert labels["features"] and {f["properties"]["class"] for f in labels["features"]} == {1}
    lon, lat = labels["features"][0]["geometry"]["coordinates"][0][0][0]
    assert 114.3 <= lon <= 114.35 and 22.8 <= lat <= 22.85  # EPSG:4326, inside the block
    t = _block_tile(world_run, 14)
    assert _png(c.get(f"/tiles/round-001-demo-a/{t.z}/{t.x}/{t.y}.png").data)[..., 3].any()

    cropland = read_layer(export / "labels.gpkg", CROPLAND_LAYER)
    blocks = read_layer(export / "labels.gpkg", BLOCKS_LAYER)
    blocks["status"] = "done"
    write_layers(export / "labels.gpkg", cropland, blocks)  # the labeller saves
    view.refresh()
    (feature,) = c.get("/api/grid.geojson").json["features"]
    assert feature["properties"]["label_status"] == "done"
    assert c.get("/api/labels/002.geojson").status_code == 404


def test_crop_types_fields_and_allocation_layers(croptype_run, tmp_path):
    """A run with crop types and an allocation: the crop-type tile shows, pixel by pixel, the palette colour of
    the code the VRT holds at the pixel's centre (found with pyproj and rasterio's index); the block's fields
    come with their crops; the allocation layer draws its cells."""
    import geopandas as gpd
    from pyproj import Transformer

    run = tmp_path / "run"
    shutil.copytree(croptype_run, run)
    res = CliRunner().invoke(cli, ["allocate", str(run)])
    assert res.exit_code == 0, res.output
    view = RunView(run)
    c = create_app(view).test_client()
    layers = {layer["id"]: layer for layer in c.get("/api/view").json["layers"]}
    (ct,) = [k for k in layers if k.startswith("croptype-")]
    assert layers[ct]["legend"] and "allocation" in layers

    t = _block_tile(run, 14)
    tile = _png(c.get(f"/tiles/{ct}/{t.z}/{t.x}/{t.y}.png").data)
    b = mercantile.xy_bounds(t)
    centres = (np.arange(256) + 0.5) * (b.right - b.left) / 256
    xs, ys = np.meshgrid(b.left + centres, b.top - centres)
    vrt = run / "croptype" / f"map_{ct.removeprefix('croptype-')}.vrt"
    with rasterio.open(vrt) as src:
        ux, uy = Transformer.from_crs(3857, src.crs, always_xy=True).transform(xs.ravel(), ys.ravel())
        inv = ~src.transform  # world → pixel: the pixel holding each centre
        ux, uy = np.asarray(ux), np.asarray(uy)
        cols, rows = inv.a * ux + inv.b * uy + inv.c, inv.d * ux + inv.e * uy + inv.f
        band = src.read(1)
    rows, cols = np.floor(rows).astype(int), np.floor(cols).astype(int)
    inside = (rows >= 0) & (rows < band.shape[0]) & (cols >= 0) & (cols < band.shape[1])
    codes = np.zeros(rows.size, np.uint8)
    codes[inside] = band[rows[inside], cols[inside]]
    expected = view.layers[ct].colours[codes].reshape(256, 256, 4)
    assert (codes > 0).mean() > 0.02
    assert (tile == expected).all(axis=2).mean() > 0.99  # nearest neighbour may differ on a cell's very edge

    fields = c.get(f"/api/blocks/{WORLD_RUN_BLOCK}/fields.geojson").json
    parcels = gpd.read_parquet(run / "croptype" / "parcels" / f"{WORLD_RUN_BLOCK}.parquet")
    assert len(fields["features"]) == len(parcels)
    assert sorted(f["properties"]["crop"] for f in fields["features"]) == sorted(parcels["crop"])
    assert c.get(f"/api/blocks/{WORLD_RUN_BLOCK}").json["fields"] is True

    alloc = _png(c.get(f"/tiles/allocation/{t.z}/{t.x}/{t.y}.png").data)
    assert alloc[..., 3].any()
