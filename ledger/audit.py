"""The audit: re-verify every block, the database guards, and the files on disk; return findings as data.

Chain checks: ``ledger.chain`` (pure). File checks: every ledgered weight file, metadata file and adapter
directory is present and matches (``full`` re-hashes with BLAKE3; ``quick`` compares size and mtime only,
which is not a proof); weight files nobody ledgered are reported too.
"""

from __future__ import annotations

import enum
import functools
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import background, guards
from ledger.chain import sort_findings
from ledger.errors import FileInputError, InputError, UnsafePathError
from ledger.findings import Finding, FindingClass
from ledger.fsutil import display_path, locate_recorded
from ledger.hashing import blake3_file
from ledger.manifest import Manifest, verify_directory
from ledger.metadata import differs_from_committed
from ledger.recording import WEIGHT_SUFFIXES
from ledger.strictjson import read_object
from ledger.tables import APPEND_ONLY_TABLES
from ledger.versions import VersionId, VersionRecord, pending_stage1


class FilesMode(enum.StrEnum):
    """How deeply the audit checks files on disk."""

    FULL = "full"
    QUICK = "quick"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What an audit checked and what it found."""

    findings: tuple[Finding, ...]
    blocks_checked: int
    head_height: int
    head_hash: str
    files_mode: FilesMode
    files_checked: int
    notes: tuple[str, ...] = ()
    pruned: tuple[tuple[str, str], ...] = ()  # (version, backup location) for versions pruned by policy
    incremental_from: int | None = None
    """Size of the trusted checkpoint the chain check resumed from; None for a full audit from the genesis."""
    payloads: Mapping[int, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)
    """The decoded payload of every version block the audit accepted, by height, so that a report built on
    the audit (``ledger export``) does not decode them all again. Not part of the ``--json`` report."""

    @property
    def clean(self) -> bool:
        """True when nothing but warnings was found."""
        return not any(not f.is_warning for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        """The report in the documented ``--json`` shape (docs/FORMAT.md, audit report)."""
        return {
            "schema": "ledger-audit/v1",
            "clean": self.clean,
            "blocks_checked": self.blocks_checked,
            "head": {"height": self.head_height, "hash": self.head_hash},
            "files": {"mode": str(self.files_mode), "checked": self.files_checked},
            "notes": list(self.notes),
            "pruned": [{"version": version, "location": location} for version, location in self.pruned],
            "findings": [
                {
                    "height": f.height,
                    "version": f.version,
                    "class": str(f.kind),
                    "severity": "warning" if f.is_warning else "error",
                    "path": f.path,
                    "message": f.message,
                }
                for f in self.findings
            ],
        }


@dataclass(slots=True)
class VersionState:
    """What the chain says about one version's files, after every lifecycle block up to the head."""

    height: int
    name: str
    payload: dict[str, Any]
    pruned: dict[str, Any] | None = None


@dataclass(slots=True)
class ChainScan:
    """Result of walking the chain: findings plus what the file checks need."""

    findings: list[Finding] = field(default_factory=list)
    versions: dict[str, VersionState] = field(default_factory=dict)
    history: dict[str, list[VersionRecord]] = field(default_factory=dict)
    count: int = 0
    head_height: int = -1
    head_hash: str = ""
    latest: dict[str, Parent] = field(default_factory=dict)
    """The newest version of each model so far: what the model's next version must name as its parent."""


@dataclass(frozen=True, slots=True)
class Parent:
    """A version as its successor's payload names it (``parent`` in docs/FORMAT.md)."""

    version: str
    height: int
    block_hash: str

    def named_by(self, parent: Any) -> bool:
        """True when ``parent`` (a payload's ``parent`` value) names exactly this version, height and block."""
        return (
            isinstance(parent, dict)
            and parent.keys() == {"version", "height", "block_hash"}
            and parent["version"] == self.version
            and type(parent["height"]) is int
            and parent["height"] == self.height
            and parent["block_hash"] == self.block_hash
        )


