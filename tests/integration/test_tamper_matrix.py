"""Tamper matrix: hundreds of attacks on one ledger per backend, each reported with the right class and height.

One ledger per backend per module (genesis, versions with files and an adapter, events, a key rotation).
Every database mutation runs inside one transaction that goes around the append-only triggers like an
attacker with file or owner access, audits *inside* that transaction (so the audit sees the attack) and
rolls back, so 250+ mutations per backend stay fast. The expected class follows the audit's order: per
height, ``chain.check_block`` (payload, then block hash -> link, then signature) before ``ChainWalker``
(sequence, link, signer), and findings sorted by (height, class priority).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.engine import Connection

from ledger import guards, merkle, trust
from ledger.api import Ledger, NodesOf
from ledger.audit import AuditReport, FilesMode
from ledger.block import Block, seal
from ledger.canonical import canonical, decode
from ledger.chain import ChainWalker, link_fields
from ledger.checkpoints import sign_checkpoint, state_at
from ledger.findings import Finding, FindingClass
from ledger.signing import SigningKey, write_key_file
from ledger.store import Store, make_engine
from ledger.tables import APPEND_ONLY_TABLES
from ledger.witness import Witness
from tests.conftest import seed_metadata

SEED = 20261125
N = 40  # blocks after genesis
ROTATION = 26  # height of the key block that retires key A for key B
VERSION_HEIGHTS: list[int] = [*range(1, 11), *range(27, 31)]
ADAPTER_VERSION = "oneseek-7b-zero-v1.3"  # at height 4

L, P, S, Q = FindingClass.LINK, FindingClass.PAYLOAD, FindingClass.SIGNATURE, FindingClass.SEQUENCE


@dataclass
class Built:
    """The module's ledger: where it lives and everything the mutations need to know about it."""

    url: str
    root: Path
    models: Path
    adapters: Path
    blocks: list[Block]
    key_a: SigningKey
    key_b: SigningKey
    dialect: str
    witness: str  # a checkpoint of every size 1..N+1, signed as the chain grew
    state_dir: Path  # the trusted state at size N+1


# --- building the ledger once per backend --------------------------------------------------------


def _version_names() -> list[str]:
    return [f"oneseek-7b-zero-v1.{m}" for m in range(len(VERSION_HEIGHTS))]


def _build(url: str, root: Path) -> Built:
    models, adapters = root / "models", root / "lora_adapters"
    models.mkdir()
    adapters.mkdir()
    key_a, key_b = SigningKey.generate(), SigningKey.generate()
    write_key_file(root / "key.pem", key_a, None)
    rng = random.Random(SEED)
    adapter = adapters / ADAPTER_VERSION
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "mistral-7b", "r": 8}')
    (adapter / "adapter_model.bin").write_bytes(rng.randbytes(2048))
    (adapter / "tokenizer.txt").write_bytes(rng.randbytes(300))

    ledger = Ledger.create(url, models_dir=models, key=key_a, adapters_dir=adapters)
    names = iter(_version_names())
    witness = Witness(str(root / "witness"))

    def witnessed(lg: Ledger) -> None:
        """Publish a checkpoint of the ledger as it stands (the witness sees every size)."""
        witness.publish(lg.ledger_id, sign_checkpoint(lg))

    witnessed(ledger)

    def version(lg: Ledger) -> None:
        import json

        name = next(names)
        (models / f"{name}.pth").write_bytes(rng.randbytes(4096))
        (models / f"{name}.json").write_text(json.dumps(seed_metadata(name)))
        lg.append(models / f"{name}.pth")

    for height in range(1, ROTATION):
        if height in VERSION_HEIGHTS:
            version(ledger)
        else:
            ledger.append_event("note", {"n": height, "text": f"event {height}", "ratio": height / 7})
        witnessed(ledger)
    ledger.append_event(
        "key", {"public_key": key_b.public.hex(), "previous_key_id": key_a.key_id, "reason": "rotation"}
    )
    rotated = Ledger.open(url, models_dir=models, key=key_b, adapters_dir=adapters)
    witnessed(rotated)
    for height in range(ROTATION + 1, N + 1):
        if height in VERSION_HEIGHTS:
            version(rotated)
        else:
            rotated.append_event("note", {"n": height, "text": f"event {height}"})
        witnessed(rotated)
    report = rotated.audit(files=FilesMode.FULL, witness=witness.location, update_state=False)
    assert report.clean and report.head_height == N, report.findings
    assert trust.save(root / "state", state_at(rotated, sign_checkpoint(rotated)))
    blocks = list(rotated.blocks())
    rotated.store.engine.dispose()
    ledger.store.engine.dispose()
    dialect = make_engine(url).dialect.name
    return Built(url, root, models, adapters, blocks, key_a, key_b, dialect, witness.location, root / "state")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """One ledger per backend for the whole module."""
    root = tmp_path_factory.mktemp(f"tamper-{request.param}")
    if request.param == "sqlite":
        yield _build(f"sqlite:///{root / 'ledger.db'}", root)
        return
    admin_url: str = request.getfixturevalue("pg_admin_url")
    name = f"ledger_tamper_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sqlalchemy.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield _build(url, root)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


