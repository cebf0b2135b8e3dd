"""Decode tile bodies into pixels, refusing anything that is not a whole image.

Servers under load answer with HTML error pages, truncated JPEGs or 'no imagery' placeholder tiles;
none of these may enter a mosaic or the cache as imagery.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from mapper.grid.tilegrid import TILE_SIZE
from mapper.imagery.png_decode import PNG_SIGNATURE, PNGDamaged, decode_png_rgb8, png_chunks
from mapper.imagery.tiles import TileResult

JPEG_START = b"\xff\xd8"
JPEG_END = b"\xff\xd9"
WEBP_RIFF = b"RIFF"


class TileDecodeError(ValueError):
    """The body is not a complete image tile."""


def sniff_format(body: bytes) -> str:
    if body.startswith(PNG_SIGNATURE):
        return "png"
    if body.startswith(JPEG_START):
        return "jpeg"
    if body.startswith(WEBP_RIFF) and body[8:12] == b"WEBP":
        return "webp"
    head = body[:64].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"{")):
        raise TileDecodeError("the server sent a text/HTML page, not an image")
    raise TileDecodeError("the body is not a PNG, JPEG or WebP image")


def check_png_chunks(body: bytes) -> None:
    """Walk the PNG chunks: lengths in bounds, every CRC-32 right, IHDR first, IDAT present, IEND last.

    Decoders differ in what they do with a damaged PNG (GDAL's returns garbage pixels without an error),
    so a body is checked before any decoder sees it."""
    try:
        png_chunks(body)
    except PNGDamaged as e:
        raise TileDecodeError(str(e)) from None


def check_complete(body: bytes, fmt: str) -> None:
    """Truncated bodies decode 'successfully' in libjpeg with grey bands; catch them by their end marker."""
    if fmt == "png":
        check_png_chunks(body)
    if fmt == "jpeg" and not body.rstrip(b"\x00").endswith(JPEG_END):
        raise TileDecodeError("truncated JPEG (no end-of-image marker)")
    if fmt == "webp" and len(body) < int.from_bytes(body[4:8], "little") + 8:
        raise TileDecodeError("truncated WebP")


def decode_tile(body: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB uint8 (256, 256, 3) and a validity mask from the alpha channel (None when opaque)."""
    if not body:
        raise TileDecodeError("empty body")
    fmt = sniff_format(body)
    if fmt == "png":
        try:  # chunks and CRCs checked, then 8-bit RGB(A) decoded directly (mapper.imagery.png_decode)
            fast = decode_png_rgb8(body)
        except PNGDamaged as e:
            raise TileDecodeError(str(e)) from None
        if fast is None:  # another PNG flavour
            fast = _decode_png_with_gdal(body)
        if fast is not None:
            return fast
    else:
        check_complete(body, fmt)
    arr = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise TileDecodeError(f"{fmt} body could not be decoded")
    if arr.shape[:2] != (TILE_SIZE, TILE_SIZE):
        raise TileDecodeError(f"tile is {arr.shape[1]}x{arr.shape[0]} px, expected {TILE_SIZE}x{TILE_SIZE}")
    if arr.dtype != np.uint8:
        arr = (arr >> 8).astype(np.uint8) if arr.dtype == np.uint16 else arr.astype(np.uint8)
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB), None
    if arr.shape[2] == 4:
        valid = arr[:, :, 3] > 0
        rgb = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
        return rgb, (None if valid.all() else valid)
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB), None


def _decode_png_with_gdal(body: bytes):
    """8-bit RGB(A) PNGs that png_decode leaves alone (interlaced, a tRNS colour key, ...) through GDAL's PNG
    driver. Other PNG flavours (palette, grey, 16-bit) return None and take the OpenCV path."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning, RasterioError
    from rasterio.io import MemoryFile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with MemoryFile(body) as mem, mem.open() as ds:
                if ds.count not in (3, 4) or ds.dtypes[0] != "uint8" or ds.shape != (TILE_SIZE, TILE_SIZE):
                    return None
                if ds.colorinterp[0].name == "palette":
                    return None
                data = ds.read()
        except RasterioError:  # libpng refused it: OpenCV's libpng gives the verdict, as a TileDecodeError
            return None
    rgb = np.ascontiguousarray(np.moveaxis(data[:3], 0, -1))
    if ds.count == 4:
        valid = data[3] > 0
        return rgb, (None if valid.all() else valid)
    return rgb, None


def body_to_result(body: bytes, placeholder_sha256: frozenset[str] = frozenset(), blank_is_missing: bool = True):
    """Classify a fetched body: imagery, or missing with the reason (never raises)."""
    if placeholder_sha256 and hashlib.sha256(body).hexdigest() in placeholder_sha256:
        return TileResult.absent("placeholder tile (no imagery)")
    try:
        rgb, valid = decode_tile(body)
    except TileDecodeError as e:
        return TileResult.absent(f"undecodable: {e}")
    if valid is not None and not valid.any():
        return TileResult.absent("fully transparent tile (no imagery)")
    if blank_is_missing and is_blank(rgb):
        return TileResult.absent("blank tile of one colour (no imagery)")
    return TileResult.image(rgb, valid)


def is_blank(rgb: np.ndarray) -> bool:
    """One uniform colour: what 'no imagery here' placeholders look like at most providers."""
    flat = rgb.reshape(-1, 3)
    if (flat[::97] != flat[0]).any():  # almost every tile differs somewhere in a sparse sample
        return False
    return bool((flat == flat[0]).all())


def encode_png(rgb: np.ndarray, valid: np.ndarray | None = None) -> bytes:
    """Lossless PNG (RGBA when some pixels are invalid)."""
    if valid is None or valid.all():
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    else:
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
        img[:, :, 3] = np.where(valid, 255, 0).astype(np.uint8)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
