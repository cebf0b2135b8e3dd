"""The web app of `mapper serve`: a Flask application over a RunView or a CampaignView, read-only.

    /                                   the page (static/index.html; Leaflet is vendored, nothing from a CDN)
    /api/view                           what is served: kind, layers, status and notes, bounds, colourings
    /api/grid.geojson                   the block grid with its colouring properties (a campaign: per round)
    /api/blocks/<id>                    one block for the inspector
    /api/blocks/<id>/<picture>.png      one of the block's pictures (imagery, masks, final) at ≤ 512 px
    /api/blocks/<id>/fields.geojson     the block's crop-type fields with their crops (runs with crop types)
    /api/labels/<round>.geojson         a campaign round's returned cropland polygons
    /tiles/<layer>/<z>/<x>/<y>.png      XYZ tiles rendered from the run's GeoTIFFs (cached in memory)
    /files/<path>                       a file of the directory, for download (never outside it)

Tiles outside the layer's blocks are transparent PNGs, not errors. The view is reread at most every
`REFRESH_S` seconds, so a run still being written shows new blocks as they land.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path

from flask import Flask, Response, abort, jsonify, send_file

from mapper.serve import tiles
from mapper.serve.runview import file_signature

STATIC = Path(__file__).parent / "static"
REFRESH_S = 2.0
TILE_CACHE = 4096  # rendered tiles kept (≈ 100 MB at worst; most tiles are a few kB)


class TileCache:
    """An LRU of rendered tiles, keyed by what they were rendered from (files and their mtimes)."""

    def __init__(self, size: int = TILE_CACHE):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get_or_render(self, key, render) -> bytes:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        png = render()
        with self._lock:
            self._items[key] = png
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return png


def _png(data: bytes, cache: bool = True) -> Response:
    resp = Response(data, mimetype="image/png")
    resp.headers["Cache-Control"] = "max-age=60" if cache else "no-store"
    return resp


def create_app(view) -> Flask:
    """The Flask app serving `view` (mapper.serve.runview.RunView or mapper.serve.campaignview.CampaignView)."""
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.url_map.merge_slashes = False  # `/files//etc/passwd` is refused as it is, not redirected
    app.json.sort_keys = False  # the view's order (layers, colourings) is the page's order
    cache = TileCache()
    state = {"read": time.monotonic(), "signature": view.signature(), "lock": threading.Lock()}

    def current():
        """The view, reread when its files changed (checked at most every REFRESH_S: a finished run never is)."""
        with state["lock"]:
            if time.monotonic() - state["read"] > REFRESH_S:
                state["read"] = time.monotonic()
                signature = view.signature()
                if signature != state["signature"]:
                    view.refresh()
                    state["signature"] = signature
        return view

    @app.get("/")
    def index():
        return send_file(STATIC / "index.html", max_age=0)

    @app.get("/favicon.ico")
    def favicon():
        return Response(status=204)

    @app.get("/api/view")
    def describe():
        return jsonify(current().describe())

    @app.get("/api/grid.geojson")
    def grid():
        return jsonify(current().grid_features())

    @app.get("/api/blocks/<block_id>")
    def block(block_id: str):
        detail = current().block_detail(block_id)
        if detail is None:
            abort(404, f"no block {block_id} in this {view.kind}")
        return jsonify(detail)

    @app.get("/api/blocks/<block_id>/<picture>.png")
    def block_picture(block_id: str, picture: str):
        files = current().block_files(block_id)
        if picture not in files:
            abort(404, f"block {block_id} has no picture {picture}")
        path, kind = files[picture]
        key = ("picture", file_signature([path]), kind)
        return _png(cache.get_or_render(key, lambda: tiles.block_picture(path, kind)))

    def vectors(method: str, key: str, missing: str):
        """GeoJSON from the view's `method` (runs have fields, campaigns labels), or 404 saying what is missing."""
        features = getattr(current(), method, lambda _k: None)(key)
        if features is None:
            abort(404, missing)
        return jsonify(features)

    @app.get("/api/blocks/<block_id>/fields.geojson")
    def fields(block_id: str):
        return vectors("field_features", block_id, f"block {block_id} has no crop-type fields")

    @app.get("/api/labels/<round_id>.geojson")
    def labels(round_id: str):
        return vectors("label_features", round_id, f"no returned labels for round {round_id}")

    @app.get("/tiles/<layer_id>/<int:z>/<int:x>/<int:y>.png")
    def tile(layer_id: str, z: int, x: int, y: int):
        layer = current().layers.get(layer_id)
        if layer is None:
            abort(404, f"no layer {layer_id}")
        if not (0 <= z <= tiles.NATIVE_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z) or z < layer.min_zoom:
            return _png(tiles.EMPTY_TILE)
        return _png(render_layer_tile(layer, z, x, y, cache))

    @app.get("/files/<path:rel>")
    def download(rel: str):
        path = inside(view.root, rel)
        if path is None:
            abort(404)
        return send_file(path, max_age=0)

    return app


def render_layer_tile(layer, z: int, x: int, y: int, cache: TileCache) -> bytes:
    """A tile of a layer: block rasters pasted on the z16 grid, or one raster reprojected."""
    if layer.path is not None:
        key = (layer.id, z, x, y, file_signature([layer.path]))
        if layer.kind == "ramp":
            render = lambda: tiles.render_ramp_tile(layer.total_of_bands, z, x, y, layer.ramp_max)  # noqa: E731
            return cache.get_or_render(key, render)
        return cache.get_or_render(key, lambda: tiles.render_warped_tile(layer.path, z, x, y, layer.colours))
    parts = tiles.blocks_in_tile(layer.rasters.values(), z, x, y)
    if not parts:
        return tiles.EMPTY_TILE
    key = (layer.id, z, x, y, file_signature(r.path for r in parts))
    if layer.kind == "imagery":
        paint = tiles.paint_imagery
    else:
        paint = tiles.paint_mask(tiles.CROPLAND_RGBA["final" if layer.kind == "final" else "mask"])
    return cache.get_or_render(key, lambda: tiles.render_block_tile(parts, z, x, y, paint))


def inside(root: Path, rel: str) -> Path | None:
    """`root/rel` when it is an existing file inside `root` after resolving links and `..`; else None."""
    if not rel or rel.startswith(("/", "\\")) or "\x00" in rel:
        return None
    root = root.resolve()
    try:
        path = (root / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path