#: Kinds whose blocks change what the file checks expect; ``record_block`` handles each of them.
STATE_KINDS: tuple[str, ...] = ("version", "prune", "restore")


def record_block(scan: ChainScan, block: Any) -> None:
    """Let a verified block of one of ``STATE_KINDS`` update what the file checks expect."""
    from ledger.chain import payload_of

    if block.kind == "version":
        _record_version(scan, block, payload_of(block))
    else:
        _record_lifecycle(scan, block.height, block.kind, payload_of(block))


def _record_version(scan: ChainScan, block: Any, payload: dict[str, Any]) -> None:
    height = block.height
    try:
        name = str(payload["name"])
        record = VersionRecord(VersionId.parse(str(payload["version"])), payload.get("stage"), payload.get("question"))
    except (KeyError, InputError):
        scan.findings.append(Finding(height, None, FindingClass.PAYLOAD, "version payload lacks a valid name"))
        return
    model = str(payload.get("model"))
    problem = _lineage_problem(model, scan.latest.get(model), payload.get("parent"))
    if problem is not None:
        scan.findings.append(Finding(height, name, FindingClass.SEQUENCE, problem))
    scan.latest[model] = Parent(str(record.version), height, block.block_hash)
    scan.versions[name] = VersionState(height, name, payload)
    scan.history.setdefault(model, []).append(record)


def _lineage_problem(model: str, previous: Parent | None, parent: Any) -> str | None:
    """Why ``parent`` is not the model's previous version in the chain (None for the first: no parent)."""
    if previous is None:
        if parent is None:
            return None
        return f"names parent {_shown(parent)}, but it is the first version of {model} in the chain"
    if previous.named_by(parent):
        return None
    if isinstance(parent, dict) and parent.get("height") == previous.height:
        detail = "with a block hash that is not that block's"
    else:
        detail = f"but the previous version of {model} is v{previous.version} at height {previous.height}"
    return f"names parent {_shown(parent)}, {detail}"


def _shown(parent: Any) -> str:
    """A parent reference in a message (signed, but still not printed raw)."""
    if not isinstance(parent, dict):
        return "none" if parent is None else "that is not an object"
    version, height = (str(parent.get(key))[:24] for key in ("version", "height"))
    return ascii(f"v{version} at height {height}")[1:-1]


def _record_lifecycle(scan: ChainScan, height: int, kind: str, payload: Any) -> None:
    """A prune block releases the files it lists (their absence is the prune; the report shows the backup
    location); prune blocks since the last restore add up, and a restore releases nothing any more."""
    state = scan.versions.get(str(payload.get("version"))) if isinstance(payload, dict) else None
    if state is None:
        scan.findings.append(Finding(height, None, FindingClass.PAYLOAD, f"{kind} block names no ledgered version"))
        return
    if kind == "prune":
        listed = payload.get("files")
        files = frozenset(str(f) for f in listed) if isinstance(listed, list) else frozenset()
        earlier = state.pruned["files"] if state.pruned is not None else frozenset()
        state.pruned = {"height": height, "location": payload.get("location"), "files": earlier | files}
    else:
        state.pruned = None


def stage_warnings(scan: ChainScan) -> list[Finding]:
    """Warnings for stage-1 versions still waiting for their stage 2."""
    out = []
    for model, history in scan.history.items():
        for record in pending_stage1(history):
            name = f"{model}-{record.version.tag}"
            state = scan.versions.get(name)
            out.append(
                Finding(
                    state.height if state else None,
                    name,
                    FindingClass.STAGE_PENDING,
                    f"stage 1 of question {record.question} has no stage 2 yet",
                )
            )
    return out


def guard_findings(present: Mapping[str, Mapping[str, guards.TriggerState]], dialect: str) -> list[Finding]:
    """A ``db-guard`` finding for every append-only trigger that is missing, disabled or not the one the
    migrations created (another definition, or a trigger function that no longer refuses the change)."""
    out = []
    for table in APPEND_ONLY_TABLES:
        found = present.get(table, {})
        for name, expected in sorted(guards.expected_triggers(dialect, table).items()):
            problem = _guard_problem(expected, found.get(name))
            if problem is not None:
                message = f"append-only trigger {name} on {table} {problem}"
                out.append(Finding(None, None, FindingClass.DB_GUARD, message))
    return out


