"""The one list of export formats: adding a format is one module and one line here."""

from __future__ import annotations

from ledger.errors import SelectionError
from ledger.export.csv import CsvFormatter
from ledger.export.cyclonedx import CycloneDxFormatter
from ledger.export.html import HtmlFormatter
from ledger.export.interface import Formatter
from ledger.export.intoto import InTotoFormatter
from ledger.export.json import JsonFormatter
from ledger.export.pdf import PdfFormatter

FORMATS: dict[str, Formatter] = {
    f.name: f
    for f in (
        HtmlFormatter(),
        PdfFormatter(),
        JsonFormatter(),
        CsvFormatter(),
        InTotoFormatter(),
        CycloneDxFormatter(),
    )
}


def formatter(name: str) -> Formatter:
    """The formatter called ``name``; an unknown name is a selection error listing the known ones."""
    found = FORMATS.get(name)
    if found is None:
        raise SelectionError(f"unknown export format {name!r}: choose one of {', '.join(FORMATS)}")
    return found
