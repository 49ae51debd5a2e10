"""Building proof bundles from an open ledger (the pure format and verifier live in ``ledger.proof``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ledger import merkle, proof
from ledger.checkpoints import latest_stored, parse_note_file, verify_note
from ledger.errors import NotFoundError, ProofError
from ledger.note import verifier_key

if TYPE_CHECKING:
    from ledger.api import Ledger
    from ledger.block import Block


def prove_inclusion(ledger: Ledger, block: Block) -> dict[str, Any]:
    """Bundle ``block`` with its audit path to the newest stored checkpoint that covers it."""
    signed = latest_stored(ledger, covering=block.height)
    if signed is None:
        raise NotFoundError(f"no checkpoint covers height {block.height} yet: run `ledger checkpoint` first")
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
    return bundle


def prove_consistency(ledger: Ledger, old_file: bytes) -> dict[str, Any]:
    """Bundle the consistency proof from an old checkpoint (a note, or a bundle carrying one) to the newest."""
    schedule = ledger.key_schedule()
    old = verify_note(parse_note_file(old_file), origin=ledger.origin, schedule=schedule).signed
    new = latest_stored(ledger, covering=old.checkpoint.size - 1)
    if new is None:
        raise NotFoundError("no stored checkpoint is at least as large as the old one: run `ledger checkpoint`")
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
    return proof.consistency_bundle(
        ledger_id=ledger.ledger_id,
        old=old,
        new=new,
        path=path,
        verifier_keys=list(dict.fromkeys(reversed(keys))),
    )