def _guard_problem(expected: guards.TriggerState, actual: guards.TriggerState | None) -> str | None:
    if actual is None:
        return "is missing"
    if actual.definition != expected.definition:
        return "was replaced: its definition (timing, events, level or WHEN clause) is not the migration's"
    if actual.function != expected.function:
        return f"calls a function that no longer refuses the change ({guards.PG_FUNCTION} was rewritten)"
    if not actual.fires_always:
        return "is disabled (it must be ENABLE ALWAYS)"
    return None


Progress = Callable[[int], None]
ProgressStart = Callable[[int], Progress | None]
"""Called once with the bytes a full file check will hash; returns the callback to report them to, or None."""


def check_files(
    versions: Iterable[VersionState],
    *,
    models_dir: Path,
    adapters_dir: Path,
    mode: FilesMode,
    progress: ProgressStart | None = None,
) -> tuple[list[Finding], int]:
    """Check every ledgered file against its record; returns findings and the number of files looked at.

    In full mode the files are hashed in parallel threads (BLAKE3 releases the GIL), so many small adapter
    files overlap the large weight files, and ``progress`` is told how many bytes that is.
    """
    states = list(versions)
    tick = progress(_recorded_bytes(states)) if progress is not None and mode is FilesMode.FULL else None
    checks: list[Callable[[], list[Finding]]] = []
    ledgered: set[str] = set()
    for state in states:
        weights = state.payload.get("weights")
        if isinstance(weights, dict):
            ledgered.add(str(weights.get("path")))
            checks.append(functools.partial(_check_weights, state, weights, models_dir, mode, tick))
        meta = state.payload.get("metadata")
        if isinstance(meta, dict):
            ledgered.add(str(meta.get("path")))
            checks.append(functools.partial(_check_metadata, state, meta, models_dir))
        adapter = state.payload.get("adapter")
        if isinstance(adapter, dict):
            checks.append(functools.partial(_check_adapter, state, adapter, adapters_dir, mode, tick))
    if mode is FilesMode.FULL and len(checks) > 1:
        with ThreadPoolExecutor(max_workers=min(len(checks), 2 * (os.cpu_count() or 1))) as pool:
            results = list(pool.map(lambda check: check(), checks))
        findings = [finding for result in results for finding in result]
    else:
        findings = _run_checks(checks)
    findings.extend(_unledgered(models_dir, ledgered, adapters_dir))
    findings.extend(_adapter_leftovers(adapters_dir))
    return findings, len(checks)


#: From this many quick checks on, half of them run in a forked process: each costs ~50 µs of the
#: interpreter's time (strict JSON parsing, path checks, system calls), ~0.5 s at 10,000 versions.
FORK_CHECKS = 2000


def _run_checks(checks: list[Callable[[], list[Finding]]]) -> list[Finding]:
    """Run quick checks, the second half in a forked process where one can be (``ledger.background``); the
    findings come back in the same order either way."""
    if len(checks) < FORK_CHECKS:
        return _run_all(checks)
    half = len(checks) // 2
    with background.forked(functools.partial(_run_all, checks[half:])) as rest:
        first = _run_all(checks[:half])
        return first + rest.result()


def _run_all(checks: list[Callable[[], list[Finding]]]) -> list[Finding]:
    return [finding for check in checks for finding in check()]


def _recorded_bytes(states: list[VersionState]) -> int:
    """Bytes of every weight file and adapter file the versions record (what a full check hashes)."""
    total = 0
    for state in states:
        weights, adapter = state.payload.get("weights"), state.payload.get("adapter")
        if isinstance(weights, dict) and isinstance(weights.get("size"), int):
            total += weights["size"]
        files = adapter.get("manifest", {}).get("files") if isinstance(adapter, dict) else None
        if isinstance(files, list):
            total += sum(f["size"] for f in files if isinstance(f, dict) and isinstance(f.get("size"), int))
    return total


