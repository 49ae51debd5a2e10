"""PostgreSQL connections lost while an append commits: its outcome is read back, never guessed.

The guarded append (a ledger object's next append on top of its own last block) is one statement run in
autocommit mode, so a connection lost while it runs leaves the outcome unknown, as a connection lost during
COMMIT does. The append then reads its height back on a new connection: there, it returns the block (no
second copy); absent, it is redone the locked way (guarded) or reported as not recorded (locked).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from ledger.api import Ledger
from ledger.audit import FilesMode
from ledger.errors import CommitUnknownError, StorageError
from ledger.signing import SigningKey
from ledger.store import Store

pytestmark = pytest.mark.postgres


@pytest.fixture
def kill(pg_url: str) -> Iterator[Callable[[sqlalchemy.Connection], None]]:
    """Terminate the server backend behind a connection, as a server restart or an administrator would."""
    admin = sqlalchemy.create_engine(pg_url, isolation_level="AUTOCOMMIT")

    def terminate(connection: sqlalchemy.Connection) -> None:
        pid = connection.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
        with admin.connect() as other:
            assert other.execute(sqlalchemy.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()

    yield terminate
    admin.dispose()


def _ledger(pg_url: str, tmp_path: Path, appends: int) -> Ledger:
    """A ledger object whose next append is the guarded one-statement append."""
    ledger = Ledger.create(pg_url, models_dir=tmp_path, key=SigningKey.generate())
    for i in range(appends):
        ledger.append_event("note", {"i": i})
    assert ledger._last is not None and ledger._last.alone  # the next append trusts its last block
    return ledger


def _payloads(ledger: Ledger) -> list[Any]:
    return [block.data() for block in ledger.blocks()][1:]


def _lose_after_insert(
    monkeypatch: pytest.MonkeyPatch, kill: Callable[[sqlalchemy.Connection], None], *, guarded: bool
) -> list[int]:
    """Make the next append of that kind insert for real, then lose its connection: a guarded append's statement
    has committed, and the client finds the connection gone as it reads on; a locked append's COMMIT finds it."""
    real = Store.insert_appended
    lost: list[int] = []

    def insert_then_lose(connection: Any, block: Any, nodes: Any, version: Any = None, **kw: Any) -> bool:
        inserted = real(connection, block, nodes, version, **kw)
        if kw.get("guarded", False) == guarded and not lost:
            lost.append(block.height)
            kill(connection)
            if guarded:
                connection.exec_driver_sql("SELECT 1")
        return inserted

    monkeypatch.setattr(Store, "insert_appended", staticmethod(insert_then_lose))
    return lost


def test_guarded_append_that_committed_before_the_connection_was_lost_is_returned_once(
    pg_url: str, tmp_path: Path, kill: Callable[[sqlalchemy.Connection], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = _ledger(pg_url, tmp_path, 3)
    lost = _lose_after_insert(monkeypatch, kill, guarded=True)
    block = ledger.append_event("note", {"i": 3})
    assert lost == [4] and block.height == 4
    assert _payloads(ledger) == [{"i": i} for i in range(4)]  # committed once, not redone
    assert ledger.append_event("note", {"i": 4}).height == 5  # the next append reads the head again
    assert ledger.audit(files=FilesMode.NONE).clean


def test_guarded_append_on_a_connection_killed_while_idle_is_redone_the_locked_way(
    pg_url: str, tmp_path: Path, kill: Callable[[sqlalchemy.Connection], None]
) -> None:
    ledger = _ledger(pg_url, tmp_path, 3)
    writer = ledger.store._local.autocommit_writer  # the guarded appends used it
    kill(writer)
    assert ledger.append_event("note", {"i": 3}).height == 4
    assert _payloads(ledger) == [{"i": i} for i in range(4)]  # no gap, no copy
    assert ledger.store._writer(autocommit=True) is not writer
    assert ledger.append_event("note", {"i": 4}).height == 5
    assert ledger.audit(files=FilesMode.NONE).clean


def test_lost_commit_whose_outcome_cannot_be_read_back_is_reported_unknown(
    pg_url: str, tmp_path: Path, kill: Callable[[sqlalchemy.Connection], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = _ledger(pg_url, tmp_path, 3)
    _lose_after_insert(monkeypatch, kill, guarded=True)

    def unreachable() -> Any:
        raise StorageError("database error: server closed the connection")

    monkeypatch.setattr(ledger.store, "reading", unreachable)
    with pytest.raises(CommitUnknownError, match="may or may not have happened"):
        ledger.append_event("note", {"i": 3})
    monkeypatch.undo()
    assert _payloads(ledger) == [{"i": i} for i in range(4)]  # it had happened; the error did not claim otherwise


def test_locked_append_whose_commit_was_lost_before_it_happened_says_nothing_was_recorded(
    pg_url: str, tmp_path: Path, kill: Callable[[sqlalchemy.Connection], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger.create(pg_url, models_dir=tmp_path, key=SigningKey.generate())
    head = ledger.head()
    lost = _lose_after_insert(monkeypatch, kill, guarded=False)
    with pytest.raises(StorageError, match="nothing was recorded") as raised:
        ledger.append_event("note", {"i": 0})
    assert lost == [1] and not isinstance(raised.value, CommitUnknownError)
    monkeypatch.undo()
    assert ledger.head() == head  # the server rolled the transaction back with its backend
    assert ledger.append_event("note", {"i": 0}).height == 1
    assert ledger.audit(files=FilesMode.NONE).clean
