"""The image pool on both databases: real PNG files made by Pillow, JSONL and CSV manifests,
broken and hostile files, re-import idempotence, the metadata-free served copy and the CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from PIL import ImageCms, PngImagePlugin
from sqlalchemy import func, select
from typer.testing import CliRunner

from arena.cli.main import app
from arena.db import Database
from arena.errors import ImageError, NotFound
from arena.image_store import original_path, served_path, store_image
from arena.matches import prompt_hash
from arena.models import Checkpoint, Image, Prompt
from arena.pool import import_dir, import_records, pool_stats
from arena.registry import add_checkpoint, add_config
from training.presets import load_preset

runner = CliRunner()

MIKU = "1girl, solo, hatsune miku, vocaloid, twintails, masterpiece, best quality"
NEGATIVE = "lowres, bad anatomy, worst quality"


def a1111(prompt: str, negative: str = NEGATIVE, *, seed: int = 1234, steps: int = 28,
          sampler: str = "Euler a", cfg: float = 7.5, size: str = "16x16",
          model: str | None = None, model_hash: str | None = None) -> str:
    """A ``parameters`` text as AUTOMATIC1111's web UI writes it."""
    tail = f"Steps: {steps}, Sampler: {sampler}, CFG scale: {cfg}, Seed: {seed}, Size: {size}"
    if model_hash:
        tail += f", Model hash: {model_hash}"
    if model:
        tail += f", Model: {model}"
    return f"{prompt}\nNegative prompt: {negative}\n{tail}"


def make_png(path: Path, color: tuple[int, int, int], *, size: tuple[int, int] = (16, 16),
             parameters: str | None = None, mode: str = "RGB", **save: Any) -> Path:
    """A real PNG with a two-tone pattern, optionally carrying A1111 ``parameters`` text."""
    image = PILImage.new(mode, size, color if mode == "RGB" else (*color, 200))
    image.putpixel((0, 0), (255, 255, 255) if mode == "RGB" else (255, 255, 255, 255))
    info = PngImagePlugin.PngInfo()
    if parameters is not None:
        info.add_text("parameters", parameters)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", pnginfo=info, **save)
    return path


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def chunk_types(data: bytes) -> list[bytes]:
    """The chunk types of a PNG, in file order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    types, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        types.append(data[offset + 4:offset + 8])
        offset += 12 + length
    return types


def bomb_png(width: int, height: int) -> bytes:
    """A tiny file whose header declares ``width x height`` RGB pixels (never decoded)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture
def pool_db(db: Database, tmp_path: Path) -> Database:
    """A database with two registered checkpoints, ckpt-a and ckpt-b (hash prefix known)."""
    with db.session() as session:
        add_config(session, load_preset("illustrious-v0.1"))
        for name in ("ckpt-a", "ckpt-b"):
            path = tmp_path / "models" / f"{name}.safetensors"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + name.encode() * 99)
            add_checkpoint(session, path, "illustrious-v0.1", name=name)
    return db


def short_hash_of(db: Database, name: str) -> str:
    with db.session() as session:
        return session.scalar(select(Checkpoint.short_hash).where(Checkpoint.name == name))


def write_jsonl(folder: Path, rows: list[dict[str, Any] | str]) -> None:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")


def counts(db: Database) -> tuple[int, int]:
    with db.session() as session:
        return (session.scalar(select(func.count()).select_from(Image)) or 0,
                session.scalar(select(func.count()).select_from(Prompt)) or 0)


def store_listing(home: Path) -> dict[str, bytes]:
    return {p.relative_to(home).as_posix(): p.read_bytes()
            for p in sorted(home.rglob("*.png"))}


