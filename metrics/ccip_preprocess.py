"""Image loading and CCIP input preprocessing, matching the published dghs-imgutils pipeline.

CCIP (Contrastive anime Character Image Pre-training, deepghs) scores are only comparable with
published numbers when images reach the ONNX feature model exactly as ``imgutils`` prepares
them (``imgutils.data.image.load_image(..., mode="RGB", force_background="white")`` followed by
``imgutils.metrics.ccip._preprocess_image``):

1. An image with an alpha channel -- mode RGBA, LA or PA, or a ``transparency`` entry in its
   info -- is pasted onto a white RGBA canvas using itself as the paste mask.  Pillow refuses
   some masks (palette and RGB images raise ``ValueError: bad transparency mask``); the library
   then converts the image as it is, so a transparent palette colour keeps its RGB value.
2. The image is converted to RGB and resized to 384x384 with bilinear resampling (stretched,
   no crop).
3. Pixels are scaled to [0, 1] and normalised with the CLIP mean and standard deviation
   (Radford et al. 2021), channels first (NCHW).

The library also asks a palette image's palette for a transparent colour; that never changes
the outcome (a palette image is refused as a mask either way), so it is not repeated here.

Steps 2 and 3 run in the compiled ``metrics._ccip_resample`` (built with the package): the same
integers as Pillow's bilinear resize (Pillow 12.3's algorithm and pass order;
``tests/metrics/test_ccip_resample.py`` compares it with the installed Pillow, so a Pillow release
that resizes differently fails there), several times faster, written straight into the
normalised float32 planes through :data:`_LOOKUP`. :func:`preprocess_ccip_pillow` computes
the same numbers with Pillow's resize and a numpy lookup, as imgutils does: the reference.

Most generated images are plain 8-bit RGB PNGs; :func:`plain_rgb_png` recognises those whose
every chunk Pillow reads without error and inflates their image data with zlib, and the compiled
module unfilters it row by row straight into the resize (``resample_png``): the pixels Pillow's
decoder would store, without Pillow's per-row decoding and its full RGBX copy of the image, at
about 0.6x the CPU of Pillow's open + load.  Every other file goes through Pillow
(``tests/metrics/test_ccip_png.py`` checks both sides of that line).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from metrics.compiled import compiled

_ccip_resample = compiled("_ccip_resample")

__all__ = [
    "CCIP_INPUT_SIZE",
    "CCIP_MEAN",
    "CCIP_STD",
    "ImageFailure",
    "has_alpha",
    "load_rgb",
    "plain_rgb_png",
    "preprocess_ccip",
    "preprocess_ccip_pillow",
    "unreadable_reason",
]

CCIP_INPUT_SIZE = 384
CCIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CCIP_STD = (0.26862954, 0.26130258, 0.27577711)

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA"})


def _build_lookup() -> np.ndarray:
    """Per-channel table from an 8-bit value to its normalised float32 input value.

    Computed with the same numpy operations and dtypes as imgutils (float32 division by 255,
    then float64 mean/std, then a cast to float32), so indexing the table reproduces the
    library's numbers bit for bit while costing one gather per pixel.
    """
    levels = np.arange(256, dtype=np.uint8).astype(np.float32) / 255.0
    mean = np.asarray(CCIP_MEAN)[:, None]
    std = np.asarray(CCIP_STD)[:, None]
    return ((levels[None, :] - mean) / std).astype(np.float32)


_LOOKUP = _build_lookup()


@dataclass(frozen=True)
class ImageFailure:
    """An image that could not be read or decoded, with the reason, so callers can list it."""

    name: str
    reason: str


def unreadable_reason(exc: BaseException) -> str:
    """One line saying why an image could not be loaded, for reports of skipped files."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image file Pillow can read"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else "could not be decoded"
    return f"{type(exc).__name__}: {message}"


def has_alpha(image: Image.Image) -> bool:
    """Whether imgutils treats ``image`` as having transparency (mode or ``transparency`` info)."""
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def load_rgb(source: str | Path | bytes | Image.Image) -> Image.Image:
    """Open ``source`` (path, encoded bytes or a Pillow image) as RGB, flattening alpha on white.

    Raises whatever Pillow raises for an unreadable file (``PIL.UnidentifiedImageError``,
    ``OSError``, ``ValueError``...); callers that skip bad files catch those.
    """
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, bytes | bytearray):
        image = Image.open(io.BytesIO(source))
    else:
        image = Image.open(source)
    if has_alpha(image):
        try:
            canvas = Image.new("RGBA", image.size, "white")
            canvas.paste(image, (0, 0), mask=image)
            image = canvas
        except ValueError:
            pass  # Pillow refuses this image as a mask; imgutils then converts it unchanged
    if image.mode != "RGB":
        image = image.convert("RGB")
    else:
        image.load()  # force decoding here so a truncated file fails inside the caller's try
    return image


