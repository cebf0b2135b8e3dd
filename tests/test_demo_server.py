"""The simulated world over HTTP is the same imagery as in-process, byte for byte."""

import pytest
import requests

from mapper.grid.blocks import Block
from mapper.imagery.http import open_http_source
from mapper.imagery.http_config import XYZSourceConfig
from mapper.imagery.mosaic import mosaic_block, write_mosaic
from mapper.world.server import WorldServer
from mapper.world.source import WorldTileSource
from mapper.world.world import get_world

pytestmark = pytest.mark.network


def _nodata_block(seed: int) -> Block:
    world = get_world(seed)
    return next(b for i in range(400) if (b := Block(5800 + i, 2230)) and world.conditions(b, "a").nodata > 0.3)


@pytest.mark.slow
def test_block_over_http_is_byte_identical_to_in_process(tmp_path):
    block = _nodata_block(0)  # a block with missing tiles and alpha-masked pixels exercises every path
    with WorldServer(seed=0) as server:
        cfg = XYZSourceConfig(url=server.url_template("a"), max_concurrency=8)
        with open_http_source("demo-http-a", cfg) as http:
            over_http = mosaic_block(http, block)
    in_process = mosaic_block(WorldTileSource("demo-a", 0, "a"), block)
    assert over_http.missing_tiles.keys() == in_process.missing_tiles.keys()
    assert len(in_process.missing_tiles) > 0 and not in_process.valid.all()
    a = write_mosaic(over_http, tmp_path / "http.tif")
    b = write_mosaic(in_process, tmp_path / "local.tif")
    assert a.read_bytes() == b.read_bytes()


def test_server_routes_and_errors():
    x, y = Block.containing(113.3, 23.1).window().tiles()[0]
    with WorldServer(seed=0) as server:
        base = f"http://127.0.0.1:{server.port}"
        ok = requests.get(f"{base}/b/16/{x}/{y}.png", timeout=10)
        assert ok.status_code == 200 and ok.headers["Content-Type"] == "image/png"
        assert ok.content.startswith(b"\x89PNG")
        assert requests.get(f"{base}/demo-b/16/{x}/{y}.png", timeout=10).content == ok.content
        assert requests.get(f"{base}/c/16/{x}/{y}.png", timeout=10).status_code == 404
        assert requests.get(f"{base}/a/15/{x // 2}/{y // 2}.png", timeout=10).status_code == 404
        assert requests.get(f"{base}/healthz", timeout=10).text == "ok"
