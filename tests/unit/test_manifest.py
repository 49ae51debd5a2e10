"""Tests of directory manifests: known-answer root, change detection, refusal of unsafe entries."""

from __future__ import annotations

import copy
import hashlib
import os
import socket
from pathlib import Path
from typing import Any

import blake3
import pytest
import rfc8785

from ledger.errors import FileInputError, InputError, JSONInputError, UnsafePathError
from ledger.manifest import Manifest, ManifestChange, ManifestEntry, hash_directory, verify_directory

FILES = {
    "adapter_config.json": b'{"r": 8}',
    "adapter_model.safetensors": b"\x00\x01weights" * 100,
    "sub/b.txt": b"bee",
    "sub/a.txt": b"",
    "Z.txt": b"upper case sorts before lower case",
    "é.txt": b"non-ascii",
}


def make_tree(root: Path, files: dict[str, bytes], order: list[str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in order or list(files):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])
    return root


def expected_root(files: dict[str, bytes]) -> str:
    listed = [
        {
            "path": name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "blake3": blake3.blake3(data).hexdigest(),
        }
        for name, data in sorted(files.items(), key=lambda item: item[0].encode("utf-8"))
    ]
    document: dict[str, Any] = {"format": "ledger-manifest-v1", "algorithms": ["sha256", "blake3"], "files": listed}
    return hashlib.sha256(rfc8785.dumps(document)).hexdigest()


def test_known_answer_root(tmp_path: Path) -> None:
    manifest = hash_directory(make_tree(tmp_path / "d", FILES))
    assert manifest.root == expected_root(FILES)
    assert [entry.path for entry in manifest.entries] == [
        "Z.txt",
        "adapter_config.json",
        "adapter_model.safetensors",
        "sub/a.txt",
        "sub/b.txt",
        "é.txt",
    ]
    entry = manifest.entries[1]
    assert entry == ManifestEntry(
        "adapter_config.json",
        8,
        hashlib.sha256(b'{"r": 8}').hexdigest(),
        blake3.blake3(b'{"r": 8}').hexdigest(),
    )


def test_fixed_root_value() -> None:
    # A pinned value guards the format itself: changing the document layout must change this test.
    manifest = Manifest((ManifestEntry("a", 0, hashlib.sha256(b"").hexdigest(), blake3.blake3(b"").hexdigest()),))
    document = (
        b'{"algorithms":["sha256","blake3"],"files":[{"blake3":"'
        + blake3.blake3(b"").hexdigest().encode()
        + b'","path":"a","sha256":"'
        + hashlib.sha256(b"").hexdigest().encode()
        + b'","size":0}],"format":"ledger-manifest-v1"}'
    )
    assert manifest.root == hashlib.sha256(document).hexdigest()


def test_sort_is_by_utf8_bytes_not_utf16() -> None:
    # U+FF21 (3 UTF-8 bytes, EF BC A1) sorts before U+1F600 (F0 ...) in UTF-8 but after it in UTF-16.
    digest = hashlib.sha256(b"").hexdigest()
    b3 = blake3.blake3(b"").hexdigest()
    manifest = Manifest((ManifestEntry("\U0001f600", 0, digest, b3), ManifestEntry("\uff21", 0, digest, b3)))
    assert [entry.path for entry in manifest.entries] == ["\uff21", "\U0001f600"]


def test_creation_order_does_not_matter(tmp_path: Path) -> None:
    names = list(FILES)
    first = hash_directory(make_tree(tmp_path / "one", FILES, names))
    second = hash_directory(make_tree(tmp_path / "two", FILES, list(reversed(names))), workers=1)
    assert first == second
    assert first.root == second.root


def test_empty_directory(tmp_path: Path) -> None:
    manifest = hash_directory(tmp_path)
    assert manifest.entries == ()
    assert manifest.root == expected_root({})


def test_empty_subdirectories_do_not_count(tmp_path: Path) -> None:
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    assert hash_directory(tmp_path).root == expected_root({})


