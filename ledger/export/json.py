"""JSON export: the report model as a versioned document (schema ``ledger/schemas/export-report.schema.json``)."""

from __future__ import annotations

import json

from ledger.export.interface import RenderContext
from ledger.export.report import Report, report_json


class JsonFormatter:
    """``ledger-export/v1`` JSON, indented, UTF-8."""

    name = "json"
    suffix = ".json"
    media_type = "application/json"
    signed = False

    def render(self, report: Report, context: RenderContext) -> bytes:
        """The report document, compact: indenting would switch ``json`` to its pure-Python encoder (3x slower
        at 10,000 versions); browsers and ``jq`` indent it for reading."""
        return (json.dumps(report_json(report), separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")
