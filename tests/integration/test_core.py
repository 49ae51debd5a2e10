"""Core ledger behaviour on both backends: init, append, audit, append-only guards, and one test per finding class."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from ledger.api import Ledger
from ledger.audit import FilesMode
from ledger.errors import AlreadyExistsError, StorageError
from ledger.findings import FindingClass
from ledger.store import Store
from ledger.tables import APPEND_ONLY_TABLES as APPEND_ONLY
from tests.conftest import Workspace, open_ledger, seed_metadata, tamper


def first(report: object) -> tuple[int | None, FindingClass]:
    """The first finding of an audit report as (height, class)."""
    findings = [f for f in report.findings if not f.is_warning]  # type: ignore[attr-defined]
    assert findings, "expected a finding"
    return findings[0].height, findings[0].kind


def test_init_append_audit_clean(ledger_ws: Workspace) -> None:
    ledger = open_ledger(ledger_ws)
    ledger_ws.write_version("oneseek-7b-zero-v1.0")
    block = ledger.append(ledger_ws.models / "oneseek-7b-zero-v1.0.pth")
    assert block.height == 1
    payload = block.data()
    digest = payload["weights"]
    assert digest["size"] == 4096 and len(digest["sha256"]) == 64 and len(digest["blake3"]) == 64
    assert payload["metadata"]["content"]["provenance"]["training_data_hash"].startswith("sha256:")
    assert "ledger_block_id" not in payload["metadata"]["content"]["provenance"]
    on_disk = json.loads((ledger_ws.models / "oneseek-7b-zero-v1.0.json").read_text())
    assert on_disk["provenance"]["ledger_block_id"] == "block-1"
    assert on_disk["provenance"]["ledger_block_hash"] == block.block_hash
    for mode in FilesMode:
        report = ledger.audit(files=mode)
        assert report.clean, report.findings
        assert report.blocks_checked == 2


def test_second_init_refused(ledger_ws: Workspace) -> None:
    head = open_ledger(ledger_ws).head()
    with pytest.raises(AlreadyExistsError):
        Ledger.create(ledger_ws.db_url, models_dir=ledger_ws.models, key=ledger_ws.key)
    assert open_ledger(ledger_ws).head() == head


def test_open_without_ledger(workspace: Workspace) -> None:
    with pytest.raises(StorageError):
        Ledger.open(workspace.db_url, models_dir=workspace.models)


@pytest.mark.parametrize(
    "statement", ["UPDATE blocks SET kind = 'x'", "DELETE FROM blocks", "UPDATE merkle_nodes SET level = 9"]
)
def test_append_only_triggers(ledger_ws: Workspace, statement: str) -> None:
    engine = sqlalchemy.create_engine(ledger_ws.db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"), engine.begin() as connection:
        connection.exec_driver_sql(statement)
    engine.dispose()
    assert open_ledger(ledger_ws).audit(files=FilesMode.NONE).clean


def test_a_refused_insert_raises_sqlalchemys_error_and_leaves_the_head(ledger_ws: Workspace) -> None:
    """The append statements run on the driver directly on SQLite; their errors must still be SQLAlchemy's
    (the append maps IntegrityError to "another writer recorded this first")."""
    ledger = open_ledger(ledger_ws)
    head = ledger.head()
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        ledger.store.write(lambda connection: Store.insert_block(connection, head))
    assert open_ledger(ledger_ws).head() == head


def test_a_busy_database_is_retried_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``database is locked`` from the driver-level BEGIN IMMEDIATE is retried, not raised: another writer
    holds the lock, and the ledger's write connection waits no time of its own (busy_timeout 0; it is the
    connection the store keeps for this thread's writes, not one from the pool, else each attempt would wait
    out the 60 s default)."""
    from ledger.signing import SigningKey

    ledger = Ledger.create(f"sqlite:///{tmp_path / 'ledger.db'}", models_dir=tmp_path, key=SigningKey.generate())

    def no_busy_wait(connection: sqlalchemy.Connection) -> int:
        driver = connection.connection.driver_connection
        driver.execute("PRAGMA busy_timeout = 0")  # type: ignore[union-attr]
        return int(driver.execute("PRAGMA busy_timeout").fetchone()[0])  # type: ignore[union-attr]

    assert ledger.store.write(no_busy_wait) == 0
    holder = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            holder.execute("ROLLBACK")

    monkeypatch.setattr("ledger.store.time.sleep", sleep)
    block = ledger.append_event("note", {"text": "after the lock"})
    holder.close()
    assert len(sleeps) == 3 and block.height == 1
    assert ledger.audit(files=FilesMode.NONE).clean


