"""Signed checkpoints: issuing them (sign, store, publish to the witness, remember) and verifying their notes.

A checkpoint is a C2SP ``tlog-checkpoint`` (origin, tree size, base64 root) signed as a C2SP ``signed-note``
by the ledger key active at that size, under the key name = origin. No ``checkpoint`` block is appended: the
block would grow the tree the moment after it was signed, so the newest checkpoint would never cover the head,
and it would record nothing the signed note and the append-only ``checkpoints`` table do not already hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ledger import merkle, trust
from ledger.canonical import decode
from ledger.errors import CheckpointError, ProofError
from ledger.keys import KeySchedule
from ledger.note import Checkpoint, SignedCheckpoint
from ledger.store import Store
from ledger.tables import CheckpointRow
from ledger.timeutil import now

if TYPE_CHECKING:
    from ledger.api import Ledger
    from ledger.witness import Witness


@dataclass(frozen=True, slots=True)
class VerifiedNote:
    """A checkpoint note whose signature verified, with the key id that signed it."""

    signed: SignedCheckpoint
    key_id: str

    @property
    def checkpoint(self) -> Checkpoint:
        """The parsed checkpoint."""
        return self.signed.checkpoint


def verify_note(note: bytes, *, origin: str, schedule: KeySchedule) -> VerifiedNote:
    """Verify a checkpoint note against the keys the chain introduced (name = origin).

    Raises ``CheckpointError`` when no chain key signed it, the origin is wrong, or it was signed by a key
    that was not the active one at its tree size (a retired key signing later history).
    """
    for event in schedule.events:
        try:
            signed = SignedCheckpoint.verify(note, verifiers=[(origin, event.public)], origin=origin)
        except CheckpointError as exc:
            if "no signature from a trusted key" in str(exc):
                continue
            raise
        active = schedule.active_at(signed.checkpoint.size)
        if active is not None and active.key_id != event.key_id:
            raise CheckpointError(
                f"checkpoint of size {signed.checkpoint.size} is signed by key {event.key_id}, but the key "
                f"active at that size is {active.key_id}"
            )
        return VerifiedNote(signed, event.key_id)
    raise CheckpointError("checkpoint is not signed by any key this ledger's chain introduced")


def sign_checkpoint(ledger: Ledger) -> SignedCheckpoint:
    """Sign a checkpoint of the whole ledger as it stands, with the active key (refusing a retired one)."""
    key = ledger.key
    with ledger.store.reading() as connection:
        head = Store.head(connection)
        assert head is not None
        size = head.height + 1
        root = merkle.root(_nodes(connection), size)
    ledger.key_schedule().require_active(key.key_id, size)
    return SignedCheckpoint.sign(Checkpoint(ledger.origin, size, root), name=ledger.origin, private_key=key.private)


def stored_notes(ledger: Ledger) -> list[bytes]:
    """Every checkpoint note in the database's ``checkpoints`` table, oldest first."""
    with ledger.store.reading() as connection:
        rows = connection.execute(select(CheckpointRow.note).order_by(CheckpointRow.id))
        return [bytes(r[0]) for r in rows]


def latest_stored(ledger: Ledger, *, covering: int = 0) -> SignedCheckpoint | None:
    """The largest stored checkpoint of more than ``covering`` blocks whose signature verifies.

    Rows are read largest first and verified one at a time, so normally only the one returned is verified; a
    row whose note does not verify, or whose unsigned ``size`` column disagrees with its note, is skipped.
    """
    schedule = ledger.key_schedule()
    query = (
        select(CheckpointRow.size, CheckpointRow.note)
        .where(CheckpointRow.size > covering)
        .order_by(CheckpointRow.size.desc(), CheckpointRow.id.desc())
    )
    with ledger.store.reading() as connection:
        for size, note in connection.execute(query, execution_options={"yield_per": 8}):
            try:
                signed = verify_note(bytes(note), origin=ledger.origin, schedule=schedule).signed
            except CheckpointError:
                continue
            if signed.checkpoint.size == size:
                return signed
    return None


