"""A1111 ``parameters`` text: written, read back, and carried inside a PNG."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from generation.errors import GenerationError
from generation.parameters import (
    ImageParameters,
    format_parameters,
    parse_parameters,
    png_bytes,
    read_parameters,
)
from generation.samplers import SAMPLERS

# Prompt text as users write it: any characters but line breaks, not starting a field line.
_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=80
).map(str.strip)
_name = (
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
        min_size=1,
        max_size=30,
    )
    .map(str.strip)
    .filter(bool)
)


@st.composite
def parameters(draw: st.DrawFn) -> ImageParameters:
    hires = draw(st.booleans())
    batch = draw(st.one_of(st.none(), st.integers(2, 64)))
    return ImageParameters(
        prompt=draw(_text),
        negative_prompt=draw(_text),
        steps=draw(st.integers(1, 150)),
        sampler=draw(st.sampled_from(list(SAMPLERS))),
        cfg=draw(st.floats(0, 30, allow_nan=False)),
        seed=draw(st.integers(0, 2**32 - 1)),
        width=draw(st.integers(8, 4096)),
        height=draw(st.integers(8, 4096)),
        model_hash=draw(st.text(alphabet="0123456789abcdef", min_size=10, max_size=10)),
        model_name=draw(_name),
        denoising_strength=draw(st.floats(0.01, 1)) if hires else None,
        hires_upscale=draw(st.floats(1, 4)) if hires else None,
        hires_steps=draw(st.one_of(st.none(), st.integers(1, 50))) if hires else None,
        batch_size=batch,
        batch_pos=draw(st.integers(0, batch - 1)) if batch else None,
    )


@given(parameters())
def test_format_then_parse_gives_the_same_parameters(params: ImageParameters) -> None:
    assert parse_parameters(format_parameters(params)) == params


def test_layout_is_the_web_ui_layout() -> None:
    params = ImageParameters(
        prompt="1girl, hatsune miku, general, masterpiece",
        negative_prompt="worst quality",
        steps=28,
        sampler="Euler a",
        cfg=6.0,
        seed=42,
        width=832,
        height=1216,
        model_hash="0123456789",
        model_name="illustrious, v0.1",
    )
    assert format_parameters(params).split("\n") == [
        "1girl, hatsune miku, general, masterpiece",
        "Negative prompt: worst quality",
        "Steps: 28, Sampler: Euler a, CFG scale: 6, Seed: 42, Size: 832x1216, "
        'Model hash: 0123456789, Model: "illustrious, v0.1"',
    ]


def test_batch_size_and_position_as_the_web_ui_writes_them() -> None:
    text = (
        "1girl\nSteps: 28, Sampler: Euler a, CFG scale: 6, Seed: 5, Size: 64x64, "
        "Model hash: 0123456789, Model: m, Batch size: 4, Batch pos: 2"
    )
    parsed = parse_parameters(text)
    assert (parsed.batch_size, parsed.batch_pos) == (4, 2)
    assert format_parameters(parsed) == text
    alone = parse_parameters(text.replace(", Batch size: 4, Batch pos: 2", ""))
    assert (alone.batch_size, alone.batch_pos) == (None, None)


def test_newer_web_ui_schedule_type_and_unknown_fields() -> None:
    text = (
        "1girl\nNegative prompt: bad\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, "
        "CFG scale: 7, Seed: 3, Size: 512x768, Model hash: abc, Model: m, Version: v1.10.1"
    )
    parsed = parse_parameters(text)
    assert (parsed.sampler, parsed.cfg, parsed.width, parsed.height) == (
        "DPM++ 2M Karras",
        7.0,
        512,
        768,
    )


def test_missing_fields_are_named() -> None:
    with pytest.raises(GenerationError, match="missing Seed, Size"):
        parse_parameters("a prompt\nSteps: 20, Sampler: Euler, CFG scale: 7")


def test_png_carries_the_text(tmp_path: Path) -> None:
    params = ImageParameters(
        "初音ミク, 1girl", "", 2, "Euler", 6.5, 7, 64, 64, "0a1b2c3d4e", "tiny"
    )
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(Image.new("RGB", (64, 64), "red"), params))
    assert read_parameters(path) == params


def test_png_without_parameters(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(GenerationError, match="has no 'parameters' text"):
        read_parameters(path)
