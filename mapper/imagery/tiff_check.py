"""Was a GeoTIFF written whole? A check run on the temporary file before it is renamed into place.

GDAL does not always raise when the disk fills during a write: libtiff reports the failed write, GDAL logs
it, and the dataset closes "successfully" with tiles missing (seen as zero-byte or truncated block
mosaics). Recorded as done, such a file would break every later stage of its block. So every internal tile
of every band must have a size and lie inside the file — 0.3 ms for a block mosaic's hundred tiles.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class IncompleteWriteError(OSError):
    """A file that was not written whole (usually: the disk filled up while writing)."""


def check_complete_geotiff(path: Path | str) -> None:
    import rasterio
    from rasterio.enums import Interleaving
    from rasterio.errors import RasterioIOError

    path = Path(path)
    size = path.stat().st_size
    try:
        with rasterio.open(path) as src:
            bands = range(1, src.count + 1) if src.interleaving == Interleaving.band else (1,)
            for band in bands:
                for (i, j), _ in src.block_windows(band):
                    offset = src.get_tag_item(f"BLOCK_OFFSET_{j}_{i}", "TIFF", bidx=band)
                    count = src.block_size(band, i, j)
                    if not count or offset is None or int(offset) + count > size:
                        raise _incomplete(path, f"tile {i},{j} of band {band} is missing or cut off")
    except RasterioIOError as e:
        raise _incomplete(path, f"it does not open ({e})") from None


def _incomplete(path: Path, what: str) -> IncompleteWriteError:
    free = _free_mb(path.parent)
    code = errno.ENOSPC if free is not None and free < 64 else errno.EIO
    return IncompleteWriteError(code, f"{path} was not written whole: {what}; {free:.0f} MB free on its disk"
                                if free is not None else f"{path} was not written whole: {what}")  # fmt: skip


def _free_mb(directory: Path) -> float | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize / 1e6
