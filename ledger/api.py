"""The ledger as a library: ``Ledger.create`` / ``Ledger.open``, appending signed blocks, reading them back.

Every write goes through ``_commit``: one serialised transaction that reads the head, lets the caller build
its payload against it, seals and signs the block, and stores it with its Merkle nodes and index rows.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from ledger import merkle
from ledger import metadata as metadata_rules
from ledger.audit import AuditReport, FilesMode
from ledger.block import GENESIS_PREV_HASH, Block, seal
from ledger.canonical import canonical, decode
from ledger.chain import GENESIS, KEY, payload_of
from ledger.errors import (
    AlreadyExistsError,
    CommitUnknownError,
    IndexMismatchError,
    KeyFileError,
    NotFoundError,
    StorageError,
    VersionOrderError,
)
from ledger.faults import crash_point
from ledger.fsutil import write_atomic
from ledger.indexcheck import recorded_as
from ledger.keys import KeySchedule, schedule_of
from ledger.recording import PreparedVersion, prepare_version
from ledger.signing import SigningKey, load_key_file
from ledger.store import Store, describe
from ledger.strictjson import read_object
from ledger.tables import VersionIndexRow
from ledger.timeutil import now
from ledger.versions import VersionId, VersionRecord, check_append, expected_next, resolve_ref

VERSION = "version"


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """A row for the (model, version) lookup index, written in the same transaction as its block."""

    model: str
    major: int
    micro: int


@dataclass(frozen=True, slots=True)
class Appended:
    """What an append did: the version's block, and whether the block already existed (``resumed``: the re-run
    of an append cut off after its commit, which only wrote the metadata's block reference)."""

    block: Block
    resumed: bool


class NodesOf:
    """Adapts a database connection to ``merkle.NodeSource``."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def nodes(self, keys: Any) -> dict[tuple[int, int], bytes]:
        """Fetch persisted subtree hashes."""
        return Store.nodes(self._connection, keys)


def default_adapters_dir(models_dir: Path) -> Path:
    """The seed's layout: adapters live in ``../lora_adapters`` beside the models directory."""
    return models_dir.parent / "lora_adapters"


