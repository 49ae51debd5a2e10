"""The version_index lookup table against the signed payloads: audit findings and refusing lookups (both backends)."""

from __future__ import annotations

import pytest

from ledger.audit import FilesMode
from ledger.errors import IndexMismatchError, NotFoundError
from ledger.findings import FindingClass
from ledger.indexcheck import index_findings
from tests.conftest import Workspace, open_ledger, tamper

SLUG = "oneseek-7b-zero"


def _three_versions(ws: Workspace) -> None:
    ledger = open_ledger(ws)
    for name in ("v1.0", "v1.1", "v1.2"):
        ledger.append(ws.write_version(f"{SLUG}-{name}"))
    ledger.store.engine.dispose()


def _db_guard(ws: Workspace) -> list[tuple[int, str]]:
    ledger = open_ledger(ws, signing=False)
    report = ledger.audit(files=FilesMode.NONE)
    ledger.store.engine.dispose()
    assert {f.kind for f in report.findings} <= {FindingClass.DB_GUARD}, report.findings
    return sorted((f.height, f.message) for f in report.findings if f.kind is FindingClass.DB_GUARD)


def test_clean_index_has_no_finding(ledger_ws: Workspace) -> None:
    _three_versions(ledger_ws)
    assert _db_guard(ledger_ws) == []
    assert open_ledger(ledger_ws).find(f"{SLUG}-v1.1").height == 2


def test_swapped_rows_are_reported_and_lookups_refuse(ledger_ws: Workspace) -> None:
    """Rows of v1.0 and v1.2 swapped: `show v1.0` would open v1.2's block. Both heights are named."""
    _three_versions(ledger_ws)
    tamper(
        ledger_ws.db_url,
        "DELETE FROM version_index WHERE height IN (1, 3)",
        f"INSERT INTO version_index (height, model, major, micro) VALUES (1, '{SLUG}', 1, 2)",
        f"INSERT INTO version_index (height, model, major, micro) VALUES (3, '{SLUG}', 1, 0)",
    )
    found = _db_guard(ledger_ws)
    assert [h for h, _ in found] == [1, 3]
    assert "says oneseek-7b-zero-v1.2, but the block records oneseek-7b-zero-v1.0" in found[0][1]
    ledger = open_ledger(ledger_ws)
    with pytest.raises(IndexMismatchError, match="block 3"):
        ledger.find(f"{SLUG}-v1.0")
    with pytest.raises(IndexMismatchError, match="block 1"):
        ledger.find("v1.2")
    assert ledger.find(f"{SLUG}-v1.1").height == 2  # the untouched row still works
    ledger.store.engine.dispose()
    shown = ledger_ws.cli("show", f"{SLUG}-v1.0")
    assert shown.returncode == 1, shown.stderr
    assert "does not record that version" in shown.stderr
    assert "Traceback" not in shown.stderr


def test_row_renamed_to_another_model(ledger_ws: Workspace) -> None:
    _three_versions(ledger_ws)
    tamper(ledger_ws.db_url, "UPDATE version_index SET model = 'other-model' WHERE height = 2")
    assert [h for h, _ in _db_guard(ledger_ws)] == [2]
    ledger = open_ledger(ledger_ws)
    with pytest.raises(IndexMismatchError):
        ledger.find("other-model-v1.1")
    with pytest.raises(NotFoundError):
        ledger.find(f"{SLUG}-v1.1")


def test_missing_row_and_row_at_a_non_version_block(ledger_ws: Workspace) -> None:
    _three_versions(ledger_ws)
    tamper(
        ledger_ws.db_url,
        "DELETE FROM version_index WHERE height = 2",
        "INSERT INTO version_index (height, model, major, micro) VALUES (0, 'ghost', 9, 9)",
    )
    found = _db_guard(ledger_ws)
    assert [h for h, _ in found] == [0, 2]
    assert "not a version block" in found[0][1]
    assert "no version_index row" in found[1][1]
    with pytest.raises(IndexMismatchError):
        open_ledger(ledger_ws).find("ghost-v9.9")


def test_index_findings_pure() -> None:
    versions = {1: {"model": "m", "version": "1.0", "name": "m-v1.0"}, 2: {"model": "m", "version": "bad"}}
    found = index_findings([(1, "m", 1, 0), (2, "m", 1, 1), (5, "m", 2, 0)], versions)
    assert [(f.height, f.kind) for f in found] == [(2, FindingClass.DB_GUARD), (5, FindingClass.DB_GUARD)]
    assert "no valid version" in found[0].message
    assert index_findings([], versions)[0].message.startswith("version block 1 has no version_index row")
