"""Verified restore: download a version's backup to temporary names, check every digest, then rename into place.

Nothing is placed unless every file verified: the downloads go to hidden ``.NAME.TOKEN.tmp`` files beside
their targets, each is hashed (SHA-256 + BLAKE3) while it is written and compared with the chain, and only
then are all renamed. Any failure removes the temporary files (and directories this restore created).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import NotFoundError, RemoteCopyError, StorageError
from ledger.faults import crash_point
from ledger.fsutil import display_path, fsync_dir, os_reason, resolve_recorded
from ledger.hashing import FileDigest, HashingWriter
from ledger.lifecycle import RESTORE, BackupFile, BackupRecord, read_state, verify_blocks
from ledger.manifest import Manifest
from ledger.metadata import differs_from_committed
from ledger.remote import Location, RemoteStore, parse_location
from ledger.strictjson import read_object

if TYPE_CHECKING:
    from ledger.api import Ledger
    from ledger.backup import Progress


@dataclass(frozen=True, slots=True)
class RestoreOutcome:
    """A finished restore: the version, where from, the block appended and the files placed."""

    version: str
    location: str
    height: int
    files: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        return {"version": self.version, "location": self.location, "height": self.height, "files": list(self.files)}


@dataclass(slots=True)
class _Staged:
    entry: BackupFile
    target: Path
    temp: Path


def restore(
    ledger: Ledger,
    ref: str,
    *,
    open_store: Callable[[Location], RemoteStore],
    location: Location | None = None,
    model: str | None = None,
    progress: Progress | None = None,
) -> RestoreOutcome:
    """Restore a version from its newest verified backup (at ``location`` when given) and record it."""
    version_block = ledger.find(ref, model=model)
    payload = version_block.data()
    name = str(payload["name"])
    state = read_state(ledger)
    record = state.latest_backup(name, location.url if location is not None else None)
    if record is None:
        where = f" at {location.url}" if location is not None else ""
        raise NotFoundError(f"{name} has no verified backup{where} in the ledger")
    verify_blocks(ledger, version_block, ledger.block(record.height))
    expected = _expected(payload, record)
    store = open_store(location if location is not None else parse_location(record.location))
    staged: list[_Staged] = []
    created: list[Path] = []
    # A missing adapter directory is assembled in a hidden staging directory and renamed into place whole,
    # so a crash never leaves it half there (the audit would report the absent files of a complete version).
    adapter_dir = _adapter_dir(ledger, payload)
    staging = None
    if adapter_dir is not None and not os.path.lexists(adapter_dir):
        staging = ledger.adapters_dir / f".{name}.{secrets.token_hex(8)}.tmp"
    placed = False
    try:
        for entry in record.files:
            target = resolve_recorded(ledger.adapters_dir if entry.role == "adapter" else ledger.models_dir, entry.path)
            if staging is not None and entry.role == "adapter":
                temp = staging / entry.path
                created.extend(_make_parents(temp.parent))
            else:
                created.extend(_make_parents(target.parent))
                temp = target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp"
            staged.append(_Staged(entry, target, temp))
            relative = _relative(store.location, entry.remote)
            if progress is not None:
                progress.start(f"restoring {target.name}", entry.size)
            digest = _download(store, relative, temp, progress)
            want = expected[entry.path]
            if digest != want:
                raise RemoteCopyError(
                    f"remote copy {entry.remote} does not match the ledger (size {digest.size} vs {want.size}, "
                    f"sha256 {digest.sha256[:12]} vs {want.sha256[:12]}): refused, nothing was placed"
                )
            if entry.role == "metadata":
                differences = differs_from_committed(read_object(temp), payload["metadata"].get("content") or {})
                if differences:
                    raise RemoteCopyError(f"remote metadata {entry.remote} differs from the ledger: refused")
            if entry.role == "weights" and payload["weights"].get("mtime_ns"):
                mtime = int(payload["weights"]["mtime_ns"])
                os.utime(temp, ns=(mtime, mtime))  # so the quick audit (size + mtime) sees the recorded file
        crash_point("restore:downloaded")
        for item in staged:
            if staging is not None and item.entry.role == "adapter":
                continue
            try:
                os.replace(item.temp, item.target)
            except OSError as exc:
                raise StorageError(f"cannot place {display_path(item.target)}: {os_reason(exc)}") from None
        if staging is not None and adapter_dir is not None:
            created.extend(_make_parents(adapter_dir.parent))
            source = staging / adapter_dir.relative_to(ledger.adapters_dir)
            try:
                os.rename(source, adapter_dir)
            except OSError as exc:
                raise StorageError(f"cannot place {display_path(adapter_dir)}: {os_reason(exc)}") from None
        for folder in {item.target.parent for item in staged}:
            fsync_dir(folder)
        crash_point("restore:renamed")
        placed = True
    finally:
        if not placed:
            for item in staged:
                with contextlib.suppress(OSError):
                    item.temp.unlink()
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)  # empty once placed; a failed restore's downloads
    block = ledger.append_event(
        RESTORE,
        {
            "version": name,
            "location": record.location,
            "backup_height": record.height,
            "files": [item.entry.path for item in staged],
        },
    )
    return RestoreOutcome(name, record.location, block.height, tuple(item.entry.path for item in staged))


def _expected(payload: dict[str, Any], record: BackupRecord) -> dict[str, FileDigest]:
    """The digest each file must have: from the version block where it records one, else the backup block."""
    chain: dict[str, FileDigest] = {}
    weights = payload.get("weights")
    if isinstance(weights, dict):
        chain[str(weights["path"])] = FileDigest(int(weights["size"]), str(weights["sha256"]), str(weights["blake3"]))
    adapter = payload.get("adapter")
    if isinstance(adapter, dict):
        for item in Manifest.from_json(adapter["manifest"]).entries:
            chain[f"{adapter['path']}/{item.path}"] = FileDigest(item.size, item.sha256, item.blake3)
    out = {}
    for entry in record.files:
        recorded = FileDigest(entry.size, entry.sha256, entry.blake3)
        if entry.path in chain and chain[entry.path] != recorded:
            raise RemoteCopyError(
                f"backup block {record.height} records {entry.path} with other digests than its version"
            )
        out[entry.path] = chain.get(entry.path, recorded)
    return out


def _adapter_dir(ledger: Ledger, payload: dict[str, Any]) -> Path | None:
    adapter = payload.get("adapter")
    if not isinstance(adapter, dict):
        return None
    return resolve_recorded(ledger.adapters_dir, str(adapter["path"]))


def _relative(location: Location, url: str) -> str:
    prefix = location.url + "/"
    if not url.startswith(prefix):
        raise RemoteCopyError(f"backup object {url} is not below {location.url}")
    return url[len(prefix) :]


def _make_parents(folder: Path) -> list[Path]:
    """Create missing directories down to ``folder``; returns those created (outermost first)."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except OSError as exc:
            raise StorageError(f"cannot create {display_path(path)}: {os_reason(exc)}") from None
        created.append(path)
    return created


def _download(store: RemoteStore, relative: str, temp: Path, progress: Progress | None) -> FileDigest:
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot write in {display_path(temp.parent)}: {os_reason(exc)}") from None
    try:
        with open(fd, "wb", buffering=0) as raw, HashingWriter(raw) as writer:

            def sink(chunk: bytes) -> None:
                # A local write error must not look like a store error to the store's error translation.
                try:
                    writer.write(chunk)
                except OSError as exc:
                    raise StorageError(f"cannot write {display_path(temp)}: {os_reason(exc)}") from None

            store.read_into(relative, sink, progress=progress.advance if progress is not None else None)
            digest = writer.finish()
            os.fsync(raw.fileno())
    except OSError as exc:
        raise StorageError(f"cannot write {display_path(temp)}: {os_reason(exc)}") from None
    return digest