def preprocess_ccip(
    source: str | Path | bytes | Image.Image, out: np.ndarray | None = None
) -> np.ndarray:
    """Return the CCIP feature-model input for one image: float32 ``[3, 384, 384]``.

    When ``out`` is given (a C-contiguous float32 ``[3, 384, 384]`` view, e.g. one row of a
    batch buffer) the result is written there and ``out`` is returned, so batches need no extra
    copy.
    """
    if out is None:
        out = np.empty((3, CCIP_INPUT_SIZE, CCIP_INPUT_SIZE), dtype=np.float32)
    if isinstance(source, str | Path):
        source = Path(source).read_bytes()
    if isinstance(source, bytes) and (png := plain_rgb_png(source)) is not None:
        width, height, scanlines = png
        try:
            _ccip_resample.resample_png(scanlines, width, height, _LOOKUP, out)
            return out
        except ValueError:
            pass  # an unknown filter type: Pillow decides what the file is
    image = load_rgb(source)
    try:
        pixels: object = image.__arrow_c_array__()  # Pillow's own pixel memory, no copy
    except ValueError:  # an image larger than one Pillow memory block: a packed RGB copy
        pixels = np.asarray(image)
    _ccip_resample.resample_rgb(pixels, image.width, image.height, _LOOKUP, out)
    return out


# Chunks a plain PNG may carry that Pillow reads without any way to fail, at these lengths
# (None: any length); a file with any other chunk is left to Pillow.
_PLAIN_CHUNKS = {b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9, b"tIME": 7, b"tEXt": None}
_MAX_TEXT = 1 << 20  # far below Pillow's own text limit (PngImagePlugin.MAX_TEXT_MEMORY)
# Pillow stores a tEXt keyword in ``image.info``, where its PNG plugin also keeps what it reads
# back while decoding ("interlace" switches to Adam7, "bbox" sets the extent, "transparency"
# turns on alpha handling): text under any name the plugin uses leaves the file to Pillow.
_PILLOW_INFO_KEYS = frozenset(
    b"interlace bbox transparency default_image gamma chromaticity srgb dpi aspect icc_profile"
    b" exif xmp loop duration disposal blend".split()
)


def plain_rgb_png(data: bytes) -> tuple[int, int, bytes] | None:
    """``(width, height, scanlines)`` of a well-formed 8-bit RGB, non-interlaced PNG -- the most
    common file a generator writes -- else None.

    ``scanlines`` is the inflated image data: per row a filter type, then 3 bytes a pixel.  The
    CRCs Pillow checks (of the chunks before the image data), the zlib stream (with its
    checksum) and the data length are checked, and only files whose every chunk is on a short
    list that Pillow reads without error qualify, so for each such file Pillow would decode
    exactly these pixels; anything else (alpha or ``tRNS``, palettes, other depths, interlacing,
    animation, damage, unusual chunks, text under a name Pillow's PNG plugin reads back from
    ``image.info``, images over ``Image.MAX_IMAGE_PIXELS``) returns None and goes through Pillow.
    """
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    view = memoryview(data)  # chunk bodies as views: the image data is copied once, by join
    pos, size, idat, text, header = 8, len(data), [], 0, None
    last = b""
    while pos + 12 <= size:
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length
        if end + 4 > size:
            return None
        body = view[pos + 8 : end]
        # Pillow checks the CRCs of the chunks before the image data only, and so does this.
        checked = not idat and kind != b"IDAT"
        if checked and zlib.crc32(body, zlib.crc32(kind)) != int.from_bytes(data[end : end + 4]):
            return None
        if header is None:
            if kind != b"IHDR" or length != 13:
                return None
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            if idat and last != b"IDAT":
                return None  # image data split by another chunk
            idat.append(body)
        elif kind == b"IEND":
            break
        elif kind not in _PLAIN_CHUNKS or _PLAIN_CHUNKS[kind] not in (None, length):
            return None
        elif kind == b"tEXt":
            if bytes(body).split(b"\0", 1)[0] in _PILLOW_INFO_KEYS:
                return None
            text += length
        last, pos = kind, end + 4
    else:
        return None  # no IEND
    if header is None or not idat or text > min(_MAX_TEXT, PngImagePlugin.MAX_TEXT_MEMORY):
        return None
    width, height, depth, colour, compression, filtering, interlace = header
    if (depth, colour, compression, filtering, interlace) != (8, 2, 0, 0, 0):
        return None
    if not 0 < width * height <= (Image.MAX_IMAGE_PIXELS or 1 << 62) or width >= 1 << 29:
        return None
    expected = height * (3 * width + 1)
    try:
        scanlines = zlib.decompress(b"".join(idat), bufsize=expected)
    except zlib.error:
        return None
    return (width, height, scanlines) if len(scanlines) == expected else None


def preprocess_ccip_pillow(source: str | Path | bytes | Image.Image) -> np.ndarray:
    """:func:`preprocess_ccip` the way imgutils computes it: Pillow's ``resize`` to an 8-bit
    image, then the normalisation -- the same numbers, slower; the reference the compiled resize
    is tested against and the published library's cost in benchmarks."""
    out = np.empty((3, CCIP_INPUT_SIZE, CCIP_INPUT_SIZE), dtype=np.float32)
    return _resize_with_pillow(load_rgb(source), out)


def _resize_with_pillow(image: Image.Image, out: np.ndarray) -> np.ndarray:
    resized = image.resize((CCIP_INPUT_SIZE, CCIP_INPUT_SIZE), resample=Image.Resampling.BILINEAR)
    pixels = np.asarray(resized, dtype=np.uint8)  # [H, W, 3]
    for channel in range(3):
        np.take(_LOOKUP[channel], pixels[:, :, channel], out=out[channel])
    return out
