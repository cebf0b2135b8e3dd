import cv2
import numpy as np
import pytest

from mapper.imagery.decode import TileDecodeError, body_to_result, decode_tile, encode_jpeg, encode_png, is_blank

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 255, (256, 256, 3), np.uint8)


def test_png_round_trip_and_alpha():
    rgb, valid = decode_tile(encode_png(RGB))
    assert np.array_equal(rgb, RGB) and valid is None
    mask = np.ones((256, 256), bool)
    mask[:40] = False
    rgb, valid = decode_tile(encode_png(RGB, mask))
    assert np.array_equal(valid, mask) and np.array_equal(rgb[mask], RGB[mask])


def test_fast_png_path_matches_opencv():
    body = encode_png(RGB)
    ours, _ = decode_tile(body)
    ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(ours, ref)


@pytest.mark.parametrize("flavour", ["grey", "palette"])
def test_other_png_flavours_fall_back(flavour, tmp_path):
    from PIL import Image

    img = Image.fromarray(RGB[..., 0]) if flavour == "grey" else Image.fromarray(RGB).quantize(16)
    path = tmp_path / "t.png"
    img.save(path)
    rgb, _ = decode_tile(path.read_bytes())
    expected = np.asarray(img.convert("RGB"))
    assert np.array_equal(rgb, expected)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b[:-30], "truncated PNG"),
        (lambda b: b[:100] + b[-12:], "truncated PNG"),
        (lambda b: b[:500] + bytes([b[500] ^ 1]) + b[501:], "bad CRC"),
        (lambda b: b"<html><body>rate limited</body></html>", "HTML"),
        (lambda b: b"", "empty"),
    ],
)
def test_damaged_png_is_never_imagery(damage, reason):
    result = body_to_result(damage(encode_png(RGB)))
    assert not result.ok and reason in result.missing
    with pytest.raises(TileDecodeError):
        decode_tile(damage(encode_png(RGB)) or b"x")


def test_truncated_jpeg_and_blank_tiles():
    assert "truncated JPEG" in body_to_result(encode_jpeg(RGB)[:-200]).missing
    assert "blank" in body_to_result(encode_png(np.full_like(RGB, 200))).missing
    nearly = np.full_like(RGB, 200)
    nearly[255, 255] = 0
    assert not is_blank(nearly) and is_blank(np.full_like(RGB, 7))