def test_jsonl_import_fills_missing_fields_from_parameters(
    pool_db: Database, tmp_path: Path
) -> None:
    folder, home = tmp_path / "pool", tmp_path / "home"
    full = make_png(folder / "a.png", (200, 10, 10))
    from_text = make_png(folder / "sub" / "b.png", (10, 200, 10),
                         parameters=a1111(MIKU, seed=77, steps=20, sampler="DPM++ 2M", cfg=5.0))
    free = make_png(folder / "c.png", (10, 10, 200), parameters=a1111("a cat on a roof"))
    write_jsonl(folder, [
        {"file": "a.png", "checkpoint": "ckpt-a", "prompt": MIKU, "negative_prompt": NEGATIVE,
         "kind": "fixed", "character": "hatsune miku", "seed": 77, "sampler": "Euler a",
         "steps": 28, "cfg": 7, "width": 16, "height": 16},
        {"file": "sub/b.png", "checkpoint": "ckpt-b", "kind": "fixed",
         "character": "hatsune miku"},
        {"file": "c.png", "checkpoint": "ckpt-b", "kind": "free", "prompt": "  a cat  on a roof ",
         "seed": "5"},
    ])

    report = import_dir(pool_db, folder, home, progress=False)

    assert report.skipped == []
    assert report.imported == ["a.png", "sub/b.png", "c.png"] and report.ok
    with pool_db.session() as session:
        rows = {i.sha256: i for i in session.scalars(select(Image))}
        by_file = {name: rows[hashlib.sha256(path.read_bytes()).hexdigest()]
                   for name, path in (("a", full), ("b", from_text), ("c", free))}
        a, b, c = by_file["a"], by_file["b"], by_file["c"]
        assert (a.checkpoint.name, a.seed, a.sampler, a.steps, a.cfg) == (
            "ckpt-a", 77, "Euler a", 28, 7.0)
        assert (b.checkpoint.name, b.seed, b.sampler, b.steps, b.cfg) == (
            "ckpt-b", 77, "DPM++ 2M", 20, 5.0)
        assert b.parameters == a1111(MIKU, seed=77, steps=20, sampler="DPM++ 2M", cfg=5.0)
        assert a.parameters == "" and (a.width, a.height) == (16, 16)
        # One fixed prompt shared by both checkpoints' images: the same-prompt duel exists.
        assert a.prompt_id == b.prompt_id
        assert (a.prompt.kind, a.prompt.character, a.prompt.negative_prompt) == (
            "fixed", "hatsune miku", NEGATIVE)
        assert a.prompt.text_hash == prompt_hash(MIKU)
        # The manifest's prompt wins over the parameters text; whitespace is normalised.
        assert (c.prompt.text, c.prompt.kind, c.seed) == ("a cat on a roof", "free", 5)
        for image, path in ((a, full), (b, from_text), (c, free)):
            assert original_path(home, image.sha256).read_bytes() == path.read_bytes()
            served = served_path(home, image.served_sha256).read_bytes()
            assert hashlib.sha256(served).hexdigest() == image.served_sha256
            assert chunk_types(served) == [b"IHDR", b"IDAT", b"IEND"]
        stats = pool_stats(session)
    assert stats["images"] == {"ckpt-a": {"fixed": 1, "free": 0, "ffa": 0},
                               "ckpt-b": {"fixed": 1, "free": 1, "ffa": 0}}
    assert stats["prompts"] == {"fixed": 1, "free": 1, "ffa": 0} and stats["total_images"] == 3


def test_reimport_changes_nothing(pool_db: Database, tmp_path: Path) -> None:
    folder, home = tmp_path / "pool", tmp_path / "home"
    for index in range(3):
        make_png(folder / f"{index}.png", (index * 50, 90, 90), parameters=a1111(f"prompt {index}"))
    write_jsonl(folder, [{"file": f"{i}.png", "checkpoint": "ckpt-a", "kind": "free"}
                         for i in range(3)])
    first = import_dir(pool_db, folder, home, progress=False)
    assert len(first.imported) == 3
    with pool_db.session() as session:
        before = [(i.id, i.sha256, i.served_sha256, i.prompt_id) for i in
                  session.scalars(select(Image).order_by(Image.id))]
    files = store_listing(home)

    again = import_dir(pool_db, folder, home, progress=False)

    assert again.imported == [] and again.skipped == []
    assert again.already_present == ["0.png", "1.png", "2.png"] and again.ok
    with pool_db.session() as session:
        after = [(i.id, i.sha256, i.served_sha256, i.prompt_id) for i in
                 session.scalars(select(Image).order_by(Image.id))]
    assert after == before and counts(pool_db) == (3, 3)
    assert store_listing(home) == files


