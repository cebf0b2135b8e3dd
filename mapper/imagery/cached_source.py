"""A tile source in front of the MBTiles cache: answers from the cache and fetches only what it lacks.

Only bodies that decode as imagery are stored; a cached body that no longer decodes (or has become a known
placeholder) is evicted and fetched again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from mapper.imagery.decode import body_to_result, encode_png
from mapper.imagery.mbtiles import MBTilesCache
from mapper.imagery.tiles import TileKey, TileResult

log = logging.getLogger(__name__)


class CachedSource:
    """A TileSource that answers from the MBTiles cache and fetches only what it lacks."""

    def __init__(self, source, cache: MBTilesCache):
        self.source = source
        self.cache = cache
        self.name = source.name
        cfg = getattr(source, "config", None)
        self._placeholders = frozenset(h.lower() for h in (getattr(cfg, "placeholder_sha256", None) or []))
        self._blank_is_missing = bool(getattr(cfg, "blank_tile_is_missing", True))
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.hits = 0
        self.misses = 0
        self.stored = 0
        self.evicted = 0  # cached bodies that no longer decode (or are now known placeholders), refetched

    @property
    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "stored": self.stored, "evicted": self.evicted}

    def _decode(self, bodies: dict[TileKey, bytes]) -> dict[TileKey, TileResult]:
        def one(body: bytes) -> TileResult:
            return body_to_result(body, self._placeholders, self._blank_is_missing)

        if len(bodies) < 8:
            return {k: one(b) for k, b in bodies.items()}
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2), thread_name_prefix="cache")
            pool = self._pool
        return dict(zip(bodies, pool.map(one, bodies.values()), strict=True))

    def get_tiles(self, keys: Iterable[TileKey]) -> dict[TileKey, TileResult]:
        keys = list(dict.fromkeys(tuple(int(v) for v in k) for k in keys))
        cached = self.cache.get_many(keys)
        results: dict[TileKey, TileResult] = {}
        evicted = 0
        for k, r in self._decode(cached).items():
            if r.ok:
                results[k] = r
            else:
                log.warning(
                    "tile cache %s: stored tile %s is not usable (%s); fetching it again",
                    self.cache.path,
                    k,
                    r.missing,
                )
                self.cache.delete(*k)
                evicted += 1
        todo = [k for k in keys if k not in results]
        stored = 0
        if todo:
            if hasattr(self.source, "fetch_bodies"):
                fetched = self.source.fetch_bodies(todo)
                to_store = [(k, b) for k, (b, r) in fetched.items() if b is not None and r.ok]
                results.update({k: r for k, (_, r) in fetched.items()})
            else:  # a source that gives pixels only: store them losslessly
                fetched_results = self.source.get_tiles(todo)
                to_store = [(k, encode_png(r.rgb, r.valid)) for k, r in fetched_results.items() if r.ok]
                results.update(fetched_results)
            stored = self.cache.put_many(to_store)
        with self._lock:
            self.hits += len(keys) - len(todo)
            self.misses += len(todo)
            self.stored += stored
            self.evicted += evicted
        return {k: results.get(k) or TileResult.absent("the source returned no result") for k in keys}

    def close(self) -> None:
        try:
            self.source.close()
        finally:
            self.cache.close()
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def __enter__(self) -> CachedSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
