"""The guarded append: a ledger object trusts the head its last append left, and the database checks that trust.

Another writer in between, a race under PostgreSQL's lock, and a head that is gone (a tampered database) must each
end with the block on the real head, never on the trusted one.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from ledger.audit import FilesMode
from ledger.block import Block
from ledger.store import Store
from tests.conftest import Workspace, open_ledger


def _linked(blocks: list[Block]) -> bool:
    return all(b.prev_hash == a.block_hash and b.height == a.height + 1 for a, b in itertools.pairwise(blocks))


def test_another_writer_in_between(ledger_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trusted head is stale: the guarded insert puts nothing in, and the append is redone on the real head."""
    mine, other = open_ledger(ledger_ws), open_ledger(ledger_ws)
    mine.append_event("note", {"i": 1})
    mine.append_event("note", {"i": 2})  # found its own block as the head: the next append is tried guarded
    theirs = other.append_event("note", {"i": 3})
    attempts = _spy_attempts(monkeypatch)
    block = mine.append_event("note", {"i": 4})
    assert attempts == [(True, False), (False, True)]  # refused on the trusted head, then inserted the locked way
    assert block.prev_hash == theirs.block_hash and block.height == 4
    blocks = list(mine.blocks())
    assert _linked(blocks) and mine.audit(files=FilesMode.NONE).clean


def test_contention_waits_for_the_lock(ledger_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once another writer got in between, the next appends wait for the lock instead of trying guarded (an attempt
    that would be thrown away), until one finds that nobody else wrote since: then guarded appends resume."""
    mine, other = open_ledger(ledger_ws), open_ledger(ledger_ws)
    attempts = _spy_attempts(monkeypatch)
    mine.append_event("note", {"i": 1})  # nothing trusted yet: locked
    mine.append_event("note", {"i": 2})  # locked, and the head was its own block
    mine.append_event("note", {"i": 3})  # guarded
    assert attempts == [(False, True), (False, True), (True, True)]
    attempts.clear()
    other.append_event("note", {"i": 4})
    mine.append_event("note", {"i": 5})  # guarded, refused, redone locked
    other.append_event("note", {"i": 6})
    mine.append_event("note", {"i": 7})  # someone wrote in between last time: straight to the lock
    mine.append_event("note", {"i": 8})  # locked; nobody wrote since its last block
    mine.append_event("note", {"i": 9})  # guarded again
    assert attempts == [
        (False, True),
        (True, False),
        (False, True),
        (False, True),
        (False, True),
        (False, True),
        (True, True),
    ]
    blocks = list(mine.blocks())
    assert len(blocks) == 10 and _linked(blocks) and mine.audit(files=FilesMode.NONE).clean


def _spy_attempts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, bool]]:
    """Record every insert attempt as (guarded, inserted)."""
    attempts: list[tuple[bool, bool]] = []
    real = Store.insert_appended

    def spy(connection: Any, block: Block, nodes: Any, version: Any = None, **kw: Any) -> bool:
        inserted = real(connection, block, nodes, version, **kw)
        attempts.append((kw.get("guarded", False), inserted))
        return inserted

    monkeypatch.setattr(Store, "insert_appended", staticmethod(spy))
    return attempts


@pytest.mark.postgres
def test_raced_under_the_lock(pg_url: str, tmp_path: Path) -> None:
    """PostgreSQL: the guarded statement's snapshot is taken before it waits for the lock another writer holds; that
    writer commits the next height meanwhile, so the insert meets UNIQUE(height) and the append is redone on top."""
    from ledger.api import Ledger
    from ledger.signing import SigningKey

    key = SigningKey.generate()
    models = tmp_path
    mine = Ledger.create(pg_url, models_dir=models, key=key)
    mine.append_event("note", {"i": 1})
    mine.append_event("note", {"i": 2})  # its own block is the head: the next append is tried guarded
    other = Ledger.open(pg_url, models_dir=models, key=key)
    holding, release = threading.Event(), threading.Event()

    def slow_build(_connection: Any, _head: Block) -> tuple[dict[str, Any], None]:
        holding.set()  # the other writer holds the advisory lock from here until it commits
        assert release.wait(60)
        return {"other": True}, None

    results: dict[str, Any] = {}

    def run(name: str, work: Any) -> None:
        try:
            results[name] = work()
        except Exception as exc:  # noqa: BLE001 (the assertion below shows it)
            results[name] = exc

    first = threading.Thread(target=run, args=("other", lambda: other._commit("note", slow_build)))
    first.start()
    assert holding.wait(60)
    second = threading.Thread(target=run, args=("mine", lambda: mine.append_event("note", {"mine": True})))
    second.start()
    admin = sqlalchemy.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        waiting = 0
        for _ in range(600):  # until the guarded statement is queued behind the lock
            waiting = connection.execute(
                sqlalchemy.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"  # not other tests' ledgers
                )
            ).scalar_one()
            if waiting:
                break
            time.sleep(0.05)
    admin.dispose()
    assert waiting == 1
    release.set()
    first.join(60)
    second.join(60)
    assert isinstance(results["other"], Block) and isinstance(results["mine"], Block), results
    assert results["other"].height == 3 and results["mine"].height == 4
    assert results["mine"].prev_hash == results["other"].block_hash
    blocks = list(mine.blocks())
    assert _linked(blocks) and mine.audit(files=FilesMode.NONE).clean


def test_trusted_head_removed_from_the_database(tmp_path: Path) -> None:
    """Someone with the file drops the triggers and deletes the head block this object appended, with its Merkle leaf:
    the next append must not link to the missing block (a gap at its height); it goes on the real head, and the
    audit still reports the missing triggers."""
    from ledger.api import Ledger
    from ledger.signing import SigningKey

    path = tmp_path / "ledger.db"
    ledger = Ledger.create(f"sqlite:///{path}", models_dir=tmp_path, key=SigningKey.generate())
    kept = ledger.append_event("note", {"i": 1})
    gone = ledger.append_event("note", {"i": 2})
    connection = sqlite3.connect(path)
    connection.execute("DROP TRIGGER blocks_no_delete")
    connection.execute("DROP TRIGGER merkle_nodes_no_delete")
    connection.execute("DELETE FROM blocks WHERE height = ?", (gone.height,))
    connection.execute("DELETE FROM merkle_nodes WHERE level = 0 AND idx = ?", (gone.height,))
    connection.commit()
    connection.close()
    block = ledger.append_event("note", {"i": 3})
    assert block.prev_hash == kept.block_hash and block.height == gone.height
    assert _linked(list(ledger.blocks()))
    findings = ledger.audit(files=FilesMode.NONE).findings
    assert findings and all("trigger" in f.message for f in findings), findings
