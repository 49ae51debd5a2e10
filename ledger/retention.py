"""Retention: which versions stay on local disk, and pruning the rest once a verified backup exists.

``plan`` is pure over the version index and the lifecycle state (one query each), so a dry run over
10,000 versions needs no per-version work: it touches neither the files nor the remote store. ``prune``
is write-ahead: for each planned version it first checks every local file against the backup and every
remote object of that backup (size), then appends the ``prune`` block naming the files, then removes them.
A kill after the block leaves files on disk that the block released (the audit checks what is present);
the next prune removes them without a second block. Versions without a backup, or whose checks fail, are
listed and left alone; when that is every version the policy would prune, the prune is refused.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.backup import remote_problems
from ledger.config import RetentionPolicy
from ledger.errors import PruneRefusedError, StorageError
from ledger.faults import crash_point
from ledger.fsutil import display_path, os_reason, resolve_recorded
from ledger.lifecycle import (
    PRUNE,
    BackupFile,
    BackupRecord,
    IndexedVersion,
    LifecycleState,
    indexed_versions,
    read_state,
    verify_blocks,
)
from ledger.remote import Location, RemoteStore, parse_location

if TYPE_CHECKING:
    from ledger.api import Ledger

PolicyFor = Callable[[str], RetentionPolicy]


@dataclass(frozen=True, slots=True)
class PruneItem:
    """A version outside the policy with a verified backup: the backup it relies on and the files earlier
    prune blocks of the version already released."""

    version: str
    backup: BackupRecord
    policy: RetentionPolicy
    released: frozenset[str] = frozenset()

    @property
    def files(self) -> tuple[str, ...]:
        """The files a new prune block must release (relative to the models or adapters dir): the backup's
        files that no earlier block released."""
        return tuple(f.path for f in self.backup.files if f.path not in self.released)


@dataclass(frozen=True, slots=True)
class PrunePlan:
    """What a prune would do: versions to prune (or to finish: a partial earlier prune), versions without a
    backup, versions kept by an alias, and versions whose files every prune block already released."""

    prune: tuple[PruneItem, ...]
    unbacked: tuple[str, ...]
    protected: tuple[str, ...]
    kept: int
    done: tuple[PruneItem, ...]

    @property
    def already_pruned(self) -> int:
        """Versions fully released by earlier prune blocks (their files may still linger after a kill)."""
        return len(self.done)

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "prune": [
                {"version": i.version, "files": list(i.files), "location": i.backup.location} for i in self.prune
            ],
            "without_backup": list(self.unbacked),
            "protected_by_alias": list(self.protected),
            "kept_by_policy": self.kept,
            "already_pruned": self.already_pruned,
        }


def outside_policy(versions: Sequence[IndexedVersion], policy: RetentionPolicy) -> list[IndexedVersion]:
    """The versions of ONE model that the policy does not keep: all but the newest majors and micros."""
    majors = [v for v in versions if v.micro == 0]
    micros = [v for v in versions if v.micro != 0]
    order = sorted(majors, key=lambda v: (v.major, v.micro))
    drop = order[: max(0, len(order) - policy.keep_major)]
    order = sorted(micros, key=lambda v: (v.major, v.micro))
    drop += order[: max(0, len(order) - policy.keep_micro)]
    return sorted(drop, key=lambda v: (v.major, v.micro))


def plan(versions: Sequence[IndexedVersion], state: LifecycleState, policy_for: PolicyFor) -> PrunePlan:
    """Decide what to prune (pure): outside the policy, not held by an alias, backed up, and with files no
    prune block released yet."""
    by_model: dict[str, list[IndexedVersion]] = {}
    for version in versions:
        by_model.setdefault(version.model, []).append(version)
    held = set(state.holders().values())
    items: list[PruneItem] = []
    done: list[PruneItem] = []
    unbacked: list[str] = []
    protected: list[str] = []
    kept = 0
    for model in sorted(by_model):
        policy = policy_for(model)
        group = by_model[model]
        drop = outside_policy(group, policy)
        kept += len(group) - len(drop)
        for version in drop:
            name = version.name
            record = state.latest_backup(name)
            pruned = state.pruned.get(name)
            if pruned is not None:
                if record is not None:  # a prune block always relies on a backup block
                    item = PruneItem(name, record, policy, frozenset(pruned.files))
                    (items if item.files else done).append(item)
            elif name in held:
                protected.append(name)
            elif record is None:
                unbacked.append(name)
            else:
                items.append(PruneItem(name, record, policy))
    return PrunePlan(tuple(items), tuple(unbacked), tuple(protected), kept, tuple(done))


@dataclass(frozen=True, slots=True)
class Pruned:
    """One version this run pruned: the prune block (new, or the earlier one it finished), the files that
    block newly released (none when finishing) and the files removed from disk."""

    version: str
    height: int
    released: tuple[str, ...]
    removed: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "version": self.version,
            "height": self.height,
            "released": list(self.released),
            "removed": list(self.removed),
        }


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What a prune did (or would do, for a dry run), and the versions it left alone with the reason."""

    plan: PrunePlan
    dry_run: bool
    pruned: tuple[Pruned, ...]
    not_pruned: tuple[tuple[str, str], ...]  # version, why its files stay

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "dry_run": self.dry_run,
            "remote_checked": not self.dry_run,
            **self.plan.to_json(),
            "pruned": [p.to_json() for p in self.pruned],
            "not_pruned": [{"version": v, "reason": r} for v, r in self.not_pruned],
        }


