"""Trusted state: the largest checkpoint this machine has verified for a ledger, kept outside the database.

Like a transparency-log client, the ledger remembers (per ledger id, in ``settings.state_dir``) the signed
checkpoint it last verified, the keys it verified it with, and what an incremental audit needs to resume
there: the block hash, time and signing keys at that size and the Merkle frontier. It only ever moves forward.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.canonical import decode
from ledger.errors import CheckpointError, InputError, StorageError
from ledger.fsutil import write_atomic
from ledger.merkle import root_from_frontier
from ledger.note import SignedCheckpoint, parse_verifier_key

SCHEMA = "ledger-trusted-state/v1"


@dataclass(frozen=True, slots=True)
class TrustedState:
    """A verified checkpoint plus the chain state at its size (see module docstring)."""

    ledger_id: str
    note: bytes
    verifier_keys: tuple[str, ...]
    last_hash: str
    last_time: str
    active_key: str
    keys: tuple[tuple[str, str], ...]
    """(key id, public key hex) of every key introduced below ``size``."""
    retired: tuple[str, ...]
    frontier: tuple[bytes, ...]

    def checkpoint(self) -> SignedCheckpoint:
        """The stored note, re-verified against the pinned verifier keys."""
        verifiers = [parse_verifier_key(k) for k in self.verifier_keys]
        return SignedCheckpoint.verify(self.note, verifiers=verifiers)

    @property
    def size(self) -> int:
        """Tree size of the trusted checkpoint."""
        return self.checkpoint().checkpoint.size

    def to_json(self) -> dict[str, Any]:
        """The file's JSON object."""
        cp = self.checkpoint().checkpoint
        return {
            "schema": SCHEMA,
            "ledger_id": self.ledger_id,
            "size": cp.size,
            "root": cp.root.hex(),
            "checkpoint": self.note.decode("utf-8"),
            "verifier_keys": list(self.verifier_keys),
            "last_hash": self.last_hash,
            "last_time": self.last_time,
            "active_key": self.active_key,
            "keys": {k: v for k, v in self.keys},
            "retired": list(self.retired),
            "frontier": [h.hex() for h in self.frontier],
        }

    @classmethod
    def from_json(cls, data: Any) -> TrustedState:
        """Parse the file's JSON object; raises ``InputError`` when it is not a trusted-state file."""
        try:
            if data["schema"] != SCHEMA:
                raise InputError(f"trusted state has schema {data['schema']!r}, expected {SCHEMA}")
            state = cls(
                ledger_id=str(data["ledger_id"]),
                note=str(data["checkpoint"]).encode("utf-8"),
                verifier_keys=tuple(str(k) for k in data["verifier_keys"]),
                last_hash=str(data["last_hash"]),
                last_time=str(data["last_time"]),
                active_key=str(data["active_key"]),
                keys=tuple((str(k), str(v)) for k, v in dict(data["keys"]).items()),
                retired=tuple(str(k) for k in data["retired"]),
                frontier=tuple(bytes.fromhex(h) for h in data["frontier"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"trusted state file is malformed: {exc}") from exc
        checkpoint = state.checkpoint().checkpoint
        if checkpoint.size != data.get("size"):
            raise InputError("trusted state size does not match its checkpoint")
        # The frontier resumes incremental audits and authenticates old blocks: it must be the checkpoint's own.
        if len(state.frontier) != checkpoint.size.bit_count() or root_from_frontier(state.frontier) != checkpoint.root:
            raise InputError("trusted state frontier does not fold to its checkpoint's root")
        return state


def state_path(state_dir: Path, ledger_id: str) -> Path:
    """Where the trusted state of ``ledger_id`` lives."""
    return state_dir / f"{ledger_id}.json"


def load(state_dir: Path, ledger_id: str) -> TrustedState | None:
    """The trusted state of ``ledger_id`` or None when this machine never verified a checkpoint of it.

    A file whose checkpoint no longer verifies under its own pinned keys raises ``CheckpointError``.
    """
    path = state_path(state_dir, ledger_id)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read trusted state {path}: {exc.strerror}") from exc
    try:
        data = decode(raw)
    except ValueError as exc:
        raise InputError(f"trusted state {path} is not JSON") from exc
    return TrustedState.from_json(data)


def save(state_dir: Path, state: TrustedState) -> bool:
    """Store ``state`` if it is larger than the one on file; return whether the file changed.

    Refuses (``CheckpointError``) a state for the same size with a different root: that is a fork.
    """
    current = load(state_dir, state.ledger_id)
    new = state.checkpoint().checkpoint
    if current is not None:
        old = current.checkpoint().checkpoint
        if old.size == new.size and old.root != new.root:
            raise CheckpointError(f"refusing to trust a second root for tree size {new.size}: fork")
        if old.size >= new.size:
            return False
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n"
    write_atomic(state_path(state_dir, state.ledger_id), text.encode("utf-8"), mode=0o600)
    return True


def b64(raw: bytes) -> str:
    """Standard base64 (for messages that show a root as a checkpoint does)."""
    return base64.b64encode(raw).decode("ascii")
