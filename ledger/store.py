"""Database access: engines for SQLite and PostgreSQL, serialised write transactions, and block rows.

Writers are serialised in the database itself (SQLite ``BEGIN IMMEDIATE``; PostgreSQL a transaction-level
advisory lock), with UNIQUE(height) and UNIQUE(prev_hash) as the backstop, so concurrent appenders never fork.
"""

from __future__ import annotations

import contextlib
import functools
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from sqlalchemy import Table, create_engine, event, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from ledger.block import Block
from ledger.errors import CommitUnknownError, InputError, StorageError
from ledger.tables import BlockRow, CheckpointRow, MerkleNodeRow, VersionIndexRow

T = TypeVar("T")

_TABLE = cast(Table, BlockRow.__table__)
_NODES = cast(Table, MerkleNodeRow.__table__)
_VERSIONS = cast(Table, VersionIndexRow.__table__)
_CHECKPOINTS = cast(Table, CheckpointRow.__table__)
#: Columns in the order of the Block dataclass fields.
_COLUMNS = [
    _TABLE.c.format,
    _TABLE.c.height,
    _TABLE.c.prev_hash,
    _TABLE.c.timestamp,
    _TABLE.c.kind,
    _TABLE.c.payload,
    _TABLE.c.payload_hash,
    _TABLE.c.key_id,
    _TABLE.c.block_hash,
    _TABLE.c.signature,
]

#: Key of the PostgreSQL advisory lock every appender takes ("ledger" in ASCII).
ADVISORY_LOCK_KEY = 0x6C6564676572
_WRITE = "ledger_write"
_RETRIES = 12


def normalise_url(url: str) -> str:
    """Validate a database URL and pick the psycopg 3 driver for plain ``postgresql://`` URLs."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InputError(f"malformed database URL {url!r}: expected sqlite:///PATH or postgresql://...") from exc
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise InputError(f"unsupported database {backend!r} in {url!r}: use sqlite or postgresql")
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and not parsed.database:
        raise InputError("in-memory SQLite cannot hold a ledger: give sqlite:///PATH")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    """Create an engine with the ledger's connection settings for its backend."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        # Pooled: opening a connection costs the PRAGMAs below, and closing the last one checkpoints the WAL;
        # both per append cost more than the commit itself.
        engine = create_engine(url, connect_args={"timeout": 60})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 60000")
        cursor.execute("PRAGMA foreign_keys = ON")
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            # a read-only database keeps its mode; writes will report the real problem
            with contextlib.suppress(dbapi_connection.OperationalError):
                cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_WRITE, False)
        _run(connection, "BEGIN IMMEDIATE" if immediate else "BEGIN")


def describe(exc: SQLAlchemyError) -> str:
    """A one-line description of a database error for a person."""
    original = getattr(exc, "orig", None)
    message = str(original if original is not None else exc).strip().splitlines()
    return message[0] if message else type(exc).__name__


def _retryable(exc: DBAPIError) -> bool:
    message = describe(exc).lower()
    if "locked" in message or "busy" in message:
        return True
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return code in ("40001", "40P01")