def prune(
    ledger: Ledger, policy_for: PolicyFor, *, open_store: Callable[[Location], RemoteStore], dry_run: bool
) -> PruneResult:
    """Plan and (unless ``dry_run``) prune, write-ahead; refuses with the list when versions outside the
    policy exist but none has a backup it can rely on."""
    state = read_state(ledger)
    decided = plan(indexed_versions(ledger), state, policy_for)
    if dry_run:
        return PruneResult(decided, True, (), ())
    not_pruned: list[tuple[str, str]] = []
    work: list[tuple[PruneItem, list[tuple[str, Path]]]] = []
    for item in (*decided.prune, *decided.done):
        targets = _local_targets(ledger, item)
        if isinstance(targets, str):
            not_pruned.append((item.version, targets))
        elif item.files or targets:
            work.append((item, targets))
        else:
            _remove_empty_adapter_dirs(ledger, item)  # a prune killed before tidying up
    verify_blocks(ledger, *(ledger.block(item.backup.height) for item, _targets in work))
    stores: dict[str, RemoteStore] = {}
    done: list[Pruned] = []
    for item, targets in work:
        location = item.backup.location
        if location not in stores:
            stores[location] = open_store(parse_location(location))
        problems = remote_problems(stores[location], item.backup)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            not_pruned.append((item.version, f"its backup at {location} is not intact: {problems[0]}{more}"))
            continue
        crash_point("prune:checked")
        if item.files:
            height = ledger.append_event(
                PRUNE,
                {
                    "version": item.version,
                    "files": list(item.files),
                    "backup_height": item.backup.height,
                    "location": location,
                    "policy": item.policy.to_json(),
                },
            ).height
        else:
            height = state.pruned[item.version].height
        removed = _remove(ledger, item, targets, height)
        done.append(Pruned(item.version, height, item.files, removed))
    refused = [*decided.unbacked, *(version for version, _reason in not_pruned)]
    if refused and not done:
        shown = ", ".join(refused[:20]) + (" ..." if len(refused) > 20 else "")
        reasons = "".join(f"; {version}: {reason}" for version, reason in not_pruned[:5])
        raise PruneRefusedError(
            f"nothing was pruned: {len(refused)} version(s) outside the retention policy have no backup "
            f"this prune can rely on: {shown}{reasons}. Run `ledger backup` first",
            tuple(refused),
        )
    return PruneResult(decided, False, tuple(done), tuple(not_pruned))


def _root(ledger: Ledger, entry: BackupFile) -> Path:
    return ledger.adapters_dir if entry.role == "adapter" else ledger.models_dir


def _local_targets(ledger: Ledger, item: PruneItem) -> list[tuple[str, Path]] | str:
    """The files of ``item`` on disk, each with the size its backup has; or why the version must stay (a file
    of another size would not be restored by that backup; a missing file no prune released is a loss the
    audit reports, not something to record as pruned)."""
    targets = []
    for entry in item.backup.files:
        path = resolve_recorded(_root(ledger, entry), entry.path)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            if entry.path in item.released:
                continue  # removed by an earlier prune
            return f"{display_path(entry.path)} is missing and no prune released it: restore the version first"
        except OSError as exc:
            raise StorageError(f"cannot inspect {display_path(path)}: {os_reason(exc)}") from None
        if size != entry.size:
            return f"{display_path(entry.path)} has {size} bytes but its backup has {entry.size}"
        targets.append((entry.path, path))
    return targets


def _remove(ledger: Ledger, item: PruneItem, targets: list[tuple[str, Path]], height: int) -> tuple[str, ...]:
    """Remove the files prune block ``height`` released; a failure leaves the rest for the next prune."""
    removed = []
    for relative, path in targets:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StorageError(
                f"cannot remove {display_path(path)}: {os_reason(exc)}; prune block {height} released it, "
                "so the next `ledger prune` removes it (the audit checks it while it is there)"
            ) from None
        removed.append(relative)
        crash_point("prune:unlinked")
    crash_point("prune:removed")
    _remove_empty_adapter_dirs(ledger, item)
    return tuple(removed)


def _remove_empty_adapter_dirs(ledger: Ledger, item: PruneItem) -> None:
    folders = {os.path.dirname(f.path) for f in item.backup.files if f.role == "adapter"}
    for folder in sorted(folders, key=len, reverse=True):
        current = folder
        while current:
            with contextlib.suppress(OSError):
                (ledger.adapters_dir / current).rmdir()  # only succeeds when empty
            current = os.path.dirname(current)
