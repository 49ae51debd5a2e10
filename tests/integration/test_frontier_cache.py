"""Appends reuse the Merkle frontier they computed last; another writer in between must invalidate it."""

from __future__ import annotations

from ledger import merkle
from ledger.api import NodesOf
from tests.conftest import Workspace, open_ledger


def test_interleaved_writers_keep_the_stored_tree_exact(ledger_ws: Workspace) -> None:
    first = open_ledger(ledger_ws)
    second = open_ledger(ledger_ws)
    for i in range(12):
        first.append_event("note", {"i": i})  # runs of appends by one object use its cached frontier
        if i % 3 == 0:
            second.append_event("note", {"other": i})  # the cache of `first` is now stale
            second.append_event("note", {"other": i, "again": True})
    blocks = list(first.blocks())
    tree = merkle.MemoryTree()
    with first.store.reading() as connection:
        source = NodesOf(connection)
        for block in blocks:
            tree.append(merkle.leaf_hash(bytes.fromhex(block.block_hash)))
            assert merkle.root(source, tree.size) == tree.root(), f"stored tree differs at size {tree.size}"
            stored = source.nodes([(0, tree.size - 1)])
            assert stored == {(0, tree.size - 1): merkle.leaf_hash(bytes.fromhex(block.block_hash))}
