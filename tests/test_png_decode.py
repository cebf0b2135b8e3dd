"""The direct PNG decoder (mapper.imagery.png_decode): bit-identical to libpng, damaged bodies refused."""

import io
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from numba import njit
from PIL import Image

from mapper.imagery import png_decode
from mapper.imagery.decode import TileDecodeError, body_to_result, decode_tile, encode_png
from mapper.imagery.png_decode import PNG_SIGNATURE, PNGDamaged, decode_png_rgb8

RNG = np.random.default_rng(7)


def textured(channels: int, seed: int = 0) -> np.ndarray:
    """Noise, gradients and flat patches: what makes encoders pick every filter type somewhere."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:256, :256]
    img = np.empty((256, 256, channels), np.uint8)
    for k in range(channels):
        img[..., k] = (x * (k + 1) + y * (3 - k)) // 3 % 256
    img[64:128] = rng.integers(0, 256, (64, 256, channels), np.uint8)
    img[160:200, 40:200] = rng.integers(0, 256, channels, np.uint8)
    img[200:] = (img[200:] // 32 * 32) + rng.integers(0, 3, (56, 256, channels), np.uint8)
    if channels == 4:
        img[..., 3] = np.where(rng.random((256, 256)) < 0.2, 0, rng.integers(1, 256, (256, 256)))
        img[:40, :, 3] = 0
        img[240:, :, 3] = 255
    return img


def libpng(body: bytes) -> np.ndarray:
    """OpenCV's libpng decode, as RGB(A)."""
    arr = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def pillow(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)))


def assert_same(body: bytes) -> None:
    """decode_png_rgb8 takes the body and matches OpenCV and Pillow pixel for pixel (alpha > 0 as valid)."""
    out = decode_png_rgb8(body)
    assert out is not None, "the direct decoder left an 8-bit RGB(A) PNG to the fallback"
    rgb, valid = out
    for ref in (libpng(body), pillow(body)):
        assert np.array_equal(rgb, ref[..., :3])
        expected_valid = ref[..., 3] > 0 if ref.shape[2] == 4 else np.ones((256, 256), bool)
        assert np.array_equal(expected_valid, np.ones((256, 256), bool) if valid is None else valid)
    assert rgb.flags.c_contiguous and rgb.shape == (256, 256, 3)


# ----------------------------------------------------------------------------------- hand-built PNGs
def chunk(ctype: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(ctype + data) if crc is None else crc
    return len(data).to_bytes(4, "big") + ctype + data + crc.to_bytes(4, "big")


def ihdr(width=256, height=256, depth=8, colour=2, interlace=0) -> bytes:
    return width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([depth, colour, 0, 0, interlace])


def make_png(idat: bytes, header: bytes | None = None, extra=(), idat_chunks: int = 1) -> bytes:
    """A PNG from a zlib stream, split over `idat_chunks` IDAT chunks, with `extra` chunks before them."""
    parts = np.array_split(np.frombuffer(idat, np.uint8), idat_chunks)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", header or ihdr())
        + b"".join(extra)
        + b"".join(chunk(b"IDAT", p.tobytes()) for p in parts)
        + chunk(b"IEND", b"")
    )


