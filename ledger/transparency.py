"""The audit with transparency: chain checks (parallel), Merkle nodes vs blocks, and consistency with checkpoints.

Checkpoints come from the trusted state file, the witness location, ``--checkpoint`` files and the database's
own ``checkpoints`` table. Each must verify under a key the chain introduced, and the ledger must extend it:
a checkpoint larger than the ledger means truncation or a rollback to an older copy; a root that the ledger
cannot be proven consistent with means rewritten history or a fork. The first differing height is named
exactly when stored leaves betray it, else bracketed by the largest checkpoint that still matches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ledger import guards, merkle, trust
from ledger.api import NodesOf
from ledger.audit import (
    STATE_KINDS,
    AuditReport,
    ChainScan,
    FilesMode,
    ProgressStart,
    check_files,
    guard_findings,
    record_block,
    sorted_findings,
    stage_warnings,
)
from ledger.checkpoints import VerifiedNote, state_at, stored_notes, verify_note
from ledger.errors import CheckpointError, InputError, ProofError, StorageError
from ledger.fastaudit import Seed, verify_chain
from ledger.findings import Finding, FindingClass
from ledger.indexcheck import index_findings, index_rows
from ledger.keys import KeySchedule
from ledger.store import Store
from ledger.tables import APPEND_ONLY_TABLES

if TYPE_CHECKING:
    from ledger.api import Ledger


@dataclass(frozen=True, slots=True)
class AuditOptions:
    """What an audit checks besides the chain itself."""

    files: FilesMode = FilesMode.QUICK
    witness: str | None = None
    checkpoint_files: tuple[tuple[str, bytes], ...] = ()
    """(name shown in findings, file bytes) of each ``--checkpoint FILE``."""
    state_dir: Path | None = None
    workers: int | None = None
    incremental: bool = False
    update_state: bool = True
    progress: ProgressStart | None = None
    """For a full file check: told the bytes it will hash, returns where to report them (a progress bar)."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A verified checkpoint and where it came from."""

    source: str
    note: VerifiedNote

    @property
    def size(self) -> int:
        """Its tree size."""
        return self.note.checkpoint.size

    @property
    def root(self) -> bytes:
        """Its root hash."""
        return self.note.checkpoint.root


