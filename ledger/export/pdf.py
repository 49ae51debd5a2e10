"""PDF export: the HTML page printed by WeasyPrint, with the integrity section attached as a JSON file.

Why WeasyPrint: one page source for HTML and PDF means the two can never disagree; it prints the inline SVG
charts as vectors; it needs no browser; and it writes PDF/A-3b (archival, attachments allowed), the variant
records offices keep for a decade. Its cost is the Pango system libraries (``make system-deps``).
"""

from __future__ import annotations

import json

from ledger.export.html import render_html
from ledger.export.interface import Formatter, RenderContext
from ledger.export.report import Report, integrity_json

ATTACHMENT_NAME = "ledger-integrity.json"


class PdfFormatter(Formatter):
    """PDF/A-3b, A4 landscape, with ``ledger-integrity.json`` embedded."""

    name = "pdf"
    suffix = ".pdf"
    media_type = "application/pdf"
    signed = False

    def render(self, report: Report, context: RenderContext) -> bytes:
        """Print the report page."""
        import logging

        from weasyprint import HTML, Attachment

        logging.getLogger("weasyprint").setLevel(logging.ERROR)
        logging.getLogger("fontTools").setLevel(logging.ERROR)
        page = render_html(report, embed_integrity=False)
        integrity = json.dumps(integrity_json(report), indent=1, ensure_ascii=False).encode("utf-8")
        attachment = Attachment(string=integrity, name=ATTACHMENT_NAME, description="ledger integrity section")
        data = HTML(string=page).write_pdf(attachments=[attachment], pdf_variant="pdf/a-3b")
        assert isinstance(data, bytes)
        return data