# --- auditing inside the attacker's transaction ----------------------------------------------------


class BoundStore(Store):
    """A store whose reads run on one given connection: the audit sees the uncommitted attack."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection.engine)
        self.connection = connection

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """Read through the attacker's open transaction."""
        yield self.connection


def _unguard(connection: Connection) -> list[str]:
    if connection.dialect.name == "sqlite":
        rows = connection.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").all()
        for name, _sql in rows:
            connection.exec_driver_sql(f"DROP TRIGGER {name}")
        return [sql for _name, sql in rows]
    for table in APPEND_ONLY_TABLES:
        connection.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    return []


def _reguard(connection: Connection, saved: list[str]) -> None:
    if connection.dialect.name == "sqlite":
        for sql in saved:
            connection.exec_driver_sql(sql)
        return
    for table in APPEND_ONLY_TABLES:
        for trigger in sorted(guards.expected_triggers("postgresql", table)):
            connection.exec_driver_sql(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")


@dataclass
class Attack:
    """What a mutation gets to work with."""

    connection: Connection
    built: Built
    rng: random.Random

    def block(self, height: int) -> Block:
        return self.built.blocks[height]

    def set(self, height: int, column: str, value: Any) -> None:
        self.connection.execute(
            sqlalchemy.text(f"UPDATE blocks SET {column} = :v WHERE height = :h"), {"v": value, "h": height}
        )

    def run(self, sql: str, **params: Any) -> None:
        self.connection.execute(sqlalchemy.text(sql), params)

    def drop_index_rows(self, *heights: int) -> None:
        """Attackers clean up the lookup index too (it references block heights)."""
        for height in heights:
            self.run("DELETE FROM version_index WHERE height = :h", h=height)

    def rewrite(self, block: Block) -> None:
        """Replace every field of the row at ``block.height``."""
        self.run(
            "UPDATE blocks SET format = :format, prev_hash = :prev_hash, timestamp = :timestamp, kind = :kind, "
            "payload = :payload, payload_hash = :payload_hash, key_id = :key_id, block_hash = :block_hash, "
            "signature = :signature WHERE height = :height",
            **{name: getattr(block, name) for name in Block.__slots__},
        )

    def insert(self, block: Block) -> None:
        names = list(Block.__slots__)
        self.run(
            f"INSERT INTO blocks ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})",
            **{name: getattr(block, name) for name in names},
        )

    def drop_block_constraints(self) -> None:
        """Remove UNIQUE(height/prev_hash/block_hash), as an attacker owning the schema can."""
        if self.connection.dialect.name == "postgresql":
            self.run("ALTER TABLE version_index DROP CONSTRAINT fk_version_index_height_blocks")
            for constraint in ("uq_blocks_prev_hash", "uq_blocks_block_hash", "pk_blocks"):
                self.run(f"ALTER TABLE blocks DROP CONSTRAINT {constraint}")
            return
        self.run("PRAGMA defer_foreign_keys = ON")
        self.run("PRAGMA legacy_alter_table = ON")
        self.run("ALTER TABLE blocks RENAME TO blocks_orig")
        self.run(
            "CREATE TABLE blocks (height BIGINT, format SMALLINT, prev_hash VARCHAR(64), timestamp VARCHAR(32), "
            "kind VARCHAR(32), payload BLOB, payload_hash VARCHAR(64), key_id VARCHAR(64), "
            "block_hash VARCHAR(64), signature BLOB)"
        )
        self.run("INSERT INTO blocks SELECT * FROM blocks_orig")

    def shift_up(self, start: int, by: int = 1) -> None:
        """Move every block at height >= start up by ``by`` (in two steps: UNIQUE is checked per row)."""
        self.run("UPDATE blocks SET height = -(height + :by) WHERE height >= :s", by=by, s=start)
        self.run("UPDATE blocks SET height = -height WHERE height < 0")

    def rebuild_tree(self) -> None:
        """Recompute every stored Merkle node from the blocks as they now are (a thorough attacker)."""
        self.run("DELETE FROM merkle_nodes")
        for block in Store.blocks(self.connection):
            nodes = NodesOf(self.connection)
            frontier = merkle.load_frontier(nodes, block.height)
            leaf = merkle.leaf_hash(bytes.fromhex(block.block_hash))
            Store.insert_nodes(self.connection, merkle.completed_nodes(block.height, leaf, frontier)[0])


def audit_under_attack(
    built: Built, attack: Callable[[Attack], None], *, files: bool = False, **options: Any
) -> AuditReport:
    """Apply ``attack`` around the guards, audit in the same transaction, roll everything back."""
    engine = make_engine(built.url)
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                saved = _unguard(connection)
                attack(Attack(connection, built, random.Random(SEED)))
                _reguard(connection, saved)
                ledger = Ledger(
                    BoundStore(connection),
                    models_dir=built.models,
                    adapters_dir=built.adapters,
                    key=None,
                    genesis=built.blocks[0],
                )
                return ledger.audit(files=FilesMode.FULL if files else FilesMode.NONE, **options)
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


def first_error(report: AuditReport) -> Finding:
    errors = [f for f in report.findings if not f.is_warning]
    assert errors, "the attack went unnoticed"
    return errors[0]


# --- the mutations -------------------------------------------------------------------------------

HEX = "0123456789abcdef"


def _other_hex(rng: random.Random, value: str) -> str:
    i = rng.randrange(len(value))
    return value[:i] + rng.choice(HEX.replace(value[i], "")) + value[i + 1 :]


def _garble_char(rng: random.Random, value: str) -> str:
    i = rng.randrange(len(value))
    return value[:i] + rng.choice("GxZ!~ ".replace(value[i], "")) + value[i + 1 :]


def _flip_bit(rng: random.Random, value: bytes) -> bytes:
    i = rng.randrange(len(value))
    return value[:i] + bytes([value[i] ^ (1 << rng.randrange(8))]) + value[i + 1 :]


def _payload_char(rng: random.Random, value: bytes) -> bytes:
    text = value.decode("utf-8")
    i = rng.randrange(len(text))
    return (text[:i] + rng.choice('{}[]:,"0aZ '.replace(text[i], "")) + text[i + 1 :]).encode("utf-8")


def _payload_valid(rng: random.Random, value: bytes) -> bytes:
    data = decode(value)
    key = rng.choice(sorted(data))
    data[key] = {"tampered": True} if rng.random() < 0.5 else None
    return canonical(data)


def _timestamp_char(rng: random.Random, value: str) -> str:
    digits = [i for i, ch in enumerate(value) if ch.isdigit()]
    i = rng.choice(digits)
    return value[:i] + rng.choice("0123456789".replace(value[i], "")) + value[i + 1 :]


def _timestamp_valid(_rng: random.Random, value: str) -> str:
    micro = int(value[20:26])
    return f"{value[:20]}{(micro + 1) % 1_000_000:06d}Z"


def _column_value(attack: Attack, height: int, column: str, variant: str) -> Any:
    block, rng = attack.block(height), attack.rng
    current = getattr(block, column)
    others = [b for b in attack.built.blocks if b.height != height]
    if column == "format":
        return {"byte": current ^ 1, "char": 7, "valid": current + 1}[variant]
    if column in ("prev_hash", "block_hash", "payload_hash", "key_id"):
        if variant == "byte":
            return _garble_char(rng, current)
        if variant == "char":
            return _other_hex(rng, current)
        if column == "key_id":
            return attack.built.key_b.key_id if current == attack.built.key_a.key_id else attack.built.key_a.key_id
        if column == "payload_hash":
            return rng.choice(others).payload_hash
        return rng.randbytes(32).hex()
    if column == "timestamp":
        return {"byte": _garble_char, "char": _timestamp_char, "valid": _timestamp_valid}[variant](rng, current)
    if column == "kind":
        if variant == "byte":
            return _garble_char(rng, current)
        if variant == "char":
            return current[0].upper() + current[1:]
        return rng.choice([k for k in ("genesis", "version", "note", "key", "checkpoint") if k != current])
    if column == "payload":
        return {"byte": _flip_bit, "char": _payload_char, "valid": _payload_valid}[variant](rng, current)
    if column == "signature":
        if variant == "byte":
            return _flip_bit(rng, current)
        if variant == "char":
            return current[:-1]
        return rng.choice(others).signature
    raise AssertionError(column)


#: Which class a changed column must be reported as, at the changed block's height.
COLUMN_CLASS = {
    "format": L,  # the block hash covers every field but the signature
    "prev_hash": L,
    "timestamp": L,
    "kind": L,
    "key_id": L,
    "block_hash": L,
    "payload": P,  # not canonical, or not matching its payload hash: checked first
    "payload_hash": P,
    "signature": S,
    "height": Q,  # moved beyond the head: a gap where it was
}


@dataclass(frozen=True)
class Mutation:
    """One attack and the (height, class) the audit must report first."""

    name: str
    attack: Callable[[Attack], None]
    height: int
    kind: FindingClass
    also: FindingClass | None = None  # a further class the audit must report at the same height


def _column_mutation(column: str, variant: str, height: int) -> Mutation:
    def attack(a: Attack) -> None:
        if column == "height":
            a.drop_index_rows(height)
            offset = {"byte": 1000, "char": 5, "valid": 1}[variant]
            a.set(height, "height", N + offset)
            return
        a.set(height, column, _column_value(a, height, column, variant))

    return Mutation(f"{column}-{variant}@{height}", attack, height, COLUMN_CLASS[column])


def _delete(start: int, count: int) -> Mutation:
    def attack(a: Attack) -> None:
        heights = list(range(start, start + count))
        a.drop_index_rows(*heights)
        for height in heights:
            a.run("DELETE FROM blocks WHERE height = :h", h=height)

    return Mutation(f"delete-{start}x{count}", attack, start, Q)


def _swap(low: int, high: int) -> Mutation:
    def attack(a: Attack) -> None:
        a.drop_index_rows(low, high)
        a.set(low, "height", -1)
        a.set(high, "height", low)
        a.set(-1, "height", high)

    # the row at ``low`` now holds a block sealed for ``high``: its hash no longer matches its fields
    return Mutation(f"swap-{low}-{high}", attack, low, L)


def _duplicate_shifted(height: int) -> Mutation:
    def attack(a: Attack) -> None:
        a.drop_block_constraints()
        a.shift_up(height + 1)
        copy = a.block(height)
        a.insert(Block(**{**{n: getattr(copy, n) for n in Block.__slots__}, "height": height + 1}))

    # the copy sits at height+1 but was sealed for ``height`` (and links to height-1)
    return Mutation(f"duplicate-shifted-{height}", attack, height + 1, L)


def _duplicate_exact(height: int) -> Mutation:
    def attack(a: Attack) -> None:
        a.drop_block_constraints()
        a.insert(a.block(height))

    # the copy repeats the height (sequence) and does not link to the block before it, the original (link,
    # which sorts first at one height)
    return Mutation(f"duplicate-exact-{height}", attack, height, L, also=Q)


def _reseal_from(start: int, signer: Callable[[Attack], SigningKey | None], label: str, kind: FindingClass) -> Mutation:
    """Rewrite history from ``start``: block ``start`` altered, then every hash and link recomputed and signed by
    ``signer`` (None: the old signature bytes kept)."""

    def attack(a: Attack) -> None:
        key = signer(a)
        a.drop_index_rows(*range(start, N + 1))
        prev = a.block(start - 1).block_hash
        for height in range(start, N + 1):
            old = a.block(height)
            if height == start:
                old = Block(
                    **{**{n: getattr(old, n) for n in Block.__slots__}, "payload": _payload_valid(a.rng, old.payload)}
                )
            if key is None:  # recompute hashes, keep the old signature bytes
                fake = seal(
                    height=height,
                    prev_hash=prev,
                    timestamp=old.timestamp,
                    kind=old.kind,
                    payload=decode(old.payload),
                    key=a.built.key_a,
                )
                new = Block(**{**{n: getattr(fake, n) for n in Block.__slots__}, "signature": old.signature})
                new = Block(**{**{n: getattr(new, n) for n in Block.__slots__}, "key_id": old.key_id})
                new = Block(**{**{n: getattr(new, n) for n in Block.__slots__}, "block_hash": new.computed_hash()})
            else:
                new = seal(
                    height=height,
                    prev_hash=prev,
                    timestamp=old.timestamp,
                    kind=old.kind,
                    payload=decode(old.payload),
                    key=key,
                )
            a.rewrite(new)
            prev = new.block_hash

    return Mutation(f"rewrite-{label}-from-{start}", attack, start, kind)


def _own_key_block(start: int) -> Mutation:
    """Replace block ``start`` by a key block introducing the attacker's key, then re-seal the rest with it."""

    def attack(a: Attack) -> None:
        mallory = SigningKey.generate()
        a.drop_index_rows(*range(start, N + 1))
        prev = a.block(start - 1).block_hash
        for height in range(start, N + 1):
            old = a.block(height)
            if height == start:
                kind, payload = "key", {"public_key": mallory.public.hex(), "previous_key_id": "", "reason": "x"}
            else:
                kind, payload = old.kind, decode(old.payload)
            new = seal(height=height, prev_hash=prev, timestamp=old.timestamp, kind=kind, payload=payload, key=mallory)
            a.rewrite(new)
            prev = new.block_hash

    # the key block verifies under the key it introduces, but that key is not the active one
    return Mutation(f"own-key-block-{start}", attack, start, S)


def _tail_cut(keep: int) -> Mutation:
    def attack(a: Attack) -> None:
        a.drop_index_rows(*range(keep + 1, N + 1))
        a.run("DELETE FROM blocks WHERE height > :k", k=keep)

    return Mutation(f"tail-cut-to-{keep}", attack, keep + 1, Q)


def _mutations() -> list[Mutation]:
    rng = random.Random(SEED)
    out: list[Mutation] = []
    for column in COLUMN_CLASS:
        for variant in ("byte", "char", "valid"):
            heights = rng.sample(range(N + 1), 7)
            out.extend(_column_mutation(column, variant, h) for h in heights)
    out.extend(_delete(h, 1) for h in rng.sample(range(1, N), 8))
    out.extend(_delete(h, rng.randrange(2, 6)) for h in rng.sample(range(1, N - 6), 4))
    out.append(_delete(0, 1))
    out.extend(_swap(h, h + 1) for h in rng.sample(range(0, N), 4))
    out.extend(_swap(*sorted(rng.sample(range(N + 1), 2))) for _ in range(4))
    out.extend(_duplicate_shifted(h) for h in rng.sample(range(0, N), 5))
    out.extend(_duplicate_exact(h) for h in rng.sample(range(0, N + 1), 3))

    def mallory(_a: Attack) -> SigningKey:
        return SigningKey.generate()

    def retired(a: Attack) -> SigningKey:
        return a.built.key_a

    def keep_signature(_a: Attack) -> None:
        return None

    out.extend(_reseal_from(h, mallory, "without-key", S) for h in rng.sample(range(1, N + 1), 8))
    out.extend(_reseal_from(h, retired, "retired-key", S) for h in rng.sample(range(ROTATION + 1, N + 1), 4))
    out.extend(_reseal_from(h, keep_signature, "rehashed", S) for h in rng.sample(range(1, N + 1), 3))
    out.extend(_own_key_block(h) for h in rng.sample(range(1, N + 1), 3))
    return out


MUTATIONS = _mutations()
TAIL_CUTS = [_tail_cut(k) for k in (N - 1, N - 5, ROTATION)]


def test_matrix_is_big_enough() -> None:
    assert len(MUTATIONS) >= 200
    assert len({m.name for m in MUTATIONS}) == len(MUTATIONS)


def _named(blocks: list[Block], height: int) -> str | None:
    """The version a finding at ``height`` must name: the one the row stored there says it records, if any."""
    rows = [b for b in blocks if b.height == height and b.kind == "version"]
    try:
        name = json.loads(rows[0].payload)["name"] if rows else None
    except (ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) and re.fullmatch(r"oneseek-7b-zero-v1\.[0-9]+", name) else None


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_mutation_reported(built: Built, mutation: Mutation) -> None:
    seen: list[Block] = []

    def attack(a: Attack) -> None:
        mutation.attack(a)
        seen.extend(Store.blocks(a.connection))

    report = audit_under_attack(built, attack)
    found = first_error(report)
    expected = (mutation.height, mutation.kind, _named(seen, mutation.height))
    assert (found.height, found.kind, found.version) == expected, report.findings[:4]
    if mutation.also is not None:
        assert (mutation.height, mutation.also) in [(f.height, f.kind) for f in report.findings]


VERSION_COLUMNS = ["format", "prev_hash", "timestamp", "key_id", "block_hash", "payload_hash", "signature"]


@pytest.mark.parametrize("column", VERSION_COLUMNS)
def test_finding_on_a_version_block_names_the_version(built: Built, column: str) -> None:
    """Not vacuous: a changed column of a version block whose payload still parses names that version."""
    height = VERSION_HEIGHTS[3]
    mutation = _column_mutation(column, "valid", height)
    found = first_error(audit_under_attack(built, mutation.attack))
    assert (found.height, found.kind, found.version) == (height, COLUMN_CLASS[column], ADAPTER_VERSION)


@pytest.mark.parametrize("mutation", TAIL_CUTS, ids=[m.name for m in TAIL_CUTS])
def test_tail_cut_needs_a_trusted_head(built: Built, mutation: Mutation) -> None:
    """The chain alone cannot show that its newest blocks were cut (SECURITY.md): a trusted head can.

    Checkpoints and the witness (issue 4) provide that head to ``ledger audit``; here the walker is given it.
    """
    captured: list[Block] = []

    def attack(a: Attack) -> None:
        mutation.attack(a)
        captured.extend(Store.blocks(a.connection))

    report = audit_under_attack(built, attack)
    assert report.clean and report.head_height == mutation.height - 1
    walker = ChainWalker()
    for block in captured:
        walker.visit(link_fields(block))
    findings = walker.finish(expected_head=N)
    assert [(f.height, f.kind) for f in findings] == [(mutation.height, Q)]


def test_constraints_stop_naive_duplicates(built: Built) -> None:
    def attack(a: Attack) -> None:
        copy = a.block(5)
        a.insert(Block(**{**{n: getattr(copy, n) for n in Block.__slots__}, "height": N + 1}))

    with pytest.raises(sqlalchemy.exc.IntegrityError):
        audit_under_attack(built, attack)


def test_ledger_untouched_after_the_matrix(built: Built) -> None:
    report = Ledger.open(built.url, models_dir=built.models, adapters_dir=built.adapters).audit(files=FilesMode.FULL)
    assert report.clean and report.head_height == N, report.findings


# --- transparency: attacks only a checkpoint outside the database can show -----------------------------

C = FindingClass.CONSISTENCY
NOTE_HEIGHTS = [h for h in range(1, N + 1) if h not in VERSION_HEIGHTS and h != ROTATION]


@dataclass(frozen=True)
class Witnessed:
    """An attack the chain alone cannot see, the checkpoint source that shows it, and (height, class) expected."""

    name: str
    attack: Callable[[Attack], None]
    source: str  # "witness" or "state"
    height: int
    kind: FindingClass = C
    stored_tree_shows: bool = False  # the stored Merkle nodes betray it even without a checkpoint


def _rewrite_with_keys(start: int, *, rebuild_tree: bool, fix_parents: bool = True) -> Callable[[Attack], None]:
    """Alter note block ``start`` and re-seal everything after it with the right keys (the attacker holds the
    retired key A and the active key B): the chain verifies, signatures and all. With ``fix_parents`` the
    attacker also points each later version's ``parent`` at its predecessor's new block hash."""

    def attack(a: Attack) -> None:
        prev = a.block(start - 1).block_hash
        renamed: dict[str, str] = {}
        for height in range(start, N + 1):
            old = a.block(height)
            payload = decode(old.payload)
            if height == start:
                payload["text"] = "rewritten history"
            parent = payload.get("parent") if old.kind == "version" else None
            if fix_parents and isinstance(parent, dict):
                parent["block_hash"] = renamed.get(parent["block_hash"], parent["block_hash"])
            key = a.built.key_a if height <= ROTATION else a.built.key_b
            new = seal(height=height, prev_hash=prev, timestamp=old.timestamp, kind=old.kind, payload=payload, key=key)
            a.rewrite(new)
            prev = renamed[old.block_hash] = new.block_hash
        if rebuild_tree:
            a.rebuild_tree()

    return attack


def _witnessed() -> list[Witnessed]:
    rng = random.Random(SEED + 4)
    out: list[Witnessed] = []
    for keep in (N - 1, N - 7, ROTATION, 3):
        for source in ("witness", "state"):
            # the removed tail was covered by a checkpoint: the first missing height is named
            out.append(Witnessed(f"tail-cut-to-{keep}-vs-{source}", _tail_cut(keep).attack, source, keep + 1))
    for start in sorted(rng.sample(NOTE_HEIGHTS, 6)):
        for rebuild in (False, True):
            label = "tree-rebuilt" if rebuild else "tree-kept"
            # the witness holds a checkpoint of every size, so the first rewritten height is exact
            attack = _rewrite_with_keys(start, rebuild_tree=rebuild)
            name = f"rewrite-with-keys-{label}-from-{start}-vs-witness"
            out.append(Witnessed(name, attack, "witness", start, stored_tree_shows=not rebuild))
    return out


WITNESSED = _witnessed()


def _options(built: Built, source: str) -> dict[str, Any]:
    if source == "witness":
        return {"witness": built.witness, "update_state": False}
    return {"state_dir": built.state_dir, "update_state": False}


@pytest.mark.parametrize("mutation", WITNESSED, ids=[m.name for m in WITNESSED])
def test_transparency_attack_reported(built: Built, mutation: Witnessed) -> None:
    """Truncation after a checkpoint and history re-signed with the keys: invisible to the chain, not to a
    checkpoint held outside the database (the witness, or this machine's trusted state)."""
    blind = audit_under_attack(built, mutation.attack)
    if mutation.stored_tree_shows:  # the attacker left the stored Merkle leaves: they name the height
        assert (first_error(blind).height, first_error(blind).kind) == (mutation.height, C), blind.findings
    else:  # the chain and its tree are consistent: only a checkpoint outside the database shows the attack
        assert blind.clean, blind.findings
    report = audit_under_attack(built, mutation.attack, **_options(built, mutation.source))
    found = first_error(report)
    assert (found.height, found.kind) == (mutation.height, mutation.kind), report.findings[:4]


@pytest.mark.parametrize("start", [11, 20])
def test_rewrite_with_keys_leaving_the_parents_is_a_lineage_finding(built: Built, start: int) -> None:
    """Re-signed with the keys and the tree rebuilt, but the later versions still name their parents' old block
    hashes: the chain alone shows it, as ``sequence`` at the first version whose parent was rewritten."""
    report = audit_under_attack(built, _rewrite_with_keys(start, rebuild_tree=True, fix_parents=False))
    height = next(h for p, h in itertools.pairwise(VERSION_HEIGHTS) if p >= start)
    found = first_error(report)
    name = _version_names()[VERSION_HEIGHTS.index(height)]
    assert (found.height, found.kind, found.version) == (height, Q, name), report.findings
    assert "parent" in found.message


def test_rewrite_against_the_trusted_state_alone_is_bracketed(built: Built) -> None:
    """With one checkpoint (size N+1) the rewrite is caught, but its height is only bracketed: 0..N."""
    start = NOTE_HEIGHTS[len(NOTE_HEIGHTS) // 2]
    report = audit_under_attack(built, _rewrite_with_keys(start, rebuild_tree=True), **_options(built, "state"))
    found = first_error(report)
    assert found.kind is C and f"in 0..{N}" in found.message, report.findings


# --- files ---------------------------------------------------------------------------------------


@pytest.fixture
def files(built: Built, tmp_path: Path) -> Iterator[tuple[Ledger, Path, Path]]:
    """A private copy of the module's models and adapters, audited against the module's database."""
    models, adapters = tmp_path / "models", tmp_path / "lora_adapters"
    shutil.copytree(built.models, models)
    shutil.copytree(built.adapters, adapters)
    ledger = Ledger.open(built.url, models_dir=models, adapters_dir=adapters)
    yield ledger, models, adapters
    ledger.store.engine.dispose()


def _height_of(name: str) -> int:
    return VERSION_HEIGHTS[_version_names().index(name)]


def _keep_mtime(path: Path, change: Callable[[], object]) -> None:
    """Apply ``change`` and put the old modification time back, as a careful attacker would."""
    info = path.stat()
    change()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


FILE_NAMES = _version_names()
FILE_CASES = [
    (case, name) for case in ("flip", "same-size", "meta") for name in random.Random(SEED).sample(FILE_NAMES, 4)
]


@pytest.mark.parametrize(("case", "name"), FILE_CASES, ids=[f"{c}-{n}" for c, n in FILE_CASES])
def test_file_mutation_reported(files: tuple[Ledger, Path, Path], case: str, name: str) -> None:
    ledger, models, _adapters = files
    rng = random.Random(f"{SEED}{case}{name}")
    weights, meta = models / f"{name}.pth", models / f"{name}.json"
    if case == "flip":
        data = bytearray(weights.read_bytes())
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        _keep_mtime(weights, lambda: weights.write_bytes(bytes(data)))
        expected, path = FindingClass.FILE_MISMATCH, weights.name
    elif case == "same-size":
        _keep_mtime(weights, lambda: weights.write_bytes(rng.randbytes(weights.stat().st_size)))
        expected, path = FindingClass.FILE_MISMATCH, weights.name
    else:
        text = meta.read_text().replace('"epochs": 3', '"epochs": 4')
        assert '"epochs": 4' in text
        meta.write_text(text)
        expected, path = FindingClass.METADATA_MISMATCH, meta.name
    report = ledger.audit(files=FilesMode.FULL)
    assert [(f.height, f.kind, f.path) for f in report.findings] == [(_height_of(name), expected, path)]
    assert path in report.findings[0].message


def test_swapped_weight_files_both_reported(files: tuple[Ledger, Path, Path]) -> None:
    ledger, models, _ = files
    a, b = models / "oneseek-7b-zero-v1.2.pth", models / "oneseek-7b-zero-v1.11.pth"
    tmp = models.parent / "swap"
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    report = ledger.audit(files=FilesMode.FULL)
    assert [(f.height, f.kind, f.path) for f in report.findings] == [
        (3, FindingClass.FILE_MISMATCH, a.name),
        (28, FindingClass.FILE_MISMATCH, b.name),
    ]


def test_weight_and_metadata_removed_or_replaced_by_links(files: tuple[Ledger, Path, Path]) -> None:
    ledger, models, _ = files
    (models / "oneseek-7b-zero-v1.0.pth").unlink()
    (models / "oneseek-7b-zero-v1.1.json").unlink()
    target = models.parent / "elsewhere.pth"
    shutil.copy2(models / "oneseek-7b-zero-v1.5.pth", target)
    (models / "oneseek-7b-zero-v1.5.pth").unlink()
    (models / "oneseek-7b-zero-v1.5.pth").symlink_to(target)
    report = ledger.audit(files=FilesMode.FULL)
    assert [(f.height, f.kind, f.path) for f in report.findings] == [
        (1, FindingClass.FILE_MISSING, "oneseek-7b-zero-v1.0.pth"),
        (2, FindingClass.FILE_MISSING, "oneseek-7b-zero-v1.1.json"),
        (6, FindingClass.FILE_MISMATCH, "oneseek-7b-zero-v1.5.pth"),
    ]
    assert "symbolic link" in report.findings[2].message


ADAPTER_CASES = ["added", "removed", "renamed", "changed", "changed-same-size", "dir-symlink"]


@pytest.mark.parametrize("case", ADAPTER_CASES)
def test_adapter_mutation_reported(files: tuple[Ledger, Path, Path], case: str) -> None:
    ledger, _models, adapters = files
    directory = adapters / ADAPTER_VERSION
    prefix = ADAPTER_VERSION
    if case == "added":
        (directory / "extra.bin").write_bytes(b"\x00" * 10)
        paths = [f"{prefix}/extra.bin"]
    elif case == "removed":
        (directory / "tokenizer.txt").unlink()
        paths = [f"{prefix}/tokenizer.txt"]
    elif case == "renamed":
        (directory / "tokenizer.txt").rename(directory / "tokenizer2.txt")
        paths = [f"{prefix}/tokenizer2.txt"]
    elif case == "changed":
        (directory / "adapter_model.bin").write_bytes(b"different")
        paths = [f"{prefix}/adapter_model.bin"]
    elif case == "changed-same-size":
        target = directory / "adapter_model.bin"
        data = bytearray(target.read_bytes())
        data[7] ^= 0x80
        _keep_mtime(target, lambda: target.write_bytes(bytes(data)))
        paths = [f"{prefix}/adapter_model.bin"]
    else:
        moved = adapters.parent / "moved"
        directory.rename(moved)
        directory.symlink_to(moved)
        paths = [prefix]
    report = ledger.audit(files=FilesMode.FULL)
    height = _height_of(ADAPTER_VERSION)
    assert [(f.height, f.kind, f.path) for f in report.findings] == [
        (height, FindingClass.FILE_MISMATCH, p) for p in paths
    ]
    assert all(p in f.message for f, p in zip(report.findings, paths, strict=True))


def test_payload_hash_vectors_still_hold(built: Built) -> None:
    """Guard against the matrix passing vacuously: the untouched blocks really verify."""
    for block in built.blocks:
        assert hashlib.sha256(block.payload).hexdigest() == block.payload_hash
        assert block.computed_hash() == block.block_hash
