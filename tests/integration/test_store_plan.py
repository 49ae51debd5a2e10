"""The Merkle node lookup behind appends and proofs must stay an index lookup (O(log n)), never a table scan,
on SQLite and on PostgreSQL (with a table large enough that the planner would rather scan if it had to); and
the kind lookup behind every locked append must not keep a plan made while the table was small."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ledger import bulk
from ledger import store as store_module
from ledger.api import Ledger, NodesOf
from ledger.merkle import FETCH_BATCH, consistency_proof, frontier_keys, inclusion_proof
from ledger.signing import SigningKey
from ledger.store import Store, driver_sql


def _plans(ledger: Ledger, keys: list[tuple[int, int]]) -> list[str]:
    """The database's plan for the statement ``Store.nodes`` runs for ``keys``, one line per plan row."""
    statements: list[tuple[str, Any]] = []
    real = store_module._run

    def capture(connection: Any, sql: str, params: Any = None, **options: Any) -> Any:
        statements.append((sql, params))
        return real(connection, sql, params, **options)

    with pytest.MonkeyPatch.context() as patch, ledger.store.reading() as connection:
        patch.setattr(store_module, "_run", capture)
        found = Store.nodes(connection, keys)
    assert set(found) == set(keys)
    (statement, parameters), *_ = [s for s in statements if "merkle_nodes" in s[0]]
    explain = "EXPLAIN QUERY PLAN " if ledger.store.dialect == "sqlite" else "EXPLAIN "
    with ledger.store.engine.connect() as connection:
        rows = connection.exec_driver_sql(explain + driver_sql(connection, statement), parameters).all()
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


@pytest.mark.postgres
def test_node_lookup_uses_the_primary_key_on_postgres(pg_url: str, tmp_path: Path) -> None:
    size = 301
    ledger = bulk.build(pg_url, size - 1, key=SigningKey.generate(), models_dir=tmp_path, workers=1)
    # Pad the table to the shape of a 100,000-block tree (rows beyond the ledger's size, which no lookup here
    # asks for): the planner's choice depends on the table's size, and the lookup must be an index probe per key
    # at real sizes, not a read of a whole level.
    with ledger.store.engine.begin() as connection:
        for level in range(5):
            connection.exec_driver_sql(
                "INSERT INTO merkle_nodes (level, idx, hash) SELECT %(level)s::smallint, g, sha256(g::text::bytea) "
                "FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g",
                {"level": level, "lo": size >> level, "hi": 100_000 >> level},
            )
        connection.exec_driver_sql("ANALYZE merkle_nodes")
    with ledger.store.reading() as connection:
        proofs = {
            "inclusion": sorted({k for i in (0, 150, size - 1) for k in _keys_of(inclusion_proof, i, size)}),
            "consistency": sorted(_keys_of(consistency_proof, 123, size)),
        }
    cases = [[(0, i) for i in range(n)] for n in (1, 5, 9, 23, FETCH_BATCH)] + list(proofs.values())
    for keys in cases:
        plans = _plans(ledger, keys)
        assert not any("Seq Scan" in plan for plan in plans), plans
        assert any("Index" in plan and "pk_merkle_nodes" in plan for plan in plans), plans
        conditions = [plan for plan in plans if "Index Cond" in plan]
        assert conditions and all("level" in c and "idx" in c for c in conditions), (len(keys), plans)
    ledger.store.engine.dispose()


def _keys_of(proof: Any, first: int, size: int) -> set[tuple[int, int]]:
    """The node keys a proof reads (recorded through a NodeSource that answers every key)."""
    asked: set[tuple[int, int]] = set()

    class Recording:
        def nodes(self, keys: Any) -> dict[tuple[int, int], bytes]:
            asked.update(keys)
            return {k: b"\x00" * 32 for k in keys}

    proof(Recording(), first, size)
    return asked


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


@pytest.mark.postgres
def test_kind_lookup_is_planned_at_every_execution_on_postgres(pg_url: str, tmp_path: Path) -> None:
    """psycopg prepares a statement it has run five times and PostgreSQL keeps the plan it made then; on a small
    table that plan is a sequential scan, which would stay as the table grows (the key schedule read of every
    locked append went 4.6x slower per append from 500 to 5,000 blocks). So the kind lookup is never prepared."""
    ledger = Ledger.create(pg_url, models_dir=tmp_path, key=SigningKey.generate())
    with ledger.store.reading() as connection:
        for _ in range(10):
            assert [b.height for b in Store.blocks_of_kind(connection, ("genesis", "key"))] == [0]
            assert Store.head(connection) is not None
        prepared = connection.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars().all()
    assert any("ORDER BY height DESC LIMIT 1" in s for s in prepared), prepared  # the head query was prepared
    assert not any("kind IN" in s for s in prepared), prepared
    ledger.store.engine.dispose()
