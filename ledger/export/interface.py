"""The formatter protocol: a format turns the report model into the bytes of one file, and nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ledger.export.report import Report
    from ledger.signing import SigningKey


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What a formatter may need besides the report: the ledger's signing key (signed formats)."""

    key: SigningKey


class Formatter(Protocol):
    """One export format. ``render`` is pure: it returns bytes; only the CLI writes files."""

    name: str
    suffix: str
    media_type: str
    signed: bool

    def render(self, report: Report, context: RenderContext) -> bytes:
        """The complete file content for ``report``."""
        ...
