"""A1111-style ``parameters`` text: how an image was made, stored inside its PNG.

The format is the one the AUTOMATIC1111 web UI writes and most tools read: the prompt, a
``Negative prompt:`` line, then one line of ``Key: value`` pairs separated by commas, with
a value quoted as a JSON string when it holds a comma, colon or quote. ``format_parameters``
writes it, ``parse_parameters`` reads it back (also the web UI's newer ``Sampler: DPM++ 2M,
Schedule type: Karras`` spelling), ``png_bytes`` and ``read_parameters`` put it in and take
it out of a PNG ``tEXt``/``iTXt`` chunk named ``parameters``.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from generation.errors import GenerationError

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "ImageParameters",
    "format_parameters",
    "parse_parameters",
    "png_bytes",
    "read_parameters",
]

_NEGATIVE = "Negative prompt:"
# One "Key: value" pair; a value is a JSON string or runs to the next comma.
_PAIR = re.compile(r'\s*([\w][\w \-/+.()]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


@dataclass(frozen=True)
class ImageParameters:
    """The recorded generation parameters of one image.

    ``width``/``height`` are the first pass's size, as the web UI records it;
    ``hires_upscale``, ``hires_steps`` and ``denoising_strength`` describe a second pass;
    ``batch_size`` and ``batch_pos`` (the web UI's ``Batch size: N, Batch pos: i``) say that
    the image was rendered in one call with others, and where (``None`` when alone).
    """

    prompt: str
    negative_prompt: str
    steps: int
    sampler: str
    cfg: float
    seed: int
    width: int
    height: int
    model_hash: str
    model_name: str
    denoising_strength: float | None = None
    hires_upscale: float | None = None
    hires_steps: int | None = None
    batch_size: int | None = None
    batch_pos: int | None = None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _value(text: str) -> str:
    return json.dumps(text, ensure_ascii=False) if re.search(r'[,:"\n]', text) else text


def format_parameters(p: ImageParameters) -> str:
    """The A1111 ``parameters`` text for ``p``."""
    pairs = [
        ("Steps", str(p.steps)),
        ("Sampler", _value(p.sampler)),
        ("CFG scale", _number(p.cfg)),
        ("Seed", str(p.seed)),
        ("Size", f"{p.width}x{p.height}"),
        ("Model hash", _value(p.model_hash)),
        ("Model", _value(p.model_name)),
    ]
    if p.denoising_strength is not None:
        pairs.append(("Denoising strength", _number(p.denoising_strength)))
    if p.hires_upscale is not None:
        pairs.append(("Hires upscale", _number(p.hires_upscale)))
    if p.hires_steps is not None:
        pairs.append(("Hires steps", str(p.hires_steps)))
    if p.batch_size is not None:
        pairs.append(("Batch size", str(p.batch_size)))
    if p.batch_pos is not None:
        pairs.append(("Batch pos", str(p.batch_pos)))
    lines = [p.prompt]
    if p.negative_prompt:
        lines.append(f"{_NEGATIVE} {p.negative_prompt}")
    lines.append(", ".join(f"{k}: {v}" for k, v in pairs))
    return "\n".join(lines)


def _pairs(line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(line):
        m = _PAIR.match(line, pos)
        if m is None or m.end() == pos:
            break
        key, raw = m[1].strip(), m[2].strip()
        out[key] = json.loads(raw) if raw.startswith('"') else raw
        pos = m.end()
    return out


def parse_parameters(text: str) -> ImageParameters:
    """Read A1111 ``parameters`` text back into ``ImageParameters``."""
    lines = text.split("\n")
    pairs = _pairs(lines[-1])
    required = ("Steps", "Sampler", "CFG scale", "Seed", "Size")
    missing = [k for k in required if k not in pairs]
    if missing:
        raise GenerationError(
            f"parameters text: expected a last line with {', '.join(required)}; missing "
            f"{', '.join(missing)}"
        )
    body = lines[:-1]
    neg_at = next((i for i, line in enumerate(body) if line.startswith(_NEGATIVE)), len(body))
    prompt = "\n".join(body[:neg_at])
    negative = "\n".join(body[neg_at:])[len(_NEGATIVE) :].strip() if neg_at < len(body) else ""
    sampler = pairs["Sampler"]
    schedule = pairs.get("Schedule type")
    if schedule and schedule.lower() != "automatic" and not sampler.endswith(schedule):
        sampler = f"{sampler} {schedule}"
    try:
        width, height = (int(v) for v in pairs["Size"].split("x"))
        return ImageParameters(
            prompt=prompt,
            negative_prompt=negative,
            steps=int(pairs["Steps"]),
            sampler=sampler,
            cfg=float(pairs["CFG scale"]),
            seed=int(pairs["Seed"]),
            width=width,
            height=height,
            model_hash=pairs.get("Model hash", ""),
            model_name=pairs.get("Model", ""),
            denoising_strength=_float_or_none(pairs.get("Denoising strength")),
            hires_upscale=_float_or_none(pairs.get("Hires upscale")),
            hires_steps=_int_or_none(pairs.get("Hires steps")),
            batch_size=_int_or_none(pairs.get("Batch size")),
            batch_pos=_int_or_none(pairs.get("Batch pos")),
        )
    except ValueError as exc:
        raise GenerationError(f"parameters text: a value is not a number ({exc})") from exc


def _float_or_none(value: str | None) -> float | None:
    return None if value is None else float(value)


def _int_or_none(value: str | None) -> int | None:
    return None if value is None else int(value)


def png_bytes(image: Image, params: ImageParameters) -> bytes:
    """Encode ``image`` as PNG bytes carrying ``params`` as its ``parameters`` text."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", format_parameters(params))  # iTXt if not Latin-1
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def read_parameters(path: Path) -> ImageParameters:
    """The ``parameters`` recorded in the PNG at ``path``."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as im:
            text = im.info.get("parameters")
    except (OSError, ValueError) as exc:
        raise GenerationError(f"image {path} could not be read as a PNG ({exc})") from exc
    if not isinstance(text, str):
        raise GenerationError(f"image {path} has no 'parameters' text")
    return parse_parameters(text)