@pytest.mark.postgres
def test_truncate_refused_on_postgres(pg_url: str, tmp_path: Path) -> None:
    from ledger.signing import SigningKey

    Ledger.create(pg_url, models_dir=tmp_path, key=SigningKey.generate())
    engine = sqlalchemy.create_engine(pg_url)
    with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"), engine.begin() as connection:
        connection.exec_driver_sql("TRUNCATE blocks CASCADE")
    engine.dispose()


def _three_versions(ws: Workspace) -> Ledger:
    ledger: Ledger = open_ledger(ws)
    for name in ("oneseek-7b-zero-v1.0", "oneseek-7b-zero-v1.1", "oneseek-7b-zero-v1.2"):
        ledger.append(ws.write_version(name))
    return ledger


# --- one negative test per finding class ---------------------------------------------------------


def test_finding_payload(ledger_ws: Workspace) -> None:
    ledger = _three_versions(ledger_ws)
    tamper(ledger_ws.db_url, ("UPDATE blocks SET payload = :p WHERE height = 2", {"p": b'{"a":1}'}))
    assert first(ledger.audit(files=FilesMode.NONE)) == (2, FindingClass.PAYLOAD)


def test_finding_link(ledger_ws: Workspace) -> None:
    ledger = _three_versions(ledger_ws)
    tamper(ledger_ws.db_url, "UPDATE blocks SET timestamp = '2020-01-01T00:00:00.000000Z' WHERE height = 2")
    assert first(ledger.audit(files=FilesMode.NONE)) == (2, FindingClass.LINK)


def test_finding_signature(ledger_ws: Workspace) -> None:
    ledger = _three_versions(ledger_ws)
    block = ledger.block(2)
    forged = bytes([block.signature[0] ^ 1]) + block.signature[1:]
    tamper(ledger_ws.db_url, ("UPDATE blocks SET signature = :s WHERE height = 2", {"s": forged}))
    assert first(ledger.audit(files=FilesMode.NONE)) == (2, FindingClass.SIGNATURE)


def test_finding_sequence(ledger_ws: Workspace) -> None:
    ledger = _three_versions(ledger_ws)
    tamper(ledger_ws.db_url, "DELETE FROM version_index WHERE height = 2", "DELETE FROM blocks WHERE height = 2")
    assert first(ledger.audit(files=FilesMode.NONE)) == (2, FindingClass.SEQUENCE)


def _resign(ws: Workspace, ledger: Ledger, height: int, parent: Any) -> None:
    """Re-sign the version block at ``height`` with the ledger's own key and another ``parent``, re-seal the blocks
    after it (their parents follow the new hashes) and recompute the stored Merkle tree: every hash, link and
    signature verifies, and only that one block's lineage is wrong."""
    from ledger import merkle
    from ledger.block import seal
    from ledger.signing import load_key_file

    key = load_key_file(ws.key, None)
    blocks = list(ledger.blocks())
    renamed: dict[str, str] = {}  # old block hash -> new
    statements: list[Any] = []
    for i in range(height, len(blocks)):
        old = blocks[i]
        payload = old.data()
        if i == height:
            payload["parent"] = parent
        elif isinstance(payload.get("parent"), dict):
            payload["parent"]["block_hash"] = renamed.get(
                payload["parent"]["block_hash"], payload["parent"]["block_hash"]
            )
        new = seal(
            height=i,
            prev_hash=blocks[i - 1].block_hash,
            timestamp=old.timestamp,
            kind=old.kind,
            payload=payload,
            key=key,
        )
        renamed[old.block_hash], blocks[i] = new.block_hash, new
        statements.append(
            (
                "UPDATE blocks SET prev_hash = :prev_hash, payload = :payload, payload_hash = :payload_hash, "
                "block_hash = :block_hash, signature = :signature WHERE height = :height",
                {
                    n: getattr(new, n)
                    for n in ("prev_hash", "payload", "payload_hash", "block_hash", "signature", "height")
                },
            )
        )
    statements.append("DELETE FROM merkle_nodes")
    frontier: list[bytes] = []
    for block in blocks:
        leaf = merkle.leaf_hash(bytes.fromhex(block.block_hash))
        nodes, frontier = merkle.completed_nodes(block.height, leaf, frontier)
        statements.extend(
            ("INSERT INTO merkle_nodes (level, idx, hash) VALUES (:l, :i, :h)", {"l": lv, "i": ix, "h": h})
            for lv, ix, h in nodes
        )
    tamper(ws.db_url, *statements)