class Ledger:
    """An open ledger: its database, its models directory, and (for writing) its signing key."""

    def __init__(
        self,
        store: Store,
        *,
        models_dir: Path,
        adapters_dir: Path | None,
        key: SigningKey | None,
        genesis: Block,
    ) -> None:
        self.store = store
        self.models_dir = models_dir
        self.adapters_dir = adapters_dir if adapters_dir is not None else default_adapters_dir(models_dir)
        self._key = key
        self.genesis = genesis
        self._last: _LastAppend | None = None
        self._schedule = (KeySchedule(()), -1)  # the key schedule, and the height it was read to
        self.ledger_id, self.origin = _identity(genesis)

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        db_url: str,
        *,
        models_dir: Path,
        key: SigningKey | Path,
        origin: str | None = None,
        adapters_dir: Path | None = None,
        passphrase: bytes | None = None,
    ) -> Ledger:
        """Migrate the database and write the genesis block; refuses when a ledger already exists there."""
        from ledger import migrate  # Alembic is imported only by the commands that migrate

        signing = key if isinstance(key, SigningKey) else load_key_file(key, passphrase)
        store = Store.open(db_url)
        try:
            migrate.upgrade(store.engine)
        except OperationalError as exc:
            raise StorageError(f"cannot prepare database: {describe(exc)}") from exc
        ledger_id = str(uuid.uuid4())
        created = now()
        payload = {
            "ledger_id": ledger_id,
            "origin": origin or f"ledger/{ledger_id}",
            "created": created,
            "algorithm": "ed25519",
            "public_key": signing.public.hex(),
        }

        def write(connection: Connection) -> Block:
            if Store.head(connection) is not None:
                raise AlreadyExistsError("a ledger already exists in this database; nothing was changed")
            block = seal(
                height=0,
                prev_hash=GENESIS_PREV_HASH,
                timestamp=created,
                kind=GENESIS,
                payload=payload,
                key=signing,
            )
            _store_block(connection, block, None)
            return block

        genesis = store.write(write)
        return cls(store, models_dir=models_dir, adapters_dir=adapters_dir, key=signing, genesis=genesis)

    @classmethod
    def open(
        cls,
        db_url: str,
        *,
        models_dir: Path,
        key: SigningKey | Path | None = None,
        adapters_dir: Path | None = None,
        passphrase: bytes | None = None,
    ) -> Ledger:
        """Open an existing ledger. The key is loaded only when given (reading and auditing need none)."""
        store = Store.open(db_url)
        try:
            with store.reading() as connection:
                genesis = Store.block_at(connection, 0)
        except (OperationalError, ProgrammingError) as exc:
            if "no such table" in describe(exc) or "does not exist" in describe(exc):
                raise StorageError(f"no ledger in {_safe_url(db_url)}: run `ledger init` first") from exc
            raise StorageError(f"cannot read {_safe_url(db_url)}: {describe(exc)}") from exc
        if genesis is None:
            raise StorageError(f"no ledger in {_safe_url(db_url)}: run `ledger init` first")
        signing = key if isinstance(key, SigningKey) or key is None else load_key_file(key, passphrase)
        return cls(store, models_dir=models_dir, adapters_dir=adapters_dir, key=signing, genesis=genesis)

    def reopened(self) -> Ledger:
        """This ledger through a new engine of its own, without the key: for a forked process, which must not
        use the connections its parent holds (``ledger.background``)."""
        url = self.store.engine.url.render_as_string(hide_password=False)
        return Ledger(
            Store.open(url), models_dir=self.models_dir, adapters_dir=self.adapters_dir, key=None, genesis=self.genesis
        )

    # --- reading ------------------------------------------------------------------------------

    def head(self) -> Block:
        """The newest block."""
        with self.store.reading() as connection:
            block = Store.head(connection)
        assert block is not None  # a ledger always has its genesis
        return block

    def block(self, height: int) -> Block:
        """The block at ``height``."""
        with self.store.reading() as connection:
            block = Store.block_at(connection, height)
        if block is None:
            raise NotFoundError(f"no block at height {height}")
        return block

    def blocks(self, start: int = 0, end: int | None = None) -> Iterator[Block]:
        """Blocks in height order, streamed in batches."""
        with self.store.reading() as connection:
            yield from Store.blocks(connection, start, end)

    def blocks_of_kind(self, *kinds: str) -> list[Block]:
        """All blocks of the given kinds, in height order."""
        with self.store.reading() as connection:
            return list(Store.blocks_of_kind(connection, kinds))

    def version_block(self, model: str, version: VersionId) -> Block:
        """The block recording ``model`` at ``version``."""
        with self.store.reading() as connection:
            height = connection.execute(
                select(VersionIndexRow.height).where(
                    VersionIndexRow.model == model,
                    VersionIndexRow.major == version.major,
                    VersionIndexRow.micro == version.micro,
                )
            ).scalar_one_or_none()
            block = Store.block_at(connection, height) if height is not None else None
        if block is None:
            raise NotFoundError(f"{model}-{version.tag} is not in the ledger")
        if block.kind != VERSION or recorded_as(block.data()) != (model, version.major, version.micro):
            raise IndexMismatchError(
                f"the version index points {model}-{version.tag} at block {block.height}, which does not record "
                "that version: the database was changed behind its guards (run `ledger audit`)"
            )
        return block

    def find(self, ref: str, *, model: str | None = None) -> Block:
        """A block by height (digits) or by version name (full, or short with one model / ``model``)."""
        if ref.isdigit():
            return self.block(int(ref))
        name = resolve_ref(ref, models=self.models(), model=model)
        return self.version_block(name.slug, name.version)

    # --- Merkle tree (RFC 9162 over the block hashes; O(log n) node reads each) ------------------

    def size(self) -> int:
        """Number of blocks (leaves of the Merkle tree)."""
        return self.head().height + 1

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the tree of the first ``size`` blocks (default: all)."""
        with self.store.reading() as connection:
            n = size if size is not None else _size(connection)
            return merkle.root(NodesOf(connection), n)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """Audit path of leaf ``index`` (the block at that height) in the tree of ``size`` blocks."""
        with self.store.reading() as connection:
            return merkle.inclusion_proof(NodesOf(connection), index, size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """Proof that the tree of ``size2`` blocks extends the tree of ``size1`` blocks."""
        with self.store.reading() as connection:
            return merkle.consistency_proof(NodesOf(connection), size1, size2)

    def key_schedule(self) -> KeySchedule:
        """The signing keys the chain introduced, by height (genesis and ``key`` blocks)."""
        return schedule_of(self.blocks_of_kind(GENESIS, KEY))

    def models(self) -> list[str]:
        """Slugs of every model with at least one version."""
        with self.store.reading() as connection:
            rows = connection.execute(select(VersionIndexRow.model).distinct().order_by(VersionIndexRow.model))
            return [row[0] for row in rows]

    # --- auditing -----------------------------------------------------------------------------

    def audit(self, *, files: FilesMode = FilesMode.QUICK, **options: Any) -> AuditReport:
        """Re-verify the chain, Merkle tree, checkpoints, database guards and (per ``files``) the files on disk.

        ``options`` are the other fields of ``ledger.transparency.AuditOptions`` (witness, checkpoint files,
        state_dir, workers, incremental).
        """
        from ledger.transparency import AuditOptions, run_audit

        return run_audit(self, AuditOptions(files=files, **options))

    # --- writing ------------------------------------------------------------------------------

    @property
    def key(self) -> SigningKey:
        """The signing key; writing without one is an environment error."""
        if self._key is None:
            raise KeyFileError("this command signs blocks: give --key PATH or set LEDGER_KEY")
        return self._key

    def use_key(self, key: SigningKey) -> None:
        """Sign from now on with ``key`` (after a rotation introduced it)."""
        self._key = key

    def append_event(self, kind: str, payload: dict[str, Any]) -> Block:
        """Append a signed block of any kind whose payload does not depend on the chain."""
        return self._commit(kind, lambda _connection, _head: (payload, None))

    def append(
        self,
        weights: Path | None = None,
        *,
        metadata: Path | None = None,
        stage: int | None = None,
        question: str | None = None,
        adapter: Path | None = None,
        data: Path | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Block:
        """Record a saved model version and return its block (``append_version`` says if it was a resumption)."""
        return self.append_version(
            weights, metadata=metadata, stage=stage, question=question, adapter=adapter, data=data, progress=progress
        ).block

    def append_version(
        self,
        weights: Path | None = None,
        *,
        metadata: Path | None = None,
        stage: int | None = None,
        question: str | None = None,
        adapter: Path | None = None,
        data: Path | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Appended:
        """Record a saved model version; afterwards the metadata file gets its block reference written back."""
        prepared = prepare_version(
            models_dir=self.models_dir,
            adapters_dir=self.adapters_dir,
            weights=weights,
            metadata=metadata,
            stage=stage,
            question=question,
            adapter=adapter,
            data=data,
            progress=progress,
        )
        crash_point("append:hashed")
        return self.commit_version(prepared)

    def commit_version(self, prepared: PreparedVersion, *, place: Callable[[], None] | None = None) -> Appended:
        """Commit a prepared version (order and stage rules checked under the write lock), then update its JSON.

        Re-running an append whose block was committed but whose metadata write-back was cut off (a crash, a
        full disk) finds the identical block and only finishes the write-back (``resumed``). Once the metadata
        file carries that block's reference the append had finished: running it again is a duplicate, refused
        (VersionOrderError) with the versions expected next.
        """
        self.key  # fail before anything else when there is no key  # noqa: B018
        block = self._recorded_identically(prepared) if place is None else None
        if block is not None and _references(prepared.metadata_path, block):
            block = None  # a true duplicate: record_version refuses it under the write lock
        resumed = block is not None
        if block is None:
            block = self.record_version(prepared, place=place)
        crash_point("commit:done")
        self.write_block_reference(prepared, block)
        return Appended(block, resumed)

    def record_version(self, prepared: PreparedVersion, *, place: Callable[[], None] | None = None) -> Block:
        """Commit a prepared version's block; the order and stage rules are checked under the write lock.

        ``place`` (used by ``save_version``) runs under the write lock once the order check has passed, to move
        the files into their ledgered names; it must be safe to run again (a busy database retries the build).
        """
        self.key  # fail before anything else when there is no key  # noqa: B018

        def build(connection: Connection, _head: Block) -> tuple[dict[str, Any], IndexEntry]:
            payload = _version_payload(connection, prepared)
            if place is not None:
                place()
            return payload

        return self._commit(VERSION, build, pure=place is None)

    def write_block_reference(self, prepared: PreparedVersion, block: Block) -> None:
        """Rewrite the metadata file atomically with ``ledger_block_id`` / ``ledger_block_hash`` of its block."""
        referenced = metadata_rules.with_block_reference(
            prepared.metadata, height=block.height, block_hash=block.block_hash
        )
        write_atomic(prepared.metadata_path, _pretty_json(referenced))

    def save_version(
        self,
        obj: Any,
        metadata: Mapping[str, Any],
        *,
        kind: Literal["major", "micro"] = "micro",
        stage: int | None = None,
        question: str | None = None,
        adapter_dir: Path | None = None,
        data: Path | None = None,
    ) -> Block:
        """Save a torch state dict (or module) as the model's next major or micro version and record it.

        See ``ledger.saving.save_version``: weights are hashed while ``torch.save`` streams them out, and no file
        is left under a ledgered name unless the block commits.
        """
        from ledger.saving import save_version

        return save_version(
            self, obj, metadata, kind=kind, stage=stage, question=question, adapter_dir=adapter_dir, data=data
        )

    def last_version(self, model: str) -> VersionRecord | None:
        """The latest version of ``model`` (id, stage, question), or None when it has none."""
        with self.store.reading() as connection:
            last = _last_version(connection, model)
        return None if last is None else last[0]

    def _recorded_identically(self, prepared: PreparedVersion) -> Block | None:
        """The block already recording exactly this version (same files, digests and metadata), if any."""
        try:
            block = self.version_block(prepared.name.slug, prepared.name.version)
        except NotFoundError:
            return None
        recorded = {k: v for k, v in block.data().items() if k != "parent"}
        return block if recorded == decode(canonical(prepared.body)) else None

    def next_version(self, model: str, *, major: bool) -> VersionId:
        """The version number the next major or micro save of ``model`` gets."""
        with self.store.reading() as connection:
            last = _last_version(connection, model)
        options = expected_next([] if last is None else [last[0]])
        return options[-1] if major or len(options) == 1 else options[0]

    def _commit(
        self,
        kind: str,
        build: Callable[[Connection, Block], tuple[dict[str, Any], IndexEntry | None]],
        *,
        pure: bool = True,
    ) -> Block:
        """Seal and insert the block ``build`` describes on top of the head, under the write lock.

        After an append of its own this object trusts that block to be the head still and does not read it: the
        insert is guarded (nothing goes in unless the head is that block; PostgreSQL's lock is taken by the same
        statement), and if another writer got in between, the append is redone the locked way, head read first.
        Once another writer has got in between, appends wait for the lock until one finds that nobody else
        wrote since this object's last block: under contention a guarded attempt would only be thrown away.
        ``pure``: ``build`` only reads, so it may run before the lock is held; one with side effects (moving
        files into place) always waits for the lock.
        """
        key = self.key
        last = self._last if self._last is not None and self._last.key_id == key.key_id else None
        outcomes: list[tuple[list[bytes], bool]] = []
        sealed: list[Block] = []

        def write(connection: Connection, trusted: Block | None) -> Block | None:
            head = trusted if trusted is not None else Store.head(connection)
            assert head is not None
            known = last.frontier if last is not None and last.head.block_hash == head.block_hash else None
            if known is None:
                self._schedule_through(connection, head.height).require_active(key.key_id, head.height + 1)
            payload, index = build(connection, head)
            block = seal(
                height=head.height + 1,
                prev_hash=head.block_hash,
                timestamp=max(now(), head.timestamp),
                kind=kind,
                payload=payload,
                key=key,
            )
            sealed.append(block)
            frontier = _store_block(connection, block, index, known, guarded=trusted is not None)
            if frontier is None:
                return None
            outcomes.append((frontier, known is not None))
            crash_point("commit:inserted")
            return block

        block = None
        if last is not None and last.alone and pure:
            trusted = last.head
            try:
                with contextlib.suppress(IntegrityError):  # another writer's block took the height first
                    block = self.store.write(lambda connection: write(connection, trusted), one_statement=True)
            except CommitUnknownError as unknown:
                landed = self._landed(sealed, unknown)
                if landed is not None:
                    return landed
        if block is None:
            try:
                block = self.store.write(lambda connection: write(connection, None))
            except IntegrityError as exc:
                raise VersionOrderError(f"another writer recorded this first: {describe(exc)}") from exc
            except CommitUnknownError as unknown:
                landed = self._landed(sealed, unknown)
                if landed is None:
                    raise StorageError(
                        f"connection lost while committing ({unknown.reason}); nothing was recorded"
                    ) from unknown
                return landed
            assert block is not None
        # a key block changes the schedule: the next append re-reads it
        frontier, alone = outcomes[-1]
        self._last = None if kind == KEY else _LastAppend(block, frontier, key.key_id, alone)
        return block

    def _schedule_through(self, connection: Connection, height: int) -> KeySchedule:
        """The key schedule of the blocks up to ``height`` (the head, under the write lock): the genesis and key
        blocks are read once, later only those above the height read last, since blocks are never changed."""
        known, read = self._schedule
        if read < height:
            added = schedule_of(Store.blocks_of_kind(connection, (GENESIS, KEY), above=read))
            known, read = KeySchedule(known.events + added.events), height
            self._schedule = known, read
        return known

    def _landed(self, sealed: list[Block], unknown: CommitUnknownError) -> Block | None:
        """The last block sealed (``sealed[-1]``), whose connection was lost while it committed, if it is in the
        ledger: read back on a new connection (heights are unique, so its height holds it or another block).
        ``unknown`` is raised again when that read fails as well. Once landed, the frontier after it was not
        kept: the next append reads it."""
        if not sealed:
            return None
        block = sealed[-1]
        try:
            with self.store.reading() as connection:
                found = Store.block_at(connection, block.height)
        except StorageError:
            raise unknown from None
        if found is None or found.block_hash != block.block_hash:
            return None
        self._last = None
        return block


@dataclass(frozen=True, slots=True)
class _LastAppend:
    """A ledger object's last append: while ``head`` is still the head, nobody else appended, so neither the
    Merkle frontier after it nor the key schedule can have changed. ``alone``: that append found the head to
    be this object's previous block (no other writer in between), so the next one is worth trying guarded."""

    head: Block
    frontier: list[bytes]
    key_id: str
    alone: bool