def state_at(ledger: Ledger, signed: SignedCheckpoint) -> trust.TrustedState:
    """The trusted state for a checkpoint of this ledger, taking the chain state at its size from the database.

    Call it only for a checkpoint the database was just checked against (an audit or the issuer itself).
    """
    size = signed.checkpoint.size
    schedule = ledger.key_schedule()
    with ledger.store.reading() as connection:
        last = Store.block_at(connection, size - 1)
        frontier = merkle.load_frontier(_nodes(connection), size)
    if last is None:
        raise ProofError(f"the ledger has no block {size - 1} for a checkpoint of size {size}")
    active = schedule.active_at(size)
    assert active is not None
    below = [e for e in schedule.events if e.height < size]
    return trust.TrustedState(
        ledger_id=ledger.ledger_id,
        note=signed.note,
        verifier_keys=tuple(dict.fromkeys(KeySchedule(tuple(below)).verifier_keys(ledger.origin))),
        last_hash=last.block_hash,
        last_time=last.timestamp,
        active_key=active.key_id,
        keys=tuple((e.key_id, e.public.hex()) for e in below),
        retired=tuple(sorted(schedule.retired_before(size))),
        frontier=tuple(frontier),
    )


@dataclass(frozen=True, slots=True)
class Issued:
    """What ``issue`` did: the checkpoint, where it was published, and whether the trusted state moved."""

    signed: SignedCheckpoint
    witness: str | None
    trusted: bool


def issue(ledger: Ledger, *, witness: Witness | None, state_dir: Path | None) -> Issued:
    """Sign a checkpoint of the head, check it extends the trusted state, store it, publish it, remember it.

    Refuses (``ProofError``) to sign a tree that is not consistent with the trusted checkpoint or with the
    newest checkpoint the witness holds: signing it would sign a fork.
    """
    signed = sign_checkpoint(ledger)
    cp = signed.checkpoint
    previous: list[tuple[str, Checkpoint]] = []
    if state_dir is not None:
        state = trust.load(state_dir, ledger.ledger_id)
        if state is not None:
            previous.append(("the trusted state", state.checkpoint().checkpoint))
    if witness is not None:
        schedule = ledger.key_schedule()
        for item in witness.notes(ledger.ledger_id):
            try:
                previous.append(
                    (item.location, verify_note(item.note, origin=ledger.origin, schedule=schedule).checkpoint)
                )
            except CheckpointError:
                continue
    for source, old in previous:
        if old.size > cp.size:
            raise ProofError(f"{source} holds a checkpoint of size {old.size}, larger than the ledger ({cp.size})")
        merkle.verify_consistency(
            size1=old.size,
            size2=cp.size,
            root1=old.root,
            root2=cp.root,
            path=ledger.consistency_proof(old.size, cp.size),
        )
    ledger.store.write(
        lambda c: Store.insert_checkpoint(c, size=cp.size, root=cp.root.hex(), note=signed.note, created=now())
    )
    where = witness.publish(ledger.ledger_id, signed) if witness is not None else None
    moved = trust.save(state_dir, state_at(ledger, signed)) if state_dir is not None else False
    return Issued(signed, where, moved)


def _nodes(connection: Connection) -> merkle.NodeSource:
    from ledger.api import NodesOf

    return NodesOf(connection)


def parse_note_file(data: bytes) -> bytes:
    """Accept a checkpoint file: the signed note itself, or a proof bundle / state JSON carrying one."""
    stripped = data.lstrip()
    if stripped.startswith(b"{"):
        try:
            obj = decode(data)
        except ValueError as exc:
            raise CheckpointError("checkpoint file is JSON but not valid JSON") from exc
        for key in ("checkpoint", "new_checkpoint"):
            if isinstance(obj, dict) and isinstance(obj.get(key), str):
                return str(obj[key]).encode("utf-8")
        raise CheckpointError("checkpoint file is JSON without a checkpoint note")
    return data
