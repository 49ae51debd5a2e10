"""The signed checkpoint a report carries: a C2SP signed note over the RFC 9162 root of every block to the head.

This is the small stand-in the transparency module (issue 4) can replace: it computes the root with
``ledger.merkle.root`` over the persisted subtree nodes and signs it with ``ledger.note.SignedCheckpoint``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger import merkle
from ledger.errors import CheckpointError
from ledger.export.report import CheckpointInfo
from ledger.note import Checkpoint, SignedCheckpoint, key_hash, verifier_key
from ledger.signing import SigningKey


def key_name(origin: str, ledger_id: str) -> str:
    """The signed-note key name: the origin when it is a valid note key name, else ``ledger-<id>``."""
    try:
        key_hash(origin, b"\x00" * 32)
    except CheckpointError:
        return f"ledger-{ledger_id}"
    return origin


def sign_checkpoint(
    source: merkle.NodeSource, *, size: int, origin: str, ledger_id: str, key: SigningKey
) -> CheckpointInfo:
    """Sign a checkpoint for the tree of the first ``size`` blocks (heights 0 .. size-1)."""
    root = merkle.root(source, size)
    name = key_name(origin, ledger_id)
    signed = SignedCheckpoint.sign(Checkpoint(origin=origin, size=size, root=root), name=name, private_key=key.private)
    return CheckpointInfo(
        origin=origin,
        size=size,
        root=root.hex(),
        note=signed.note.decode("utf-8"),
        key_name=name,
        verifier_key=verifier_key(name, key.public),
    )


def open_checkpoint(note: str, *, key_name: str, keys: Mapping[str, bytes], origin: str) -> Checkpoint:
    """Verify a checkpoint note against every key the chain introduced; return the checkpoint it signs."""
    verifiers = [(key_name, public) for public in keys.values()]
    return SignedCheckpoint.verify(note.encode("utf-8"), verifiers=verifiers, origin=origin).checkpoint
