"""Transparency on both backends: DB-backed proofs, checkpoints, witness, trusted state, and every attack."""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from ledger import merkle
from ledger.api import Ledger, NodesOf
from ledger.audit import AuditReport, FilesMode
from ledger.block import seal
from ledger.chain import verify_chain as reference_chain
from ledger.checkpoints import issue, sign_checkpoint
from ledger.errors import KeyFileError, ProofError
from ledger.fastaudit import verify_chain
from ledger.findings import FindingClass
from ledger.signing import SigningKey, load_key_file
from ledger.store import Store
from ledger.witness import Witness
from tests.conftest import Workspace, open_ledger, tamper

EVENTS = 7  # blocks 1..7 on top of the genesis


def first(report: AuditReport) -> tuple[int | None, FindingClass]:
    """The first finding as (height, class)."""
    findings = [f for f in report.findings if not f.is_warning]
    assert findings, "expected a finding"
    return findings[0].height, findings[0].kind


@pytest.fixture
def witness_url() -> Iterator[str]:
    """A fresh in-memory fsspec witness."""
    import fsspec

    url = f"memory://witness-{uuid.uuid4().hex}"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


def build(ws: Workspace, witness: str | None, *, every: bool = True, count: int = EVENTS) -> Ledger:
    """A ledger of ``count`` event blocks, checkpointed (to the witness and the trusted state) after each."""
    ledger: Ledger = open_ledger(ws)
    wit = Witness(witness) if witness else None
    for i in range(count):
        ledger.append_event("event", {"n": i, "note": f"event {i}"})
        if every or i == count - 1:
            issue(ledger, witness=wit, state_dir=ws.root / "state")
    return ledger


def audit(ledger: Ledger, ws: Workspace, witness: str | None, **kw: Any) -> AuditReport:
    return ledger.audit(files=FilesMode.NONE, witness=witness, state_dir=ws.root / "state", **kw)


def reseal(ws: Workspace, ledger: Ledger, start: int, key: SigningKey | None, change: dict[str, Any]) -> None:
    """Rewrite blocks ``start``.. with new payloads (first one changed), re-hash, re-sign (with ``key``, else keep
    the old signatures), recompute every Merkle node, as an attacker with database access would."""
    blocks = list(ledger.blocks())
    new = blocks[:start]
    for block in blocks[start:]:
        payload = block.data() | (change if block.height == start else {})
        signer = key if key is not None else SigningKey.generate()
        sealed = seal(
            height=block.height,
            prev_hash=new[-1].block_hash if new else block.prev_hash,
            timestamp=block.timestamp,
            kind=block.kind,
            payload=payload,
            key=signer,
        )
        if key is None:  # no private key: keep the key id and old signature, which no longer verifies
            import hashlib
            from dataclasses import replace

            from ledger.block import header_bytes

            sealed = replace(sealed, key_id=block.key_id, signature=block.signature)
            sealed = replace(sealed, block_hash=hashlib.sha256(header_bytes(**_header(sealed))).hexdigest())
        new.append(sealed)
    tree = merkle.MemoryTree(merkle.leaf_hash(bytes.fromhex(b.block_hash)) for b in new)
    statements: list[Any] = ["DELETE FROM merkle_nodes", "DELETE FROM version_index", "DELETE FROM blocks"]
    for b in new:
        statements.append(
            (
                "INSERT INTO blocks (height, format, prev_hash, timestamp, kind, payload, payload_hash, key_id, "
                "block_hash, signature) VALUES (:h, :f, :p, :t, :k, :pl, :ph, :kid, :bh, :s)",
                {
                    "h": b.height,
                    "f": b.format,
                    "p": b.prev_hash,
                    "t": b.timestamp,
                    "k": b.kind,
                    "pl": b.payload,
                    "ph": b.payload_hash,
                    "kid": b.key_id,
                    "bh": b.block_hash,
                    "s": b.signature,
                },
            )
        )
    for (level, idx), digest in tree.nodes(list(tree._nodes)).items():
        statements.append(
            ("INSERT INTO merkle_nodes (level, idx, hash) VALUES (:l, :i, :h)", {"l": level, "i": idx, "h": digest})
        )
    tamper(ws.db_url, *statements)


def _header(block: Any) -> dict[str, Any]:
    return {
        "format": block.format,
        "height": block.height,
        "prev_hash": block.prev_hash,
        "timestamp": block.timestamp,
        "kind": block.kind,
        "payload_hash": block.payload_hash,
        "key_id": block.key_id,
    }


# --- proofs from the database -----------------------------------------------------------------------------------


class Counting:
    """A NodeSource that counts batched reads."""

    def __init__(self, inner: NodesOf) -> None:
        self.inner, self.calls = inner, 0

    def nodes(self, keys: Any) -> dict[tuple[int, int], bytes]:
        self.calls += 1
        return self.inner.nodes(keys)