def test_broken_and_invalid_rows_are_reported_by_name(pool_db: Database, tmp_path: Path) -> None:
    folder, home = tmp_path / "pool", tmp_path / "home"
    good = make_png(folder / "good.png", (1, 2, 3), parameters=a1111(MIKU))
    whole = make_png(folder / "whole.png", (9, 9, 9), size=(64, 64))
    (folder / "truncated.png").write_bytes(whole.read_bytes()[:-40])
    (folder / "notes.png").write_text("this is not an image\n")
    (folder / "bomb.png").write_bytes(bomb_png(20_000, 20_000))
    make_png(folder / "big.png", (5, 5, 5), size=(1200, 1000))
    make_png(folder / "unlisted.png", (7, 7, 7))
    for name, color in (("u1", 11), ("u2", 12), ("u3", 13), ("u4", 14), ("u5", 15), ("u6", 16),
                        ("u7", 17), ("u8", 18), ("u9", 19)):
        make_png(folder / f"{name}.png", (color, color, color), parameters=a1111(f"p {name}"))
    make_png(folder / "u10.png", (20, 20, 20), parameters="a prompt but no settings line")
    make_png(folder / "u11.png", (21, 21, 21), parameters=a1111("x", model_hash="0123456789"))
    good_hash = hashlib.sha256(good.read_bytes()).hexdigest()
    rows: list[dict[str, Any] | str] = [
        {"file": "good.png", "checkpoint": "ckpt-a", "kind": "free", "sha256": good_hash},
        {"file": "truncated.png", "checkpoint": "ckpt-a", "kind": "free", "prompt": "x"},
        {"file": "notes.png", "checkpoint": "ckpt-a", "kind": "free", "prompt": "x"},
        {"file": "bomb.png", "checkpoint": "ckpt-a", "kind": "free", "prompt": "x"},
        {"file": "big.png", "checkpoint": "ckpt-a", "kind": "free", "prompt": "x"},
        {"file": "missing.png", "checkpoint": "ckpt-a", "kind": "free", "prompt": "x"},
        {"file": "u1.png", "checkpoint": "ckpt-zzz", "kind": "free"},
        {"file": "u2.png", "checkpoint": "ckpt-a"},
        {"file": "u3.png", "checkpoint": "ckpt-a", "kind": "duel"},
        {"file": "u4.png", "checkpoint": "ckpt-a", "kind": "fixed"},
        {"file": "u5.png", "checkpoint": "ckpt-a", "kind": "free", "steps": "many"},
        {"file": "u6.png", "checkpoint": "ckpt-a", "kind": "free", "sha256": "0" * 64,
         "width": 16},
        {"file": "u7.png", "checkpoint": "ckpt-a", "kind": "free", "sampler": "x" * 51},
        {"file": "u8.png", "checkpoint": "ckpt-a", "kind": "free", "seed": -1, "hue": 3},
        {"file": "u9.png", "checkpoint": "ckpt-a", "kind": "free", "width": 32},
        {"file": "u10.png", "checkpoint": "ckpt-a", "kind": "free"},
        {"file": "u11.png", "kind": "free"},
        {"checkpoint": "ckpt-a", "kind": "free"},
        "{not json",
    ]
    write_jsonl(folder, rows)

    report = import_dir(pool_db, folder, home, max_pixels=1_000_000, progress=False)

    assert report.imported == ["good.png"] and report.ok
    reasons = {s.file: s.reason for s in report.skipped}
    assert "broken or truncated PNG" in reasons["truncated.png"]
    assert "not a PNG image" in reasons["notes.png"]
    assert "decompression bomb" in reasons["bomb.png"]
    assert "1200000 pixels, over the limit of 1000000" in reasons["big.png"]
    assert "no such file" in reasons["missing.png"]
    assert "unknown checkpoint 'ckpt-zzz'" in reasons["u1.png"]
    assert "missing required field 'kind'" in reasons["u2.png"]
    assert "field 'kind' is 'duel'; expected one of fixed, free, ffa" in reasons["u3.png"]
    assert "'character' is required for kind 'fixed'" in reasons["u4.png"]
    assert "field 'steps' is 'many'; expected an integer from 1 to" in reasons["u5.png"]
    assert "not '0000" in reasons["u6.png"]
    assert "field 'sampler' is 51 characters long; the limit is 50" in reasons["u7.png"]
    assert "unknown field 'hue'" in reasons["u8.png"]
    assert "the manifest says width 32 but the image has 16" in reasons["u9.png"]
    assert reasons["u10.png"].startswith(
        "missing required field 'prompt': not in the manifest, the PNG's parameters text: "
        "expected a last line with Steps")
    assert "none registered with the parameters' model hash '0123456789'" in reasons["u11.png"]
    assert reasons["manifest.jsonl line 18"] == "missing required field 'file'"
    assert reasons["manifest.jsonl line 19"].startswith("not valid JSON")
    assert reasons["unlisted.png"] == "not listed in manifest.jsonl"
    assert len(report.skipped) == 20
    assert counts(pool_db) == (1, 1)
    # Images refused while decoding never reach the store.
    assert not original_path(home, hashlib.sha256(bomb_png(20_000, 20_000)).hexdigest()).exists()


