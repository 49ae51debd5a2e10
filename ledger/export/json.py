"""JSON export: the report model as a versioned document (schema ``ledger/schemas/export-report.schema.json``)."""

from __future__ import annotations

import json

from ledger.export.interface import RenderContext
from ledger.export.report import Report, report_json


class JsonFormatter:
    """``ledger-export/v2`` JSON, compact, UTF-8."""

    name = "json"
    suffix = ".json"
    media_type = "application/json"
    signed = False

    def render(self, report: Report, context: RenderContext) -> bytes:
        """The report document, compact: indenting would switch ``json`` to its pure-Python encoder (3x slower
        at 10,000 versions); browsers and ``jq`` indent it for reading."""
        document = report_json(report)  # a fresh tree without cycles: the encoder need not look for them
        return (json.dumps(document, separators=(",", ":"), ensure_ascii=False, check_circular=False) + "\n").encode()
