"""What the lifecycle blocks say (backups, prunes, restores, aliases), folded from the chain in one pass.

``fold`` is pure over blocks; ``read_state`` runs the one query that feeds it. Planning (retention, restore,
promotion) works on this state instead of querying per version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ledger.block import Block
from ledger.chain import check_block, collect_keys
from ledger.errors import BadSignatureError
from ledger.tables import VersionIndexRow

if TYPE_CHECKING:
    from ledger.api import Ledger

BACKUP = "backup"
PRUNE = "prune"
RESTORE = "restore"
ALIAS = "alias"
KINDS = (BACKUP, PRUNE, RESTORE, ALIAS)


@dataclass(frozen=True, slots=True)
class BackupFile:
    """One file of a verified backup: its role, local path (relative to its root), remote URL and digests."""

    role: str
    path: str
    remote: str
    size: int
    sha256: str
    blake3: str

    def to_json(self) -> dict[str, Any]:
        """The entry as recorded in a backup block."""
        return {
            "role": self.role,
            "path": self.path,
            "remote": self.remote,
            "size": self.size,
            "sha256": self.sha256,
            "blake3": self.blake3,
        }


@dataclass(frozen=True, slots=True)
class BackupRecord:
    """A backup block: which version, where, which files, at which height and time."""

    height: int
    timestamp: str
    version: str
    location: str
    files: tuple[BackupFile, ...]


@dataclass(frozen=True, slots=True)
class PruneRecord:
    """The prune blocks of a version still in force (no restore after them), merged: the newest block's height,
    location and backup, and every file any of them released."""

    height: int
    timestamp: str
    version: str
    location: str
    backup_height: int
    files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AliasEvent:
    """An alias block: ``alias`` of ``model`` moved to ``version`` at ``timestamp``."""

    height: int
    timestamp: str
    model: str
    alias: str
    version: str
    previous: str | None
    action: str


@dataclass(frozen=True, slots=True)
class IndexedVersion:
    """A version as the lookup index lists it (no payload decoding needed)."""

    model: str
    major: int
    micro: int
    height: int

    @property
    def name(self) -> str:
        """The full version name, e.g. ``oneseek-7b-zero-v1.2``."""
        return f"{self.model}-v{self.major}.{self.micro}"


@dataclass(slots=True)
class LifecycleState:
    """Backups by version, prunes in force, and every alias event in chain order."""

    backups: dict[str, list[BackupRecord]] = field(default_factory=dict)
    pruned: dict[str, PruneRecord] = field(default_factory=dict)
    aliases: list[AliasEvent] = field(default_factory=list)

    def latest_backup(self, version: str, location: str | None = None) -> BackupRecord | None:
        """The newest verified backup of ``version`` (at ``location`` when given)."""
        for record in reversed(self.backups.get(version, [])):
            if location is None or record.location == location:
                return record
        return None

    def holders(self) -> dict[tuple[str, str], str]:
        """Which version holds each (model, alias) now."""
        out: dict[tuple[str, str], str] = {}
        for event in self.aliases:
            out[(event.model, event.alias)] = event.version
        return out


def fold(blocks: Iterable[Block]) -> LifecycleState:
    """Fold lifecycle blocks (in height order) into the current state; malformed payloads are ignored here
    (the audit reports them)."""
    state = LifecycleState()
    for block in blocks:
        try:
            _apply(state, block)
        except (KeyError, TypeError, ValueError):
            continue
    return state


def _apply(state: LifecycleState, block: Block) -> None:
    data = block.data()
    if not isinstance(data, dict):
        return
    if block.kind == BACKUP and data.get("verified") is True:
        files = tuple(
            BackupFile(
                str(f["role"]), str(f["path"]), str(f["remote"]), int(f["size"]), str(f["sha256"]), str(f["blake3"])
            )
            for f in data["files"]
        )
        record = BackupRecord(block.height, block.timestamp, str(data["version"]), str(data["location"]), files)
        state.backups.setdefault(record.version, []).append(record)
    elif block.kind == PRUNE:
        version = str(data["version"])
        earlier = state.pruned.get(version)
        released = earlier.files if earlier is not None else ()
        state.pruned[version] = PruneRecord(
            block.height,
            block.timestamp,
            version,
            str(data["location"]),
            int(data["backup_height"]),
            released + tuple(str(p) for p in data["files"] if str(p) not in released),
        )
    elif block.kind == RESTORE:
        state.pruned.pop(str(data["version"]), None)
    elif block.kind == ALIAS:
        previous = data.get("previous")
        state.aliases.append(
            AliasEvent(
                block.height,
                block.timestamp,
                str(data["model"]),
                str(data["alias"]),
                str(data["version"]),
                None if previous is None else str(previous),
                str(data["action"]),
            )
        )


def read_state(ledger: Ledger) -> LifecycleState:
    """The lifecycle state of the whole chain, from one query over the lifecycle blocks."""
    return fold(ledger.blocks_of_kind(*KINDS))


def indexed_versions(ledger: Ledger) -> list[IndexedVersion]:
    """Every version from the lookup index, one query, ordered by model and version."""
    with ledger.store.reading() as connection:
        rows = connection.execute(
            select(
                VersionIndexRow.model, VersionIndexRow.major, VersionIndexRow.micro, VersionIndexRow.height
            ).order_by(VersionIndexRow.model, VersionIndexRow.major, VersionIndexRow.micro)
        )
        return [IndexedVersion(model, major, micro, height) for model, major, micro, height in rows]


def verify_blocks(ledger: Ledger, *blocks: Block) -> None:
    """Check the signatures of blocks a destructive or trusting step relies on (prune, restore)."""
    keys = collect_keys(ledger.blocks_of_kind("genesis", "key"))
    for block in blocks:
        problem = check_block(block, keys)
        if problem is not None:
            raise BadSignatureError(f"block {block.height} ({block.kind}) does not verify: {problem.message}")