def _lineage_attacks(ledger: Ledger) -> dict[str, tuple[int, Any]]:
    """(height of the version re-signed, its new parent) per attack on v1.0 (h1), v1.1 (h2), v1.2 (h3)."""
    b1, b2 = ledger.block(1), ledger.block(2)
    return {
        "skips a version": (3, {"version": "1.0", "height": 1, "block_hash": b1.block_hash}),
        "wrong block hash": (3, {"version": "1.1", "height": 2, "block_hash": b1.block_hash}),
        "wrong height": (3, {"version": "1.1", "height": 1, "block_hash": b2.block_hash}),
        "wrong version": (3, {"version": "1.2", "height": 2, "block_hash": b2.block_hash}),
        "height as a boolean": (2, {"version": "1.0", "height": True, "block_hash": b1.block_hash}),
        "no parent": (3, None),
        "first version with a parent": (1, {"version": "0.9", "height": 0, "block_hash": ledger.genesis.block_hash}),
    }


@pytest.mark.parametrize(
    "attack",
    [
        "skips a version",
        "wrong block hash",
        "wrong height",
        "wrong version",
        "height as a boolean",
        "no parent",
        "first version with a parent",
    ],
)
def test_finding_sequence_lineage(ledger_ws: Workspace, attack: str) -> None:
    """A version whose signed parent is not the model's previous version in the chain, on every audit path."""
    from ledger.fastaudit import verify_chain

    ledger = _three_versions(ledger_ws)
    assert ledger.audit(files=FilesMode.NONE).findings == ()
    height, parent = _lineage_attacks(ledger)[attack]
    _resign(ledger_ws, ledger, height, parent)
    name = f"oneseek-7b-zero-v1.{height - 1}"
    expected = [(height, name, FindingClass.SEQUENCE)]
    in_process = ledger.audit(files=FilesMode.NONE, workers=1).findings
    assert [(f.height, f.version, f.kind) for f in in_process] == expected, in_process
    assert "parent" in in_process[0].message
    if attack == "skips a version":  # worker processes take a second to start: one case is enough
        parallel = verify_chain(ledger.store, workers=2, chunk_level=1, parallel_threshold=0).scan.findings
        assert [(f.height, f.version, f.kind) for f in parallel] == expected, parallel


def test_lineage_checked_by_the_incremental_audit(ledger_ws: Workspace) -> None:
    """Resuming from a trusted checkpoint, the first new version's parent is checked against the older blocks."""
    from ledger.checkpoints import issue

    ledger: Ledger = open_ledger(ledger_ws)
    state = ledger_ws.root / "state"
    for name in ("oneseek-7b-zero-v1.0", "oneseek-7b-zero-v1.1"):
        ledger.append(ledger_ws.write_version(name))
    issue(ledger, witness=None, state_dir=state)
    ledger.append(ledger_ws.write_version("oneseek-7b-zero-v1.2"))
    report = ledger.audit(files=FilesMode.NONE, state_dir=state, incremental=True, update_state=False)
    assert report.incremental_from == 3 and report.findings == (), report.findings
    _resign(ledger_ws, ledger, 3, _lineage_attacks(ledger)["skips a version"][1])
    report = ledger.audit(files=FilesMode.NONE, state_dir=state, incremental=True, update_state=False)
    assert [(f.height, f.version, f.kind) for f in report.findings] == [
        (3, "oneseek-7b-zero-v1.2", FindingClass.SEQUENCE)
    ], report.findings


