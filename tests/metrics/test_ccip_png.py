"""The plain-PNG path of CCIP preprocessing against Pillow's PNG decoder, pixel for pixel.

An 8-bit RGB, non-interlaced PNG whose chunks are all on a short list is inflated by zlib and
unfiltered by ``metrics._ccip_resample`` row by row into the resize, without Pillow
(:func:`metrics.ccip_preprocess.plain_rgb_png`).  These tests write PNGs with every filter
type (a small encoder below, checked against Pillow's decoder first) and with Pillow's own
encoder, and compare the result with the Pillow route bit for bit, on the AVX2 and the scalar
path; every other file -- other modes, damage, unusual chunks, oversized images -- must not
take this path and must end exactly as Pillow ends it (the same values or the same error).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from metrics import _ccip_resample
from metrics.ccip_preprocess import _LOOKUP, plain_rgb_png, preprocess_ccip, preprocess_ccip_pillow


def chunk(kind: bytes, body: bytes, *, crc: int | None = None) -> bytes:
    value = zlib.crc32(body, zlib.crc32(kind)) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", value)


def _predictor(kind: int, left: np.ndarray, up: np.ndarray, corner: np.ndarray) -> np.ndarray:
    a, b, c = (v.astype(np.int32) for v in (left, up, corner))
    if kind == 0:
        return np.zeros_like(a)
    if kind == 1:
        return a
    if kind == 2:
        return b
    if kind == 3:
        return (a + b) // 2
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def scanlines(pixels: np.ndarray, filters: Sequence[int]) -> bytes:
    """PNG image data of ``pixels`` ([h, w, 3] uint8), row y filtered with ``filters[y % n]``."""
    height, width, _ = pixels.shape
    flat = pixels.reshape(height, width * 3).astype(np.int32)
    zero = np.zeros(width * 3, np.int32)
    out = bytearray()
    for y in range(height):
        row, up = flat[y], flat[y - 1] if y else zero
        left = np.concatenate([[0, 0, 0], row[:-3]])
        corner = np.concatenate([[0, 0, 0], up[:-3]])
        kind = filters[y % len(filters)]
        out.append(kind)
        out += ((row - _predictor(kind, left, up, corner)) % 256).astype(np.uint8).tobytes()
    return bytes(out)


def encode(
    pixels: np.ndarray,
    filters: Sequence[int] = (0, 1, 2, 3, 4),
    *,
    before: Sequence[bytes] = (),
    after: Sequence[bytes] = (),
    idat_parts: int = 3,
    header: tuple[int, int, int, int, int] = (8, 2, 0, 0, 0),
    data: bytes | None = None,
) -> bytes:
    """A PNG file: IHDR, ``before`` chunks, the image data in ``idat_parts`` IDAT chunks,
    ``after`` chunks, IEND."""
    height, width, _ = pixels.shape
    stream = zlib.compress(scanlines(pixels, filters) if data is None else data, 6)
    step = -(-len(stream) // idat_parts)
    parts = [stream[i : i + step] for i in range(0, len(stream), step)]
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", struct.pack(">II", width, height) + bytes(header)),
            *before,
            *(chunk(b"IDAT", part) for part in parts),
            *after,
            chunk(b"IEND", b""),
        ]
    )


def picture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Noise over gradients: every filter type meets carries, wraps and ties."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 7 + y, y * 5 + 3 * x, (x ^ y) * 3], axis=-1)
    return ((base + rng.integers(0, 24, (height, width, 3))) % 256).astype(np.uint8)


def planes(pixels: np.ndarray) -> np.ndarray:
    """The CCIP input of a 384x384 image: its pixels through the table, no resize."""
    return np.stack([_LOOKUP[c][pixels[:, :, c]] for c in range(3)])


def pillow_png(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


@pytest.mark.parametrize("filters", [(0,), (1,), (2,), (3,), (4,), (4, 2, 0, 3, 1)])
def test_each_filter_type_gives_pillows_pixels(simd: bool, filters: tuple[int, ...]) -> None:
    pixels = picture(384, 384, seed=len(filters) + filters[0])
    data = encode(pixels, filters)
    decoded = np.asarray(Image.open(io.BytesIO(data)))
    np.testing.assert_array_equal(decoded, pixels)  # the encoder above is a valid PNG writer
    assert plain_rgb_png(data) is not None
    np.testing.assert_array_equal(preprocess_ccip(data), planes(pixels))


SIZES = [(1, 1), (2, 3), (3, 2), (9, 1), (1, 9), (5, 7), (383, 385), (832, 1216), (4000, 3)]
SIZES += [(3, 4000)]  # > 100x taller than wide: the vertical pass runs first


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_pillow_written_files_take_the_fast_path_and_resize_alike(
    simd: bool, size: tuple[int, int]
) -> None:
    width, height = size
    for data in (
        pillow_png(Image.fromarray(picture(width, height, seed=width))),
        encode(picture(width, height, seed=height), (4, 3, 2, 1, 0)),
    ):
        assert plain_rgb_png(data) is not None
        np.testing.assert_array_equal(preprocess_ccip(data), preprocess_ccip_pillow(data))


def test_listed_chunks_keep_the_fast_path(simd: bool) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "1girl, solo, masterpiece" * 50)
    data = pillow_png(Image.fromarray(picture(200, 120)), pnginfo=info, dpi=(72, 72))
    assert b"tEXt" in data and b"pHYs" in data
    more = [chunk(b"gAMA", struct.pack(">I", 45455)), chunk(b"sRGB", b"\0")]
    more += [chunk(b"cHRM", bytes(32)), chunk(b"tIME", bytes(7))]
    crafted = encode(picture(200, 120), before=more, after=[chunk(b"tEXt", b"k\0v")])
    for file in (data, crafted):
        assert plain_rgb_png(file) is not None
        np.testing.assert_array_equal(preprocess_ccip(file), preprocess_ccip_pillow(file))


def test_image_data_checksums_are_not_checked_as_pillow_does_not(simd: bool) -> None:
    pixels = picture(384, 384, seed=3)
    data = bytearray(encode(pixels, idat_parts=1))
    end = data.index(b"IEND") - 4 - 4  # the IDAT's CRC sits just before IEND's length
    data[end : end + 4] = b"\0\0\0\0"
    assert plain_rgb_png(bytes(data)) is not None
    np.testing.assert_array_equal(preprocess_ccip(bytes(data)), planes(pixels))
    np.testing.assert_array_equal(preprocess_ccip_pillow(bytes(data)), planes(pixels))


def outcome(preprocess: Callable[[bytes], np.ndarray], data: bytes) -> object:
    """The values, or the type of the error, that ``preprocess`` ends with."""
    try:
        return preprocess(data).tobytes()
    except Exception as exc:  # Pillow raises many types; the point is that both raise the same
        return type(exc)


def _rgb(seed: int = 1) -> np.ndarray:
    return picture(40, 30, seed=seed)


def _without_iend() -> bytes:
    data = encode(_rgb())
    return data[: data.index(b"IEND") - 4]


def _truncated() -> bytes:
    data = encode(_rgb())
    return data[: len(data) // 2]


def _corrupt_stream() -> bytes:
    stream = bytearray(zlib.compress(scanlines(_rgb(), (1,))))
    stream[len(stream) // 2] ^= 0xFF
    return encode(_rgb(), idat_parts=1)[:41] + chunk(b"IDAT", bytes(stream)) + chunk(b"IEND", b"")


def _split_image_data() -> bytes:
    data = encode(_rgb(), idat_parts=2)
    second = data.index(b"IDAT", data.index(b"IDAT") + 4) - 4
    return data[:second] + chunk(b"tEXt", b"a\0b") + data[second:]


OTHER_FILES: dict[str, Callable[[], bytes]] = {
    "RGBA": lambda: pillow_png(Image.fromarray(_rgb()).convert("RGBA")),
    "L": lambda: pillow_png(Image.fromarray(_rgb()).convert("L")),
    "P": lambda: pillow_png(Image.fromarray(_rgb()).convert("P")),
    "16-bit": lambda: pillow_png(Image.fromarray(_rgb()).convert("I;16")),
    "tRNS": lambda: pillow_png(Image.fromarray(_rgb()), transparency=(1, 2, 3)),
    "interlaced": lambda: encode(_rgb(), header=(8, 2, 0, 0, 1)),
    "compression method 1": lambda: encode(_rgb(), header=(8, 2, 1, 0, 0)),
    "filter method 1": lambda: encode(_rgb(), header=(8, 2, 0, 1, 0)),
    "bad header CRC": lambda: encode(_rgb(), before=[chunk(b"gAMA", bytes(4), crc=1)]),
    "short gAMA": lambda: encode(_rgb(), before=[chunk(b"gAMA", bytes(3))]),
    "iCCP": lambda: encode(_rgb(), before=[chunk(b"iCCP", b"p\0\0" + zlib.compress(b"x"))]),
    "zTXt": lambda: encode(_rgb(), after=[chunk(b"zTXt", b"k\0\0" + zlib.compress(b"v"))]),
    "private chunk": lambda: encode(_rgb(), before=[chunk(b"prVt", b"anything")]),
    "too much text": lambda: encode(_rgb(), after=[chunk(b"tEXt", b"k\0" + bytes(1 << 20))]),
    "no IEND": _without_iend,
    "truncated": _truncated,
    "corrupt stream": _corrupt_stream,
    "image data split": _split_image_data,
    "too little data": lambda: encode(_rgb(), data=scanlines(_rgb(), (0,))[:-1]),
    "too much data": lambda: encode(_rgb(), data=scanlines(_rgb(), (0,)) + b"\0"),
    "not a PNG": lambda: b"GIF89a" + bytes(40),
    # Text under a name Pillow's PNG plugin reads back from image.info while decoding:
    "text 'interlace'": lambda: encode(picture(2, 13), before=[chunk(b"tEXt", b"interlace\0x")]),
    "text 'bbox'": lambda: encode(_rgb(), before=[chunk(b"tEXt", b"bbox\0x")]),
    "text 'transparency'": lambda: encode(_rgb(), before=[chunk(b"tEXt", b"transparency")]),
}


@pytest.mark.parametrize("name", list(OTHER_FILES))
def test_other_files_end_as_pillow_ends_them(name: str) -> None:
    data = OTHER_FILES[name]()
    assert plain_rgb_png(data) is None
    assert outcome(preprocess_ccip, data) == outcome(preprocess_ccip_pillow, data)


def test_images_over_pillows_pixel_limit_go_through_pillow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encode(_rgb())  # 1,200 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert plain_rgb_png(data) is None
    with pytest.warns(Image.DecompressionBombWarning):
        preprocess_ccip(data)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(Image.DecompressionBombError):
        preprocess_ccip(data)


def test_an_unknown_filter_type_is_left_to_pillow(simd: bool) -> None:
    lines = bytearray(scanlines(_rgb(), (0,)))
    lines[5 * (3 * 40 + 1)] = 5  # row 5: no such filter
    data = encode(_rgb(), data=bytes(lines))
    width, height, inflated = plain_rgb_png(data)  # type: ignore[misc]
    out = np.empty((3, 384, 384), np.float32)
    with pytest.raises(ValueError, match="scanline 5: unknown PNG filter type 5"):
        _ccip_resample.resample_png(inflated, width, height, _LOOKUP, out)
    assert outcome(preprocess_ccip, data) == outcome(preprocess_ccip_pillow, data)
    assert isinstance(outcome(preprocess_ccip, data), type)  # Pillow refuses the file


def test_resample_png_rejects_a_wrong_length() -> None:
    out = np.empty((3, 384, 384), np.float32)
    with pytest.raises(ValueError, match=r"height \* \(3 \* width \+ 1\)"):
        _ccip_resample.resample_png(b"\0" * 29, 3, 3, _LOOKUP, out)
    with pytest.raises(ValueError, match="positive"):
        _ccip_resample.resample_png(b"", 0, 3, _LOOKUP, out)
