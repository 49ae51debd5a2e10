"""Findings: what an audit reports, as plain data the CLI renders and maps to an exit code."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FindingClass(enum.StrEnum):
    """Every kind of finding; adding one means handling it wherever findings are rendered."""

    PAYLOAD = "payload"
    LINK = "link"
    SIGNATURE = "signature"
    SEQUENCE = "sequence"
    DB_GUARD = "db-guard"
    FILE_MISSING = "file-missing"
    FILE_MISMATCH = "file-mismatch"
    UNLEDGERED = "unledgered"
    METADATA_MISMATCH = "metadata-mismatch"
    CONSISTENCY = "consistency"
    STAGE_PENDING = "stage-pending"
    REMOTE = "remote"


#: Classes that are warnings: reported, but an audit with only these is clean.
WARNING_CLASSES = frozenset({FindingClass.STAGE_PENDING})


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem the audit found: where (height, version, path), which class, and a message for a person."""

    height: int | None
    version: str | None
    kind: FindingClass
    message: str
    path: str | None = None

    @property
    def is_warning(self) -> bool:
        """True for findings that do not fail the audit."""
        return self.kind in WARNING_CLASSES