def test_finding_db_guard(ledger_ws: Workspace) -> None:
    ledger = open_ledger(ledger_ws)
    engine = sqlalchemy.create_engine(ledger_ws.db_url)
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("DROP TRIGGER blocks_no_delete")
        else:
            connection.exec_driver_sql("ALTER TABLE blocks DISABLE TRIGGER blocks_no_change")
    engine.dispose()
    report = ledger.audit(files=FilesMode.NONE)
    assert [f.kind for f in report.findings] == [FindingClass.DB_GUARD]


REFUSE = "BEGIN SELECT RAISE(ABORT, 'blocks is append-only'); END"
SQLITE_GUARD_ATTACKS = {
    "body does nothing": (
        "blocks_no_update",
        "CREATE TRIGGER blocks_no_update BEFORE UPDATE ON blocks BEGIN SELECT 1; END",
    ),
    "when false": ("blocks_no_delete", f"CREATE TRIGGER blocks_no_delete BEFORE DELETE ON blocks WHEN 0 {REFUSE}"),
    "one column only": (
        "blocks_no_update",
        f"CREATE TRIGGER blocks_no_update BEFORE UPDATE OF kind ON blocks {REFUSE}",
    ),
    "after, not before": ("blocks_no_delete", f"CREATE TRIGGER blocks_no_delete AFTER INSERT ON blocks {REFUSE}"),
}


def _sqlite_ledger(tmp_path: Path) -> tuple[Ledger, sqlalchemy.engine.Engine]:
    from ledger.signing import SigningKey

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    return Ledger.create(url, models_dir=tmp_path, key=SigningKey.generate()), sqlalchemy.create_engine(url)


@pytest.mark.parametrize("case", SQLITE_GUARD_ATTACKS)
def test_sqlite_trigger_replaced_under_its_name_is_reported(tmp_path: Path, case: str) -> None:
    ledger, engine = _sqlite_ledger(tmp_path)
    name, replacement = SQLITE_GUARD_ATTACKS[case]
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TRIGGER {name}")
        connection.exec_driver_sql(replacement)
    engine.dispose()
    findings = ledger.audit(files=FilesMode.NONE).findings
    assert [(f.kind, name in f.message) for f in findings] == [(FindingClass.DB_GUARD, True)], findings


def test_sqlite_trigger_recreated_with_other_whitespace_is_no_finding(tmp_path: Path) -> None:
    ledger, engine = _sqlite_ledger(tmp_path)
    assert ledger.audit(files=FilesMode.NONE).findings == ()
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER blocks_no_update")
        connection.exec_driver_sql(
            "CREATE TRIGGER blocks_no_update\n  BEFORE UPDATE ON blocks\n  BEGIN\n    SELECT RAISE(ABORT, "
            "'blocks is append-only');\n  END"
        )
    engine.dispose()
    assert ledger.audit(files=FilesMode.NONE).findings == ()