def paeth_spec(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(img: np.ndarray, filters) -> bytes:
    """The PNG filtered scanlines of img (H, W, bpp) with filter type filters[y] on row y (spec arithmetic)."""
    h, w, bpp = img.shape
    rows = img.reshape(h, w * bpp).astype(np.int32)
    out = bytearray()
    for y in range(h):
        cur = rows[y]
        prev = rows[y - 1] if y else np.zeros_like(cur)
        left = np.concatenate([np.zeros(bpp, np.int32), cur[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        f = filters[y]
        if f == 0:
            pred = np.zeros_like(cur)
        elif f == 1:
            pred = left
        elif f == 2:
            pred = prev
        elif f == 3:
            pred = (left + prev) // 2
        else:
            pred = np.array([paeth_spec(a, b, c) for a, b, c in zip(left, prev, upleft, strict=True)])
        out.append(f)
        out += ((cur - pred) % 256).astype(np.uint8).tobytes()
    return bytes(out)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("pattern", ["each", "random"])
def test_hand_built_rows_with_every_filter_type(channels, pattern):
    img = textured(channels, seed=channels)
    filters = [y % 5 for y in range(256)] if pattern == "each" else list(RNG.integers(0, 5, 256))
    raw = filter_rows(img, filters)
    body = make_png(zlib.compress(raw, 6), ihdr(colour=6 if channels == 4 else 2), idat_chunks=3)
    assert_same(body)
    rgb, valid = decode_png_rgb8(body)
    assert np.array_equal(rgb, img[..., :3])  # and the round trip is exact
    if channels == 4:
        assert np.array_equal(valid, img[..., 3] > 0)


@pytest.mark.parametrize("ftype", range(5))
@pytest.mark.parametrize("channels", [3, 4])
def test_one_filter_type_throughout(ftype, channels):
    img = RNG.integers(0, 256, (256, 256, channels), np.uint8)
    if channels == 4:
        img[..., 3] = 255  # opaque RGBA: no mask
    body = make_png(zlib.compress(filter_rows(img, [ftype] * 256), 1), ihdr(colour=6 if channels == 4 else 2))
    assert_same(body)
    rgb, valid = decode_png_rgb8(body)
    assert np.array_equal(rgb, img[..., :3]) and valid is None


def test_paeth_predictor_matches_the_specification_for_all_inputs():
    paeth = png_decode._paeth

    @njit
    def mismatches():
        bad = 0
        for a in range(256):
            for b in range(256):
                for c in range(256):
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    ref = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    bad += paeth(np.int64(a), np.int64(b), np.int64(c)) != ref
        return bad

    assert mismatches() == 0


# ------------------------------------------------------------------------------ real encoders' output
@pytest.mark.parametrize("level", [0, 1, 3, 6, 9])
@pytest.mark.parametrize("channels", [3, 4])
def test_opencv_encoded_tiles(level, channels):
    img = textured(channels, seed=level)
    bgr = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if channels == 4 else cv2.COLOR_RGB2BGR)
    for strategy in (cv2.IMWRITE_PNG_STRATEGY_DEFAULT, cv2.IMWRITE_PNG_STRATEGY_FILTERED,
                     cv2.IMWRITE_PNG_STRATEGY_RLE, cv2.IMWRITE_PNG_STRATEGY_FIXED):  # fmt: skip
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, level, cv2.IMWRITE_PNG_STRATEGY, strategy])
        assert ok
        assert_same(buf.tobytes())


@pytest.mark.parametrize("level", [0, 1, 6, 9])
@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_pillow_encoded_tiles(level, mode):
    img = textured(len(mode), seed=10 + level)
    for optimize in (False, True):
        out = io.BytesIO()
        Image.fromarray(img, mode).save(out, "PNG", compress_level=level, optimize=optimize)
        assert_same(out.getvalue())


def test_mapper_encoded_tiles_and_the_blank_check():
    rgb = textured(3)
    mask = textured(4)[..., 3] > 0
    assert_same(encode_png(rgb))
    assert_same(encode_png(rgb, mask))
    got, valid = decode_tile(encode_png(rgb, mask))
    assert np.array_equal(got[mask], rgb[mask]) and np.array_equal(valid, mask)
    assert "fully transparent" in body_to_result(encode_png(rgb, np.zeros((256, 256), bool))).missing
    assert "blank" in body_to_result(encode_png(np.full_like(rgb, 9))).missing


def test_ancillary_chunks_and_trailing_data_are_ignored_like_libpng():
    img = textured(3)
    raw = filter_rows(img, [4] * 256)
    gama = chunk(b"gAMA", (45455).to_bytes(4, "big"))
    text = chunk(b"tEXt", b"Comment\x00made by hand")
    for body in (
        make_png(zlib.compress(raw), extra=[gama, text]),
        make_png(zlib.compress(raw + bytes(769))),  # more image data than the image: libpng warns, ignores
        make_png(zlib.compress(raw) + b"junk"),  # bytes after the zlib stream
    ):
        assert_same(body)
        assert np.array_equal(decode_png_rgb8(body)[0], img)


# ----------------------------------------------------------------------------------------- fallbacks
def adam7(img: np.ndarray) -> bytes:
    """Interlaced scanlines (filter None) of img: the seven Adam7 passes."""
    out = bytearray()
    for y0, x0, dy, dx in ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2),
                           (1, 0, 2, 1)):  # fmt: skip
        sub = img[y0::dy, x0::dx]
        for row in sub:
            out += b"\x00" + row.tobytes()
    return bytes(out)


