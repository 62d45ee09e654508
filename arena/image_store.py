"""The content-addressed image store: originals with their parameters, metadata-free copies.

Two files per image under ``ARENA_HOME``:

- ``images/<sha256[:2]>/<sha256>.png``: the original bytes, untouched, with whatever
  generation metadata they carry (A1111-style ``parameters`` text). ``sha256`` is the hash
  of those bytes.
- ``served/<h[:2]>/<h>.png``: the pixels re-encoded as a bare PNG (IHDR, IDAT, IEND only: no
  text, EXIF, time, ICC or physical-size chunks), where ``h`` is the hash of the re-encoded
  bytes. Voters are only ever given this copy and its hash, so neither the URL nor the bytes
  name the checkpoint.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image as PILImage

from arena.errors import ImageError, NotFound, UserError
from arena.settings import Settings
from generation.files import write_once
from metrics.file_hash import sha256_bytes

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "StoredImage",
    "image_files",
    "original_path",
    "served_path",
    "store_image",
]

# The image files a folder given to the arena is searched for (pool import, CCIP scoring).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# Larger images are refused as possible decompression bombs; SDXL renders are ~1 megapixel.
MAX_PIXELS = 64_000_000
# Files larger than this are refused before they are read into memory.
MAX_FILE_BYTES = 512 << 20

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# zlib level of the served copy, fixed so the same pixels always give the same bytes. Level 3
# encodes a 1024x1024 render about twice as fast as Pillow's default 6 for ~10% more bytes.
SERVED_COMPRESS_LEVEL = 3
_HEX64 = re.compile(r"[0-9a-f]{64}")
# What Pillow raises on malformed input besides its own errors: bad chunk lengths, bad
# zlib streams, over-long text chunks (ValueError), short reads.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


@dataclass(frozen=True)
class StoredImage:
    """An image in the store: both hashes, its size, both paths and its ``parameters`` text."""

    sha256: str
    served_sha256: str
    width: int
    height: int
    path: Path
    served_path: Path
    parameters_text: str


def _home(settings_or_home: Settings | Path) -> Path:
    return settings_or_home.home if isinstance(settings_or_home, Settings) else settings_or_home


def _checked_hash(value: str, what: str) -> str:
    # Hashes reach these paths from URLs, so only a plain lowercase sha256 may build one.
    if not _HEX64.fullmatch(value):
        raise NotFound(f"{what} {value!r} is not a sha256 (expected 64 lowercase hex digits)")
    return value


def original_path(settings_or_home: Settings | Path, sha256: str) -> Path:
    """Where the original bytes with hash ``sha256`` are kept."""
    digest = _checked_hash(sha256, "image hash")
    return _home(settings_or_home) / "images" / digest[:2] / f"{digest}.png"


def served_path(settings_or_home: Settings | Path, served_sha256: str) -> Path:
    """Where the metadata-free copy with hash ``served_sha256`` is kept."""
    digest = _checked_hash(served_sha256, "served image hash")
    return _home(settings_or_home) / "served" / digest[:2] / f"{digest}.png"


def _decode(data: bytes, max_pixels: int) -> PILImage.Image:
    """The fully decoded first frame of a PNG; anything short of that is an ImageError."""
    if not data.startswith(PNG_SIGNATURE):
        raise ImageError("not a PNG image (the file does not start with the PNG signature)")
    with warnings.catch_warnings():
        # Our own limit below is the one that applies; Pillow's warning would only be noise.
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        try:
            probe = PILImage.open(io.BytesIO(data), formats=["PNG"])
            width, height = probe.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{width}x{height} is {width * height} pixels, over the limit of "
                    f"{max_pixels} (possible decompression bomb)"
                )
            probe.verify()  # chunk CRCs and structure, without decoding pixels
            image = PILImage.open(io.BytesIO(data), formats=["PNG"])
            image.load()
        except PILImage.DecompressionBombError as exc:
            raise ImageError(f"refused as a decompression bomb: {exc}") from exc
        except _DECODE_ERRORS as exc:
            reason = str(exc).strip() or type(exc).__name__
            raise ImageError(f"broken or truncated PNG: {reason}") from exc
    return image


def _bare_png(image: PILImage.Image) -> bytes:
    """The pixels alone as PNG bytes: a fresh image carries no info dict, so no ancillary chunks."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    mode = "RGBA" if has_alpha else "RGB"
    converted = image.convert(mode)
    bare = PILImage.frombytes(mode, converted.size, converted.tobytes())
    buffer = io.BytesIO()
    bare.save(buffer, format="PNG", compress_level=SERVED_COMPRESS_LEVEL)
    return buffer.getvalue()


def store_image(
    settings_or_home: Settings | Path, data: bytes, *, max_pixels: int = MAX_PIXELS
) -> StoredImage:
    """Check a PNG fully decodes within ``max_pixels``, then store it and its served copy.

    Raises ImageError for bytes that are not a complete, decodable PNG of acceptable size.
    Storing the same bytes again rewrites nothing and returns the same result.
    """
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{len(data)} bytes is over the limit of {MAX_FILE_BYTES} bytes")
    image = _decode(data, max_pixels)
    # After load() the info dict holds every text chunk, including those after the pixels.
    parameters = image.info.get("parameters", "")
    served = _bare_png(image)
    digest = sha256_bytes(data)
    served_digest = sha256_bytes(served)
    path = original_path(settings_or_home, digest)
    copy_path = served_path(settings_or_home, served_digest)
    write_once(path, data)
    write_once(copy_path, served)
    return StoredImage(
        sha256=digest,
        served_sha256=served_digest,
        width=image.width,
        height=image.height,
        path=path,
        served_path=copy_path,
        parameters_text=str(parameters),
    )


def image_files(folder: Path) -> list[Path]:
    """The image files in ``folder`` and its subfolders, sorted; a UserError if it is not a
    folder."""
    if not folder.is_dir():
        raise UserError(f"{folder}: expected a folder of images")
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
