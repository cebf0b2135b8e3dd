"""Fetching tiles over loopback HTTP with mapper's HttpTileSource, at several concurrencies.

Two servers, each in a child process (so the server's work does not share the client's GIL):
- `static`: pre-rendered PNGs served from memory — measures the client (HTTP + decode), not rendering;
- `world`: the live simulated-world server, which renders every tile it is asked for.
Tiles/s count whole tiles fetched *and decoded* (HttpTileSource decodes each body to check it is imagery).
If mapper.imagery.http cannot be imported, a plain requests.Session + ThreadPoolExecutor client (no decode)
is used instead and the rows say so.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import ServerProcess, median
from mapper.imagery.tiles import TileKey


def make_client(url_template: str, concurrency: int):
    """(client with get_tiles/close, label) — mapper's HttpTileSource, or the labelled fallback."""
    try:
        from mapper.imagery.http import HttpTileSource
        from mapper.imagery.http_config import XYZSourceConfig

        config = XYZSourceConfig(url=url_template, max_concurrency=concurrency, read_timeout_s=60)
        return HttpTileSource("bench", config), "HttpTileSource"
    except ImportError:
        return _RequestsClient(url_template, concurrency), "requests+threads (fallback, no decode)"


class _RequestsClient:
    def __init__(self, url_template: str, concurrency: int):
        from concurrent.futures import ThreadPoolExecutor

        import requests
        from requests.adapters import HTTPAdapter

        self.template = url_template
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=concurrency, pool_maxsize=concurrency)
        self.session.mount("http://", adapter)
        self.pool = ThreadPoolExecutor(concurrency)

    def _get(self, key):
        z, x, y = key
        resp = self.session.get(self.template.format(z=z, x=x, y=y), timeout=60)
        return resp.status_code == 200 and bool(resp.content)

    def get_tiles(self, keys):
        keys = list(keys)
        return dict(zip(keys, self.pool.map(self._get, keys), strict=True))

    def close(self):
        self.pool.shutdown()
        self.session.close()


def _ok(result) -> bool:
    return bool(getattr(result, "ok", result))


def measure(url_template: str, keys: list[TileKey], concurrency: int, repeats: int) -> tuple[float, int, str]:
    """(median tiles/s, tiles per repeat, client label); one warm-up batch opens the connections first."""
    client, label = make_client(url_template, concurrency)
    try:
        warm = client.get_tiles(keys[: max(1, concurrency)])
        if not all(_ok(r) for r in warm.values()):
            bad = [getattr(r, "missing", r) for r in warm.values() if not _ok(r)]
            raise RuntimeError(f"warm-up fetch failed: {bad[:3]}")
        rates = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            results = client.get_tiles(keys)
            t = time.perf_counter() - t0
            n_ok = sum(_ok(r) for r in results.values())
            if n_ok != len(keys):
                raise RuntimeError(f"only {n_ok} of {len(keys)} tiles fetched")
            rates.append(len(keys) / t)
        return median(rates), len(keys), label
    finally:
        client.close()


def run(
    static_root: Path,
    static_keys: list[TileKey],
    live_keys: list[TileKey],
    *,
    seed: int = 0,
    rendering: str = "b",
    concurrencies: tuple[int, ...] = (1, 4, 16),
    repeats: int = 5,
    log=print,
) -> list[dict]:
    rows = []
    servers = [
        ("static", ("static", str(Path(static_root))), static_keys),
        ("world", ("world", str(seed), rendering), live_keys),
    ]
    for server_name, args, keys in servers:
        with ServerProcess(*args) as server:
            for c in concurrencies:
                rate, n, label = measure(server.url_template, keys, c, repeats)
                rows.append(
                    {
                        "server": server_name,
                        "concurrency": c,
                        "tiles_per_s": rate,
                        "ms_per_tile": 1000 / rate,
                        "tiles_per_repeat": n,
                        "client": label,
                    }
                )
                log(f"  {server_name} server, concurrency {c:>2}: {rate:.0f} tiles/s ({label})")
    return rows
