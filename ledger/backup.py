"""Backups: upload a version's files to a remote store, verify the remote copy by re-reading it, then record it.

A ``backup`` block is appended only after every remote object was read back and its SHA-256 and BLAKE3 match
what the chain recorded (weights and adapter files) or what was hashed locally (the metadata JSON, whose
content is checked against the chain first). A failure anywhere appends nothing. A re-run skips a version
only when every object its backup block at that location records is still there with the recorded size;
otherwise it uploads what is missing or different (re-using objects whose copy verifies), verifies again
and appends a new block.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ledger.errors import FileInputError, InputError, NotFoundError, RemoteCopyError
from ledger.faults import crash_point
from ledger.findings import Finding, FindingClass
from ledger.fsutil import display_path, resolve_recorded
from ledger.hashing import FileDigest, hash_file
from ledger.lifecycle import BACKUP, BackupFile, BackupRecord, LifecycleState, indexed_versions, read_state
from ledger.manifest import Manifest
from ledger.metadata import differs_from_committed
from ledger.remote import Location, RemoteStore, parse_location
from ledger.strictjson import read_object

if TYPE_CHECKING:
    from ledger.api import Ledger


class Progress(Protocol):
    """Progress reporting for long transfers (the CLI draws a bar; the library never prints)."""

    def start(self, label: str, total: int) -> None:
        """A new file transfer of ``total`` bytes begins."""

    def advance(self, n: int) -> None:
        """``n`` more bytes were transferred."""


class Status(enum.StrEnum):
    """What happened to one version."""

    UPLOADED = "uploaded"
    REPAIRED = "repaired"  # backed up before, but an object had gone or changed: uploaded again
    SKIPPED = "skipped"
    PRUNED = "pruned"


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """A local file to back up with the digests its remote copy must have."""

    role: str
    path: str
    local: Path
    remote: str
    expected: FileDigest


@dataclass(frozen=True, slots=True)
class BackupOutcome:
    """One version's backup result: status, the block appended (if any), bytes uploaded."""

    version: str
    status: Status
    height: int | None
    uploaded_bytes: int
    files: int

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "version": self.version,
            "status": str(self.status),
            "height": self.height,
            "uploaded_bytes": self.uploaded_bytes,
            "files": self.files,
        }


def backup(
    ledger: Ledger,
    store: RemoteStore,
    versions: Sequence[str] = (),
    *,
    model: str | None = None,
    progress: Progress | None = None,
) -> list[BackupOutcome]:
    """Back up the given versions (default: every version) to ``store``, verifying before recording."""
    state = read_state(ledger)
    if versions:
        names = []
        for ref in versions:
            block = ledger.find(ref, model=model)
            if block.kind != "version":
                raise NotFoundError(f"block {block.height} is a {block.kind} block, not a version")
            names.append(str(block.data()["name"]))
    else:
        names = [v.name for v in indexed_versions(ledger) if model is None or v.model == model]
    outcomes = []
    for name in names:
        outcomes.append(_backup_one(ledger, store, state, name, progress))
    return outcomes


def _backup_one(
    ledger: Ledger, store: RemoteStore, state: LifecycleState, name: str, progress: Progress | None
) -> BackupOutcome:
    location = store.location.url
    recorded = state.latest_backup(name, location)
    if recorded is not None and not remote_problems(store, recorded):
        return BackupOutcome(name, Status.SKIPPED, None, 0, 0)
    if name in state.pruned:
        return BackupOutcome(name, Status.PRUNED, None, 0, 0)
    payload = ledger.find(name).data()
    planned = plan_files(payload, models_dir=ledger.models_dir, adapters_dir=ledger.adapters_dir)
    uploaded = 0
    for item in planned:
        uploaded += _transfer(store, item, progress)
        crash_point("backup:transferred")
    crash_point("backup:uploaded")
    block = ledger.append_event(
        BACKUP,
        {
            "version": name,
            "location": location,
            "files": [
                BackupFile(
                    p.role,
                    p.path,
                    store.location.url_of(p.remote),
                    p.expected.size,
                    p.expected.sha256,
                    p.expected.blake3,
                ).to_json()
                for p in planned
            ],
            "verified": True,
        },
    )
    status = Status.UPLOADED if recorded is None else Status.REPAIRED
    return BackupOutcome(name, status, block.height, uploaded, len(planned))


def remote_name(payload: dict[str, Any], role: str, path: str) -> str:
    """Where a file of a version lives below the backup root: ``{model}/{name}/models|adapters/{path}``."""
    folder = "adapters" if role == "adapter" else "models"
    return f"{payload['model']}/{payload['name']}/{folder}/{path}"