class Store:
    """One database holding one ledger."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._local = threading.local()

    @classmethod
    def open(cls, url: str) -> Store:
        """Open (but do not migrate) the database at ``url``."""
        return cls(make_engine(url))

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction."""
        try:
            with self.engine.connect() as connection, connection.begin():
                yield connection
        except OperationalError as exc:
            raise StorageError(f"database error: {describe(exc)}") from exc

    def write(self, work: Callable[[Connection], T], *, one_statement: bool = False) -> T:
        """Run ``work`` in a serialised write transaction, retrying busy or serialisation failures.

        ``work`` must be safe to run again: the transaction it ran in was rolled back. A connection lost
        while ``work`` runs (server restart, ``pg_terminate_backend``) is retried too: nothing was committed.
        One lost during COMMIT is not, since the commit may have happened: ``CommitUnknownError`` says so.
        ``one_statement``: on PostgreSQL ``work`` writes with one statement that takes the advisory lock itself
        (the guarded append), so it runs in autocommit mode and that statement commits itself: one round trip
        instead of three (BEGIN, the statement, COMMIT). A connection lost while it runs leaves the outcome
        unknown, as one lost during COMMIT does. SQLite runs such ``work`` in its usual transaction.
        """
        autocommit = one_statement and self.dialect == "postgresql"
        for attempt in range(_RETRIES):
            before_commit = False
            try:
                connection = self._writer(autocommit=autocommit)
                with connection.begin():
                    before_commit = not autocommit
                    if not one_statement and self.dialect == "postgresql":
                        _run(connection, _LOCK_SQL)
                    result = work(connection)
                    before_commit = False
                return result
            except IntegrityError:
                raise
            except (OperationalError, DBAPIError) as exc:
                dropped = exc.connection_invalidated
                if not (_retryable(exc) or (dropped and before_commit)) or attempt == _RETRIES - 1:
                    if dropped and not before_commit:
                        raise CommitUnknownError(describe(exc)) from exc
                    raise StorageError(f"database write failed: {describe(exc)}") from exc
                time.sleep(min(2.0, 0.01 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    def _writer(self, *, autocommit: bool = False) -> Connection:
        """This thread's write connection (``autocommit``: its autocommit one, PostgreSQL's one-statement writes),
        kept between writes: checking one out of the pool for every append (and, on PostgreSQL, pinging the
        server first) cost more than the append's own statements. A dropped connection is invalidated by the
        rollback after the statement that found it, and replaced here."""
        name = "autocommit_writer" if autocommit else "writer"
        connection: Connection | None = getattr(self._local, name, None)
        if connection is None or connection.invalidated or connection.closed:
            if connection is not None:
                connection.close()
            options: dict[str, Any] = {_WRITE: True}
            if autocommit:
                options["isolation_level"] = "AUTOCOMMIT"
            connection = self.engine.connect().execution_options(**options)
            setattr(self._local, name, connection)
        return connection

    # --- block rows ---------------------------------------------------------------------------

    @staticmethod
    def head(connection: Connection) -> Block | None:
        """The block with the greatest height, or None for an empty ledger."""
        row = _first(connection, _HEAD_SQL)
        return _to_block(row) if row is not None else None

    @staticmethod
    def block_at(connection: Connection, height: int) -> Block | None:
        """The block at ``height``, if any."""
        row = connection.execute(select(*_COLUMNS).where(_TABLE.c.height == height)).first()
        return _to_block(row) if row is not None else None

    @staticmethod
    def blocks(connection: Connection, start: int = 0, end: int | None = None, *, batch: int = 5000) -> Iterator[Block]:
        """Blocks with start <= height < end in height order, fetched in batches (constant memory)."""
        query = select(*_COLUMNS).where(_TABLE.c.height >= start).order_by(_TABLE.c.height)
        if end is not None:
            query = query.where(_TABLE.c.height < end)
        # per-statement options: Connection.execution_options() would switch the whole connection (and any
        # later statement in its transaction, DDL included) to server-side cursors
        for row in connection.execute(query, execution_options={"yield_per": batch}):
            yield _to_block(row)

    @staticmethod
    def blocks_of_kind(connection: Connection, kinds: Sequence[str], *, above: int = -1) -> Iterator[Block]:
        """Blocks whose kind is one of ``kinds`` and whose height is above ``above``, in height order.

        Planned at every execution: psycopg prepares a statement it has run five times, and PostgreSQL keeps the
        plan it made then; made on a small table, that plan is a sequential scan, which a long-lived appender
        then ran on every locked append as the table grew (4.6x slower per append from 500 to 5,000 blocks).
        """
        if not kinds:
            return
        marks = ", ".join(f":k{i}" for i in range(len(kinds)))
        sql = f"SELECT {_NAMES} FROM {_TABLE.name} WHERE kind IN ({marks}) AND height > :above ORDER BY height"
        params: dict[str, Any] = {f"k{i}": kind for i, kind in enumerate(kinds)}
        params["above"] = above
        for row in _run(connection, sql, params, prepare=False).fetchall():
            yield _to_block(row)

    @staticmethod
    def insert_block(connection: Connection, block: Block) -> None:
        """Insert one sealed block (driver-level SQL: this and ``head`` run on every append)."""
        _run(connection, _INSERT_BLOCK_SQL, _row_values(block))

    @staticmethod
    def insert_appended(
        connection: Connection,
        block: Block,
        nodes: Sequence[tuple[int, int, bytes]],
        version: tuple[str, int, int] | None = None,
        *,
        guarded: bool = False,
    ) -> bool:
        """Insert an appended block, the Merkle nodes it completes (at least its leaf) and, for a version block,
        its ``(model, major, micro)`` index row; True when they went in.

        ``guarded``: only if the head is still the block ``block`` links to, checked by the insert itself, which on
        PostgreSQL also takes the advisory lock first; False (nothing inserted) otherwise. That is the append of a
        writer that trusts the head it wrote last without reading it. On PostgreSQL the whole append is one
        statement (the block and index rows as data-modifying CTEs), one round trip instead of two or three;
        SQLite has no round trips to save.
        """
        params = _row_values(block)
        if guarded:
            params["head"] = block.prev_hash  # its own parameter: PostgreSQL types each use of one separately
        if connection.dialect.name != "postgresql":
            inserted = _run(connection, _GUARDED_BLOCK_SQL if guarded else _INSERT_BLOCK_SQL, params)
            if inserted.rowcount != 1:
                return False
            Store.insert_nodes(connection, nodes)
            if version is not None:
                Store.insert_version_index(
                    connection, height=block.height, model=version[0], major=version[1], micro=version[2]
                )
            return True
        for i, (level, idx, digest) in enumerate(nodes):
            params.update({f"l{i}": level, f"i{i}": idx, f"h{i}": digest})
        if version is not None:
            params.update(model=version[0], major=version[1], micro=version[2])
        return bool(_run(connection, _appended_sql(len(nodes), version is not None, guarded), params).rowcount)

    @staticmethod
    def insert_blocks(connection: Connection, blocks: Sequence[Block]) -> None:
        """Insert many sealed blocks with one executemany (the bulk path)."""
        if blocks:
            connection.execute(_TABLE.insert(), [_row_values(b) for b in blocks])

    @staticmethod
    def insert_nodes(connection: Connection, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        """Persist completed Merkle subtree hashes."""
        if nodes:
            rows = [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in nodes]
            _run(connection, _INSERT_NODE_SQL, rows if len(rows) > 1 else rows[0])

    @staticmethod
    def nodes(connection: Connection, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Fetch the Merkle nodes at ``keys`` in one query."""
        if not keys:
            return {}
        wanted = list(dict.fromkeys(keys))
        padded = wanted + [wanted[0]] * (-len(wanted) % _NODE_BATCH)  # few statement shapes, each cached
        params = {f"l{i}": level for i, (level, _idx) in enumerate(padded)}
        params.update({f"i{i}": idx for i, (_level, idx) in enumerate(padded)})
        found: dict[tuple[int, int], bytes] = {}
        for level, idx, digest in _run(connection, _nodes_sql(len(padded)), params).fetchall():
            found[(level, idx)] = bytes(digest)
        return found

    @staticmethod
    def insert_version_index(connection: Connection, *, height: int, model: str, major: int, micro: int) -> None:
        """Record (model, version) -> height; the UNIQUE constraint refuses a second block for one version."""
        connection.execute(
            _VERSIONS.insert(),
            [{"height": height, "model": model, "major": major, "micro": micro}],
        )

    @staticmethod
    def insert_checkpoint(connection: Connection, *, size: int, root: str, note: bytes, created: str) -> None:
        """Store a signed checkpoint the ledger issued."""
        connection.execute(_CHECKPOINTS.insert(), [{"size": size, "root": root, "note": note, "created": created}])


_NODE_BATCH = 8

#: The append path's statements as driver SQL: SQLAlchemy's compile-and-cache step cost more than the
#: statements themselves (~75 µs against ~3 µs for the head query on SQLite). Named parameters are written
#: ``:name`` and turned into the driver's style by ``_styled``; ``_run`` and ``_first`` execute them.
_NAMES = ", ".join(c.name for c in _COLUMNS)
_VALUES = ", ".join(":" + c.name for c in _COLUMNS)
_HEAD_SQL = f"SELECT {_NAMES} FROM {_TABLE.name} ORDER BY height DESC LIMIT 1"
_HEAD_HASH_SQL = f"SELECT block_hash FROM {_TABLE.name} ORDER BY height DESC LIMIT 1"
_INSERT_BLOCK_SQL = f"INSERT INTO {_TABLE.name} ({_NAMES}) VALUES ({_VALUES})"
#: The guarded append's block insert on SQLite (already serialised there by ``BEGIN IMMEDIATE``).
_GUARDED_BLOCK_SQL = f"INSERT INTO {_TABLE.name} ({_NAMES}) SELECT {_VALUES} WHERE ({_HEAD_HASH_SQL}) = :head"
_LOCK_SQL = f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})"
_INSERT_NODE_SQL = f"INSERT INTO {_NODES.name} (level, idx, hash) VALUES (:level, :idx, :hash)"


@functools.lru_cache(maxsize=128)
def _appended_sql(nodes: int, indexed: bool, guarded: bool) -> str:
    """PostgreSQL's one-statement append for ``nodes`` Merkle nodes (one text per shape, so each is prepared once by
    the driver). Index and node rows are inserted from the block's ``RETURNING`` row, so nothing goes in unless
    the block does; the foreign key of the index row is checked at the end of the statement, when the block row
    is there. Guarded, the block's row comes from the advisory lock's, so the lock is held before anything is
    inserted, and only while the head is the block it links to."""
    source = f" FROM ({_LOCK_SQL}) AS held WHERE ({_HEAD_HASH_SQL}) = :head" if guarded else ""
    parts = [f"block AS (INSERT INTO {_TABLE.name} ({_NAMES}) SELECT {_VALUES}{source} RETURNING height)"]
    if indexed:
        parts.append(
            f"entry AS (INSERT INTO {_VERSIONS.name} (height, model, major, micro) "
            "SELECT height, :model, :major, :micro FROM block)"
        )
    values = ", ".join(f"(:l{i}, :i{i}, :h{i})" for i in range(nodes))
    sql = (
        f"WITH {', '.join(parts)} INSERT INTO {_NODES.name} (level, idx, hash) "
        f"SELECT v.level, v.idx, v.hash FROM block, (VALUES {values}) AS v (level, idx, hash)"
    )
    return _styled(sql, "postgresql")


@functools.lru_cache(maxsize=64)
def _styled(sql: str, dialect: str) -> str:
    # sqlite3 takes ``:name`` as written; psycopg wants ``%(name)s``
    return re.sub(r":(\w+)", r"%(\1)s", sql) if dialect == "postgresql" else sql


def _run(
    connection: Connection,
    sql: str,
    params: dict[str, Any] | list[dict[str, Any]] | None = None,
    *,
    prepare: bool = True,
) -> Any:
    """Execute driver SQL (a list of parameter sets: once per set) on the driver connection, inside the transaction
    SQLAlchemy opened: SQLAlchemy's per-statement work (~6-40 µs on SQLite, ~250 µs on PostgreSQL here) was most of
    an append's client time, the statements themselves far less. Driver errors are raised as SQLAlchemy's
    (``IntegrityError``, ``OperationalError``...), so retries and error messages see one kind of error on both
    backends. A lost connection is found by the rollback that follows, which SQLAlchemy runs, invalidates and
    reports as such (``connection_invalidated``). ``prepare=False``: PostgreSQL plans the statement at each
    execution (psycopg would otherwise prepare it once it has run five times)."""
    dialect = connection.dialect
    driver = connection.connection.driver_connection
    assert driver is not None
    text = _styled(sql, dialect.name)
    cursor = driver.cursor()
    try:
        if isinstance(params, list):
            cursor.executemany(text, params)
        elif prepare or dialect.name != "postgresql":
            cursor.execute(text, params if params is not None else ())
        else:
            cursor.execute(text, params, prepare=False)
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc
    return cursor


def _first(connection: Connection, sql: str) -> Any:
    """The first row of driver SQL ``sql`` (no parameters), or None."""
    result = _run(connection, sql)
    row = result.fetchone()
    result.close()
    return row


def driver_sql(connection: Connection, sql: str) -> str:
    """``sql`` with ``:name`` parameters in the connected driver's parameter style."""
    return _styled(sql, connection.dialect.name)


@functools.lru_cache(maxsize=64)
def _nodes_sql(count: int) -> str:
    """``(level = ? AND idx = ?) OR ...``: each term is a primary-key lookup on both backends (a row-value
    ``IN`` is not: SQLite scans the table for it). One text per size, so the driver prepares each once."""
    terms = " OR ".join(f"(level = :l{i} AND idx = :i{i})" for i in range(count))
    return f"SELECT level, idx, hash FROM {_NODES.name} WHERE {terms}"


def _row_values(block: Block) -> dict[str, Any]:
    return {
        "height": block.height,
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


def _to_block(row: Sequence[Any]) -> Block:
    return Block(
        format=row[0],
        height=row[1],
        prev_hash=row[2],
        timestamp=row[3],
        kind=row[4],
        payload=bytes(row[5]),
        payload_hash=row[6],
        key_id=row[7],
        block_hash=row[8],
        signature=bytes(row[9]),
    )
