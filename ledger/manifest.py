"""Directory manifests (LoRA adapter and training-data directories): per-file digests and one root hash."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import stat
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from ledger.canonical import canonical
from ledger.errors import FileInputError, JSONInputError, UnsafePathError
from ledger.fsutil import check_recorded, display_path, os_reason
from ledger.hashing import blake3_file, hash_file

FORMAT = "ledger-manifest-v1"
ALGORITHMS = ("sha256", "blake3")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ENTRY_KEYS = frozenset({"path", "size", "sha256", "blake3"})
_MAX_SIZE = 2**53 - 1  # largest integer RFC 8785 (I-JSON) represents exactly
T = TypeVar("T")


def _sort_key(path: str) -> bytes:
    return path.encode("utf-8")


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One regular file of a directory: POSIX path relative to the directory, size and digests."""

    path: str
    size: int
    sha256: str
    blake3: str

    def to_json(self) -> dict[str, Any]:
        """The entry as it appears in the canonical manifest document."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "blake3": self.blake3}


@dataclass(frozen=True, slots=True)
class Manifest:
    """The files of a directory, kept sorted by the UTF-8 bytes of their path; ``root`` commits to all."""

    entries: tuple[ManifestEntry, ...]

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.entries, key=lambda entry: _sort_key(entry.path)))
        for before, after in itertools.pairwise(ordered):
            if before.path == after.path:
                raise JSONInputError(f"manifest lists the path {display_path(before.path)} twice")
        object.__setattr__(self, "entries", ordered)

    def to_json(self) -> dict[str, Any]:
        """The canonical manifest document; ``root`` is the SHA-256 of its RFC 8785 encoding."""
        return {
            "format": FORMAT,
            "algorithms": list(ALGORITHMS),
            "files": [entry.to_json() for entry in self.entries],
        }

    @property
    def root(self) -> str:
        """Lowercase hex SHA-256 over the canonical JSON of the manifest: one value that pins every file."""
        return hashlib.sha256(canonical(self.to_json())).hexdigest()

    @property
    def total_size(self) -> int:
        """Sum of the sizes of all files."""
        return sum(entry.size for entry in self.entries)

    @classmethod
    def from_json(cls, obj: object) -> Manifest:
        """Rebuild a manifest read from the ledger, refusing anything ``to_json`` would not have written."""
        if not isinstance(obj, Mapping):
            raise JSONInputError("manifest: expected a JSON object")
        if set(obj) != {"format", "algorithms", "files"}:
            got = ", ".join(sorted(map(str, obj)))
            raise JSONInputError(f"manifest: expected the keys format, algorithms and files, got {got}")
        if obj["format"] != FORMAT:
            raise JSONInputError(f"manifest /format: expected {FORMAT!r}, got {obj['format']!r}")
        if obj["algorithms"] != list(ALGORITHMS):
            raise JSONInputError(f"manifest /algorithms: expected {list(ALGORITHMS)!r}")
        files = obj["files"]
        if not isinstance(files, list):
            raise JSONInputError("manifest /files: expected an array")
        return cls(tuple(_entry_from_json(index, item) for index, item in enumerate(files)))


def _entry_from_json(index: int, item: object) -> ManifestEntry:
    where = f"manifest /files/{index}"
    if not isinstance(item, Mapping) or set(item) != _ENTRY_KEYS:
        raise JSONInputError(f"{where}: expected an object with the keys path, size, sha256 and blake3")
    path, size, sha256, blake3 = item["path"], item["size"], item["sha256"], item["blake3"]
    if not isinstance(path, str):
        raise JSONInputError(f"{where}/path: expected a string")
    check_recorded(path)
    if type(size) is not int or not 0 <= size <= _MAX_SIZE:
        raise JSONInputError(f"{where}/size: expected a non-negative integer")
    for name, value in (("sha256", sha256), ("blake3", blake3)):
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise JSONInputError(f"{where}/{name}: expected 64 lowercase hex digits")
    return ManifestEntry(path, size, sha256, blake3)


def _walk(directory: Path) -> list[tuple[str, str]]:
    """Every regular file below ``directory`` as (relative POSIX path, path); refuse anything else.

    Strings, not pathlib objects: for an adapter of thousands of small files, building two paths per entry
    cost more than the entry's ``lstat`` (the walk was a quarter of hashing the directory)."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, str]] = [("", os.fspath(directory))]
    while stack:
        prefix, current = stack.pop()
        try:
            with os.scandir(current) as scan:
                entries = list(scan)
        except OSError as exc:
            raise FileInputError(f"cannot list {display_path(current)}: {os_reason(exc)}") from None
        for entry in entries:
            try:
                entry.name.encode("utf-8")
            except UnicodeEncodeError:
                raise UnsafePathError(f"file name {display_path(entry.path)} is not valid UTF-8") from None
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError as exc:
                raise FileInputError(f"cannot read {display_path(entry.path)}: {os_reason(exc)}") from None
            relative = prefix + entry.name
            if stat.S_ISDIR(mode):
                stack.append((relative + "/", entry.path))
            elif stat.S_ISREG(mode):
                found.append((relative, entry.path))
            elif stat.S_ISLNK(mode):
                raise UnsafePathError(
                    f"{display_path(entry.path)} is a symbolic link; manifests record regular files only"
                )
            else:
                raise UnsafePathError(f"{display_path(entry.path)} is a special file (FIFO, socket or device); refused")
    return found


