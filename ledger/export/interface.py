"""The formatter protocol: a format turns the report model into the bytes of one file, and nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ledger.export.report import Draft, Report
    from ledger.signing import SigningKey


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What a formatter may need besides the report: the ledger's signing key (signed formats)."""

    key: SigningKey
    prepared: object = None
    """What the formatter's ``prepare`` returned for the draft this report was finished from."""


class Formatter(Protocol):
    """One export format. ``render`` is pure: it returns bytes; only the CLI writes files. Formats subclass this
    protocol to inherit ``prepare``'s default (nothing done early)."""

    name: str
    suffix: str
    media_type: str
    signed: bool

    def prepare(self, draft: Draft) -> object:
        """Rendering that needs only the chain's sections, done while the export-time audit still runs in another
        process (``render`` finds the result in ``RenderContext.prepared``); None when a format has none."""
        return None

    def render(self, report: Report, context: RenderContext) -> bytes:
        """The complete file content for ``report``."""
        ...