PG_REFUSE = "EXECUTE FUNCTION ledger_refuse_change()"
PG_GUARD_ATTACKS: dict[str, tuple[list[str], list[str]]] = {
    "function returns old": (
        [
            "CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RETURN OLD; END $$"
        ],
        [f"{table}_{suffix}" for table in APPEND_ONLY for suffix in ("no_change", "no_truncate")],
    ),
    "when false": (
        [
            "DROP TRIGGER blocks_no_change ON blocks",
            f"CREATE TRIGGER blocks_no_change BEFORE UPDATE OR DELETE ON blocks FOR EACH ROW WHEN (false) {PG_REFUSE}",
            "ALTER TABLE blocks ENABLE ALWAYS TRIGGER blocks_no_change",
        ],
        ["blocks_no_change"],
    ),
    "one column only": (
        [
            "DROP TRIGGER blocks_no_change ON blocks",
            f"CREATE TRIGGER blocks_no_change BEFORE UPDATE OF kind OR DELETE ON blocks FOR EACH ROW {PG_REFUSE}",
            "ALTER TABLE blocks ENABLE ALWAYS TRIGGER blocks_no_change",
        ],
        ["blocks_no_change"],
    ),
    "function of another schema": (
        [
            "CREATE SCHEMA shadow",
            "CREATE FUNCTION shadow.ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RETURN NULL; END $$",
            "DROP TRIGGER merkle_nodes_no_change ON merkle_nodes",
            "CREATE TRIGGER merkle_nodes_no_change BEFORE DELETE OR UPDATE ON merkle_nodes FOR EACH ROW "
            "EXECUTE FUNCTION shadow.ledger_refuse_change()",
            "ALTER TABLE merkle_nodes ENABLE ALWAYS TRIGGER merkle_nodes_no_change",
        ],
        ["merkle_nodes_no_change"],
    ),
    "truncate trigger missing": (["DROP TRIGGER checkpoints_no_truncate ON checkpoints"], ["checkpoints_no_truncate"]),
    "truncate trigger disabled": (["ALTER TABLE blocks DISABLE TRIGGER blocks_no_truncate"], ["blocks_no_truncate"]),
    "enabled, but not always": (["ALTER TABLE blocks ENABLE TRIGGER blocks_no_truncate"], ["blocks_no_truncate"]),
}


@pytest.mark.postgres
@pytest.mark.parametrize("case", PG_GUARD_ATTACKS)
def test_postgres_guard_substitution_is_reported(pg_url: str, tmp_path: Path, case: str) -> None:
    from ledger.signing import SigningKey

    ledger = Ledger.create(pg_url, models_dir=tmp_path, key=SigningKey.generate())
    assert ledger.audit(files=FilesMode.NONE).findings == ()
    statements, names = PG_GUARD_ATTACKS[case]
    engine = sqlalchemy.create_engine(pg_url)
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    engine.dispose()
    findings = ledger.audit(files=FilesMode.NONE).findings
    assert {f.kind for f in findings} == {FindingClass.DB_GUARD}, findings
    assert sorted(f.message.split()[2] for f in findings) == sorted(names), findings


@pytest.mark.postgres
def test_postgres_function_recreated_with_other_whitespace_is_no_finding(pg_url: str, tmp_path: Path) -> None:
    from ledger import guards
    from ledger.signing import SigningKey

    ledger = Ledger.create(pg_url, models_dir=tmp_path, key=SigningKey.generate())
    engine = sqlalchemy.create_engine(pg_url)
    with engine.begin() as connection:
        body = guards.PG_FUNCTION_BODY.replace(" ", "\n    ")
        connection.exec_driver_sql(
            f"CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$\n{body}\n$$"
        )
    engine.dispose()
    assert ledger.audit(files=FilesMode.NONE).findings == ()


def test_finding_file_missing(ledger_ws: Workspace) -> None:
    ledger = _three_versions(ledger_ws)
    (ledger_ws.models / "oneseek-7b-zero-v1.1.pth").unlink()
    report = ledger.audit(files=FilesMode.QUICK)
    assert first(report) == (2, FindingClass.FILE_MISSING)
    assert report.findings[0].path == "oneseek-7b-zero-v1.1.pth"


def test_finding_file_mismatch_full_and_quick(ledger_ws: Workspace) -> None:
    ledger = _three_versions(ledger_ws)
    path = ledger_ws.models / "oneseek-7b-zero-v1.2.pth"
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # hide the edit from the quick check
    assert ledger.audit(files=FilesMode.QUICK).clean  # quick mode cannot see it: that is why it is no proof
    assert first(ledger.audit(files=FilesMode.FULL)) == (3, FindingClass.FILE_MISMATCH)
    os.utime(path)
    assert first(ledger.audit(files=FilesMode.QUICK)) == (3, FindingClass.FILE_MISMATCH)