def _finding(state: VersionState, kind: FindingClass, path: str, message: str) -> Finding:
    return Finding(state.height, state.name, kind, message, path)


def _locate(state: VersionState, root: Path, relative: str) -> tuple[str, os.stat_result | None] | Finding:
    """The recorded file's path under ``root`` and its ``lstat`` (None when missing), or why it is refused."""
    try:
        return locate_recorded(os.fspath(root), relative)
    except (UnsafePathError, FileInputError) as exc:
        return _finding(state, FindingClass.FILE_MISMATCH, relative, str(exc))


def _present(state: VersionState, root: Path, relative: str, what: str) -> tuple[str, os.stat_result] | list[Finding]:
    """The recorded file's path and ``lstat``, or the findings when it is refused or missing (none for a file
    a prune released)."""
    located = _locate(state, root, relative)
    if isinstance(located, Finding):
        return [located]
    path, info = located
    if info is None:
        missing = f"{what} {relative} is missing"
        return [] if _released(state, relative) else [_finding(state, FindingClass.FILE_MISSING, relative, missing)]
    return path, info


def _check_weights(
    state: VersionState, record: dict[str, Any], root: Path, mode: FilesMode, progress: Progress | None
) -> list[Finding]:
    relative = str(record.get("path"))
    present = _present(state, root, relative, "weight file")
    if isinstance(present, list):
        return present
    path, info = present
    if info.st_size != record.get("size"):
        return [
            _finding(
                state,
                FindingClass.FILE_MISMATCH,
                relative,
                f"weight file {relative} has {info.st_size} bytes, the ledger recorded {record.get('size')}",
            )
        ]
    if mode is FilesMode.QUICK:
        if str(info.st_mtime_ns) != record.get("mtime_ns"):
            return [
                _finding(
                    state,
                    FindingClass.FILE_MISMATCH,
                    relative,
                    f"weight file {relative} was modified (mtime)",
                )
            ]
        return []
    try:
        _size, digest = blake3_file(Path(path), progress=progress)
    except InputError as exc:
        return [_finding(state, FindingClass.FILE_MISMATCH, relative, str(exc))]
    if digest != record.get("blake3"):
        return [_finding(state, FindingClass.FILE_MISMATCH, relative, f"weight file {relative} content differs")]
    return []


def _check_metadata(state: VersionState, record: dict[str, Any], root: Path) -> list[Finding]:
    relative = str(record.get("path"))
    present = _present(state, root, relative, "metadata file")
    if isinstance(present, list):
        return present
    path, _info = present
    try:
        on_disk = read_object(path)
    except InputError as exc:
        return [_finding(state, FindingClass.METADATA_MISMATCH, relative, f"metadata file {relative}: {exc}")]
    differences = differs_from_committed(on_disk, record.get("content") or {})
    if differences:
        shown = ", ".join(differences[:5]) + (" ..." if len(differences) > 5 else "")
        return [
            _finding(
                state,
                FindingClass.METADATA_MISMATCH,
                relative,
                f"metadata file {relative} differs at {shown}",
            )
        ]
    return []


def _check_adapter(
    state: VersionState, record: dict[str, Any], root: Path, mode: FilesMode, progress: Progress | None
) -> list[Finding]:
    relative = str(record.get("path"))
    located = _locate(state, root, relative)
    if isinstance(located, Finding):
        return [located]
    path = Path(located[0])
    try:
        recorded = Manifest.from_json(record["manifest"])
    except (InputError, KeyError) as exc:
        return [_finding(state, FindingClass.PAYLOAD, relative, f"adapter {relative}: bad manifest: {exc}")]
    recorded = _still_expected(state, relative, recorded, path)
    if not path.is_dir():
        if state.pruned is not None and not recorded.entries:
            return []
        return [_finding(state, FindingClass.FILE_MISSING, relative, f"adapter directory {relative} is missing")]
    if mode is FilesMode.QUICK:
        return _quick_adapter(state, relative, recorded, path)
    try:
        changes = verify_directory(path, recorded, progress=progress)
    except InputError as exc:
        return [_finding(state, FindingClass.FILE_MISMATCH, relative, f"adapter {relative}: {exc}")]
    return [
        _finding(
            state,
            FindingClass.FILE_MISMATCH,
            f"{relative}/{change.path}",
            f"adapter file {relative}/{change.path} {change.change} {change.detail}".rstrip(),
        )
        for change in changes
    ]