def test_unicode_names(tmp_path: Path) -> None:
    files = {"日本語/重み.bin": b"x", "emoji_😀.txt": b"y", "nfd_e\u0301.txt": b"z", "sp ace.txt": b"w"}
    manifest = hash_directory(make_tree(tmp_path / "d", files))
    assert {entry.path for entry in manifest.entries} == set(files)
    assert manifest.root == expected_root(files)


def test_missing_and_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(FileInputError, match="nope"):
        hash_directory(tmp_path / "nope")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(FileInputError, match="not a directory"):
        hash_directory(tmp_path / "file")


def test_symlinked_directory_itself_is_refused(tmp_path: Path) -> None:
    make_tree(tmp_path / "real", {"a": b"a"})
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafePathError, match="link"):
        hash_directory(tmp_path / "link")


@pytest.mark.parametrize("target", ["inside", "outside", "dangling", "dir"])
def test_symlink_is_refused(tmp_path: Path, target: str) -> None:
    directory = make_tree(tmp_path / "d", {"inside": b"a", "deep/x": b"x"})
    (tmp_path / "outside").write_bytes(b"secret")
    pointee = {
        "inside": directory / "inside",
        "outside": tmp_path / "outside",
        "dangling": tmp_path / "missing",
        "dir": tmp_path,
    }[target]
    (directory / "deep" / "link").symlink_to(pointee)
    with pytest.raises(UnsafePathError) as exc:
        hash_directory(directory)
    assert "deep/link" in str(exc.value)
    assert "symbolic link" in str(exc.value)


def test_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UnsafePathError, match="pipe"):
        hash_directory(tmp_path)


