"""Shared pieces of the benchmarks: timing, local tile sets, a file-backed tile source, GDAL WMS XML, servers."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mapper.grid.tilegrid import ORIGIN_SHIFT, TILE_SIZE, PixelWindow
from mapper.imagery.decode import body_to_result, encode_jpeg, encode_png
from mapper.imagery.tiles import TileKey, TileResult

WORK_DIR = Path(__file__).resolve().parent / "_work"  # git-ignored
EXT = {"png": "png", "jpeg": "jpg"}


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def tile_path(root: Path, key: TileKey, fmt: str = "png") -> Path:
    z, x, y = key
    return root / str(z) / str(x) / f"{y}.{EXT[fmt]}"


def window_keys(window: PixelWindow) -> list[TileKey]:
    return [(window.zoom, x, y) for x, y in window.tiles()]


def render_tile_set(source, keys: list[TileKey], root: Path, fmt: str = "png") -> Path:
    """Render the tiles missing under `root` through `source` and write them as `{z}/{x}/{y}.png|jpg`.

    Existing files are kept, so repeated runs reuse the tiles (their pixels do not matter for timing).
    JPEG cannot carry transparency: partly covered tiles are written opaque.
    """
    todo = [k for k in keys if not tile_path(root, k, fmt).exists()]
    for key, tile in source.get_tiles(todo).items():
        if not tile.ok:
            continue
        body = encode_png(tile.rgb, tile.valid) if fmt == "png" else encode_jpeg(tile.rgb, 90)
        path = tile_path(root, key, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(body)
        tmp.replace(path)
    return root


class FileTileSource:
    """A TileSource over a local `{z}/{x}/{y}.png|jpg` tree: read the bytes, decode with mapper's decoder.

    `workers` > 1 reads and decodes in a thread pool (OpenCV releases the GIL while it decodes).
    """

    def __init__(self, root: Path, fmt: str = "png", workers: int = 1, name: str = "files"):
        self.root = Path(root)
        self.fmt = fmt
        self.name = name
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="file-tiles") if workers > 1 else None

    def _one(self, key: TileKey) -> TileResult:
        try:
            body = tile_path(self.root, key, self.fmt).read_bytes()
        except FileNotFoundError:
            return TileResult.absent("no tile file")
        return body_to_result(body)

    def get_tiles(self, keys: Iterable[TileKey]) -> dict[TileKey, TileResult]:
        keys = list(keys)
        results = self._pool.map(self._one, keys) if self._pool else map(self._one, keys)
        return dict(zip(keys, results, strict=True))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wms_xml(server_url: str, zoom: int = 16, bands: int = 4) -> str:
    """GDAL WMS (TMS minidriver) over an XYZ pyramid; `server_url` uses `${z}`, `${x}`, `${y}`.

    The dataset spans the whole EPSG:3857 square at `zoom`, so global pixel coordinates are its pixel
    coordinates. 404s (missing files too) become transparent blocks. No <Cache>: nothing on disk is reused.
    """
    return f"""<GDAL_WMS>
  <Service name="TMS"><ServerUrl>{server_url}</ServerUrl></Service>
  <DataWindow>
    <UpperLeftX>{-ORIGIN_SHIFT!r}</UpperLeftX><UpperLeftY>{ORIGIN_SHIFT!r}</UpperLeftY>
    <LowerRightX>{ORIGIN_SHIFT!r}</LowerRightX><LowerRightY>{-ORIGIN_SHIFT!r}</LowerRightY>
    <TileLevel>{zoom}</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY>
    <YOrigin>top</YOrigin>
  </DataWindow>
  <Projection>EPSG:3857</Projection>
  <BlockSizeX>{TILE_SIZE}</BlockSizeX><BlockSizeY>{TILE_SIZE}</BlockSizeY>
  <BandsCount>{bands}</BandsCount>
  <ZeroBlockHttpCodes>404</ZeroBlockHttpCodes>
</GDAL_WMS>"""


def file_url_template(root: Path, fmt: str = "png") -> str:
    return f"file://{Path(root).resolve().as_posix()}/${{z}}/${{x}}/${{y}}.{EXT[fmt]}"


class ServerProcess:
    """A tile server in a child process (`python -m benchmarks.servers ...`), so that its work does not
    share the benchmark's GIL. The child prints its URL template on the first line of stdout."""

    def __init__(self, *args: str, startup_timeout_s: float = 60.0):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.servers", *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.close()
            raise RuntimeError(f"tile server did not start (said {line!r})")
        self.url_template = line

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the child exits when its stdin closes
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
