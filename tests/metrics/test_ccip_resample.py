"""The compiled CCIP resize against Pillow's own ``resize(BILINEAR)``, bit for bit.

``metrics._ccip_resample`` reimplements Pillow's fixed-point bilinear resampling (and its pass
order) and maps the result through the normalisation table; every test compares its float32
planes with Pillow's resized pixels looked up in the same table, for the AVX2 and the scalar
path, on sizes that exercise each branch: downscale, upscale, mixed, one-pixel rows and
columns, unchanged width or height, very tall images (Pillow resizes those vertically first),
and images too large for one Pillow memory block (passed as packed RGB bytes).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from metrics import _ccip_resample
from metrics.ccip_preprocess import _LOOKUP, preprocess_ccip, preprocess_ccip_pillow


def pillow_planes(image: Image.Image, width: int, height: int) -> np.ndarray:
    pixels = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
    return np.stack([_LOOKUP[c][pixels[:, :, c]] for c in range(3)])


def compiled_planes(image: Image.Image, width: int, height: int, *, packed: bool) -> np.ndarray:
    out = np.full((3, height, width), np.nan, np.float32)
    source = np.asarray(image) if packed else image.__arrow_c_array__()
    _ccip_resample.resample_rgb(source, image.width, image.height, _LOOKUP, out)
    return out


def noise(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def assert_same(image: Image.Image, width: int, height: int) -> None:
    want = pillow_planes(image, width, height)
    for packed in (False, True):
        got = compiled_planes(image, width, height, packed=packed)
        mismatched = np.argwhere(got != want)
        assert not len(mismatched), (image.size, (width, height), packed, mismatched[:5])


SIZES = [
    ((832, 1216), (384, 384)),  # a generated SDXL image
    ((1216, 832), (384, 384)),
    ((384, 384), (384, 384)),  # nothing to do
    ((384, 1000), (384, 384)),  # height only
    ((1000, 384), (384, 384)),  # width only
    ((1, 1), (384, 384)),
    ((1, 9), (384, 384)),  # one-pixel column: windows wider than the row
    ((9, 1), (384, 384)),
    ((2, 2), (3, 3)),
    ((3, 3), (2, 2)),
    ((5, 3), (3, 5)),
    ((1000, 1000), (1, 1)),
    ((4000, 3), (384, 384)),
    ((3, 4000), (384, 384)),  # > 100x taller than wide and shrinking: vertical pass first
    ((2, 300), (384, 384)),  # > 100x taller but growing: horizontal first
    ((3, 301), (384, 200)),
    ((100, 50), (384, 384)),
    ((383, 385), (384, 384)),
    ((2049, 7), (384, 384)),
]


@pytest.mark.parametrize(
    ("size", "out"), SIZES, ids=[f"{s[0]}x{s[1]}-{o[0]}x{o[1]}" for s, o in SIZES]
)
def test_matches_pillow_on_noise(simd: bool, size: tuple[int, int], out: tuple[int, int]) -> None:
    assert_same(noise(*size, seed=size[0] * 7919 + size[1]), *out)


@pytest.mark.parametrize("level", [0, 255])
def test_extreme_levels_stay_in_range(simd: bool, level: int) -> None:
    image = Image.new("RGB", (777, 555), (level, 255 - level, level))
    assert_same(image, 384, 384)


def test_sharp_edges_and_gradients(simd: bool) -> None:
    rng = np.random.default_rng(3)
    pixels = np.zeros((1216, 832, 3), np.uint8)
    pixels[:, ::2] = 255  # alternating columns: every weight matters
    pixels[::3, :, 1] = np.linspace(0, 255, 832, dtype=np.uint8)
    pixels[600:, 400:] = rng.integers(0, 256, (616, 432, 3), dtype=np.uint8)
    assert_same(Image.fromarray(pixels), 384, 384)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    out_width=st.integers(1, 300),
    out_height=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_pillow_on_random_sizes(
    simd: bool, width: int, height: int, out_width: int, out_height: int, seed: int
) -> None:
    assert_same(noise(width, height, seed), out_width, out_height)


def test_image_larger_than_one_pillow_block_goes_through_packed_bytes() -> None:
    image = noise(2400, 1900, seed=11)  # 18 MB of RGBX: more than Pillow's 16 MiB block
    with pytest.raises(ValueError):
        image.__arrow_c_array__()
    np.testing.assert_array_equal(preprocess_ccip(image), preprocess_ccip_pillow(image))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "L", "P", "PA", "I;16", "CMYK"])
def test_preprocess_equals_the_pillow_reference_for_every_mode(simd: bool, mode: str) -> None:
    rng = np.random.default_rng(5)
    rgba = Image.fromarray(rng.integers(0, 256, (517, 301, 4), dtype=np.uint8), "RGBA")
    image = rgba.convert(mode) if mode != "PA" else rgba.convert("P").convert("PA")
    got = preprocess_ccip(image)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, preprocess_ccip_pillow(image))


def test_rejects_wrong_buffers() -> None:
    image = noise(10, 10, seed=1)
    out = np.empty((3, 384, 384), np.float32)
    with pytest.raises(ValueError, match="height \\* width \\* 3"):
        _ccip_resample.resample_rgb(b"\0" * 299, 10, 10, _LOOKUP, out)
    with pytest.raises(ValueError, match="RGB image"):
        _ccip_resample.resample_rgb(image.__arrow_c_array__(), 10, 11, _LOOKUP, out)
    with pytest.raises(ValueError, match="lut"):
        _ccip_resample.resample_rgb(np.asarray(image), 10, 10, _LOOKUP[:2], out)
    with pytest.raises(ValueError, match="out"):
        _ccip_resample.resample_rgb(np.asarray(image), 10, 10, _LOOKUP, np.empty((3, 384, 384)))
    with pytest.raises((ValueError, BufferError)):
        _ccip_resample.resample_rgb(np.asarray(image), 10, 10, _LOOKUP, out[:, :, ::2])
