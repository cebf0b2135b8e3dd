"""The MBTiles tile cache: standard schema (QGIS/GDAL read it), corruption handling, CachedSource."""

from __future__ import annotations

import sqlite3
import threading

import mercantile
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import from_bounds

from mapper.imagery.cached_source import CachedSource
from mapper.imagery.decode import encode_jpeg, encode_png
from mapper.imagery.mbtiles import CacheCorruptError, MBTilesCache, tms_row
from mapper.imagery.tiles import TileResult

Z = 16
ORIGIN = mercantile.tile(113.3, 23.1, Z)


def tile_rgb(z: int, x: int, y: int) -> np.ndarray:
    rng = np.random.default_rng([z, x, y])
    return np.kron(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8))


def tile_png(z: int, x: int, y: int) -> bytes:
    return encode_png(tile_rgb(z, x, y))


def keys(nx: int, ny: int) -> list[tuple[int, int, int]]:
    return [(Z, ORIGIN.x + dx, ORIGIN.y + dy) for dy in range(ny) for dx in range(nx)]


def filled(path, n: int = 4, name: str = "mapbox") -> list[tuple[int, int, int]]:
    ks = keys(n, n)
    with MBTilesCache.open(path, name=name, attribution="© test") as cache:
        cache.put_many([(k, tile_png(*k)) for k in ks])
    return ks


