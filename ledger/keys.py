"""Which Ed25519 key may sign at each tree size: the schedule that the genesis and ``key`` blocks define.

Mirrors ``ChainWalker``: the genesis introduces the first key; every ``key`` block retires the active key and
makes the key it introduces active for all later blocks and checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ledger.block import Block
from ledger.chain import GENESIS, KEY, introduced_key
from ledger.errors import KeyFileError
from ledger.note import verifier_key


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """A key coming into force: the block at ``height`` introduced it."""

    height: int
    key_id: str
    public: bytes


@dataclass(frozen=True, slots=True)
class KeySchedule:
    """The keys the chain introduced, in height order (the first is the genesis key)."""

    events: tuple[KeyEvent, ...]

    def active_at(self, size: int) -> KeyEvent | None:
        """The key that signs block ``size`` and checkpoints of ``size`` blocks (None before the genesis)."""
        found = None
        for event in self.events:
            if event.height < size or (event.height == 0 and size == 0):
                found = event
        return found

    def retired_before(self, size: int) -> set[str]:
        """Key ids a key block at a height below ``size`` retired."""
        active = self.active_at(size)
        return {e.key_id for e in self.events if e.height < size and (active is None or e.key_id != active.key_id)}

    def known(self) -> dict[str, bytes]:
        """Every introduced key by key id."""
        return {e.key_id: e.public for e in self.events}

    def introduced_by(self, key_id: str) -> KeyEvent | None:
        """The event that introduced ``key_id``."""
        return next((e for e in self.events if e.key_id == key_id), None)

    def verifier_keys(self, origin: str) -> list[str]:
        """Signed-note verifier keys (name = origin) of every introduced key."""
        return [verifier_key(origin, e.public) for e in self.events]

    def require_active(self, key_id: str, size: int) -> None:
        """Refuse to sign with a key that is not the one active at ``size``: a clear error, not a bad block."""
        active = self.active_at(size)
        if active is None or active.key_id == key_id:
            return
        event = self.introduced_by(key_id)
        if event is not None:
            raise KeyFileError(
                f"key {key_id} was retired by the key rotation at or after height {event.height}; "
                f"sign with the active key {active.key_id} (point --key / LEDGER_KEY at it)"
            )
        raise KeyFileError(f"key {key_id} is not a key of this ledger; the active key is {active.key_id}")


def schedule_of(blocks: Iterable[Block]) -> KeySchedule:
    """Build the schedule from the genesis and key blocks (other blocks are ignored), in height order."""
    events: list[KeyEvent] = []
    for block in sorted(blocks, key=lambda b: b.height):
        if block.kind not in (GENESIS, KEY) or (block.kind == GENESIS and block.height != 0):
            continue
        found = introduced_key(block)
        if found is not None:
            events.append(KeyEvent(block.height, found[0], found[1]))
    return KeySchedule(tuple(events))