def _store_block(
    connection: Connection,
    block: Block,
    index: IndexEntry | None,
    frontier: list[bytes] | None = None,
    *,
    guarded: bool = False,
) -> list[bytes] | None:
    """Insert the block, its completed Merkle nodes and its index row; returns the new Merkle frontier, or None
    when ``guarded`` and the head was no longer the block ``block`` links to (nothing inserted).

    ``frontier`` is the frontier before this block when the caller knows it (saves a read per append).
    """
    if frontier is None:
        frontier = merkle.load_frontier(NodesOf(connection), block.height)
    nodes, after = merkle.completed_nodes(block.height, merkle.leaf_hash(bytes.fromhex(block.block_hash)), frontier)
    version = None if index is None else (index.model, index.major, index.micro)
    return after if Store.insert_appended(connection, block, nodes, version, guarded=guarded) else None


def _size(connection: Connection) -> int:
    head = Store.head(connection)
    return 0 if head is None else head.height + 1


def _last_version(connection: Connection, model: str) -> tuple[VersionRecord, Block] | None:
    row = connection.execute(
        select(VersionIndexRow.height)
        .where(VersionIndexRow.model == model)
        .order_by(VersionIndexRow.major.desc(), VersionIndexRow.micro.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    block = Store.block_at(connection, row[0])
    assert block is not None
    data = block.data()
    record = VersionRecord(VersionId.parse(str(data.get("version"))), data.get("stage"), data.get("question"))
    return record, block


def _version_payload(connection: Connection, prepared: PreparedVersion) -> tuple[dict[str, Any], IndexEntry]:
    name = prepared.name
    last = _last_version(connection, name.slug)
    history = [] if last is None else [last[0]]
    check_append(name.slug, history, name.version, stage=prepared.stage, question=prepared.question)
    parent = None
    if last is not None:
        parent = {"version": str(last[0].version), "height": last[1].height, "block_hash": last[1].block_hash}
    payload = {**prepared.body, "parent": parent}
    return payload, IndexEntry(name.slug, name.version.major, name.version.micro)


def _references(metadata_path: Path, block: Block) -> bool:
    """True when the metadata file already carries ``block``'s reference (its write-back finished)."""
    provenance = read_object(metadata_path).get("provenance")
    return (
        isinstance(provenance, dict)
        and provenance.get(metadata_rules.BLOCK_ID_KEY) == f"block-{block.height}"
        and provenance.get(metadata_rules.BLOCK_HASH_KEY) == block.block_hash
    )


def _pretty_json(obj: dict[str, Any]) -> bytes:
    import json

    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _identity(genesis: Block) -> tuple[str, str]:
    """The ledger id and origin the genesis block names; empty strings when its payload was damaged, so that
    ``ledger audit`` can still open the ledger and report the genesis block (and nothing can match an empty id)."""
    info = payload_of(genesis)
    ledger_id, origin = info.get("ledger_id"), info.get("origin")
    return (ledger_id if isinstance(ledger_id, str) else ""), (origin if isinstance(origin, str) else "")