def test_quick_checks_split_across_two_processes_find_the_same(
    ledger_ws: Workspace, monkeypatch: pytest.MonkeyPatch, forking: None
) -> None:
    """From ``FORK_CHECKS`` checks on, half run in a forked process: same findings, same order, and a child
    that dies is an error, never a silently shorter list."""
    from ledger import audit as audit_module

    ledger = _three_versions(ledger_ws)
    (ledger_ws.models / "oneseek-7b-zero-v1.0.pth").unlink()
    (ledger_ws.models / "oneseek-7b-zero-v1.2.json").write_text("{}")
    os.utime(ledger_ws.models / "oneseek-7b-zero-v1.1.pth", ns=(0, 0))
    whole = ledger.audit(files=FilesMode.QUICK).findings
    assert {(f.height, f.kind) for f in whole} == {
        (1, FindingClass.FILE_MISSING),
        (2, FindingClass.FILE_MISMATCH),
        (3, FindingClass.METADATA_MISMATCH),
    }
    monkeypatch.setattr(audit_module, "FORK_CHECKS", 2)
    pids: list[int] = []
    real = audit_module._run_all

    def run_all(checks: Any) -> Any:
        pids.append(os.getpid())  # the child's own append is lost with the child: only the parent's stays
        return real(checks)

    monkeypatch.setattr(audit_module, "_run_all", run_all)
    assert ledger.audit(files=FilesMode.QUICK).findings == whole
    assert pids == [os.getpid()]  # the parent ran one half; the other ran elsewhere
    monkeypatch.setattr(audit_module, "_run_all", lambda checks: os._exit(7) if os.getpid() not in pids else [])
    with pytest.raises(StorageError, match="exit status 7"):
        ledger.audit(files=FilesMode.QUICK)


def test_finding_unledgered(ledger_ws: Workspace) -> None:
    ledger = _three_versions(ledger_ws)
    (ledger_ws.models / "oneseek-7b-zero-v1.3.pth").write_bytes(b"x" * 10)
    report = ledger.audit(files=FilesMode.QUICK)
    assert [(f.kind, f.path) for f in report.findings] == [(FindingClass.UNLEDGERED, "oneseek-7b-zero-v1.3.pth")]


