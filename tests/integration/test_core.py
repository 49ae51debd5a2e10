"""Core ledger behaviour on both backends: init, append, audit, append-only guards, and one test per finding class."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy

from ledger.api import Ledger
from ledger.audit import FilesMode
from ledger.errors import AlreadyExistsError, StorageError
from ledger.findings import FindingClass
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


def test_finding_unledgered(ledger_ws: Workspace) -> None:
    ledger = _three_versions(ledger_ws)
    (ledger_ws.models / "oneseek-7b-zero-v1.3.pth").write_bytes(b"x" * 10)
    report = ledger.audit(files=FilesMode.QUICK)
    assert [(f.kind, f.path) for f in report.findings] == [(FindingClass.UNLEDGERED, "oneseek-7b-zero-v1.3.pth")]


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