def corrupt_pages(path, pages: tuple[int, ...], page_size: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(7)
    for p in pages:
        data[p * page_size : p * page_size + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------- schema
def test_schema_is_mbtiles_with_tms_rows(tmp_path):
    path = tmp_path / "mapbox.mbtiles"
    ks = filled(path, 3)
    con = sqlite3.connect(path)
    assert {r[1] for r in con.execute("PRAGMA table_info(metadata)")} == {"name", "value"}
    assert [r[1] for r in con.execute("PRAGMA table_info(tiles)")] == [
        "zoom_level",
        "tile_column",
        "tile_row",
        "tile_data",
    ]
    unique = [r for r in con.execute("PRAGMA index_list(tiles)") if r[2] == 1]
    assert unique and [c[2] for c in con.execute(f"PRAGMA index_info({unique[0][1]})")] == [
        "zoom_level",
        "tile_column",
        "tile_row",
    ]
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = {(z, c, r) for z, c, r in con.execute("SELECT zoom_level, tile_column, tile_row FROM tiles")}
    assert rows == {(z, x, (2**z - 1) - y) for z, x, y in ks}
    meta = dict(con.execute("SELECT name, value FROM metadata"))
    con.close()
    assert meta["name"] == "mapbox" and meta["format"] == "png" and meta["type"] == "baselayer"
    assert meta["attribution"] == "© test" and meta["version"] and meta["description"]
    assert meta["minzoom"] == meta["maxzoom"] == "16"
    w, s, e, n = map(float, meta["bounds"].split(","))
    nw = mercantile.bounds(ORIGIN.x, ORIGIN.y, Z)
    se = mercantile.bounds(ORIGIN.x + 2, ORIGIN.y + 2, Z)
    assert (w, n) == pytest.approx((nw.west, nw.north)) and (e, s) == pytest.approx((se.east, se.south))
    assert tms_row(Z, tms_row(Z, 123)) == 123


def test_get_put_contains_count(tmp_path):
    with MBTilesCache.open(tmp_path / "c.mbtiles") as cache:
        k = keys(1, 1)[0]
        assert cache.get(*k) is None and k not in cache and cache.count() == 0
        body = tile_png(*k)
        cache.put(*k, body)
        assert cache.get(*k) == body and k in cache and cache.count() == 1
        cache.put(*k, body)  # idempotent
        assert cache.count() == 1


def test_format_detected_from_first_tile(tmp_path):
    path = tmp_path / "jpg.mbtiles"
    with MBTilesCache.open(path) as cache:
        assert cache.metadata()["format"] == "png"
        k = keys(1, 1)[0]
        cache.put(*k, encode_jpeg(tile_rgb(*k)))
        assert cache.metadata()["format"] == "jpg"


def test_gdal_reads_the_cache(tmp_path):
    path = tmp_path / "gdal.mbtiles"
    filled(path, 2)
    with rasterio.open(path) as ds:
        assert ds.driver == "MBTiles"
        assert ds.crs.to_epsg() == 3857
        for z, x, y in keys(2, 2):
            window = from_bounds(*mercantile.xy_bounds(x, y, z), ds.transform).round_offsets().round_lengths()
            pixels = np.moveaxis(ds.read([1, 2, 3], window=window), 0, -1)
            np.testing.assert_array_equal(pixels, tile_rgb(z, x, y))


# ---------------------------------------------------------------------------------------- corruption
def test_not_sqlite_raises_with_the_fix(tmp_path):
    path = tmp_path / "mapbox.mbtiles"
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(CacheCorruptError) as err:
        MBTilesCache.open(path, name="mapbox")
    message = str(err.value)
    assert str(path) in message and "mapper cache rebuild --source mapbox" in message


def test_sqlite_without_tiles_table_is_corrupt(tmp_path):
    path = tmp_path / "other.mbtiles"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE something (a)")
    con.commit()
    con.close()
    with pytest.raises(CacheCorruptError, match=r"no metadata or tiles table.*cache rebuild --source other"):
        MBTilesCache.open(path)


def test_damaged_pages_fail_quick_check_and_rebuild_salvages(tmp_path):
    path = tmp_path / "google.mbtiles"
    ks = filled(path, 12, name="google")  # 144 tiles, ~150 pages
    n_pages = path.stat().st_size // 4096
    corrupt_pages(path, (n_pages // 2, n_pages // 2 + 1))
    with pytest.raises(CacheCorruptError, match="cache rebuild --source google"):
        MBTilesCache.open(path, name="google")

    report = MBTilesCache.verify(path)
    assert not report.ok and (report.integrity or report.unreadable or report.bad)

    result = MBTilesCache.rebuild(path, name="google")
    assert result.moved_to is not None and result.moved_to.exists()
    assert result.moved_to.name.startswith("google.mbtiles.corrupt-")
    assert 0 < result.salvaged < len(ks)
    assert MBTilesCache.verify(path).ok
    with MBTilesCache.open(path, name="google") as cache:
        assert cache.count() == result.salvaged
        assert cache.metadata()["attribution"] == "© test"
        for k in cache.stored_keys():
            assert k in ks and cache.get(*k) == tile_png(*k)


def test_rebuild_drops_bad_blobs_and_survives_garbage(tmp_path):
    path = tmp_path / "mapbox.mbtiles"
    ks = filled(path, 3)
    con = sqlite3.connect(path)
    z, x, y = ks[4]
    con.execute(
        "UPDATE tiles SET tile_data = ? WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
        (b"<html>oops</html>", z, x, tms_row(z, y)),
    )
    con.commit()
    con.close()
    report = MBTilesCache.verify(path)
    assert [b[:3] for b in report.bad] == [ks[4]] and report.tiles == 9 and not report.ok
    result = MBTilesCache.rebuild(path)
    assert (result.salvaged, result.dropped) == (8, 1)
    with MBTilesCache.open(path) as cache:
        assert ks[4] not in cache and cache.count() == 8

    garbage = tmp_path / "junk.mbtiles"
    garbage.write_bytes(b"\x00garbage" * 1000)
    result = MBTilesCache.rebuild(garbage)
    assert result.salvaged == 0 and result.moved_to.read_bytes().startswith(b"\x00garbage")
    assert MBTilesCache.verify(garbage).ok


def test_cli_check_and_rebuild(tmp_path, monkeypatch):
    from mapper.cli.cache import cache as cache_group

    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"cache:\n  dir: {tmp_path / 'cache'}\n")
    path = tmp_path / "cache" / "mapbox.mbtiles"
    filled(path, 2)
    runner = CliRunner()
    ok = runner.invoke(cache_group, ["check", "--source", "mapbox", "--config", str(cfg)])
    assert ok.exit_code == 0, ok.output
    path.write_bytes(b"not a database" * 100)
    bad = runner.invoke(cache_group, ["check", "--source", "mapbox", "--config", str(cfg)])
    assert bad.exit_code == 1 and "mapper cache rebuild --source mapbox" in bad.output
    fixed = runner.invoke(cache_group, ["rebuild", "--source", "mapbox", "--config", str(cfg)])
    assert fixed.exit_code == 0, fixed.output
    assert runner.invoke(cache_group, ["check", "--source", "mapbox", "--config", str(cfg)]).exit_code == 0
    unknown = runner.invoke(cache_group, ["check", "--source", "nope", "--config", str(cfg)])
    assert unknown.exit_code != 0 and "unknown source" in unknown.output


# ---------------------------------------------------------------------------------------- writes
def test_errors_are_never_cached(tmp_path):
    with MBTilesCache.open(tmp_path / "c.mbtiles") as cache:
        k = keys(1, 1)[0]
        good = tile_png(*k)
        for bad in (b"", b"<!DOCTYPE html><html>busy</html>", good[:-30], encode_jpeg(tile_rgb(*k))[:500]):
            with pytest.raises(ValueError):
                cache.put(*k, bad)
        assert cache.count() == 0

        class FakeSource:
            name = "fake"

            def __init__(self):
                self.asked: list[list] = []

            def fetch_bodies(self, ks):
                ks = list(ks)
                self.asked.append(ks)
                out = {}
                for i, key in enumerate(ks):
                    if i % 3 == 0:
                        out[key] = (tile_png(*key), TileResult.image(tile_rgb(*key)))
                    else:
                        out[key] = (None, TileResult.absent("HTTP 500 after 5 attempts"))
                return out

            def close(self):
                pass

        src = FakeSource()
        cached = CachedSource(src, cache)
        ks = keys(3, 3)
        first = cached.get_tiles(ks)
        assert list(first) == ks
        ok = [key for key, r in first.items() if r.ok]
        assert len(ok) == 3 and cache.count() == 3 and cached.stored == 3
        assert sorted(cache.stored_keys()) == sorted(ok)
        second = cached.get_tiles(ks)
        assert src.asked[1] == [key for key in ks if key not in ok]  # only the missing ones again
        assert cached.hits == 3 and cached.misses == 9 + 6
        for key in ok:
            np.testing.assert_array_equal(second[key].rgb, tile_rgb(*key))


def test_cached_source_refetches_a_bad_blob(tmp_path):
    with MBTilesCache.open(tmp_path / "c.mbtiles") as cache:
        k = keys(1, 1)[0]
        cache.put(*k, tile_png(*k))
        damaged = tile_png(*k)[:100] + tile_png(*k)[-12:]  # ends like a PNG, but the data is gone
        cache._conn.execute("UPDATE tiles SET tile_data = ? WHERE zoom_level = ?", (damaged, Z))

        class Source:
            name = "s"

            def get_tiles(self, ks):  # a pixels-only source: the cache stores lossless PNG
                return {key: TileResult.image(tile_rgb(*key)) for key in ks}

            def close(self):
                pass

        cached = CachedSource(Source(), cache)
        result = cached.get_tiles([k])[k]
        assert result.ok and cached.evicted == 1 and cached.stored == 1
        np.testing.assert_array_equal(result.rgb, tile_rgb(*k))
        assert MBTilesCache.verify(cache.path).ok


def test_concurrent_puts_from_threads_and_connections(tmp_path):
    path = tmp_path / "shared.mbtiles"
    ks = keys(16, 10)
    bodies = {k: tile_png(*k) for k in ks}
    a = MBTilesCache.open(path, name="shared")
    b = MBTilesCache.open(path, name="shared")  # a second connection, as another process would hold
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        cache = a if i % 2 else b
        try:
            for k in ks[i::8]:
                cache.put(*k, bodies[k])
                assert cache.get(*k) == bodies[k]
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a.close()
    b.close()
    assert not errors
    with MBTilesCache.open(path) as cache:
        assert cache.count() == len(ks)
        assert all(cache.get(*k) == bodies[k] for k in ks)
    assert MBTilesCache.verify(path).ok