@dataclass(slots=True)
class _Claims:
    claims: list[Claim] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def run_audit(ledger: Ledger, options: AuditOptions) -> AuditReport:
    """Audit the ledger: chain, guards, Merkle tree, checkpoints, and (per ``options.files``) the files."""
    schedule = ledger.key_schedule()
    state = _load_state(ledger, options.state_dir)
    gathered = _gather(ledger, schedule, options, state)
    trusted: trust.TrustedState | None = state if isinstance(state, trust.TrustedState) else None
    if options.incremental and trusted is None:
        raise InputError("no trusted state for this ledger yet: run a full audit (or `ledger checkpoint`) first")
    with ledger.store.reading() as connection:
        head = Store.head(connection)
    size = head.height + 1 if head is not None else 0
    targets = sorted({size, *(c.size for c in gathered.claims if c.size <= size)})
    seed = _seed(trusted) if options.incremental and trusted is not None else None
    if seed is not None and seed.size > size:
        seed = None  # truncated below the trusted size: the claim check reports it; verify what is left
    prior, proven = _older_state(ledger, seed) if seed is not None else (None, 0)
    check = verify_chain(ledger.store, workers=options.workers, targets=targets, seed=seed, prior=prior)
    findings = [*check.scan.findings, *gathered.findings]
    with ledger.store.reading() as connection:
        present = {table: guards.present_triggers(connection, table) for table in APPEND_ONLY_TABLES}
        rows = index_rows(connection)
    findings.extend(guard_findings(present, ledger.store.dialect))
    findings.extend(index_findings(rows, {v.height: v.payload for v in check.scan.versions.values()}))
    matched = _check_claims(ledger, gathered.claims, size, check.roots, findings)
    findings.extend(stage_warnings(check.scan))
    notes: list[str] = []
    checked = 0
    if options.files is not FilesMode.NONE:
        file_findings, checked = check_files(
            check.scan.versions.values(),
            models_dir=ledger.models_dir,
            adapters_dir=ledger.adapters_dir,
            mode=options.files,
            progress=options.progress,
        )
        findings.extend(file_findings)
    if options.files is FilesMode.QUICK:
        notes.append("quick file check compared sizes and modification times only; it is not a proof")
    if seed is not None:
        notes.append(
            f"incremental: re-checked blocks {seed.size}..{size - 1} and a consistency proof from {seed.size}; "
            f"{proven} older version/prune/restore block(s) proven against that checkpoint by their hashes (their "
            "signatures are re-checked only by a full audit)"
        )
    if gathered.claims:
        largest = max(c.size for c in gathered.claims)
        notes.append(f"checked consistency with {len(gathered.claims)} signed checkpoint(s), largest size {largest}")
    else:
        notes.append("no signed checkpoint to check against: truncation and rewrites cannot be detected")
    report_findings = sorted_findings(findings)
    clean = not any(not f.is_warning for f in report_findings)
    if clean and options.update_state and options.state_dir is not None and matched:
        best = max(matched, key=lambda c: c.size)
        if trust.save(options.state_dir, state_at(ledger, best.note.signed)):
            notes.append(f"trusted state advanced to size {best.size}")
    return AuditReport(
        findings=report_findings,
        blocks_checked=check.scan.count,
        incremental_from=seed.size if seed is not None else None,
        head_height=check.scan.head_height if check.scan.count else (head.height if head else -1),
        head_hash=check.scan.head_hash or (head.block_hash if head else ""),
        files_mode=options.files,
        files_checked=checked,
        notes=tuple(notes),
        pruned=tuple(
            (state.name, str(state.pruned.get("location")))
            for state in check.scan.versions.values()
            if state.pruned is not None
        ),
        payloads={state.height: state.payload for state in check.scan.versions.values()},
    )


def _load_state(ledger: Ledger, state_dir: Path | None) -> trust.TrustedState | Finding | None:
    if state_dir is None:
        return None
    try:
        return trust.load(state_dir, ledger.ledger_id)
    except (CheckpointError, InputError) as exc:
        return Finding(None, None, FindingClass.CONSISTENCY, f"trusted state file is unusable: {exc}")


def _gather(
    ledger: Ledger, schedule: KeySchedule, options: AuditOptions, state: trust.TrustedState | Finding | None
) -> _Claims:
    out = _Claims()
    if isinstance(state, Finding):
        out.findings.append(state)
    elif state is not None:
        signed = state.checkpoint()  # verified under the keys pinned in the state, not the database's
        known = schedule.known()
        for kid, pub in state.keys:
            if known.get(kid) != bytes.fromhex(pub):
                # The state does not record heights (and keeps its keys in its own order), so only a key the
                # chain still introduces, with another public key, has a known height. A key no block introduces
                # any more was cut off with the tail or rewritten away: the size and root checks name the height.
                event = schedule.introduced_by(kid)
                why = "history was rewritten under another key" if event else "no block introduces it any more"
                out.findings.append(
                    Finding(
                        event.height if event else None,
                        None,
                        FindingClass.CONSISTENCY,
                        f"the chain no longer introduces key {kid} that the trusted state pinned: {why}",
                    )
                )
                break
        out.claims.append(Claim("the trusted state", VerifiedNote(signed, state.active_key)))
    sources: list[tuple[str, bytes]] = [
        (f"database checkpoint #{i + 1}", note) for i, note in enumerate(stored_notes(ledger))
    ]
    if options.witness is not None:
        from ledger.witness import Witness

        sources.extend((item.location, item.note) for item in Witness(options.witness).notes(ledger.ledger_id))
    sources.extend(options.checkpoint_files)
    for source, note in sources:
        try:
            out.claims.append(Claim(source, verify_note(_note_of(note), origin=ledger.origin, schedule=schedule)))
        except CheckpointError as exc:
            kind = FindingClass.SIGNATURE if "active at that size" in str(exc) else FindingClass.CONSISTENCY
            out.findings.append(Finding(None, None, kind, f"checkpoint {source}: {exc}"))
    return out


