"""Acceptance: 20 blocks of z16 tiles from a server that fails ~30 % of requests, through the cache.

Every tile must come back either with byte-exact pixels or as missing with a reason; the cache must hold
only good tiles; a second run must fill in missing tiles and answer cached ones without a request.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from mapper.grid.blocks import Block
from mapper.imagery.cached_source import CachedSource
from mapper.imagery.decode import decode_tile, encode_png
from mapper.imagery.http import HttpTileSource
from mapper.imagery.http_config import XYZSourceConfig
from mapper.imagery.mbtiles import MBTilesCache

SEED = 2020
FAIL_RATE = 0.30
READ_TIMEOUT_S = 0.3
STALL_S = 1.0
FAILURES = ("429", "500", "html", "truncated", "cut", "stall", "stall-body")


def tile_rgb(z: int, x: int, y: int) -> np.ndarray:
    """A seeded pseudo-random pattern per tile (16 px cells, so PNGs stay small)."""
    rng = np.random.default_rng([SEED, z, x, y])
    return rng.integers(0, 256, (16, 16, 3), dtype=np.uint8).repeat(16, axis=0).repeat(16, axis=1)


@functools.cache
def tile_png(z: int, x: int, y: int) -> bytes:
    return encode_png(tile_rgb(z, x, y))


def behaviour(z: int, x: int, y: int, n: int) -> str:
    """What the server does on the n-th request for a tile: the same sequence whatever the thread timing."""
    rng = np.random.default_rng([SEED, 1, z, x, y, n])
    if rng.random() >= FAIL_RATE:
        return "ok"
    return FAILURES[int(rng.integers(len(FAILURES)))]


class FlakyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, ctype: str = "image/png", **extra: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv = self.server
        try:
            z, x, y = (int(v) for v in self.path.split("?")[0].removesuffix(".png").split("/")[-3:])
        except ValueError:
            self._send(404, b"no such tile", "text/plain")
            return
        with srv.lock:
            srv.counts[(z, x, y)] += 1
            n = srv.counts[(z, x, y)]
            srv.requests.append((z, x, y))
        what = behaviour(z, x, y, n)
        body = tile_png(z, x, y)
        try:
            if what == "ok":
                self._send(200, body)
            elif what == "429":
                self._send(429, b"Too Many Requests", "text/plain", Retry_After="0")
            elif what == "500":
                self._send(500, b"<html><body>Internal Server Error</body></html>", "text/html")
            elif what == "html":
                page = b"<!DOCTYPE html><html><body>Please try again later</body></html>"
                self._send(200, page, "text/html")
            elif what == "truncated":  # a short body that the headers agree with
                self._send(200, body[: len(body) * 2 // 3])
            elif what == "cut":  # the connection drops part way through the announced body
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
            elif what == "stall":  # nothing before the read timeout
                time.sleep(STALL_S)
                self._send(200, body)
            elif what == "stall-body":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                time.sleep(STALL_S)
                self.wfile.write(body[len(body) // 2 :])
        except OSError:  # the client timed out and hung up
            self.close_connection = True


class FlakyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FlakyHandler)
        self.lock = threading.Lock()
        self.counts: Counter[tuple[int, int, int]] = Counter()
        self.requests: list[tuple[int, int, int]] = []

    def handle_error(self, request, client_address):
        pass


@pytest.fixture
def flaky_server():
    server = FlakyServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def blocks_20() -> list[Block]:
    b0 = Block.containing(113.3, 23.1)
    return [Block(b0.ix + dx, b0.iy + dy) for dy in range(4) for dx in range(5)]


def fetch_all(url: str, cache_path, blocks) -> tuple[list[dict], dict[str, int]]:
    """Fetch the blocks four at a time through one cached source, as a fetch worker would."""
    config = XYZSourceConfig(
        url=url,
        connect_timeout_s=2.0,
        read_timeout_s=READ_TIMEOUT_S,
        max_concurrency=16,
        retry=dict(total=3, backoff_factor=0.01, backoff_max_s=0.05),
    )
    with CachedSource(HttpTileSource("flaky", config), MBTilesCache.open(cache_path, name="flaky")) as source:
        with ThreadPoolExecutor(4) as pool:
            per_block = list(
                pool.map(lambda b: source.get_tiles([(16, x, y) for x, y in b.window(16).tiles()]), blocks)
            )
        return per_block, source.stats


def check_results(per_block: list[dict]) -> tuple[set, set, Counter]:
    ok, missing, reasons = set(), set(), Counter()
    for results in per_block:
        for key, r in results.items():
            if r.ok:
                np.testing.assert_array_equal(r.rgb, tile_rgb(*key), err_msg=str(key))
                assert r.valid is None
                ok.add(key)
            else:
                assert isinstance(r.missing, str) and r.missing.strip(), key
                assert r.rgb is None
                missing.add(key)
                reasons[r.missing.split(":")[0].split(" after ")[0]] += 1
    return ok, missing - ok, reasons


@pytest.mark.network
@pytest.mark.slow
def test_flaky_server_through_the_cache(flaky_server, tmp_path):
    url = f"http://127.0.0.1:{flaky_server.server_port}/tiles/{{z}}/{{x}}/{{y}}.png"
    cache_path = tmp_path / "flaky.mbtiles"
    blocks = blocks_20()
    all_keys = {(16, x, y) for b in blocks for x, y in b.window(16).tiles()}

    t0 = time.monotonic()
    first, stats1 = fetch_all(url, cache_path, blocks)
    t1 = time.monotonic() - t0
    ok1, missing1, reasons1 = check_results(first)
    assert ok1 | missing1 == all_keys
    assert len(all_keys) > 1800
    assert missing1, "a 30 % failure rate must leave some tiles missing after one pass"
    assert len(ok1) > 0.8 * len(all_keys)
    assert reasons1["undecodable"] > 0  # HTML and truncated bodies are reported, not decoded
    requests1 = len(flaky_server.requests)

    # The cache holds exactly the good tiles, byte for byte.
    report = MBTilesCache.verify(cache_path)
    assert report.ok, report.summary()
    with MBTilesCache.open(cache_path) as cache:
        stored = set(cache.stored_keys())
        assert stored == ok1
        for key in stored:
            assert cache.get(*key) == tile_png(*key)  # the server's bytes, byte for byte
    key = min(stored)
    np.testing.assert_array_equal(decode_tile(tile_png(*key))[0], tile_rgb(*key))
    assert stats1["stored"] >= len(ok1)  # adjacent blocks fetched at once may both store an edge tile

    # Second run, new source and connection: cached tiles cost no request; missing ones are asked again.
    with flaky_server.lock:
        flaky_server.requests.clear()
    t0 = time.monotonic()
    second, stats2 = fetch_all(url, cache_path, blocks)
    t2 = time.monotonic() - t0
    ok2, missing2, _ = check_results(second)
    requested2 = set(flaky_server.requests)
    assert requested2 <= missing1
    assert not (requested2 & ok1)
    assert ok1 <= ok2 and ok2 | missing2 == all_keys
    assert len(ok2) > len(ok1), "the second pass must fill in some missing tiles"
    assert stats2["hits"] >= sum(len([k for k in r if k in ok1]) for r in second)
    assert MBTilesCache.verify(cache_path).ok
    print(
        f"\n{len(all_keys)} tiles; pass 1: {len(ok1)} ok, {len(missing1)} missing, {requests1} requests, "
        f"{t1:.1f} s, reasons {dict(reasons1)}; pass 2: {len(ok2)} ok, {len(requested2)} tiles requested, "
        f"{t2:.1f} s"
    )
