"""Building proof bundles from an open ledger (the pure format and verifier live in ``ledger.proof``).

A proof needs a signed checkpoint to lead to. When no stored checkpoint reaches far enough (the block is newer
than all of them, or ``--since`` should prove up to the head) and the caller holds the signing key, a fresh
checkpoint of the head is issued exactly as ``ledger checkpoint`` would (stored, published, trusted); without
the key the proof stops at the newest stored checkpoint and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger import merkle, proof
from ledger.checkpoints import Issued, issue, latest_stored, parse_note_file, verify_note
from ledger.errors import NotFoundError, ProofError
from ledger.note import SignedCheckpoint, verifier_key

if TYPE_CHECKING:
    from ledger.api import Ledger
    from ledger.block import Block
    from ledger.witness import Witness


@dataclass(frozen=True, slots=True)
class Signing:
    """What a proof may do when it needs a newer checkpoint: sign one (with the ledger's key) and publish it."""

    witness: Witness | None = None
    state_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class Proved:
    """A bundle, the checkpoint issued for it (if one was), and the head size when the proof stops short of it."""

    bundle: dict[str, Any]
    size: int
    """Tree size of the checkpoint the bundle leads to."""
    issued: Issued | None = None
    behind_head: int | None = None
    """The ledger's size when the bundle's checkpoint is smaller (no key to sign a newer one), else None."""


def prove_inclusion(ledger: Ledger, block: Block, *, signing: Signing | None = None) -> Proved:
    """Bundle ``block`` with its audit path to the newest stored checkpoint covering it (or a fresh one)."""
    signed = latest_stored(ledger, covering=block.height)
    issued = None
    if signed is None:
        if signing is None:
            raise NotFoundError(
                f"no checkpoint covers height {block.height} yet: run `ledger checkpoint` (or prove with the "
                "signing key, which signs one)"
            )
        issued = issue(ledger, witness=signing.witness, state_dir=signing.state_dir)
        signed = issued.signed
    size = signed.checkpoint.size
    schedule = ledger.key_schedule()
    event = schedule.introduced_by(block.key_id)
    if event is None:
        raise ProofError(f"block {block.height} is signed by key {block.key_id}, which the chain never introduced")
    # The key blocks from the one introducing the block's key to the one introducing the checkpoint's key.
    chain = [e for e in schedule.events if event.height <= e.height < size]
    active = schedule.active_at(size)
    assert active is not None
    key_blocks = [proof.Included(ledger.block(e.height), ledger.inclusion_proof(e.height, size)) for e in chain]
    bundle = proof.inclusion_bundle(
        ledger_id=ledger.ledger_id,
        block=block,
        path=ledger.inclusion_proof(block.height, size),
        checkpoint=signed,
        verifier_key=verifier_key(ledger.origin, active.public),
        key_blocks=key_blocks,
    )
    proof.verify_bundle(json.dumps(bundle).encode())  # never hand out a bundle that does not verify
    return Proved(bundle, size, issued)


def prove_consistency(ledger: Ledger, old_file: bytes, *, signing: Signing | None = None) -> Proved:
    """Bundle the consistency proof from an old checkpoint (a note, or a bundle carrying one) to the head.

    The head's checkpoint is the newest stored one when it covers the head, else one signed now (``signing``);
    without ``signing`` the proof goes to the newest stored checkpoint and ``behind_head`` says how far the
    head has moved on.
    """
    schedule = ledger.key_schedule()
    old = verify_note(parse_note_file(old_file), origin=ledger.origin, schedule=schedule).signed
    new: SignedCheckpoint | None = latest_stored(ledger, covering=old.checkpoint.size - 1)
    head_size = ledger.size()
    issued = None
    if signing is not None and (new is None or new.checkpoint.size < head_size):
        issued = issue(ledger, witness=signing.witness, state_dir=signing.state_dir)
        new = issued.signed
    if new is None:
        raise NotFoundError(
            "no stored checkpoint is at least as large as the old one: run `ledger checkpoint` (or prove with "
            "the signing key, which signs one)"
        )
    keys = []
    for size in (old.checkpoint.size, new.checkpoint.size):
        event = schedule.active_at(size)
        assert event is not None
        keys.append(verifier_key(ledger.origin, event.public))
    path = ledger.consistency_proof(old.checkpoint.size, new.checkpoint.size)
    merkle.verify_consistency(
        size1=old.checkpoint.size,
        size2=new.checkpoint.size,
        root1=old.checkpoint.root,
        root2=new.checkpoint.root,
        path=path,
    )  # refuse to hand out a proof that cannot verify: the old checkpoint is from another history
    bundle = proof.consistency_bundle(
        ledger_id=ledger.ledger_id,
        old=old,
        new=new,
        path=path,
        verifier_keys=list(dict.fromkeys(reversed(keys))),
    )
    behind = head_size if new.checkpoint.size < head_size else None
    return Proved(bundle, new.checkpoint.size, issued, behind)