def test_csv_manifest(pool_db: Database, tmp_path: Path) -> None:
    folder, home = tmp_path / "pool", tmp_path / "home"
    hashed = short_hash_of(pool_db, "ckpt-b")
    make_png(folder / "one.png", (30, 40, 50), parameters=a1111(MIKU, seed=9, cfg=6.5))
    make_png(folder / "two.png", (60, 40, 50), size=(24, 16),
             parameters=a1111("4girls, group", model="renamed-file", model_hash=hashed))
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "checkpoint", "prompt", "kind", "character", "seed", "cfg",
                         "width", "height"])
        writer.writerow(["one.png", "ckpt-a", "", "fixed", "hatsune miku", "", "", "16", "16"])
        # No checkpoint column value: the parameters' model hash names a registered one.
        writer.writerow(["two.png", "", "", "ffa", "", "3", "", "24", ""])

    report = import_dir(pool_db, folder, home, progress=False)

    assert report.imported == ["one.png", "two.png"], report.skipped
    with pool_db.session() as session:
        images = {i.checkpoint.name: i for i in session.scalars(select(Image))}
        one, two = images["ckpt-a"], images["ckpt-b"]
        assert (one.prompt.text, one.prompt.character, one.seed, one.cfg) == (
            MIKU, "hatsune miku", 9, 6.5)
        assert (two.prompt.kind, two.seed, two.width, two.height) == ("ffa", 3, 24, 16)


def test_prompt_clashes_and_identical_pixels_are_skipped(
    pool_db: Database, tmp_path: Path
) -> None:
    folder, home = tmp_path / "pool", tmp_path / "home"
    make_png(folder / "miku-a.png", (1, 1, 1))
    make_png(folder / "miku-b.png", (2, 2, 2))
    make_png(folder / "neg-b.png", (3, 3, 3))
    make_png(folder / "same-pixels.png", (1, 1, 1), parameters="other metadata")
    base = {"prompt": MIKU, "kind": "fixed"}
    write_jsonl(folder, [
        {**base, "file": "miku-a.png", "checkpoint": "ckpt-a", "character": "hatsune miku"},
        {**base, "file": "miku-b.png", "checkpoint": "ckpt-b", "character": "kagamine rin"},
        {**base, "file": "neg-b.png", "checkpoint": "ckpt-b", "character": "hatsune miku",
         "negative_prompt": "blurry"},
        {**base, "file": "same-pixels.png", "checkpoint": "ckpt-b", "character": "hatsune miku"},
        {**base, "file": "miku-a.png", "checkpoint": "ckpt-b", "character": "hatsune miku"},
    ])

    report = import_dir(pool_db, folder, home, progress=False)

    assert report.imported == ["miku-a.png"]
    reasons = [s.reason for s in report.skipped]
    assert "already in the pool for character 'hatsune miku', not 'kagamine rin'" in reasons[0]
    assert "different negative prompt" in reasons[1]
    assert "the same pixels are already in the pool" in reasons[2]
    assert "already in the pool under checkpoint 'ckpt-a'" in reasons[3]
    assert counts(pool_db) == (1, 1)