def _note_of(data: bytes) -> bytes:
    from ledger.checkpoints import parse_note_file

    return parse_note_file(data)


def _check_claims(
    ledger: Ledger, claims: Sequence[Claim], size: int, recomputed: dict[int, bytes | None], findings: list[Finding]
) -> list[Claim]:
    """Append findings for every claim the ledger does not extend, and for claims that contradict each other
    (checked even when the ledger cannot be: truncated below them, or its stored tree damaged); return the
    claims the ledger extends."""
    checked = _against_ledger(ledger, claims, size, recomputed, findings)
    matched, bad = checked if checked is not None else ([], [])
    findings.extend(_forks(claims, matched))
    for claim in bad:
        lo = _first_bad(matched, claim.size)
        where = f"at height {lo}" if lo == claim.size - 1 else f"at a height in {lo}..{claim.size - 1}"
        findings.append(
            Finding(
                lo,
                None,
                FindingClass.CONSISTENCY,
                f"the ledger is not consistent with {claim.source} (size {claim.size}): history was rewritten "
                f"or forked {where}",
            )
        )
    return matched


def _against_ledger(
    ledger: Ledger, claims: Sequence[Claim], size: int, recomputed: dict[int, bytes | None], findings: list[Finding]
) -> tuple[list[Claim], list[Claim]] | None:
    """Each claim against the ledger: (claims it extends, claims it cannot be proven to extend); truncation
    findings are appended here. None when the stored Merkle tree is too damaged to prove anything."""
    try:
        db_root = ledger.root(size) if size else merkle.EMPTY_ROOT
    except StorageError as exc:
        findings.append(Finding(None, None, FindingClass.CONSISTENCY, f"the stored Merkle tree is damaged: {exc}"))
        return None
    head_from_blocks = recomputed.get(size)
    exact = any(f.kind is FindingClass.CONSISTENCY and f.height is not None for f in findings)
    if head_from_blocks is not None and head_from_blocks != db_root and not exact:
        findings.append(Finding(None, None, FindingClass.CONSISTENCY, "stored Merkle nodes do not match the blocks"))
    matched: list[Claim] = []
    bad: list[Claim] = []
    for claim in sorted(claims, key=lambda c: c.size):
        if claim.size > size:
            findings.append(
                Finding(
                    size,
                    None,
                    FindingClass.CONSISTENCY,
                    f"{claim.source} signed a tree of {claim.size} blocks but the ledger has {size}: blocks "
                    f"{size}..{claim.size - 1} were removed (truncated, or rolled back to an older copy)",
                )
            )
            continue
        try:
            merkle.verify_consistency(
                size1=claim.size,
                size2=size,
                root1=claim.root,
                root2=db_root,
                path=ledger.consistency_proof(claim.size, size),
            )
        except (ProofError, StorageError):
            bad.append(claim)
            continue
        from_blocks = recomputed.get(claim.size)
        if from_blocks is not None and from_blocks != claim.root:
            # The stored tree matches the checkpoint but the blocks do not: the node comparison names the
            # exact height; say so here only if it could not.
            exact = any(f.kind is FindingClass.CONSISTENCY and f.height is not None for f in findings)
            if not exact:
                findings.append(
                    Finding(
                        None,
                        None,
                        FindingClass.CONSISTENCY,
                        f"blocks below {claim.size} no longer hash to the root {claim.source} signed",
                    )
                )
            continue
        matched.append(claim)
    return matched, bad


