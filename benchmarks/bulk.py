"""The documented bulk path for big benchmark ledgers: real, sealed and signed blocks, inserted in batches.

Each block is made by ``ledger.block.seal`` (the one way blocks are made) against the previous block's hash,
with its Merkle nodes from ``ledger.merkle.completed_nodes``, exactly as ``Ledger._commit`` would; only the
transactions differ (thousands of blocks per commit instead of one), so the result passes ``ledger audit``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Table

Make = Callable[[int, str], tuple[str, dict[str, Any], tuple[str, int, int] | None]]
"""(height, previous block hash) -> (kind, payload, version index (model, major, micro) or None)."""


class Lineage:
    """Parents for bulk-built version blocks, as ``Ledger.append`` records them (version, height, block hash).

    A block's hash is only known once it is sealed; the next block's ``prev_hash`` is that hash, so ``see``
    (called for every height before its block is made) picks it up for the version recorded just before.
    """

    def __init__(self) -> None:
        self._last: dict[str, Any] | None = None

    def see(self, height: int, prev_hash: str) -> None:
        """Learn the last recorded version's block hash from the block after it."""
        if self._last is not None and self._last["block_hash"] is None and height == self._last["height"] + 1:
            self._last["block_hash"] = prev_hash

    def parent(self) -> dict[str, Any] | None:
        """The ``parent`` field for the next version block (None for a model's first version)."""
        return None if self._last is None else dict(self._last)

    def record(self, version: str, height: int) -> None:
        """A version block is being made at ``height``."""
        self._last = {"version": version, "height": height, "block_hash": None}


def note_block(height: int, _prev_hash: str) -> tuple[str, dict[str, Any], None]:
    """A small metadata-only block."""
    return "bench", {"n": height, "note": "bulk benchmark block"}, None


def extend(
    ledger: Any, count: int, make: Make = note_block, *, batch: int = 5000, log: Callable[[str], None] | None = None
) -> None:
    """Append ``count`` signed blocks to ``ledger`` in batched transactions."""
    from ledger import merkle
    from ledger.api import NodesOf
    from ledger.block import seal
    from ledger.store import Store
    from ledger.tables import BlockRow, VersionIndexRow
    from ledger.timeutil import now

    blocks_table = cast(Table, BlockRow.__table__)
    index_table = cast(Table, VersionIndexRow.__table__)
    key = ledger.key
    head = ledger.head()
    with ledger.store.reading() as connection:
        frontier = merkle.load_frontier(NodesOf(connection), head.height + 1)
    prev_hash, timestamp = head.block_hash, head.timestamp
    height = head.height + 1
    end = height + count
    while height < end:
        rows: list[dict[str, Any]] = []
        nodes: list[tuple[int, int, bytes]] = []
        index: list[dict[str, Any]] = []
        for h in range(height, min(end, height + batch)):
            kind, payload, entry = make(h, prev_hash)
            timestamp = max(now(), timestamp)
            block = seal(height=h, prev_hash=prev_hash, timestamp=timestamp, kind=kind, payload=payload, key=key)
            new, frontier = merkle.completed_nodes(h, merkle.leaf_hash(bytes.fromhex(block.block_hash)), frontier)
            nodes.extend(new)
            rows.append(
                {
                    "height": h,
                    "format": block.format,
                    "prev_hash": block.prev_hash,
                    "timestamp": block.timestamp,
                    "kind": block.kind,
                    "payload": block.payload,
                    "payload_hash": block.payload_hash,
                    "key_id": block.key_id,
                    "block_hash": block.block_hash,
                    "signature": block.signature,
                }
            )
            if entry is not None:
                index.append({"height": h, "model": entry[0], "major": entry[1], "micro": entry[2]})
            prev_hash = block.block_hash
        height += len(rows)

        def write(
            connection: Any, rows: list[dict[str, Any]] = rows, nodes: list[Any] = nodes, index: list[Any] = index
        ) -> None:
            connection.execute(blocks_table.insert(), rows)
            Store.insert_nodes(connection, nodes)
            if index:
                connection.execute(index_table.insert(), index)

        ledger.store.write(write)
        if log is not None and height % 100_000 < batch:
            log(f"  bulk: {height:,} blocks")