def test_import_records_takes_absolute_paths(pool_db: Database, tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = make_png(tmp_path / "gen" / "x.png", (4, 5, 6), parameters=a1111("a dog", seed=3))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    record = {"file": str(path), "sha256": digest, "checkpoint": "ckpt-a", "kind": "free",
              "prompt": "a dog", "negative_prompt": NEGATIVE, "character": None, "seed": 3,
              "sampler": "Euler a", "steps": 28, "cfg": 7.5, "width": 16, "height": 16}

    report = import_records(pool_db, [record], home, progress=False)
    again = import_records(pool_db, [record, {"checkpoint": "ckpt-a"}], home, progress=False)

    assert report.imported == [str(path)]
    assert again.already_present == [str(path)]
    assert [(s.file, s.reason) for s in again.skipped] == [
        ("record 2", "missing required field 'file'")]
    assert original_path(home, digest).read_bytes() == path.read_bytes()


def test_served_copy_has_no_metadata_and_a_stable_hash(tmp_path: Path) -> None:
    home = tmp_path / "home"
    exif = PILImage.Exif()
    exif[0x010E] = "ckpt-a secret description"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", a1111(MIKU, model="ckpt-a"))
    info.add_itxt("Comment", "ckpt-a", zip=True)
    info.add(b"tIME", struct.pack(">HBBBBB", 2024, 1, 2, 3, 4, 5))
    source = PILImage.new("RGBA", (20, 10), (10, 20, 30, 128))
    buffer = io.BytesIO()
    source.save(buffer, format="PNG", pnginfo=info, exif=exif.tobytes(), icc_profile=icc,
                dpi=(300, 300))
    original = buffer.getvalue()
    assert {b"tEXt", b"iTXt", b"tIME", b"eXIf", b"iCCP", b"pHYs"} <= set(chunk_types(original))

    stored = store_image(home, original)

    served = stored.served_path.read_bytes()
    assert chunk_types(served) == [b"IHDR", b"IDAT", b"IEND"]
    assert b"ckpt-a" not in served and hashlib.sha256(served).hexdigest() == stored.served_sha256
    assert stored.path.read_bytes() == original
    assert stored.sha256 == hashlib.sha256(original).hexdigest()
    assert "Model: ckpt-a" in stored.parameters_text
    assert PILImage.open(stored.served_path).convert("RGBA").tobytes() == source.tobytes()
    # The same pixels with other metadata give byte-identical served copies.
    plain = io.BytesIO()
    source.save(plain, format="PNG")
    assert store_image(home, plain.getvalue()).served_sha256 == stored.served_sha256
    assert store_image(home, original) == stored


@pytest.mark.parametrize("mode", ["P", "L", "LA", "1"])
def test_served_copy_keeps_pixels_of_other_modes(tmp_path: Path, mode: str) -> None:
    image = PILImage.new(mode, (6, 4))
    for x in range(6):
        image.putpixel((x, x % 4), {"P": x, "L": 40 * x, "LA": (40 * x, 255 - x), "1": 1}[mode])
    buffer = io.BytesIO()
    if mode == "P":
        image.putpalette(bytes(range(18)) + bytes(750))
        image.save(buffer, format="PNG", transparency=2)
    else:
        image.save(buffer, format="PNG")

    stored = store_image(tmp_path, buffer.getvalue())

    served = PILImage.open(stored.served_path)
    assert served.mode == ("RGBA" if mode in ("P", "LA") else "RGB")
    original = PILImage.open(io.BytesIO(buffer.getvalue()))
    assert served.convert("RGBA").tobytes() == original.convert("RGBA").tobytes()
    assert (stored.width, stored.height) == (6, 4)


def test_store_refuses_bad_bytes_and_paths_refuse_non_hashes(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not a PNG image"):
        store_image(tmp_path, b"GIF89a....")
    with pytest.raises(ImageError, match="decompression bomb"):
        store_image(tmp_path, bomb_png(100_000, 100_000))
    assert not any(tmp_path.iterdir())
    with pytest.raises(NotFound):
        served_path(tmp_path, "../../etc/passwd")
    with pytest.raises(NotFound):
        original_path(tmp_path, "A" * 64)


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


def test_cli_import_and_stats(arena_env: Database, tmp_path: Path) -> None:
    with arena_env.session() as session:
        add_config(session, load_preset("illustrious-v0.1"))
        path = tmp_path / "ckpt-a.safetensors"
        path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + b"a" * 99)
        add_checkpoint(session, path, "illustrious-v0.1")
    folder = tmp_path / "pool"
    make_png(folder / "ok.png", (1, 2, 3), parameters=a1111(MIKU))
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    write_jsonl(folder, [
        {"file": "ok.png", "checkpoint": "ckpt-a", "kind": "fixed", "character": "hatsune miku"},
        {"file": "bad.png", "checkpoint": "ckpt-a", "kind": "free", "prompt": "x"},
    ])

    first = invoke("pool", "import", str(folder), "--json")
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert data["imported"] == ["ok.png"] and data["already_present"] == []
    assert [s["file"] for s in data["skipped"]] == ["bad.png"]

    second = invoke("pool", "import", str(folder))
    assert second.exit_code == 0, second.output
    assert "imported 0, already present 1, skipped 1" in second.stdout
    assert "skipped bad.png: broken or truncated PNG" in second.stdout

    stats = invoke("pool", "stats", "--json")
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.stdout)["images"] == {"ckpt-a": {"fixed": 1, "free": 0, "ffa": 0}}
    table = invoke("pool", "stats")
    assert "ckpt-a" in table.stdout and "prompts: fixed 1, free 0, ffa 0" in table.stdout

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.png").write_bytes(b"nope")
    write_jsonl(broken, [{"file": "bad.png", "checkpoint": "ckpt-a", "kind": "free"}])
    failed = invoke("pool", "import", str(broken))
    assert failed.exit_code == 2
    assert "skipped bad.png: not a PNG image" in failed.stdout
    assert "nothing from" in failed.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    missing = invoke("pool", "import", str(empty))
    assert missing.exit_code == 2
    assert "no manifest" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    assert counts(arena_env) == (1, 1)
