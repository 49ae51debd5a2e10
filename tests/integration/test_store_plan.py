"""The Merkle node lookup behind appends and proofs must stay an index lookup (O(log n)), never a table scan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from ledger.api import Ledger, NodesOf
from ledger.merkle import frontier_keys, inclusion_proof
from ledger.signing import SigningKey
from ledger.store import Store


def _plans(ledger: Ledger, keys: list[tuple[int, int]]) -> list[str]:
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        statements.append((statement, parameters))

    engine = ledger.store.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        with ledger.store.reading() as connection:
            found = Store.nodes(connection, keys)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert set(found) == set(keys)
    (statement, parameters), *_ = [s for s in statements if "merkle_nodes" in s[0]]
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    return [str(row[-1]) for row in rows]


@pytest.mark.parametrize("count", [1, 5, 9, 23])
def test_node_lookup_uses_the_primary_key_on_sqlite(tmp_path: Path, count: int) -> None:
    ledger = Ledger.create(f"sqlite:///{tmp_path / 'l.db'}", models_dir=tmp_path, key=SigningKey.generate())
    for i in range(40):
        ledger.append_event("note", {"i": i})
    keys = [(0, i) for i in range(count)]
    plans = _plans(ledger, keys)
    assert not any(plan.startswith("SCAN") for plan in plans), plans
    assert any("USING INDEX" in plan or "USING PRIMARY KEY" in plan for plan in plans), plans


def test_node_lookup_returns_exactly_the_asked_nodes(tmp_path: Path) -> None:
    ledger = Ledger.create(f"sqlite:///{tmp_path / 'l.db'}", models_dir=tmp_path, key=SigningKey.generate())
    for i in range(40):
        ledger.append_event("note", {"i": i})
    with ledger.store.reading() as connection:
        keys = frontier_keys(41)
        found = Store.nodes(connection, [*keys, *keys])  # duplicates and padding must not leak through
        assert set(found) == set(keys)
        assert Store.nodes(connection, [(30, 0)]) == {}
        assert len(inclusion_proof(NodesOf(connection), 17, 41)) == 6