def test_finding_unledgered_in_subdirectories(ledger_ws: Workspace, tmp_path: Path) -> None:
    """``append`` takes weights from subdirectories, so the scan for unledgered files walks the whole tree."""
    ledger = open_ledger(ledger_ws)
    sub = ledger_ws.models / "sub"
    sub.mkdir()
    ledger_ws.write_version("oneseek-7b-zero-v1.0")
    (ledger_ws.models / "oneseek-7b-zero-v1.0.pth").rename(sub / "oneseek-7b-zero-v1.0.pth")
    (ledger_ws.models / "oneseek-7b-zero-v1.0.json").rename(sub / "oneseek-7b-zero-v1.0.json")
    ledger.append(sub / "oneseek-7b-zero-v1.0.pth")
    assert ledger.audit(files=FilesMode.FULL).findings == ()  # the ledgered one is known by its relative path
    (sub / "x-v1.0.pth").write_bytes(b"x" * 10)
    (sub / "deeper").mkdir()
    (sub / "deeper" / ".oneseek-7b-zero-v1.1.json.abc.tmp").write_bytes(b"{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "linked-v1.0.pth").write_bytes(b"y")
    (ledger_ws.models / "link").symlink_to(elsewhere)  # not followed
    report = ledger.audit(files=FilesMode.QUICK)
    assert [(f.kind, f.path) for f in report.findings] == [
        (FindingClass.UNLEDGERED, "sub/deeper/.oneseek-7b-zero-v1.1.json.abc.tmp"),
        (FindingClass.UNLEDGERED, "sub/x-v1.0.pth"),
    ]


def test_adapters_inside_the_models_directory_are_not_unledgered(workspace: Workspace) -> None:
    adapters = workspace.models / "lora_adapters"
    ledger = Ledger.create(workspace.db_url, models_dir=workspace.models, key=workspace.key, adapters_dir=adapters)
    (adapters / "oneseek-7b-zero-v1.0").mkdir(parents=True)
    (adapters / "oneseek-7b-zero-v1.0" / "adapter_model.safetensors").write_bytes(b"a" * 64)
    ledger.append(workspace.write_version("oneseek-7b-zero-v1.0"))
    assert ledger.audit(files=FilesMode.FULL).findings == ()


def test_finding_metadata_mismatch(ledger_ws: Workspace) -> None:
    ledger = _three_versions(ledger_ws)
    path = ledger_ws.models / "oneseek-7b-zero-v1.1.json"
    meta = json.loads(path.read_text())
    meta["metrics"]["bias_score"] = 0.01
    path.write_text(json.dumps(meta))
    report = ledger.audit(files=FilesMode.QUICK)
    assert first(report) == (2, FindingClass.METADATA_MISMATCH)
    assert "/metrics/bias_score" in report.findings[0].message


def test_warning_stage_pending(ledger_ws: Workspace) -> None:
    ledger = open_ledger(ledger_ws)
    ledger.append(ledger_ws.write_version("oneseek-7b-zero-v1.0"))
    ledger.append(ledger_ws.write_version("oneseek-7b-zero-v1.1"), stage=1, question="q1")
    report = ledger.audit(files=FilesMode.QUICK)
    assert report.clean
    assert [f.kind for f in report.findings] == [FindingClass.STAGE_PENDING]
    ledger.append(ledger_ws.write_version("oneseek-7b-zero-v1.2"), stage=2, question="q1")
    assert ledger.audit(files=FilesMode.QUICK).findings == ()


def test_every_finding_class_is_rendered() -> None:
    from cli.render import audit_text
    from ledger.audit import AuditReport
    from ledger.findings import Finding

    for kind in FindingClass:
        report = AuditReport((Finding(1, "m-v1.0", kind, "msg"),), 2, 1, "ab" * 32, FilesMode.NONE, 0)
        assert str(kind) in audit_text(report)
        assert report.to_json()["findings"][0]["class"] == str(kind)


def test_metadata_defaults_and_training_hash(ledger_ws: Workspace) -> None:
    ledger = open_ledger(ledger_ws)
    meta = seed_metadata("oneseek-7b-zero-v1.0")
    del meta["provenance"]["training_data_hash"]
    ledger_ws.write_version("oneseek-7b-zero-v1.0", meta=meta)
    data = ledger_ws.root / "train.jsonl"
    data.write_text('{"q": 1}\n')
    block = ledger.append(ledger_ws.models / "oneseek-7b-zero-v1.0.pth", data=data)
    import hashlib

    expected = "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()
    assert block.data()["metadata"]["content"]["provenance"]["training_data_hash"] == expected
    assert block.data()["training_data"] == {"computed": True, "kind": "file", "hash": expected}


def test_progress_reports_every_byte_hashed(ledger_ws: Workspace) -> None:
    """append reports the weights and the --data set it hashes; a full audit announces the bytes it will hash
    (weights and adapter files) and reports exactly those, from its parallel hashing threads."""
    ledger = open_ledger(ledger_ws)
    data = ledger_ws.root / "data"
    data.mkdir()
    (data / "part-0").write_bytes(os.urandom(3000))
    (data / "part-1").write_bytes(os.urandom(5000))
    weights = ledger_ws.write_version("oneseek-7b-zero-v1.0", content=os.urandom(20_000))
    meta = json.loads(weights.with_suffix(".json").read_text())
    del meta["provenance"]["training_data_hash"]
    weights.with_suffix(".json").write_text(json.dumps(meta))
    seen: list[int] = []
    ledger.append(weights, data=data, progress=seen.append)
    assert sum(seen) == 20_000 + 8000
    adapter = ledger_ws.adapters / "oneseek-7b-zero-v1.1"
    (adapter / "sub").mkdir(parents=True)
    (adapter / "adapter_model.bin").write_bytes(os.urandom(7000))
    (adapter / "sub" / "notes.txt").write_bytes(b"rank 4\n")
    ledger.append(ledger_ws.write_version("oneseek-7b-zero-v1.1", content=os.urandom(10_000)))

    announced: list[int] = []
    hashed: list[int] = []

    def start(total: int) -> Callable[[int], None]:
        announced.append(total)
        return hashed.append

    report = ledger.audit(files=FilesMode.FULL, progress=start)
    assert report.clean, report.findings
    assert announced == [20_000 + 10_000 + 7000 + 7] and sum(hashed) == announced[0]
    announced.clear()
    assert ledger.audit(files=FilesMode.QUICK, progress=start).clean and announced == []  # nothing is hashed