def pil_body(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("flavour", ["palette", "grey", "grey+alpha", "rgb16", "interlaced", "tRNS"])
def test_other_flavours_take_the_fallback(flavour):
    img = textured(3)
    if flavour == "palette":
        pil = Image.fromarray(img).quantize(64)
        body, expected = pil_body(pil), np.asarray(pil.convert("RGB"))
    elif flavour == "grey":
        body, expected = pil_body(Image.fromarray(img[..., 0])), np.repeat(img[..., :1], 3, axis=2)
    elif flavour == "grey+alpha":
        body, expected = pil_body(Image.fromarray(img[..., :2], "LA")), np.repeat(img[..., :1], 3, axis=2)
    elif flavour == "rgb16":
        _, buf = cv2.imencode(".png", cv2.cvtColor(img.astype(np.uint16) * 257, cv2.COLOR_RGB2BGR))
        body, expected = buf.tobytes(), img
    elif flavour == "interlaced":
        body, expected = make_png(zlib.compress(adam7(img)), ihdr(interlace=1)), img
    else:  # an RGB colour key: left to the general decoders, as before
        body = make_png(zlib.compress(filter_rows(img, [0] * 256)), extra=[chunk(b"tRNS", bytes(6))])
        expected = img
    assert decode_png_rgb8(body) is None
    rgb, _ = decode_tile(body)
    if flavour != "grey+alpha":  # (how LA is expanded is the fallback's business)
        assert np.array_equal(rgb, expected)


def test_wrong_size_is_refused_as_before():
    img = np.tile(textured(3), (1, 2, 1))
    body = make_png(zlib.compress(filter_rows(img, [1] * 256)), ihdr(width=512))
    assert decode_png_rgb8(body) is None
    with pytest.raises(TileDecodeError, match="512x256"):
        decode_tile(body)


# ------------------------------------------------------------------------------------------- damage
def good_raw() -> bytes:
    return filter_rows(textured(3), [y % 5 for y in range(256)])


def bad_zlib() -> bytes:
    z = bytearray(zlib.compress(good_raw()))
    z[len(z) // 2] ^= 0x55
    return bytes(z)


def bad_adler() -> bytes:
    z = zlib.compress(good_raw())
    return z[:-1] + bytes([z[-1] ^ 1])


def bad_filter() -> bytes:
    raw = bytearray(good_raw())
    raw[769 * 100] = 5
    return zlib.compress(bytes(raw))


DAMAGE = {
    "bad CRC": lambda b: b[:500] + bytes([b[500] ^ 1]) + b[501:],
    "truncated (cut)": lambda b: b[:-30],
    "truncated (middle gone)": lambda b: b[:100] + b[-12:],
    "no IEND": lambda b: b[:-12],
    "bad zlib stream": lambda b: make_png(bad_zlib(), idat_chunks=2),
    "bad Adler-32": lambda b: make_png(bad_adler()),
    "not enough image data": lambda b: make_png(zlib.compress(good_raw()[:-769])),
    "bad filter type": lambda b: make_png(bad_filter()),
}
REASON = {
    "bad CRC": "bad CRC",
    "bad zlib stream": "damaged PNG",
    "bad Adler-32": "damaged PNG",
    "bad filter type": "bad row filter",
    "not enough image data": "not enough image data",
}


@pytest.mark.parametrize("inflate", ["default", "zlib"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_bodies_are_refused(damage, inflate, monkeypatch):
    if inflate == "zlib":
        monkeypatch.setattr(png_decode, "_libdeflate_inflate", None)
    body = DAMAGE[damage](make_png(zlib.compress(good_raw())))
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED) is None  # libpng refuses it too
    with pytest.raises(PNGDamaged):
        decode_png_rgb8(body)
    with pytest.raises(TileDecodeError):
        decode_tile(body)
    result = body_to_result(body)
    assert not result.ok and REASON.get(damage, "truncated PNG") in result.missing


def test_zlib_fallback_decodes_the_same(monkeypatch):
    bodies = [encode_png(textured(3, s)) for s in range(3)] + [encode_png(textured(3), textured(4)[..., 3] > 0)]
    with_libdeflate = [decode_png_rgb8(b) for b in bodies]
    monkeypatch.setattr(png_decode, "_libdeflate_inflate", None)
    for body, (rgb, valid) in zip(bodies, with_libdeflate, strict=True):
        rgb2, valid2 = decode_png_rgb8(body)
        assert np.array_equal(rgb, rgb2) and (valid is None) == (valid2 is None)
        assert valid is None or np.array_equal(valid, valid2)


def test_threads_decode_the_same():
    bodies = [encode_png(textured(3, s)) for s in range(12)]
    serial = [decode_png_rgb8(b)[0] for b in bodies]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda b: decode_png_rgb8(b)[0], bodies * 4))
    for i, rgb in enumerate(threaded):
        assert np.array_equal(rgb, serial[i % len(bodies)])
