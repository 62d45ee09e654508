"""CCIP preprocessing against values computed by hand from the dghs-imgutils rules.

The rules (imgutils.data.image.load_image with force_background="white", then
imgutils.metrics.ccip._preprocess_image): alpha images are pasted on white using themselves as
the mask, Pillow-refused masks (palette, RGB) are converted unchanged, then RGB, 384x384
bilinear stretch, /255, CLIP mean/std, channels first.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from metrics.ccip_preprocess import CCIP_MEAN, CCIP_STD, load_rgb, preprocess_ccip

MEAN = np.array(CCIP_MEAN)
STD = np.array(CCIP_STD)
# One 8-bit level after normalisation; Pillow's integer blending may round either way.
ONE_LEVEL = 1 / 255 / STD.min() + 1e-6


def expected_solid(rgb: tuple[float, float, float]) -> np.ndarray:
    """The normalised value of a solid colour, per channel, as a [3] vector."""
    return (np.array(rgb, dtype=np.float64) / 255 - MEAN) / STD


def on_white(value: float, alpha: float) -> float:
    """Alpha compositing over white: value * a + 255 * (1 - a), with a = alpha / 255."""
    return value * alpha / 255 + 255 * (1 - alpha / 255)


def assert_solid(out: np.ndarray, rgb: tuple[float, float, float], tol: float = ONE_LEVEL) -> None:
    assert out.shape == (3, 384, 384)
    assert out.dtype == np.float32
    want = expected_solid(rgb)
    for c in range(3):
        assert np.abs(out[c] - want[c]).max() <= tol, (c, out[c].min(), out[c].max(), want[c])


def palette_image(mode: str) -> Image.Image:
    image = Image.new(mode, (33, 17))
    image.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * (256 * 3 - 12))
    return image


def test_rgb_odd_size_is_stretched_and_normalised_exactly() -> None:
    out = preprocess_ccip(Image.new("RGB", (37, 91), (200, 100, 50)))
    assert_solid(out, (200, 100, 50), tol=1e-6)


def test_rgba_is_composited_on_white() -> None:
    out = preprocess_ccip(Image.new("RGBA", (50, 31), (200, 100, 50, 128)))
    assert_solid(out, (on_white(200, 128), on_white(100, 128), on_white(50, 128)))


def test_fully_transparent_region_becomes_white_and_opaque_region_keeps_colour() -> None:
    pixels = np.zeros((384, 768, 4), np.uint8)
    pixels[:, :384] = (10, 20, 30, 0)  # left half: invisible colour
    pixels[:, 384:] = (10, 20, 30, 255)  # right half: opaque colour
    out = preprocess_ccip(Image.fromarray(pixels, "RGBA"))
    white, colour = expected_solid((255, 255, 255)), expected_solid((10, 20, 30))
    np.testing.assert_allclose(
        out[:, :, :150], np.broadcast_to(white[:, None, None], (3, 384, 150)), atol=1e-6
    )
    np.testing.assert_allclose(
        out[:, :, -150:], np.broadcast_to(colour[:, None, None], (3, 384, 150)), atol=1e-6
    )


def test_la_is_composited_on_white_as_grey() -> None:
    out = preprocess_ccip(Image.new("LA", (20, 21), (100, 128)))
    grey = on_white(100, 128)
    assert_solid(out, (grey, grey, grey))


def test_grayscale_is_replicated_to_three_channels() -> None:
    assert_solid(preprocess_ccip(Image.new("L", (7, 5), 77)), (77, 77, 77), tol=1e-6)


def test_grayscale_with_transparency_entry_uses_its_own_levels_as_mask() -> None:
    # imgutils pastes the image with itself as mask; for mode L the grey level is the mask.
    image = Image.new("L", (9, 9), 100)
    image.info["transparency"] = 5
    grey = on_white(100, 100)
    assert_solid(preprocess_ccip(image), (grey, grey, grey))


def test_palette_without_transparency_uses_palette_colour() -> None:
    image = palette_image("P")
    image.paste(3, (0, 0, 33, 17))
    assert_solid(preprocess_ccip(image), (70, 80, 90), tol=1e-6)


def test_palette_with_transparency_is_converted_as_is() -> None:
    # Pillow refuses a palette image as a paste mask, so the transparent index keeps its colour.
    image = palette_image("P")
    image.paste(3, (0, 0, 33, 17))
    image.info["transparency"] = 3
    assert_solid(preprocess_ccip(image), (70, 80, 90), tol=1e-6)


def test_pa_is_converted_as_is_dropping_alpha() -> None:
    image = palette_image("PA")
    image.putdata([(2, 128)] * (33 * 17))
    assert_solid(preprocess_ccip(image), (40, 50, 60), tol=1e-6)


def test_rgb_with_transparency_entry_is_unchanged() -> None:
    image = Image.new("RGB", (13, 13), (1, 2, 3))
    image.info["transparency"] = (1, 2, 3)
    assert_solid(preprocess_ccip(image), (1, 2, 3), tol=1e-6)


@pytest.mark.parametrize("mode", ["RGBA", "P"])
def test_png_files_with_alpha_load_like_in_memory_images(tmp_path, mode: str) -> None:
    if mode == "RGBA":
        image = Image.new("RGBA", (41, 23), (200, 100, 50, 64))
    else:
        image = palette_image("P")
        image.paste(1, (0, 0, 20, 17))
        image.paste(2, (20, 0, 33, 17))
        image.info["transparency"] = 1
    path = tmp_path / "image.png"
    image.save(path)
    from_disk = preprocess_ccip(path)
    from_bytes = preprocess_ccip(path.read_bytes())
    reopened = Image.open(io.BytesIO(path.read_bytes()))
    assert reopened.mode == mode and (mode == "RGBA" or "transparency" in reopened.info)
    np.testing.assert_array_equal(from_disk, from_bytes)
    np.testing.assert_array_equal(from_disk, preprocess_ccip(reopened))


def test_matches_the_library_arithmetic_bit_for_bit_on_noise() -> None:
    # imgutils: np.array(img).transpose(2,0,1).astype(float32) / 255.0, then float64 mean/std.
    rng = np.random.default_rng(7)
    image = Image.fromarray(rng.integers(0, 256, (211, 157, 3), dtype=np.uint8))
    resized = np.array(image.resize((384, 384), resample=Image.Resampling.BILINEAR))
    data = resized.transpose(2, 0, 1).astype(np.float32) / 255.0
    want = ((data - MEAN[:, None, None]) / STD[:, None, None]).astype(np.float32)
    np.testing.assert_array_equal(preprocess_ccip(image), want)


def test_writes_into_a_given_buffer_row() -> None:
    batch = np.zeros((2, 3, 384, 384), np.float32)
    result = preprocess_ccip(Image.new("RGB", (5, 5), (9, 9, 9)), out=batch[1])
    assert result.base is batch or np.shares_memory(result, batch)
    assert_solid(batch[1], (9, 9, 9), tol=1e-6)
    assert not batch[0].any()


def test_truncated_file_raises(tmp_path) -> None:
    path = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(OSError):
        load_rgb(path)