def plan_files(payload: dict[str, Any], *, models_dir: Path, adapters_dir: Path) -> list[PlannedFile]:
    """The files of a version with the digests their copies must have; refuses local files that changed."""
    planned: list[PlannedFile] = []
    weights = payload.get("weights")
    if isinstance(weights, dict):
        path = str(weights["path"])
        local = _existing(resolve_recorded(models_dir, path), "weight file")
        if local.stat().st_size != weights["size"]:
            raise FileInputError(
                f"weight file {display_path(path)} has {local.stat().st_size} bytes, the ledger recorded "
                f"{weights['size']}: it changed since it was ledgered, so it is not backed up"
            )
        expected = FileDigest(int(weights["size"]), str(weights["sha256"]), str(weights["blake3"]))
        planned.append(PlannedFile("weights", path, local, remote_name(payload, "weights", path), expected))
    meta = payload.get("metadata")
    if isinstance(meta, dict):
        path = str(meta["path"])
        local = _existing(resolve_recorded(models_dir, path), "metadata file")
        differences = differs_from_committed(read_object(local), meta.get("content") or {})
        if differences:
            raise InputError(
                f"metadata file {display_path(path)} differs from the ledger at {', '.join(differences[:5])}: "
                "not backed up"
            )
        planned.append(PlannedFile("metadata", path, local, remote_name(payload, "metadata", path), hash_file(local)))
    adapter = payload.get("adapter")
    if isinstance(adapter, dict):
        root = str(adapter["path"])
        for entry in Manifest.from_json(adapter["manifest"]).entries:
            path = f"{root}/{entry.path}"
            local = _existing(resolve_recorded(adapters_dir, path), "adapter file")
            expected = FileDigest(entry.size, entry.sha256, entry.blake3)
            planned.append(PlannedFile("adapter", path, local, remote_name(payload, "adapter", path), expected))
    return planned


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileInputError(f"{what} {display_path(path)} is missing, so it cannot be backed up")
    return path


def _transfer(store: RemoteStore, item: PlannedFile, progress: Progress | None) -> int:
    """Upload unless a verified copy is already there; then verify. Returns the bytes uploaded."""
    advance = progress.advance if progress is not None else None
    uploaded = 0
    if store.size(item.remote) == item.expected.size:
        if progress is not None:
            progress.start(f"checking {Path(item.path).name}", item.expected.size)
        if store.digest(item.remote, progress=advance) == item.expected:
            return 0
    if progress is not None:
        progress.start(f"uploading {Path(item.path).name}", item.expected.size)
    store.put(item.local, item.remote, progress=advance)
    uploaded = item.expected.size
    if progress is not None:
        progress.start(f"verifying {Path(item.path).name}", item.expected.size)
    actual = store.digest(item.remote, progress=advance)
    if actual != item.expected:
        raise RemoteCopyError(
            f"remote copy {store.location.url_of(item.remote)} does not match the ledger "
            f"(size {actual.size} vs {item.expected.size}, sha256 {actual.sha256[:12]} vs "
            f"{item.expected.sha256[:12]}): the local file may have changed; no backup block was written"
        )
    return uploaded


class RemoteCheck(enum.StrEnum):
    """How deeply ``audit --remote`` checks the recorded backups."""

    SIZE = "size"
    FULL = "full"


def audit_backups(
    ledger: Ledger,
    *,
    mode: RemoteCheck,
    open_store: Any,
    state: LifecycleState | None = None,
) -> tuple[list[Finding], int]:
    """``remote`` findings for every recorded backup whose objects are missing or differ (size; hashes too
    with ``full``). ``open_store(location)`` returns a ``RemoteStore``. Returns findings and objects checked."""
    state = state if state is not None else read_state(ledger)
    findings: list[Finding] = []
    checked = 0
    stores: dict[str, RemoteStore] = {}
    for records in state.backups.values():
        for record in records:
            store = stores.get(record.location)
            if store is None:
                store = stores[record.location] = open_store(parse_location(record.location))
            for item in record.files:
                checked += 1
                problem = _check_remote(store, record, item, mode)
                if problem is not None:
                    findings.append(Finding(record.height, record.version, FindingClass.REMOTE, problem, item.path))
    return findings, checked


def remote_problems(store: RemoteStore, record: BackupRecord) -> list[str]:
    """Why a recorded backup cannot be relied on (an object missing or of another size; a cheap ``info`` per
    object, no download); empty when every object is there. Store failures raise ``RemoteStoreError``."""
    problems = (_check_remote(store, record, item, RemoteCheck.SIZE) for item in record.files)
    return [problem for problem in problems if problem is not None]


def _check_remote(store: RemoteStore, record: BackupRecord, item: BackupFile, mode: RemoteCheck) -> str | None:
    relative = _relative_to(store.location, item.remote)
    if relative is None:
        return f"backup object {item.remote} is not below {record.location}"
    size = store.size(relative)
    if size is None:
        return f"backup object {item.remote} is missing"
    if size != item.size:
        return f"backup object {item.remote} has {size} bytes, the ledger recorded {item.size}"
    if mode is RemoteCheck.FULL:
        try:
            actual = store.digest(relative)
        except RemoteCopyError as exc:
            return str(exc)
        if (actual.sha256, actual.blake3) != (item.sha256, item.blake3):
            return f"backup object {item.remote} content differs from the ledger"
    return None


def _relative_to(location: Location, url: str) -> str | None:
    prefix = location.url + "/"
    return url[len(prefix) :] if url.startswith(prefix) else None
