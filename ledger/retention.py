"""Retention: which versions stay on local disk, and pruning the rest once a verified backup exists.

``plan`` is pure over the version index and the lifecycle state (one query each), so a dry run over
10,000 versions needs no per-version work. ``prune`` removes the files of planned versions and appends one
``prune`` block per version; it refuses outright when a version outside the policy has no verified backup,
unless asked to prune only the backed-up ones.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.config import RetentionPolicy
from ledger.errors import PruneRefusedError, StorageError
from ledger.faults import crash_point
from ledger.fsutil import display_path, os_reason, resolve_recorded
from ledger.lifecycle import (
    PRUNE,
    BackupRecord,
    IndexedVersion,
    LifecycleState,
    indexed_versions,
    read_state,
    verify_blocks,
)

if TYPE_CHECKING:
    from ledger.api import Ledger

PolicyFor = Callable[[str], RetentionPolicy]


@dataclass(frozen=True, slots=True)
class PruneItem:
    """A version outside the policy with a verified backup: the files that go, and the backup covering them."""

    version: str
    backup: BackupRecord
    policy: RetentionPolicy

    @property
    def files(self) -> tuple[str, ...]:
        """Relative paths (models dir for weights/metadata, adapters dir for adapter files)."""
        return tuple(f.path for f in self.backup.files)


@dataclass(frozen=True, slots=True)
class PrunePlan:
    """What a prune would do: versions to prune, versions refused (no backup), versions kept by an alias."""

    prune: tuple[PruneItem, ...]
    unbacked: tuple[str, ...]
    protected: tuple[str, ...]
    kept: int
    already_pruned: int

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
    """Decide what to prune (pure): outside the policy, not pruned yet, not held by an alias, backed up."""
    by_model: dict[str, list[IndexedVersion]] = {}
    for version in versions:
        by_model.setdefault(version.model, []).append(version)
    held = set(state.holders().values())
    items: list[PruneItem] = []
    unbacked: list[str] = []
    protected: list[str] = []
    kept = already = 0
    for model in sorted(by_model):
        policy = policy_for(model)
        group = by_model[model]
        drop = outside_policy(group, policy)
        kept += len(group) - len(drop)
        for version in drop:
            name = version.name
            if name in state.pruned:
                already += 1
            elif name in held:
                protected.append(name)
            else:
                record = state.latest_backup(name)
                if record is None:
                    unbacked.append(name)
                else:
                    items.append(PruneItem(name, record, policy))
    return PrunePlan(tuple(items), tuple(unbacked), tuple(protected), kept, already)


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What a prune did (or would do, for a dry run)."""

    plan: PrunePlan
    dry_run: bool
    pruned: tuple[tuple[str, int, tuple[str, ...]], ...]  # version, block height, files removed

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "dry_run": self.dry_run,
            **self.plan.to_json(),
            "pruned": [{"version": v, "height": h, "removed": list(f)} for v, h, f in self.pruned],
        }


def prune(ledger: Ledger, policy_for: PolicyFor, *, dry_run: bool, only_backed_up: bool = False) -> PruneResult:
    """Plan and (unless ``dry_run``) prune; refuses with the list when versions lack a backup."""
    state = read_state(ledger)
    decided = plan(indexed_versions(ledger), state, policy_for)
    if dry_run:
        return PruneResult(decided, True, ())
    if decided.unbacked and not only_backed_up:
        shown = ", ".join(decided.unbacked[:20]) + (" ..." if len(decided.unbacked) > 20 else "")
        raise PruneRefusedError(
            f"{len(decided.unbacked)} version(s) outside the retention policy have no verified backup: {shown}; "
            "nothing was removed. Run `ledger backup` first, or `ledger prune --only-backed-up` to prune the rest",
            decided.unbacked,
        )
    verify_blocks(ledger, *(ledger.block(item.backup.height) for item in decided.prune))
    done = []
    for item in decided.prune:
        removed: list[str] = []
        try:
            _remove(ledger, item, removed)
        finally:
            if removed:  # also when a removal failed part-way: record what is gone
                block = ledger.append_event(
                    PRUNE,
                    {
                        "version": item.version,
                        "files": removed,
                        "backup_height": item.backup.height,
                        "location": item.backup.location,
                        "policy": item.policy.to_json(),
                    },
                )
                done.append((item.version, block.height, tuple(removed)))
    return PruneResult(decided, False, tuple(done))


def _root(ledger: Ledger, role: str) -> Path:
    return ledger.adapters_dir if role == "adapter" else ledger.models_dir


def _remove(ledger: Ledger, item: PruneItem, removed: list[str]) -> None:
    """Remove the local files the backup covers; a file whose size differs from the backup stays (and stops
    the version) because the backup would not restore it."""
    targets = []
    for entry in item.backup.files:
        path = resolve_recorded(_root(ledger, entry.role), entry.path)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            # Already gone: a prune killed between removing it and appending its block (or a lost file the
            # verified backup holds). Recording it now is what completes that prune; the audit then is clean.
            removed.append(entry.path)
            continue
        except OSError as exc:
            raise StorageError(f"cannot inspect {display_path(path)}: {os_reason(exc)}") from None
        if size != entry.size:
            raise StorageError(
                f"{display_path(path)} has {size} bytes but its backup has {entry.size}: {item.version} not pruned"
            )
        targets.append((entry, path))
    for entry, path in targets:
        try:
            path.unlink()
        except OSError as exc:
            raise StorageError(f"cannot remove {display_path(path)}: {os_reason(exc)}") from None
        removed.append(entry.path)
        crash_point("prune:unlinked")
    _remove_empty_adapter_dirs(ledger, item)
    crash_point("prune:removed")


def _remove_empty_adapter_dirs(ledger: Ledger, item: PruneItem) -> None:
    folders = {os.path.dirname(f.path) for f in item.backup.files if f.role == "adapter"}
    for folder in sorted(folders, key=len, reverse=True):
        current = folder
        while current:
            with contextlib.suppress(OSError):
                (ledger.adapters_dir / current).rmdir()  # only succeeds when empty
            current = os.path.dirname(current)