def _directory(directory: Path) -> Path:
    """``directory`` itself when it is a real directory (not a link to one); refuse anything else."""
    try:
        mode = directory.lstat().st_mode
    except OSError as exc:
        raise FileInputError(f"cannot read directory {display_path(directory)}: {os_reason(exc)}") from None
    if stat.S_ISLNK(mode):
        raise UnsafePathError(f"{display_path(directory)} is a symbolic link, not a directory")
    if not stat.S_ISDIR(mode):
        raise FileInputError(f"{display_path(directory)} is not a directory")
    return directory


def _each(work: Callable[[tuple[str, str]], T], files: list[tuple[str, str]], workers: int | None) -> list[T]:
    """``work`` over the files, in parallel threads (the hashers release the GIL), results in order."""
    if len(files) <= 1:
        return list(map(work, files))
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(work, files))


def hash_directory(
    directory: Path, *, workers: int | None = None, progress: Callable[[int], None] | None = None
) -> Manifest:
    """Hash every regular file below ``directory`` (SHA-256 + BLAKE3, files in parallel) into a manifest.

    Symbolic links, FIFOs, sockets, devices and non-UTF-8 names are refused rather than skipped: a manifest
    must describe exactly what a loader would read. An empty directory gives a manifest of no files.
    ``progress(n)`` is told the bytes hashed (from the hashing threads).
    """

    def one(item: tuple[str, str]) -> ManifestEntry:
        relative, path = item
        digest = hash_file(path, follow_symlinks=False, progress=progress)
        return ManifestEntry(relative, digest.size, digest.sha256, digest.blake3)

    return Manifest(tuple(_each(one, _walk(_directory(directory)), workers)))


ChangeKind = Literal["added", "removed", "changed", "renamed"]


@dataclass(frozen=True, slots=True)
class ManifestChange:
    """One difference between a recorded and an actual manifest, for a person to read."""

    path: str
    change: ChangeKind
    detail: str


def verify_directory(
    directory: Path,
    recorded: Manifest,
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ManifestChange]:
    """List what differs between the recorded manifest and the directory as it is now.

    Every file is re-hashed with BLAKE3 alone, files in parallel (the audit's full check: one digest finds any
    change, and BLAKE3 is the fast one); the walk refuses what ``hash_directory`` refuses. A removed file and
    an added file with the same size and BLAKE3 are one ``renamed`` change at the new path (detail ``from <old
    path>``). Order: by the UTF-8 bytes of the path. ``progress(n)`` is called with the bytes of each file.
    """

    def one(item: tuple[str, str]) -> tuple[str, tuple[int, str]]:
        relative, path = item
        return relative, blake3_file(path, follow_symlinks=False, progress=progress)

    after = dict(_each(one, _walk(_directory(directory)), workers))
    before = {entry.path: (entry.size, entry.blake3) for entry in recorded.entries}
    changes: list[ManifestChange] = []
    removed: dict[tuple[int, str], list[str]] = {}
    for path in sorted(before.keys() - after.keys(), key=_sort_key):
        removed.setdefault(before[path], []).append(path)
    for path in sorted(after.keys() - before.keys(), key=_sort_key):
        candidates = removed.get(after[path])
        if candidates:
            changes.append(ManifestChange(path, "renamed", f"from {display_path(candidates.pop(0))}"))
        else:
            changes.append(ManifestChange(path, "added", f"size {after[path][0]}"))
    for (size, _digest), paths in removed.items():
        changes.extend(ManifestChange(path, "removed", f"size {size}") for path in paths)
    for path in before.keys() & after.keys():
        (old_size, old), (new_size, new) = before[path], after[path]
        if old_size != new_size:
            changes.append(ManifestChange(path, "changed", f"size {old_size} -> {new_size}"))
        elif old != new:
            changes.append(ManifestChange(path, "changed", f"blake3 {old[:12]}… -> {new[:12]}…"))
    changes.sort(key=lambda change: (_sort_key(change.path), change.change))
    return changes