def _released(state: VersionState, relative: str) -> bool:
    """True when a prune block in force lists ``relative``; any other missing file is a loss."""
    return state.pruned is not None and relative in state.pruned["files"]


def _still_expected(state: VersionState, relative: str, recorded: Manifest, folder: Path) -> Manifest:
    """The adapter files the audit expects: all recorded ones except those a prune released that are gone
    (a released file still present is checked like any other)."""
    if state.pruned is None:
        return recorded
    return Manifest(
        tuple(
            entry
            for entry in recorded.entries
            if not _released(state, f"{relative}/{entry.path}") or os.path.lexists(folder / entry.path)
        )
    )


def _quick_adapter(state: VersionState, relative: str, recorded: Manifest, path: Path) -> list[Finding]:
    """Compare names and sizes only (no hashing)."""
    sizes: dict[str, int] = {}
    for folder, _dirs, files in os.walk(path):
        for name in files:
            full = Path(folder) / name
            sizes[full.relative_to(path).as_posix()] = full.lstat().st_size
    expected = {entry.path: entry.size for entry in recorded.entries}
    out = []
    for name in sorted(set(sizes) | set(expected)):
        if name not in sizes:
            change = "removed"
        elif name not in expected:
            change = "added"
        elif sizes[name] != expected[name]:
            change = "changed size"
        else:
            continue
        out.append(
            _finding(
                state,
                FindingClass.FILE_MISMATCH,
                f"{relative}/{name}",
                f"adapter file {relative}/{name} {change}",
            )
        )
    return out


def _unledgered(models_dir: Path, ledgered: set[str], adapters_dir: Path) -> list[Finding]:
    """Weight files (and hidden ``.*.tmp`` leftovers) anywhere under the models directory that no block records.

    ``append`` accepts weights in subdirectories, so the whole tree is walked; symbolic links are not followed
    (nothing is recorded through one), and an adapters directory inside the models directory is left to the
    adapter checks.
    """
    out: list[Finding] = []
    for relative in sorted(_files_under(models_dir, skip=adapters_dir)):
        name = os.path.basename(relative)
        is_weight = name.endswith(WEIGHT_SUFFIXES)
        is_temp = name.startswith(".") and name.endswith(".tmp")
        if (is_weight or is_temp) and relative not in ledgered:
            shown = display_path(relative)
            out.append(Finding(None, None, FindingClass.UNLEDGERED, f"{shown} is not in the ledger", shown))
    return out


def _files_under(root: Path, *, skip: Path) -> Iterable[str]:
    """Relative POSIX paths of the regular files below ``root``, without following symbolic links or entering
    ``skip`` (iterative: a deep tree cannot exhaust the stack)."""
    skip = skip.resolve()
    pending = [(root, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = list(listing)
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if Path(entry.path).resolve() != skip:
                    pending.append((Path(entry.path), f"{prefix}{entry.name}/"))
            elif entry.is_file(follow_symlinks=False):
                yield f"{prefix}{entry.name}"


def _adapter_leftovers(adapters_dir: Path) -> list[Finding]:
    """Hidden ``.<name>.<token>.tmp`` directories: adapters of a save that died before its block committed."""
    out: list[Finding] = []
    try:
        entries = sorted(os.scandir(adapters_dir), key=lambda e: e.name)
    except OSError:
        return out
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_dir(follow_symlinks=False):
            shown = display_path(entry.name)
            message = f"adapter directory {shown} is a leftover of an interrupted save or restore, not in the ledger"
            out.append(Finding(None, None, FindingClass.UNLEDGERED, message, shown))
    return out


def sorted_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Findings in report order."""
    return tuple(sort_findings(findings))