def _forks(claims: Sequence[Claim], matched: Sequence[Claim]) -> list[Finding]:
    """One finding per tree size that signed checkpoints give different roots for: two histories (a fork),
    whatever the ledger holds. The height is the lowest that can differ: the largest smaller matching claim."""
    by_size: dict[int, dict[bytes, str]] = {}
    for claim in claims:
        by_size.setdefault(claim.size, {}).setdefault(claim.root, claim.source)
    out = []
    for csize, roots in sorted(by_size.items()):
        if len(roots) > 1:
            names = " and ".join(sorted(roots.values()))
            out.append(
                Finding(
                    _first_bad(matched, csize),
                    None,
                    FindingClass.CONSISTENCY,
                    f"fork: {names} are signed checkpoints of size {csize} with different roots",
                )
            )
    return out


def _first_bad(matched: Sequence[Claim], size: int) -> int:
    """Lowest height that can differ from a checkpoint of ``size``: the largest matching smaller checkpoint."""
    return max((c.size for c in matched if c.size < size), default=0)


def _seed(state: trust.TrustedState) -> Seed:
    return Seed(
        size=state.size,
        last_hash=state.last_hash,
        last_time=state.last_time,
        keys={k: bytes.fromhex(v) for k, v in state.keys},
        active=state.active_key,
        retired=frozenset(state.retired),
        frontier=state.frontier,
    )


def _older_state(ledger: Ledger, seed: Seed) -> tuple[ChainScan, int]:
    """Incremental audit: the state blocks below the trusted size, which the file checks still need (and how many).

    The trusted checkpoint covers them, so each is checked by recomputing its payload hash and block hash from
    the stored bytes and proving all of them together against the trusted frontier (sibling nodes from the
    database are fine: the result is compared with the trusted hashes), not by re-verifying Ed25519. The
    stored signature of an old block is not looked at: the checkpoint vouches for the block hash it signs,
    and only a full audit re-checks the signatures below it.
    """
    scan = ChainScan()
    with ledger.store.reading() as connection:
        older = [b for b in Store.blocks_of_kind(connection, STATE_KINDS) if b.height < seed.size]
        leaves: dict[int, bytes] = {}
        for block in older:
            # Bytes that hash into the trusted tree are the ones the audit behind the trusted state accepted
            # (canonical JSON included), so the hashes are all that is recomputed here.
            if hashlib.sha256(block.payload).hexdigest() != block.payload_hash:
                message = "payload does not match its payload hash"
                scan.findings.append(Finding(block.height, None, FindingClass.PAYLOAD, message))
            elif block.computed_hash() != block.block_hash:
                message = "block hash does not match the block's fields"
                scan.findings.append(Finding(block.height, None, FindingClass.LINK, message))
            else:
                leaves[block.height] = merkle.leaf_hash(bytes.fromhex(block.block_hash))
        try:
            failed = merkle.check_leaves(NodesOf(connection), leaves, size=seed.size, frontier=seed.frontier)
            suspects = [(0, h) for h in leaves if any(lo <= h < hi for lo, hi in failed)]
            stored = merkle.read_nodes(NodesOf(connection), suspects)
        except StorageError as exc:
            failed, stored = [(0, seed.size)], {}
            scan.findings.append(Finding(None, None, FindingClass.CONSISTENCY, f"stored Merkle tree: {exc}"))
    exact = {h for (_, h), value in stored.items() if value != leaves[h]}
    for height in sorted(exact):
        message = f"block {height} is not the block the trusted checkpoint of size {seed.size} covers"
        scan.findings.append(Finding(height, None, FindingClass.CONSISTENCY, message))
    for lo, hi in failed:
        if not any(lo <= h < hi for h in exact):
            message = (
                f"state blocks in {lo}..{hi - 1} do not hash to the trusted checkpoint of size {seed.size}: history "
                "below it was rewritten"
            )
            scan.findings.append(Finding(lo, None, FindingClass.CONSISTENCY, message))
    for block in older:
        if block.height in leaves:  # as in a full audit: a block whose own hashes check out still counts
            record_block(scan, block)
    return scan, len(older)
