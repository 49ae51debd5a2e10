"""Cross-check of the ``version_index`` lookup table against the signed version payloads it points at.

The index is not signed: the triggers stop an UPDATE or DELETE, but someone writing the database around them
can point ``ledger show NAME`` at another block. Each disagreement is a ``db-guard`` finding (the signed chain
itself is intact; a database-side structure was changed behind the guards), naming the height of the row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ledger.errors import NamingError
from ledger.findings import Finding, FindingClass
from ledger.tables import VersionIndexRow
from ledger.versions import VersionId

if TYPE_CHECKING:
    from sqlalchemy import Connection

IndexRow = tuple[int, str, int, int]  # height, model, major, micro


def index_rows(connection: Connection) -> list[IndexRow]:
    """Every ``version_index`` row, in height order (one query)."""
    rows = connection.execute(
        select(VersionIndexRow.height, VersionIndexRow.model, VersionIndexRow.major, VersionIndexRow.micro).order_by(
            VersionIndexRow.height
        )
    )
    return [(int(h), str(m), int(a), int(b)) for h, m, a, b in rows]


def recorded_as(payload: Mapping[str, Any]) -> tuple[str, int, int] | None:
    """(model, major, micro) a version payload records, or None when it does not parse."""
    try:
        version = VersionId.parse(str(payload["version"]))
        return str(payload["model"]), version.major, version.micro
    except (KeyError, NamingError):
        return None


def index_findings(rows: Iterable[IndexRow], versions: Mapping[int, Mapping[str, Any]]) -> list[Finding]:
    """``db-guard`` findings for index rows that disagree with the version blocks (pure).

    ``versions`` maps the height of every version block to its payload. A row must point at a version block
    recording the same model and version, and every version block must have its row.
    """
    findings: list[Finding] = []
    indexed: set[int] = set()
    for height, model, major, micro in rows:
        said = f"{model}-v{major}.{micro}"
        payload = versions.get(height)
        indexed.add(height)
        if payload is None:
            message = f"version_index row {said} points at block {height}, which is not a version block"
            findings.append(Finding(height, said, FindingClass.DB_GUARD, message))
            continue
        actual = recorded_as(payload)
        if actual != (model, major, micro):
            shown = f"{actual[0]}-v{actual[1]}.{actual[2]}" if actual is not None else "no valid version"
            message = f"version_index row for block {height} says {said}, but the block records {shown}"
            findings.append(Finding(height, said, FindingClass.DB_GUARD, message))
    for height in sorted(set(versions) - indexed):
        name = versions[height].get("name")
        message = f"version block {height} has no version_index row: lookups by name cannot find it"
        findings.append(Finding(height, str(name), FindingClass.DB_GUARD, message))
    return findings
