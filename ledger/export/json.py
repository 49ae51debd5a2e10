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
        """The report document."""
        return (json.dumps(report_json(report), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
