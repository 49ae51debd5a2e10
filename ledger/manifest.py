"""Directory manifests (LoRA adapter and training-data directories): per-file digests and one root hash."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import stat
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from ledger.canonical import canonical
from ledger.errors import FileInputError, JSONInputError, UnsafePathError
from ledger.fsutil import check_recorded, display_path, os_reason
from ledger.hashing import hash_file

FORMAT = "ledger-manifest-v1"
ALGORITHMS = ("sha256", "blake3")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ENTRY_KEYS = frozenset({"path", "size", "sha256", "blake3"})
_MAX_SIZE = 2**53 - 1  # largest integer RFC 8785 (I-JSON) represents exactly


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


def _walk(directory: Path) -> list[tuple[str, Path]]:
    """Every regular file below ``directory`` as (relative POSIX path, path); refuse anything else."""
    found: list[tuple[str, Path]] = []
    stack: list[tuple[PurePosixPath, Path]] = [(PurePosixPath(), directory)]
    while stack:
        relative_dir, current = stack.pop()
        try:
            with os.scandir(current) as scan:
                entries = list(scan)
        except OSError as exc:
            raise FileInputError(f"cannot list {display_path(current)}: {os_reason(exc)}") from None
        for entry in entries:
            shown = display_path(entry.path)
            try:
                entry.name.encode("utf-8")
            except UnicodeEncodeError:
                raise UnsafePathError(f"file name {shown} is not valid UTF-8") from None
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError as exc:
                raise FileInputError(f"cannot read {shown}: {os_reason(exc)}") from None
            relative = relative_dir / entry.name
            if stat.S_ISDIR(mode):
                stack.append((relative, Path(entry.path)))
            elif stat.S_ISREG(mode):
                found.append((relative.as_posix(), Path(entry.path)))
            elif stat.S_ISLNK(mode):
                raise UnsafePathError(f"{shown} is a symbolic link; manifests record regular files only")
            else:
                raise UnsafePathError(f"{shown} is a special file (FIFO, socket or device); refused")
    return found


def hash_directory(directory: Path, *, workers: int | None = None) -> Manifest:
    """Hash every regular file below ``directory`` (SHA-256 + BLAKE3, files in parallel) into a manifest.

    Symbolic links, FIFOs, sockets, devices and non-UTF-8 names are refused rather than skipped: a manifest
    must describe exactly what a loader would read. An empty directory gives a manifest of no files.
    """
    try:
        mode = directory.lstat().st_mode
    except OSError as exc:
        raise FileInputError(f"cannot read directory {display_path(directory)}: {os_reason(exc)}") from None
    if stat.S_ISLNK(mode):
        raise UnsafePathError(f"{display_path(directory)} is a symbolic link, not a directory")
    if not stat.S_ISDIR(mode):
        raise FileInputError(f"{display_path(directory)} is not a directory")
    files = _walk(directory)

    def one(item: tuple[str, Path]) -> ManifestEntry:
        relative, path = item
        digest = hash_file(path, follow_symlinks=False)
        return ManifestEntry(relative, digest.size, digest.sha256, digest.blake3)

    if len(files) <= 1:
        return Manifest(tuple(map(one, files)))
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        return Manifest(tuple(pool.map(one, files)))


ChangeKind = Literal["added", "removed", "changed", "renamed"]


@dataclass(frozen=True, slots=True)
class ManifestChange:
    """One difference between a recorded and an actual manifest, for a person to read."""

    path: str
    change: ChangeKind
    detail: str


def _short(digest: str) -> str:
    return digest[:12]


def _describe_change(old: ManifestEntry, new: ManifestEntry) -> str:
    parts: list[str] = []
    if old.size != new.size:
        parts.append(f"size {old.size} -> {new.size}")
    if old.sha256 != new.sha256:
        parts.append(f"sha256 {_short(old.sha256)}… -> {_short(new.sha256)}…")
    if old.blake3 != new.blake3:
        parts.append(f"blake3 {_short(old.blake3)}… -> {_short(new.blake3)}…")
    return ", ".join(parts)


def compare(recorded: Manifest, actual: Manifest) -> list[ManifestChange]:
    """List what differs between the recorded manifest and the directory as it is now.

    A removed file and an added file with the same size and SHA-256 are reported as one ``renamed``
    change at the new path (detail ``from <old path>``). Order: by the UTF-8 bytes of the path.
    """
    before = {entry.path: entry for entry in recorded.entries}
    after = {entry.path: entry for entry in actual.entries}
    changes: list[ManifestChange] = []
    removed: dict[tuple[int, str], list[ManifestEntry]] = {}
    for path in sorted(before.keys() - after.keys(), key=_sort_key):
        entry = before[path]
        removed.setdefault((entry.size, entry.sha256), []).append(entry)
    for path in sorted(after.keys() - before.keys(), key=_sort_key):
        entry = after[path]
        candidates = removed.get((entry.size, entry.sha256))
        if candidates:
            source = candidates.pop(0)
            changes.append(ManifestChange(path, "renamed", f"from {display_path(source.path)}"))
        else:
            changes.append(ManifestChange(path, "added", f"size {entry.size}"))
    for group in removed.values():
        changes.extend(ManifestChange(entry.path, "removed", f"size {entry.size}") for entry in group)
    for path in before.keys() & after.keys():
        if before[path] != after[path]:
            changes.append(ManifestChange(path, "changed", _describe_change(before[path], after[path])))
    changes.sort(key=lambda change: (_sort_key(change.path), change.change))
    return changes