def _samples(size: int, rng: random.Random) -> list[int]:
    """Indices / sizes in [0, size) worth checking: both ends, the RFC split point and its neighbours, random."""
    split = 1 << max(0, (size - 1).bit_length() - 1)
    picked = {0, 1, size // 2, split - 1, split, split + 1, size - 2, size - 1, *rng.sample(range(size), min(3, size))}
    return sorted(i for i in picked if 0 <= i < size)


def test_db_proofs_match_naive_model_every_size(db_url: str, tmp_path: Path) -> None:
    """Roots, inclusion and consistency proofs read from the database equal RFC 9162's definitions, sizes 1..301."""
    from ledger import bulk
    from tests.merkle_model import NaiveTree

    size = 301
    ledger = bulk.build(db_url, size - 1, key=SigningKey.generate(), models_dir=tmp_path, workers=1)
    naive = NaiveTree([merkle.leaf_hash(bytes.fromhex(b.block_hash)) for b in ledger.blocks()])
    rng = random.Random(9162)
    checked = 0
    with ledger.store.reading() as connection:
        source = NodesOf(connection)
        for n in range(1, size + 1):
            root = naive.mth(0, n)
            assert merkle.root(source, n) == root, n
            for index in _samples(n, rng):
                path = merkle.inclusion_proof(source, index, n)
                assert path == naive.path(index, 0, n), (index, n)
                merkle.verify_inclusion(leaf=naive.leaves[index], index=index, size=n, path=path, root=root)
            for old in [*_samples(n, rng), n]:
                path = merkle.consistency_proof(source, old, n)
                assert path == naive.proof(old, n), (old, n)
                merkle.verify_consistency(size1=old, size2=n, root1=naive.mth(0, old), root2=root, path=path)
                checked += 1
        counting = Counting(NodesOf(connection))
        merkle.inclusion_proof(counting, 5, size)
        merkle.root(counting, size)
        merkle.consistency_proof(counting, 7, size)
    assert counting.calls == 3  # one batched read each
    assert checked > 2500
    # the Ledger methods read the same nodes, each in its own transaction
    assert ledger.root() == naive.mth(0, size) and ledger.root(17) == naive.mth(0, 17)
    assert ledger.inclusion_proof(200, 256) == naive.path(200, 0, 256)
    assert ledger.consistency_proof(100, size) == naive.proof(100, size)


# --- checkpoints, witness, trusted state --------------------------------------------------------------------------


def test_checkpoint_witness_and_trusted_state(ledger_ws: Workspace, witness_url: str) -> None:
    ledger = build(ledger_ws, witness_url, count=3)
    notes = Witness(witness_url).notes(ledger.ledger_id)
    assert [n.location.rsplit("/", 1)[1].split(".")[1] for n in notes] == [f"{s:020d}" for s in (2, 3, 4)]
    state = json.loads((ledger_ws.root / "state" / f"{ledger.ledger_id}.json").read_text())
    assert state["size"] == 4 and state["root"] == ledger.root().hex()
    report = audit(ledger, ledger_ws, witness_url)
    assert report.clean, report.findings
    ledger.append_event("event", {"n": 99})
    assert audit(ledger, ledger_ws, witness_url, incremental=True).clean


def test_checkpoint_refuses_to_sign_a_fork(ledger_ws: Workspace, witness_url: str) -> None:
    ledger = build(ledger_ws, witness_url, count=3)
    reseal(ledger_ws, ledger, 2, load_key_file(ledger_ws.key, None), {"note": "forged"})
    with pytest.raises(ProofError):
        issue(ledger, witness=Witness(witness_url), state_dir=ledger_ws.root / "state")


def test_latest_stored_verifies_only_what_it_returns(ledger_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger import checkpoints

    ledger = build(ledger_ws, None, count=12)  # stored checkpoints of sizes 2..13
    calls: list[bytes] = []
    real = checkpoints.verify_note

    def counting(note: bytes, **kw: Any) -> Any:
        calls.append(note)
        return real(note, **kw)

    monkeypatch.setattr(checkpoints, "verify_note", counting)
    newest = checkpoints.latest_stored(ledger)
    assert newest is not None and newest.checkpoint.size == 13
    assert len(calls) == 1
    assert checkpoints.latest_stored(ledger, covering=13) is None
    calls.clear()
    # a broken newest note and an unsigned size column that lies are skipped, not trusted
    broken = checkpoints.stored_notes(ledger)[-1].replace(
        b"\n13\n", b"\n14\n"
    )  # the signature no longer covers the text
    tamper(
        ledger_ws.db_url,
        ("UPDATE checkpoints SET note = :n WHERE size = 13", {"n": broken}),
        "UPDATE checkpoints SET size = 99 WHERE size = 2",
    )
    fallback = checkpoints.latest_stored(ledger)
    assert fallback is not None and fallback.checkpoint.size == 12
    assert len(calls) == 3  # the row claiming 99, the broken 13, then 12
    assert checkpoints.latest_stored(ledger, covering=12) is None


# --- attacks: each reported with class and first bad height --------------------------------------------------------


def _flip(column: str) -> str:
    """SQL changing the first hex digit of ``column`` (always to a different digit)."""
    return f"(CASE WHEN substr({column}, 1, 1) = '0' THEN '1' ELSE '0' END) || substr({column}, 2)"


COLUMN_ATTACKS = [
    ("format", "UPDATE blocks SET format = 2 WHERE height = 3", FindingClass.LINK),
    ("prev_hash", "UPDATE blocks SET prev_hash = " + _flip("prev_hash") + " WHERE height = 3", FindingClass.LINK),
    ("timestamp", "UPDATE blocks SET timestamp = '2020' || substr(timestamp, 5) WHERE height = 3", FindingClass.LINK),
    ("kind", "UPDATE blocks SET kind = 'evenu' WHERE height = 3", FindingClass.LINK),
    ("payload_hash", "UPDATE blocks SET payload_hash = " + _flip("payload_hash") + " WHERE height = 3", None),
    ("key_id", "UPDATE blocks SET key_id = " + _flip("key_id") + " WHERE height = 3", FindingClass.LINK),
    ("block_hash", "UPDATE blocks SET block_hash = " + _flip("block_hash") + " WHERE height = 3", FindingClass.LINK),
]


@pytest.mark.parametrize(("column", "sql", "kind"), COLUMN_ATTACKS, ids=[c[0] for c in COLUMN_ATTACKS])
def test_one_changed_column(ledger_ws: Workspace, witness_url: str, column: str, sql: str, kind: Any) -> None:
    ledger = build(ledger_ws, witness_url, every=False)
    before = ledger.block(3)
    tamper(ledger_ws.db_url, sql)
    assert ledger.block(3) != before, column
    assert first(audit(ledger, ledger_ws, witness_url)) == (3, kind or FindingClass.PAYLOAD)


@pytest.mark.parametrize("column", ["payload", "signature"])
def test_one_changed_byte(ledger_ws: Workspace, witness_url: str, column: str) -> None:
    ledger = build(ledger_ws, witness_url, every=False)
    value = bytearray(getattr(ledger.block(3), column))
    value[len(value) // 2] ^= 0x01
    tamper(ledger_ws.db_url, (f"UPDATE blocks SET {column} = :v WHERE height = 3", {"v": bytes(value)}))
    expected = FindingClass.PAYLOAD if column == "payload" else FindingClass.SIGNATURE
    assert first(audit(ledger, ledger_ws, witness_url)) == (3, expected)


def test_stored_leaf_changed(ledger_ws: Workspace, witness_url: str) -> None:
    ledger = build(ledger_ws, witness_url, every=False)
    tamper(ledger_ws.db_url, ("UPDATE merkle_nodes SET hash = :h WHERE level = 0 AND idx = 5", {"h": b"\x00" * 32}))
    assert first(audit(ledger, ledger_ws, witness_url)) == (5, FindingClass.CONSISTENCY)


def test_middle_block_deleted(ledger_ws: Workspace, witness_url: str) -> None:
    ledger = build(ledger_ws, witness_url, every=False)
    tamper(ledger_ws.db_url, "DELETE FROM blocks WHERE height = 4")
    assert first(audit(ledger, ledger_ws, witness_url)) == (4, FindingClass.SEQUENCE)


def test_two_blocks_swapped(ledger_ws: Workspace, witness_url: str) -> None:
    ledger = build(ledger_ws, witness_url, every=False)
    tamper(
        ledger_ws.db_url,
        "UPDATE blocks SET height = -1 WHERE height = 3",
        "UPDATE blocks SET height = 3 WHERE height = 4",
        "UPDATE blocks SET height = 4 WHERE height = -1",
    )
    assert first(audit(ledger, ledger_ws, witness_url)) == (3, FindingClass.LINK)


def test_truncated_after_checkpoint(ledger_ws: Workspace, witness_url: str) -> None:
    ledger = build(ledger_ws, witness_url, every=False)  # checkpoint of size 8
    tamper(
        ledger_ws.db_url,
        "DELETE FROM checkpoints",
        "DELETE FROM blocks WHERE height >= 6",
        "DELETE FROM merkle_nodes WHERE (idx + 1) * (1 << level) > 6",
    )
    report = audit(ledger, ledger_ws, witness_url)
    assert first(report) == (6, FindingClass.CONSISTENCY)
    assert "6..7 were removed" in report.findings[0].message
    # the witness alone (a fresh machine without trusted state) sees it too
    alone = ledger.audit(files=FilesMode.NONE, witness=witness_url)
    assert first(alone) == (6, FindingClass.CONSISTENCY)


def _copy_database(ws: Workspace, tmp_path: Path) -> str:
    """An older copy of the database, as a backup restore would bring back."""
    if ws.db_url.startswith("sqlite"):
        target = tmp_path / f"copy-{uuid.uuid4().hex}.db"
        # the online backup API: a plain file copy would miss what still sits in the WAL of pooled connections
        with sqlite3.connect(ws.db_url.removeprefix("sqlite:///")) as source, sqlite3.connect(target) as copy:
            source.backup(copy)
        return f"sqlite:///{target}"
    url = sqlalchemy.engine.make_url(ws.db_url)
    name = f"{url.database}_copy_{uuid.uuid4().hex[:6]}"
    admin = sqlalchemy.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:  # a template must have no sessions: end the pooled ones (pre-ping reconnects)
        connection.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (url.database,),
        )
        connection.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{url.database}"')
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def _drop_copy(url: str) -> None:
    if url.startswith("postgresql"):
        parsed = sqlalchemy.engine.make_url(url)
        admin = sqlalchemy.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        admin.dispose()


def test_rollback_to_older_copy(ledger_ws: Workspace, witness_url: str, tmp_path: Path) -> None:
    ledger = build(ledger_ws, witness_url, count=4)  # size 5
    Ledger.open(ledger_ws.db_url, models_dir=ledger_ws.models).store.engine.dispose()
    old = _copy_database(ledger_ws, tmp_path)
    try:
        for i in range(3):
            ledger.append_event("event", {"n": 100 + i})
        issue(ledger, witness=Witness(witness_url), state_dir=ledger_ws.root / "state")  # size 8
        restored = Ledger.open(old, models_dir=ledger_ws.models)
        report = audit(restored, ledger_ws, witness_url)
        assert first(report) == (5, FindingClass.CONSISTENCY)
        restored.store.engine.dispose()
    finally:
        _drop_copy(old)


def test_rewritten_without_key(ledger_ws: Workspace, witness_url: str) -> None:
    ledger = build(ledger_ws, witness_url)
    reseal(ledger_ws, ledger, 2, None, {"note": "rewritten"})
    assert first(audit(ledger, ledger_ws, witness_url)) == (2, FindingClass.SIGNATURE)


def test_rewritten_under_own_key(ledger_ws: Workspace, witness_url: str) -> None:
    """The attacker re-creates the whole chain (genesis included) under a key of their own."""
    ledger = build(ledger_ws, witness_url)
    genesis = ledger.block(0).data() | {"public_key": (mallory := SigningKey.generate()).public.hex()}
    tamper(ledger_ws.db_url, ("UPDATE blocks SET payload = :p WHERE height = 0", {"p": json_bytes(genesis)}))
    reseal(ledger_ws, ledger, 0, mallory, {})
    ledger = open_ledger(ledger_ws, signing=False)
    assert reference_chain(ledger.blocks()) == []  # the chain alone looks perfect
    report = audit(ledger, ledger_ws, witness_url)
    assert first(report) == (0, FindingClass.CONSISTENCY)
    alone = ledger.audit(files=FilesMode.NONE, witness=witness_url)  # witness only: its notes do not verify
    assert any(f.kind is FindingClass.CONSISTENCY for f in alone.findings) and not alone.clean


def json_bytes(obj: Any) -> bytes:
    from ledger.canonical import canonical

    return canonical(obj)


def test_rewritten_and_resigned_with_key(ledger_ws: Workspace, witness_url: str) -> None:
    ledger = build(ledger_ws, witness_url)  # witnessed checkpoints of every size 2..8
    key = load_key_file(ledger_ws.key, None)
    reseal(ledger_ws, ledger, 4, key, {"note": "rewritten"})
    tamper(ledger_ws.db_url, "DELETE FROM checkpoints")
    assert reference_chain(ledger.blocks()) == []
    assert ledger.audit(files=FilesMode.NONE).clean  # without checkpoints it cannot be seen
    report = ledger.audit(files=FilesMode.NONE, witness=witness_url)
    assert first(report) == (4, FindingClass.CONSISTENCY)
    assert "at height 4" in next(f for f in report.findings if f.height == 4).message


def test_fork_two_histories(ledger_ws: Workspace, witness_url: str, tmp_path: Path) -> None:
    ledger = build(ledger_ws, witness_url, count=3)  # size 4, witnessed
    other_url = _copy_database(ledger_ws, tmp_path)
    try:
        other = Ledger.open(other_url, models_dir=ledger_ws.models, key=ledger_ws.key)
        ledger.append_event("event", {"branch": "a"})
        other.append_event("event", {"branch": "b"})
        issue(ledger, witness=Witness(witness_url), state_dir=ledger_ws.root / "state")
        Witness(witness_url).publish(other.ledger_id, sign_checkpoint(other))  # the forker signs their own
        report = ledger.audit(files=FilesMode.NONE, witness=witness_url)
        assert first(report) == (4, FindingClass.CONSISTENCY)
        assert any("fork" in f.message for f in report.findings)
        other.store.engine.dispose()
    finally:
        _drop_copy(other_url)


@pytest.mark.parametrize("ledger_state", ["intact", "truncated", "damaged"])
def test_fork_between_checkpoints(ledger_ws: Workspace, witness_url: str, ledger_state: str) -> None:
    """Two signed checkpoints of one size with different roots are a fork, whatever the ledger still holds."""
    from ledger.note import Checkpoint, SignedCheckpoint

    ledger = build(ledger_ws, witness_url)  # witnessed checkpoints of sizes 2..8
    leaves = [merkle.leaf_hash(bytes.fromhex(b.block_hash)) for b in ledger.blocks()]
    other = merkle.root_from_leaves([*leaves[:7], merkle.leaf_hash(b"another block 7")])  # a history forked at 7
    key = load_key_file(ledger_ws.key, None)
    fork = SignedCheckpoint.sign(Checkpoint(ledger.origin, 8, other), name=ledger.origin, private_key=key.private)
    if ledger_state == "truncated":  # both checkpoints of size 8 lie beyond what is left
        tamper(
            ledger_ws.db_url,
            "DELETE FROM checkpoints",
            "DELETE FROM blocks WHERE height >= 6",
            "DELETE FROM merkle_nodes WHERE (idx + 1) * (1 << level) > 6",
        )
    elif ledger_state == "damaged":  # the stored tree cannot prove anything any more
        tamper(ledger_ws.db_url, "DELETE FROM merkle_nodes WHERE level >= 1")
    report = audit(ledger, ledger_ws, witness_url, checkpoint_files=(("fork.note", fork.note),))
    forks = [f for f in report.findings if f.message.startswith("fork:")]
    assert len(forks) == 1 and forks[0].kind is FindingClass.CONSISTENCY, report.findings
    assert "fork.note" in forks[0].message and "size 8" in forks[0].message
    assert forks[0].height is not None and forks[0].height <= 7  # a lower bound of where the histories part
    control = audit(ledger, ledger_ws, witness_url)
    assert not any(f.message.startswith("fork:") for f in control.findings)


def test_incremental_audit(ledger_ws: Workspace, witness_url: str) -> None:
    ledger = build(ledger_ws, witness_url, every=False)
    for i in range(4):
        ledger.append_event("event", {"n": 200 + i})
    report = audit(ledger, ledger_ws, witness_url, incremental=True)
    assert report.clean and report.blocks_checked == 4
    value = bytearray(ledger.block(10).signature)
    value[0] ^= 1
    tamper(ledger_ws.db_url, ("UPDATE blocks SET signature = :v WHERE height = 10", {"v": bytes(value)}))
    assert first(audit(ledger, ledger_ws, witness_url, incremental=True)) == (10, FindingClass.SIGNATURE)


def test_incremental_catches_rewrite_below_trusted(ledger_ws: Workspace, witness_url: str) -> None:
    ledger = build(ledger_ws, witness_url, every=False)
    reseal(ledger_ws, ledger, 3, load_key_file(ledger_ws.key, None), {"note": "x"})
    report = audit(ledger, ledger_ws, None, incremental=True)
    assert first(report)[1] is FindingClass.CONSISTENCY


@pytest.fixture
def versioned(ledger_ws: Workspace) -> tuple[Ledger, list[int]]:
    """Three versions and some events under a trusted checkpoint, then new blocks: a prune of v1.0 among them."""
    ledger: Ledger = open_ledger(ledger_ws)
    heights = []
    for name in ("oneseek-7b-zero-v1.0", "oneseek-7b-zero-v1.1", "oneseek-7b-zero-v1.2"):
        heights.append(ledger.append(ledger_ws.write_version(name)).height)
        ledger.append_event("event", {"after": name})
    issue(ledger, witness=None, state_dir=ledger_ws.root / "state")
    ledger.append_event("event", {"n": "new"})
    for suffix in (".pth", ".json"):  # pruned (by policy, after a backup): its files may be gone
        (ledger_ws.models / f"oneseek-7b-zero-v1.0{suffix}").unlink()
    released = ["oneseek-7b-zero-v1.0.pth", "oneseek-7b-zero-v1.0.json"]
    ledger.append_event(
        "prune", {"version": "oneseek-7b-zero-v1.0", "location": "s3://backups/v1.0", "files": released}
    )
    return ledger, heights


def test_incremental_proves_old_versions_by_hash_not_signature(
    ledger_ws: Workspace, versioned: tuple[Ledger, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger import chain
    from ledger.signing import verify_signature as real

    ledger, heights = versioned
    verified: list[int] = []

    def counting(public: bytes, block_hash: bytes, signature: bytes) -> bool:
        verified.append(1)
        return real(public, block_hash, signature)

    monkeypatch.setattr(chain, "verify_signature", counting)
    report = ledger.audit(files=FilesMode.FULL, state_dir=ledger_ws.root / "state", incremental=True)
    assert report.clean, report.findings  # the prune names v1.0, recorded below the trusted size
    assert report.blocks_checked == 2 and report.files_checked == 6
    assert len(verified) <= report.blocks_checked  # only new blocks' signatures, never the three old versions
    assert any("3 older version/prune/restore block(s) proven" in n for n in report.notes)
    assert report.pruned == (("oneseek-7b-zero-v1.0", "s3://backups/v1.0"),)
    weights = ledger_ws.models / "oneseek-7b-zero-v1.1.pth"
    data = bytearray(weights.read_bytes())
    data[7] ^= 1
    weights.write_bytes(bytes(data))  # the old version's record is what the file check compares with
    changed = ledger.audit(files=FilesMode.FULL, state_dir=ledger_ws.root / "state", incremental=True)
    assert first(changed) == (heights[1], FindingClass.FILE_MISMATCH)


def _rehashed(block: Any, change: dict[str, Any]) -> dict[str, Any]:
    """The block's columns with its payload changed and both hashes recomputed (the signature kept)."""
    import hashlib
    from dataclasses import replace

    from ledger.canonical import canonical

    payload = canonical(block.data() | change)
    new = replace(block, payload=payload, payload_hash=hashlib.sha256(payload).hexdigest())
    return {"h": block.height, "p": payload, "ph": new.payload_hash, "bh": new.computed_hash()}


@pytest.mark.parametrize("attack", ["payload", "rehash", "reseal", "signature"])
def test_incremental_and_old_version_blocks(
    ledger_ws: Workspace, versioned: tuple[Ledger, list[int]], attack: str
) -> None:
    """What an incremental audit finds in an old version block, and what only a full audit finds."""
    ledger, heights = versioned
    target = ledger.block(heights[1])
    expected: dict[str, tuple[int, FindingClass] | None]
    if attack == "payload":  # a byte of the payload: its hash no longer matches
        value = bytearray(target.payload)
        value[len(value) // 2] ^= 1
        tamper(
            ledger_ws.db_url,
            ("UPDATE blocks SET payload = :v WHERE height = :h", {"v": bytes(value), "h": target.height}),
        )
        expected = {"incremental": (target.height, FindingClass.PAYLOAD), "full": (target.height, FindingClass.PAYLOAD)}
    elif attack == "rehash":  # payload and both hashes rewritten, Merkle leaf left alone (no key: old signature)
        sql = "UPDATE blocks SET payload = :p, payload_hash = :ph, block_hash = :bh WHERE height = :h"
        tamper(ledger_ws.db_url, (sql, _rehashed(target, {"note": "rewritten"})))
        expected = {
            "incremental": (target.height, FindingClass.CONSISTENCY),
            "full": (target.height, FindingClass.SIGNATURE),
        }
    elif attack == "reseal":  # rewritten from there on with the key, every hash and Merkle node recomputed
        reseal(ledger_ws, ledger, target.height, load_key_file(ledger_ws.key, None), {"note": "rewritten"})
        tamper(ledger_ws.db_url, "DELETE FROM checkpoints")
        expected = {"incremental": (0, FindingClass.CONSISTENCY), "full": (0, FindingClass.CONSISTENCY)}
    else:  # the signature column alone: the block hash the checkpoint signed is intact
        value = bytearray(target.signature)
        value[0] ^= 1
        tamper(
            ledger_ws.db_url,
            ("UPDATE blocks SET signature = :v WHERE height = :h", {"v": bytes(value), "h": target.height}),
        )
        expected = {"incremental": None, "full": (target.height, FindingClass.SIGNATURE)}
    state = ledger_ws.root / "state"
    incremental = ledger.audit(files=FilesMode.NONE, state_dir=state, incremental=True, update_state=False)
    if expected["incremental"] is None:
        assert incremental.clean, incremental.findings  # documented in SECURITY.md: only a full audit sees it
    else:
        assert first(incremental) == expected["incremental"], incremental.findings
    full = ledger.audit(files=FilesMode.NONE, state_dir=state, update_state=False)
    assert first(full) == expected["full"], full.findings


def test_trusted_state_with_a_foreign_frontier_is_unusable(ledger_ws: Workspace) -> None:
    """The frontier authenticates old blocks in an incremental audit: one that is not the checkpoint's is refused."""
    from ledger.errors import InputError

    ledger = build(ledger_ws, None, every=False)
    path = ledger_ws.root / "state" / f"{ledger.ledger_id}.json"
    state = json.loads(path.read_text())
    state["frontier"][-1] = "00" * 32
    path.write_text(json.dumps(state))
    with pytest.raises(InputError, match="no trusted state"):
        audit(ledger, ledger_ws, None, incremental=True)
    report = audit(ledger, ledger_ws, None)
    assert [(f.kind, "frontier" in f.message) for f in report.findings] == [(FindingClass.CONSISTENCY, True)]


# --- parallel verification agrees with the reference -----------------------------------------------------------


@pytest.mark.parametrize("attack", ["none", "delete", "signature", "leaf"])
def test_parallel_matches_reference(ledger_ws: Workspace, attack: str) -> None:
    ledger = build(ledger_ws, None, every=False, count=21)
    if attack == "delete":
        tamper(ledger_ws.db_url, "DELETE FROM blocks WHERE height IN (8, 9, 10, 11, 17)")
    elif attack == "signature":
        tamper(ledger_ws.db_url, ("UPDATE blocks SET signature = :s WHERE height = 13", {"s": b"\x01" * 64}))
    elif attack == "leaf":
        tamper(ledger_ws.db_url, ("UPDATE merkle_nodes SET hash = :h WHERE level = 0 AND idx = 9", {"h": b"1" * 32}))
    url = ledger.store.engine.url.render_as_string(hide_password=False)
    sizes = list(range(1, 23))
    parallel = verify_chain(Store.open(url), workers=2, targets=sizes, chunk_level=2, parallel_threshold=0)
    single = verify_chain(Store.open(url), workers=1, targets=sizes, chunk_level=30)
    reference = reference_chain(ledger.blocks())
    heights = {(f.height, f.kind) for f in reference}
    assert {(f.height, f.kind) for f in parallel.scan.findings} >= heights
    assert {(f.height, f.kind) for f in single.scan.findings} >= heights
    if attack in ("none", "leaf"):
        assert parallel.roots == single.roots
        leaves = [merkle.leaf_hash(bytes.fromhex(b.block_hash)) for b in ledger.blocks()]
        assert parallel.roots[22] == merkle.root_from_leaves(leaves)
    if attack == "leaf":
        assert (9, FindingClass.CONSISTENCY) in {(f.height, f.kind) for f in parallel.scan.findings}
    if attack == "none":
        assert parallel.scan.findings == [] and parallel.scan.count == 22


# --- key rotation -----------------------------------------------------------------------------------------------


def test_key_rotation(ledger_ws: Workspace, witness_url: str) -> None:
    from ledger.rotation import rotate

    ledger = build(ledger_ws, witness_url, count=2)
    old = ledger.key
    new = SigningKey.generate()
    block = rotate(ledger, new, reason="scheduled")
    assert block.key_id == old.key_id and block.data()["previous_key_id"] == old.key_id
    after = ledger.append_event("event", {"n": "after"})
    assert after.key_id == new.key_id
    ledger.use_key(old)  # the same handle, whose last append it cached, must still refuse the retired key
    with pytest.raises(KeyFileError, match="retired"):
        ledger.append_event("event", {"n": "stale"})
    ledger.use_key(new)
    issued = issue(ledger, witness=Witness(witness_url), state_dir=ledger_ws.root / "state")
    assert issued.signed.checkpoint.size == 5
    assert audit(ledger, ledger_ws, witness_url).clean
    stale = Ledger.open(ledger_ws.db_url, models_dir=ledger_ws.models, key=old)
    with pytest.raises(KeyFileError, match="retired"):
        stale.append_event("event", {"n": "stale"})
    with pytest.raises(KeyFileError, match="retired"):
        sign_checkpoint(stale)
    # an attacker holding the retired key appends around the check
    head = ledger.head()
    forged = seal(
        height=head.height + 1,
        prev_hash=head.block_hash,
        timestamp=head.timestamp,
        kind="event",
        payload={"n": "forged"},
        key=old,
    )
    leaf = merkle.leaf_hash(bytes.fromhex(forged.block_hash))
    with ledger.store.reading() as connection:
        nodes, _ = merkle.completed_nodes(forged.height, leaf, merkle.load_frontier(NodesOf(connection), forged.height))
    from ledger.store import Store

    ledger.store.write(lambda c: (Store.insert_block(c, forged), Store.insert_nodes(c, nodes)))
    assert first(audit(ledger, ledger_ws, witness_url)) == (forged.height, FindingClass.SIGNATURE)


def test_rotation_by_another_writer_retires_the_key_of_a_ledger_object_that_read_the_schedule(
    ledger_ws: Workspace,
) -> None:
    """A ledger object reads the key schedule once and later only the blocks above what it read: a rotation that
    another object (another pipeline) appends in between must still retire the key this one signs with."""
    from ledger.rotation import rotate

    mine, theirs = open_ledger(ledger_ws), open_ledger(ledger_ws)
    mine.append_event("event", {"n": 1})  # reads the schedule up to its head
    mine.append_event("event", {"n": 2})
    theirs.append_event("event", {"n": 3})
    mine.append_event("event", {"n": 4})  # another writer got in between: locked, schedule read above height 2
    new = SigningKey.generate()
    rotate(theirs, new, reason="scheduled")
    with pytest.raises(KeyFileError, match="retired"):
        mine.append_event("event", {"n": "stale"})
    mine.use_key(new)
    assert mine.append_event("event", {"n": 5}).key_id == new.key_id
    assert mine.audit(files=FilesMode.NONE).clean


def test_checkpoint_signed_by_retired_key(ledger_ws: Workspace, witness_url: str) -> None:
    from ledger.note import Checkpoint, SignedCheckpoint
    from ledger.rotation import rotate

    ledger = build(ledger_ws, witness_url, count=2)
    old = ledger.key
    rotate(ledger, SigningKey.generate(), reason="compromise")
    late = SignedCheckpoint.sign(
        Checkpoint(ledger.origin, 4, ledger.root(4)), name=ledger.origin, private_key=old.private
    )
    report = ledger.audit(files=FilesMode.NONE, checkpoint_files=(("late.note", late.note),))
    assert [f.kind for f in report.findings] == [FindingClass.SIGNATURE]


def test_cli_rotate_in_place(ledger_ws: Workspace) -> None:
    old = load_key_file(ledger_ws.key, None)
    result = ledger_ws.cli("keys", "rotate", "--reason", "test", check=True)
    assert "retired key kept" in result.stdout
    new = load_key_file(ledger_ws.key, None)
    assert new.key_id != old.key_id
    assert (ledger_ws.key.stat().st_mode & 0o777) == 0o600
    assert load_key_file(ledger_ws.key.with_name(f"key.pem.retired-{old.key_id}"), None).key_id == old.key_id
    shown = ledger_ws.cli("--json", "keys", "show", check=True)
    assert json.loads(shown.stdout)["verifier_key"].split("+")[0] == open_ledger(ledger_ws).origin
    ledger_ws.cli("checkpoint", check=True)
    assert ledger_ws.cli("audit", "--files", "none").returncode == 0


# --- the CLI: checkpoint --out / --witness / LEDGER_WITNESS, audit --witness / --checkpoint ------------------------


def run_cli(ws: Workspace, *args: str, **env: str) -> tuple[int, str, str]:
    """Run ``ledger ARGS`` in-process (CliRunner) against the workspace: (exit code, stdout, stderr)."""
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, list(args), env=ws.env(**env))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def _findings(stdout: str) -> list[tuple[int | None, str]]:
    return [(f["height"], f["class"]) for f in json.loads(stdout)["findings"] if f["severity"] == "error"]


def test_cli_checkpoint_out_witness_and_setting(ledger_ws: Workspace, tmp_path: Path) -> None:
    from ledger.note import SignedCheckpoint, parse_verifier_key

    ledger = build(ledger_ws, None, every=False, count=3)  # size 4
    vkey = verifier_key_of(ledger)
    flag_dir, env_dir = tmp_path / "flag-witness", tmp_path / "env-witness"
    code, out, err = run_cli(ledger_ws, "checkpoint", "--out", str(tmp_path / "cp.note"), "--witness", str(flag_dir))
    assert code == 0, err
    note = (tmp_path / "cp.note").read_bytes()
    assert SignedCheckpoint.verify(note, verifiers=[parse_verifier_key(vkey)]).checkpoint.size == 4
    published = list(flag_dir.iterdir())
    assert [p.read_bytes() for p in published] == [note]
    assert f"witness: {flag_dir}/{published[0].name}" in out and f"wrote {tmp_path / 'cp.note'}" in out
    ledger.append_event("event", {"n": "more"})
    code, out, err = run_cli(ledger_ws, "--json", "checkpoint", LEDGER_WITNESS=str(env_dir))
    assert code == 0, err
    shown = json.loads(out)
    assert shown["size"] == 5 and shown["witness"].startswith(str(env_dir)) and shown["trusted_state_updated"]
    assert [p.name.split(".")[1] for p in env_dir.iterdir()] == [f"{5:020d}"]
    assert len(list(flag_dir.iterdir())) == 1  # --witness was for that one command only
    code, out, _ = run_cli(ledger_ws, "--json", "checkpoint")
    assert json.loads(out)["witness"] is None


def verifier_key_of(ledger: Ledger) -> str:
    from ledger.note import verifier_key

    return verifier_key(ledger.origin, ledger.key.public)


def _truncate(ws: Workspace, keep: int) -> None:
    """Cut the chain back to ``keep`` blocks, its stored checkpoints with it (around the triggers)."""
    tamper(
        ws.db_url,
        "DELETE FROM checkpoints",
        f"DELETE FROM blocks WHERE height >= {keep}",
        f"DELETE FROM merkle_nodes WHERE (idx + 1) * (1 << level) > {keep}",
    )


def test_cli_audit_witness_catches_truncation(ledger_ws: Workspace, tmp_path: Path) -> None:
    ledger = build(ledger_ws, None, every=False)  # size 8
    witness = tmp_path / "witness"
    assert run_cli(ledger_ws, "checkpoint", "--witness", str(witness))[0] == 0
    assert run_cli(ledger_ws, "audit", "--files", "none", "--witness", str(witness))[0] == 0
    _truncate(ledger_ws, 6)
    fresh = {"LEDGER_STATE_DIR": str(tmp_path / "fresh-state")}  # an auditor with no trusted state of their own
    assert run_cli(ledger_ws, "audit", "--files", "none", **fresh)[0] == 0  # nothing to compare with
    code, out, _ = run_cli(ledger_ws, "--json", "audit", "--files", "none", "--witness", str(witness), **fresh)
    assert code == 1 and _findings(out)[0] == (6, "consistency")
    code, out, _ = run_cli(ledger_ws, "--json", "audit", "--files", "none", LEDGER_WITNESS=str(witness), **fresh)
    assert code == 1 and _findings(out)[0] == (6, "consistency")
    assert ledger.size() == 6


@pytest.mark.parametrize("attack", ["truncate", "rewrite"])
def test_cli_audit_checkpoint_file(ledger_ws: Workspace, tmp_path: Path, attack: str) -> None:
    ledger = build(ledger_ws, None, every=False)  # size 8
    note = tmp_path / "cp.note"
    assert run_cli(ledger_ws, "checkpoint", "--out", str(note))[0] == 0
    fresh = {"LEDGER_STATE_DIR": str(tmp_path / "fresh-state")}
    if attack == "truncate":
        _truncate(ledger_ws, 5)
        expected = (5, "consistency")
    else:  # history from height 4 rewritten and re-signed with the key: only the checkpoint file shows it
        reseal(ledger_ws, ledger, 4, load_key_file(ledger_ws.key, None), {"note": "rewritten"})
        tamper(ledger_ws.db_url, "DELETE FROM checkpoints")
        expected = (0, "consistency")  # no smaller checkpoint brackets it: somewhere below size 8
    assert run_cli(ledger_ws, "audit", "--files", "none", **fresh)[0] == 0
    code, out, _ = run_cli(ledger_ws, "--json", "audit", "--files", "none", "--checkpoint", str(note), **fresh)
    assert code == 1 and _findings(out)[0] == expected, out
    missing = run_cli(ledger_ws, "audit", "--files", "none", "--checkpoint", str(tmp_path / "none.note"), **fresh)
    assert missing[0] == 2 and missing[2].startswith("ledger: error: cannot read checkpoint file")
    assert len(missing[2].strip().splitlines()) == 1
