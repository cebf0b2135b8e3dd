"""A direct decoder for the PNG tiles that servers actually send: 8-bit RGB or RGBA, not interlaced.

The body's chunks are walked once (every CRC-32 checked, as `decode.check_png_chunks` requires), the
concatenated IDAT data is inflated in one call into a buffer of the image's size (libdeflate, from the
`deflate` package, ~2.5× faster than CPython's zlib on these tiles; CPython's zlib when it is not
installed) and the PNG row filters are undone by compiled kernels that write the RGB pixels, and the
alpha > 0 mask, straight into their final arrays. The inflate and the kernels release the GIL, so a tile
thread pool decodes on all cores.

Pixels are bit-identical to libpng's (OpenCV, Pillow, GDAL): the filters are exact integer arithmetic.
Any other flavour (palette, grey, 16-bit, interlaced, a tRNS colour key, a size other than 256 × 256, an
unusual chunk layout) returns None and takes the general decoders; a damaged body raises PNGDamaged:
a bad CRC, a truncated body, a damaged zlib stream (its Adler-32 included), too little image data or an
unknown row filter. Image data beyond the image's size is ignored, as libpng does.
"""

from __future__ import annotations

import zlib

import numpy as np
from numba import int32, int64, njit, uint64

from mapper.grid.tilegrid import TILE_SIZE

try:  # libdeflate: whole-buffer inflate into a buffer of the known size; checks the Adler-32 like zlib
    from deflate import DeflateError as _DeflateError
    from deflate import crc32 as _crc32
    from deflate import zlib_decompress as _libdeflate_inflate
except ImportError:  # pragma: no cover - exercised when the package is missing
    from zlib import crc32 as _crc32

    _libdeflate_inflate, _DeflateError = None, zlib.error

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
INFLATE = "zlib" if _libdeflate_inflate is None else "libdeflate"  # which inflate decodes the image data


class PNGDamaged(ValueError):
    """The body is not a whole, intact PNG (decode.TileDecodeError is raised in its place)."""


