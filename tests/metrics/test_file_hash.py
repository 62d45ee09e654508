"""The one content hash: bytes, files, folders and the short model hash agree with each other."""

from __future__ import annotations

from pathlib import Path

from metrics.file_hash import (
    sha256_bytes,
    sha256_file,
    sha256_path,
    sha256_tree,
    short_hash,
)

# sha256("abc"), FIPS 180-2 appendix B.1
ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_bytes_and_file_hash_the_same_content(tmp_path: Path) -> None:
    path = tmp_path / "abc.bin"
    path.write_bytes(b"abc")
    assert sha256_bytes(b"abc") == ABC
    seen: list[int] = []
    assert sha256_file(path, seen.append) == ABC
    assert seen == [3]
    assert sha256_path(path, progress=True) == ABC


def test_short_hash_is_the_first_ten_digits_in_lower_case() -> None:
    assert short_hash(ABC) == "ba7816bf8f"
    assert short_hash(ABC.upper()) == "ba7816bf8f"


def test_folder_hash_depends_on_names_and_contents_not_creation_order(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for folder, order in ((one, ("a", "b/c")), (two, ("b/c", "a"))):
        for name in order:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(name.encode())
    assert sha256_tree(one) == sha256_tree(two) == sha256_path(one)
    (two / "a").write_bytes(b"changed")
    assert sha256_tree(one) != sha256_tree(two)
