"""CSV export: the version register, one row per version, for spreadsheets."""

from __future__ import annotations

import csv
import io

from ledger.export.interface import Formatter, RenderContext
from ledger.export.report import Report, VersionEntry

COLUMNS = (
    "model",
    "version",
    "name",
    "release",
    "stage",
    "question",
    "height",
    "block_hash",
    "timestamp_utc",
    "trainer",
    "sha256",
    "size",
    "adapter_root",
    "parent",
    "training_data_hash",
    "base_models",
    "validation_accuracy",
    "fairness_score",
    "bias_score",
)


def _row(v: VersionEntry) -> list[str]:
    def text(value: object) -> str:
        return "" if value is None else str(value)

    return [
        v.model,
        v.version,
        v.name,
        v.release,
        text(v.stage),
        text(v.question),
        str(v.height),
        v.block_hash,
        v.timestamp,
        text(v.trainer),
        text(v.sha256),
        text(v.size),
        text(v.adapter_root),
        text(v.parent),
        text(v.data_hash),
        ";".join(v.base_models),
        *(text(v.metrics.get(m)) for m in ("validation_accuracy", "fairness_score", "bias_score")),
    ]


class CsvFormatter(Formatter):
    """RFC 4180 CSV (CRLF line ends, UTF-8) with a header row."""

    name = "csv"
    suffix = ".csv"
    media_type = "text/csv"
    signed = False

    def render(self, report: Report, context: RenderContext) -> bytes:
        """The version table."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for entry in report.versions:
            writer.writerow(_neutralise(_row(entry)))
        return out.getvalue().encode("utf-8")


def _neutralise(row: list[str]) -> list[str]:
    """Prefix cells a spreadsheet would run as a formula (CSV injection) with an apostrophe."""
    return [
        "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(cell) else cell for cell in row
    ]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