def test_socket_is_refused(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        with pytest.raises(UnsafePathError, match="sock"):
            hash_directory(tmp_path)


def test_non_utf8_name_is_refused(tmp_path: Path) -> None:
    name = os.fsdecode(b"bad\xff.bin")
    try:
        (tmp_path / name).write_bytes(b"x")
    except OSError:
        pytest.skip("file system refuses non-UTF-8 names")
    with pytest.raises(UnsafePathError) as exc:
        hash_directory(tmp_path)
    message = str(exc.value)
    assert "UTF-8" in message
    assert "\\udcff" in message  # shown escaped, and the message is printable
    message.encode("utf-8")


# --- verify_directory --------------------------------------------------------------------------


def base(tmp_path: Path) -> tuple[Path, Manifest]:
    directory = make_tree(tmp_path / "d", {"keep": b"same", "edit": b"old", "gone": b"bye", "move": b"mover"})
    return directory, hash_directory(directory)


def test_identical_has_no_changes(tmp_path: Path) -> None:
    directory, recorded = base(tmp_path)
    seen: list[int] = []
    assert verify_directory(directory, recorded, progress=seen.append) == []
    assert sum(seen) == recorded.total_size


def test_every_kind_of_change(tmp_path: Path) -> None:
    directory, recorded = base(tmp_path)
    (directory / "edit").write_bytes(b"new!")
    (directory / "gone").unlink()
    (directory / "move").rename(directory / "moved")
    (directory / "new").write_bytes(b"fresh")
    changes = verify_directory(directory, recorded)
    assert [(c.path, c.change) for c in changes] == [
        ("edit", "changed"),
        ("gone", "removed"),
        ("moved", "renamed"),
        ("new", "added"),
    ]
    assert changes[2].detail == "from move"
    assert changes[0].detail == "size 3 -> 4"


def test_same_size_content_change_is_detected(tmp_path: Path) -> None:
    directory, recorded = base(tmp_path)
    (directory / "keep").write_bytes(b"SAME")
    (change,) = verify_directory(directory, recorded)
    assert (change.path, change.change) == ("keep", "changed")
    assert change.detail.startswith("blake3 ") and "size" not in change.detail


def test_recorded_blake3_is_what_is_checked(tmp_path: Path) -> None:
    """A manifest whose BLAKE3 does not match the bytes (a forged entry with the right SHA-256) is a change."""
    directory, recorded = base(tmp_path)
    forged = Manifest(
        tuple(ManifestEntry(e.path, e.size, e.sha256, "0" * 64) if e.path == "keep" else e for e in recorded.entries)
    )
    assert [(c.path, c.change) for c in verify_directory(directory, forged)] == [("keep", "changed")]


def test_rename_needs_same_content(tmp_path: Path) -> None:
    directory, recorded = base(tmp_path)
    (directory / "move").unlink()
    (directory / "other").write_bytes(b"MOVER")  # same size, different bytes: not a rename
    changes = verify_directory(directory, recorded)
    assert [(c.path, c.change) for c in changes] == [("move", "removed"), ("other", "added")]


def test_duplicate_content_renames_pair_deterministically(tmp_path: Path) -> None:
    directory = make_tree(tmp_path / "d", {"a1": b"dup", "a2": b"dup"})
    recorded = hash_directory(directory)
    (directory / "a1").rename(directory / "b1")
    (directory / "a2").rename(directory / "b2")
    assert verify_directory(directory, recorded) == [
        ManifestChange("b1", "renamed", "from a1"),
        ManifestChange("b2", "renamed", "from a2"),
    ]


def test_verify_against_empty(tmp_path: Path) -> None:
    directory, recorded = base(tmp_path)
    assert {c.change for c in verify_directory(directory, Manifest(()))} == {"added"}
    empty = make_tree(tmp_path / "e", {})
    assert {c.change for c in verify_directory(empty, recorded)} == {"removed"}


def test_verify_refuses_what_hashing_refuses(tmp_path: Path) -> None:
    directory, recorded = base(tmp_path)
    (directory / "link").symlink_to(directory / "keep")
    with pytest.raises(UnsafePathError):
        verify_directory(directory, recorded)


# --- JSON round trip -----------------------------------------------------------------------------


def test_json_round_trip(tmp_path: Path) -> None:
    manifest = hash_directory(make_tree(tmp_path / "d", FILES))
    document = manifest.to_json()
    assert Manifest.from_json(document) == manifest
    assert hashlib.sha256(rfc8785.dumps(document)).hexdigest() == manifest.root
    shuffled = copy.deepcopy(document)
    shuffled["files"].reverse()
    assert Manifest.from_json(shuffled).root == manifest.root


def _valid() -> dict[str, Any]:
    return {
        "format": "ledger-manifest-v1",
        "algorithms": ["sha256", "blake3"],
        "files": [{"path": "a/b", "size": 1, "sha256": "0" * 64, "blake3": "f" * 64}],
    }


def _set(doc: dict[str, Any], dotted: str, value: object) -> dict[str, Any]:
    target: Any = doc
    keys = dotted.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("dotted", "value", "error"),
    [
        ("format", "ledger-manifest-v2", JSONInputError),
        ("algorithms", ["sha256"], JSONInputError),
        ("files", {}, JSONInputError),
        ("extra", 1, JSONInputError),
        ("files.0.size", -1, JSONInputError),
        ("files.0.size", True, JSONInputError),
        ("files.0.size", 1.0, JSONInputError),
        ("files.0.size", 2**60, JSONInputError),
        ("files.0.sha256", "A" * 64, JSONInputError),
        ("files.0.sha256", "0" * 63, JSONInputError),
        ("files.0.blake3", None, JSONInputError),
        ("files.0.extra", 1, JSONInputError),
        ("files.0.size", KeyError, JSONInputError),
        ("files.0.path", 5, JSONInputError),
        ("files.0.path", "", UnsafePathError),
        ("files.0.path", "/etc/passwd", UnsafePathError),
        ("files.0.path", "a/../../x", UnsafePathError),
        ("files.0.path", "a//b", UnsafePathError),
        ("files.0.path", "./a", UnsafePathError),
        ("files.0.path", "a\x00b", UnsafePathError),
    ],
)
def test_from_json_refuses(dotted: str, value: object, error: type[InputError]) -> None:
    with pytest.raises(error):
        Manifest.from_json(_set(_valid(), dotted, value))


def test_from_json_refuses_non_objects_and_duplicates() -> None:
    bad: object
    for bad in (None, [], "x", 1):
        with pytest.raises(JSONInputError):
            Manifest.from_json(bad)
    doc = _valid()
    doc["files"].append(dict(doc["files"][0]))
    with pytest.raises(JSONInputError, match="twice"):
        Manifest.from_json(doc)