def png_chunks(body: bytes) -> list[tuple[bytes, int, int]]:
    """(type, data start, data length) of each chunk up to IEND, after checking lengths and every CRC-32.

    Raises PNGDamaged for a truncated or damaged body: a chunk running past the end, a bad CRC, IHDR not
    first, no IDAT, no IEND. The body is assumed to start with the PNG signature."""
    view = memoryview(body)
    pos, n, chunks = len(PNG_SIGNATURE), len(body), []
    while pos + 12 <= n:
        length = int.from_bytes(view[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > n:
            raise PNGDamaged("truncated PNG (a chunk runs past the end of the body)")
        ctype = bytes(view[pos + 4 : pos + 8])
        if _crc32(view[pos + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
            raise PNGDamaged(f"damaged PNG (bad CRC in a {ctype.decode('latin-1')} chunk)")
        chunks.append((ctype, pos + 8, length))
        pos = end
        if ctype == b"IEND":
            break
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND" or all(c[0] != b"IDAT" for c in chunks):
        raise PNGDamaged("truncated PNG (IHDR, IDAT or IEND missing)")
    return chunks


def decode_png_rgb8(body: bytes, chunks: list[tuple[bytes, int, int]] | None = None):
    """(rgb (256, 256, 3) uint8, valid (256, 256) bool or None when opaque) of an 8-bit RGB/RGBA PNG tile.

    None when the PNG is of another flavour (the caller decodes it some other way); PNGDamaged when the
    chunks or the compressed image data are damaged. `chunks` are png_chunks(body) when already walked."""
    if chunks is None:
        chunks = png_chunks(body)
    _, start, length = chunks[0]
    if length != 13:
        return None
    width = int.from_bytes(body[start : start + 4], "big")
    height = int.from_bytes(body[start + 4 : start + 8], "big")
    depth, colour, compression, filtering, interlace = body[start + 8 : start + 13]
    if (width, height) != (TILE_SIZE, TILE_SIZE) or depth != 8 or colour not in (2, 6):
        return None
    if compression or filtering or interlace:
        return None
    view, idat = memoryview(body), []
    for i, (ctype, start, length) in enumerate(chunks):
        if ctype == b"IDAT":
            if idat and chunks[i - 1][0] != b"IDAT":
                return None  # IDAT chunks not consecutive: leave the verdict to libpng
            idat.append(view[start : start + length])
        elif ctype in (b"tRNS", b"PLTE") or (ctype[0] & 0x20 == 0 and ctype not in (b"IHDR", b"IEND")):
            return None  # a colour key, a suggested palette or an unknown critical chunk
    channels = 4 if colour == 6 else 3
    stride = width * channels
    expected = height * (stride + 1)
    data = idat[0] if len(idat) == 1 else b"".join(idat)
    raw = np.frombuffer(_inflate(data, expected), np.uint8, count=expected)
    rgb = np.empty((height, width, 3), np.uint8)
    valid = np.empty((height, width), np.bool_) if channels == 4 else np.empty((1, 1), np.bool_)
    n_valid = _unfilter(raw, height, width, channels, rgb, valid)
    if n_valid < 0:
        raise PNGDamaged("damaged PNG (bad row filter type)")
    if channels == 3 or n_valid == height * width:
        return rgb, None
    return rgb, valid


def _inflate(data: bytes, expected: int):
    """The zlib stream `data` inflated: at least `expected` bytes (libpng ignores any beyond, and so do we).

    PNGDamaged when the stream is damaged or holds less than `expected` bytes."""
    if _libdeflate_inflate is not None:
        try:
            raw = _libdeflate_inflate(data, expected)  # fails on a damaged stream and on more than `expected`
        except _DeflateError:
            pass  # damaged, or too much data: zlib tells which
        else:
            if len(raw) < expected:
                raise PNGDamaged("truncated PNG (not enough image data)")
            return raw
    try:
        raw = zlib.decompress(data, bufsize=expected + 1)
    except zlib.error as e:
        raise PNGDamaged(f"damaged PNG (bad compressed image data: {e})") from None
    if len(raw) < expected:
        raise PNGDamaged("truncated PNG (not enough image data)")
    return raw


@njit(cache=True)
def _paeth(a, b, c):
    """The Paeth predictor of left a, up b, upper-left c; stb_image's branch-free form, equal to the PNG
    specification's for all 2**24 inputs (tests/test_png_decode.py checks them all)."""
    thresh = c * 3 - (a + b)
    lo = min(a, b)
    hi = max(a, b)
    t0 = lo if hi <= thresh else c
    return hi if thresh <= lo else t0


@njit(cache=True, nogil=True, boundscheck=False)
def _paeth_row3(r, prev, cur):
    """One Paeth-filtered row of 3-byte pixels; left and upper-left kept in registers per channel."""
    a0 = int64((r[0] + prev[0]) & 0xFF)
    a1 = int64((r[1] + prev[1]) & 0xFF)
    a2 = int64((r[2] + prev[2]) & 0xFF)
    cur[0], cur[1], cur[2] = a0, a1, a2
    c0, c1, c2 = int64(prev[0]), int64(prev[1]), int64(prev[2])
    for j in range(uint64(3), uint64(len(cur)), uint64(3)):
        b0, b1, b2 = int64(prev[j]), int64(prev[j + uint64(1)]), int64(prev[j + uint64(2)])
        a0 = (int64(r[j]) + _paeth(a0, b0, c0)) & 0xFF
        a1 = (int64(r[j + uint64(1)]) + _paeth(a1, b1, c1)) & 0xFF
        a2 = (int64(r[j + uint64(2)]) + _paeth(a2, b2, c2)) & 0xFF
        cur[j], cur[j + uint64(1)], cur[j + uint64(2)] = a0, a1, a2
        c0, c1, c2 = b0, b1, b2


@njit(cache=True, nogil=True, boundscheck=False)
def _paeth_row4(r, prev, cur):
    """One Paeth-filtered row of 4-byte pixels (see _paeth_row3)."""
    a0 = int64((r[0] + prev[0]) & 0xFF)
    a1 = int64((r[1] + prev[1]) & 0xFF)
    a2 = int64((r[2] + prev[2]) & 0xFF)
    a3 = int64((r[3] + prev[3]) & 0xFF)
    cur[0], cur[1], cur[2], cur[3] = a0, a1, a2, a3
    c0, c1, c2, c3 = int64(prev[0]), int64(prev[1]), int64(prev[2]), int64(prev[3])
    for j in range(uint64(4), uint64(len(cur)), uint64(4)):
        b0, b1 = int64(prev[j]), int64(prev[j + uint64(1)])
        b2, b3 = int64(prev[j + uint64(2)]), int64(prev[j + uint64(3)])
        a0 = (int64(r[j]) + _paeth(a0, b0, c0)) & 0xFF
        a1 = (int64(r[j + uint64(1)]) + _paeth(a1, b1, c1)) & 0xFF
        a2 = (int64(r[j + uint64(2)]) + _paeth(a2, b2, c2)) & 0xFF
        a3 = (int64(r[j + uint64(3)]) + _paeth(a3, b3, c3)) & 0xFF
        cur[j], cur[j + uint64(1)], cur[j + uint64(2)], cur[j + uint64(3)] = a0, a1, a2, a3
        c0, c1, c2, c3 = b0, b1, b2, b3


@njit(cache=True, nogil=True, boundscheck=False)
def _unfilter_row(ftype, r, prev, cur, bpp):
    """Undo one row's filter: r the filtered bytes, prev the unfiltered row above (zeros for the first).
    False for an unknown filter type."""
    n = uint64(len(cur))
    ub = uint64(bpp)
    if ftype == 0:  # None
        for i in range(n):
            cur[i] = r[i]
    elif ftype == 1:  # Sub
        for i in range(ub):
            cur[i] = r[i]
        for i in range(ub, n):
            cur[i] = r[i] + cur[i - ub]  # uint8 arithmetic wraps modulo 256, as the filter wants
    elif ftype == 2:  # Up
        for i in range(n):
            cur[i] = r[i] + prev[i]
    elif ftype == 3:  # Average
        for i in range(ub):
            cur[i] = r[i] + (prev[i] >> 1)
        for i in range(ub, n):
            cur[i] = (int32(r[i]) + ((int32(cur[i - ub]) + int32(prev[i])) >> 1)) & 0xFF
    elif ftype == 4:  # Paeth
        if bpp == 3:
            _paeth_row3(r, prev, cur)
        else:
            _paeth_row4(r, prev, cur)
    else:
        return False
    return True


@njit(cache=True, nogil=True, boundscheck=False)
def _unfilter(raw, height, width, channels, rgb, valid):
    """Undo the PNG row filters of `raw` (height rows of a filter byte + width * channels bytes) into `rgb`
    (height, width, 3) and, for RGBA, `valid` = alpha > 0. Returns the number of valid pixels (all of them
    for RGB), or -1 for a bad filter type."""
    stride = width * channels
    zeros = np.zeros(stride, np.uint8)
    if channels == 3:  # unfiltered rows are the RGB rows: no scratch, no copy
        out = rgb.reshape(height, stride)
        for y in range(height):
            src = y * (stride + 1)
            prev = out[y - 1] if y > 0 else zeros
            if not _unfilter_row(raw[src], raw[src + 1 : src + 1 + stride], prev, out[y], 3):
                return -1
        return height * width
    rows = np.zeros((2, stride), np.uint8)  # RGBA: the row above and this one, then split
    n_valid = 0
    for y in range(height):
        src = y * (stride + 1)
        cur = rows[y & 1]
        prev = rows[(y + 1) & 1] if y > 0 else zeros
        if not _unfilter_row(raw[src], raw[src + 1 : src + 1 + stride], prev, cur, 4):
            return -1
        for x in range(width):
            rgb[y, x, 0] = cur[4 * x]
            rgb[y, x, 1] = cur[4 * x + 1]
            rgb[y, x, 2] = cur[4 * x + 2]
            v = cur[4 * x + 3] != 0
            valid[y, x] = v
            n_valid += v
    return n_valid
