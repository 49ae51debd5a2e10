"""HTML export: one self-contained page (inline CSS, inline SVG charts, no script, no network).

The integrity section is also embedded as JSON in ``<script type="application/json" id="ledger-integrity">``
(data, never executed) so ``ledger verify-export`` can re-check the page against the ledger.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from html import escape
from operator import attrgetter
from typing import Any

from ledger.export.interface import Formatter, RenderContext
from ledger.export.report import AuditSummary, Report, VersionEntry, flatten, integrity_json

INTEGRITY_ID = "ledger-integrity"

CSS = """
:root { --ink: #1b1f24; --muted: #5b6570; --line: #d7dce1; --bad: #b00020; --bad-bg: #fde7ea; --ok: #1b6e2e;
        --ok-bg: #e3f4e7; --head: #f3f5f7; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: var(--ink); margin: 2rem auto;
       max-width: 1180px; padding: 0 1.5rem; font-size: 14px; line-height: 1.45; }
h1 { font-size: 1.7rem; margin: 0 0 .2rem; }
h2 { font-size: 1.2rem; border-bottom: 2px solid var(--ink); padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
p.sub { color: var(--muted); margin: 0 0 1rem; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem; font-size: 12px; }
th, td { border: 1px solid var(--line); padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: var(--head); font-weight: 600; }
table.kv th { width: 14rem; }
code, .hash, pre { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 11px; }
.hash { word-break: break-all; }
pre { background: var(--head); border: 1px solid var(--line); padding: .6rem; white-space: pre-wrap;
      word-break: break-all; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600; font-size: 12px; }
.ok { background: var(--ok-bg); color: var(--ok); }
.bad { background: var(--bad-bg); color: var(--bad); }
td.breach { background: var(--bad-bg); color: var(--bad); font-weight: 700; }
.muted { color: var(--muted); }
.chart svg { width: 100%; height: auto; max-width: 860px; display: block; }
.signoff td { height: 2.4rem; }
nav ol { columns: 2; color: var(--muted); }
@media print {
  body { margin: 0; max-width: none; padding: 0; font-size: 9pt; }
  table { font-size: 7pt; }
  h2 { break-after: avoid; }
  tr, .chart, #signoff { break-inside: avoid; }
  nav { display: none; }
}
@page { size: A4 landscape; margin: 12mm 12mm 14mm;
        @bottom-right { content: "page " counter(page) " of " counter(pages); font-size: 8pt; color: #5b6570; }
        @bottom-left { content: "ledger provenance report"; font-size: 8pt; color: #5b6570; } }
"""

SECTIONS = (
    ("scope", "1. Scope"),
    ("integrity", "2. Integrity attestation"),
    ("register", "3. Version register"),
    ("data", "4. Training data provenance"),
    ("config", "5. Training configuration"),
    ("evaluation", "6. Evaluation"),
    ("lifecycle", "7. Lifecycle events"),
    ("retention", "8. Retention and backups"),
    ("findings", "9. Audit findings"),
    ("signoff", "10. Sign-off"),
)


def _t(value: Any) -> str:
    """Escape a cell value; None shows as an em dash."""
    if value is None or value == "":
        return '<span class="muted">—</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return escape(f"{value:g}")
    if isinstance(value, dict | list):
        return f"<code>{escape(json.dumps(value, ensure_ascii=False, sort_keys=True))}</code>"
    return escape(str(value))


def _h(value: str | None) -> str:
    return '<span class="muted">—</span>' if not value else f'<span class="hash">{escape(value)}</span>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table from already-escaped cells."""
    attr = f' class="{cls}"' if cls else ""
    out = [f"<table{attr}><thead><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    out.extend(
        "<tr>" + "".join(f"<td>{c}</td>" if not c.startswith("<td") else c for c in row) + "</tr>" for row in rows
    )
    out.append("</tbody></table>")
    return "".join(out)


def _rows(records: Iterable[Any], *fields: str) -> Iterator[list[str]]:
    """Table rows of plain values: the named attributes of each record, escaped (at least two fields)."""
    get = attrgetter(*fields)
    return ([_t(value) for value in get(record)] for record in records)


def _kv(rows: Iterable[tuple[str, str]]) -> str:
    return (
        '<table class="kv"><tbody>'
        + "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
        + "</tbody></table>"
    )


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}"><h2>{escape(title)}</h2>{body}</section>'


def render_html(report: Report, *, charts: bool = True, embed_integrity: bool = True) -> str:
    """The report page as a string (the PDF format renders this same page)."""
    titles = dict(SECTIONS)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Provenance report: {escape(', '.join(report.scope.models))}</title>",
        '<meta name="generator" content="' + escape(report.tool) + '">',
        f'<meta name="description" content="ledger {escape(report.integrity.ledger_id)} '
        f'head {report.integrity.head_height}">',
        f"<style>{CSS}</style></head><body>",
        f"<header><h1>Model provenance report: {escape(', '.join(report.scope.models))}</h1>",
        f'<p class="sub">Generated {escape(report.generated)} (UTC) from ledger {escape(report.integrity.ledger_id)} '
        f"by {escape(report.tool)}. Every value below is taken from signed, hash-chained ledger blocks.</p></header>",
        "<nav><ol>" + "".join(f'<li><a href="#{k}">{escape(t[3:])}</a></li>' for k, t in SECTIONS) + "</ol></nav>",
        _section("scope", titles["scope"], _scope(report)),
        _section("integrity", titles["integrity"], _integrity(report)),
        _section("register", titles["register"], _register(report)),
        _section("data", titles["data"], _data(report)),
        _section("config", titles["config"], _config(report)),
        _section("evaluation", titles["evaluation"], _evaluation(report, charts=charts)),
        _section("lifecycle", titles["lifecycle"], _lifecycle(report)),
        _section("retention", titles["retention"], _retention(report)),
        _section("findings", titles["findings"], _findings(report)),
        _section("signoff", titles["signoff"], _signoff(report)),
    ]
    if embed_integrity:
        data = json.dumps(integrity_json(report), ensure_ascii=False, separators=(",", ":"))
        data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        parts.append(f'<script type="application/json" id="{INTEGRITY_ID}">{data}</script>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _scope(report: Report) -> str:
    s = report.scope
    sel = s.selection
    return _kv(
        [
            ("Model(s)", _t(", ".join(s.models))),
            ("Versions", f"{s.count} version(s), {_t(s.first)} … {_t(s.last)}"),
            ("Version range asked", _t(sel.versions or "all")),
            ("Time window (UTC)", f"{_t(sel.since or 'beginning')} to {_t(sel.until or 'export time')}"),
            ("Generated (UTC)", _t(report.generated)),
            ("Ledger id", _h(report.integrity.ledger_id)),
            ("Origin", _t(report.integrity.origin)),
        ]
    )


def _audit_mode(a: AuditSummary) -> str:
    if a.incremental_from is None:
        return "full audit (every block from the genesis)"
    return f"incremental audit (blocks from {a.incremental_from} on; those below were verified by an earlier audit)"


def _integrity(report: Report) -> str:
    i = report.integrity
    a = i.audit
    verdict = (
        '<span class="badge ok">clean</span>' if a.clean else f'<span class="badge bad">{a.errors} finding(s)</span>'
    )
    rows = [
        ("Head block", f"height {i.head_height}, hash {_h(i.head_hash)}"),
        ("Checkpoint", f"tree size {i.checkpoint.size}, root {_h(i.checkpoint.root)}"),
        (
            "Audit at export time",
            f"{verdict} {escape(_audit_mode(a))}: {a.blocks_checked} blocks checked, "
            f"{a.files_checked} files ({escape(a.files_mode)} check), "
            f"{a.warnings} warning(s)" + "".join(f"<br><span class='muted'>note: {escape(n)}</span>" for n in a.notes),
        ),
        ("Signing key of this export", _h(i.signing_key_id)),
        ("Checkpoint verifier key", _h(i.checkpoint.verifier_key)),
    ]
    keys = _table(
        ("Key id", "Public key (Ed25519)", "Introduced at", "Time (UTC)", "Reason", "Previous key"),
        (
            [_h(k.key_id), _h(k.public_key), str(k.height), _t(k.timestamp), _t(k.reason), _h(k.previous_key_id)]
            for k in i.keys
        ),
    )
    return (
        _kv(rows)
        + "<h3>Signed checkpoint (C2SP signed note)</h3>"
        + f"<pre>{escape(i.checkpoint.note)}</pre>"
        + "<h3>Re-verify this report</h3>"
        + f"<pre>{escape(i.verify_command)}</pre>"
        + '<p class="muted">The command recomputes the file\'s SHA-256 and finds the export block recording it, '
        "checks the head block and every version block listed here against the ledger, recomputes the Merkle root "
        "and verifies the checkpoint signature with a key the chain introduced.</p>"
        + "<h3>Signing keys introduced by the chain</h3>"
        + keys
    )


def _register(report: Report) -> str:
    def row(v: VersionEntry) -> list[str]:
        kind = v.release + (f", stage {v.stage}" if v.stage is not None else "")
        return [
            _t(v.name),
            _t(kind),
            _t(v.question),
            str(v.height),
            _h(v.block_hash),
            _t(v.timestamp),
            _t(v.trainer),
            _h(v.sha256),
            _t(v.size),
            _h(v.adapter_root),
            _t(v.parent),
        ]

    return _table(
        (
            "Version",
            "Kind / stage",
            "Question",
            "Height",
            "Block hash",
            "Recorded (UTC)",
            "Trainer",
            "Weights SHA-256",
            "Size (bytes)",
            "Adapter root",
            "Parent",
        ),
        (row(v) for v in report.versions),
    )


def _data(report: Report) -> str:
    def how(v: VersionEntry) -> str:
        if v.data_computed:
            return f"computed by the ledger from the {escape(v.data_kind or 'data')}"
        return "declared in the metadata"

    return _table(
        ("Version", "Training data hash", "How the hash was obtained", "Base models", "Trained (metadata time)"),
        (
            [_t(v.name), _h(v.data_hash), how(v), _t(", ".join(v.base_models)), _t(v.trained_at)]
            for v in report.versions
        ),
    )


def _config(report: Report) -> str:
    flat = [(v, flatten(v.config)) for v in report.versions]
    keys = sorted({k for _, f in flat for k in f})
    table = _table(("Version", *keys), ([_t(v.name), *(_t(f.get(k)) for k in keys)] for v, f in flat))
    rows = []
    for d in report.diffs:
        if not d.changes:
            rows.append([_t(d.version), _t(d.parent), '<span class="muted">no change</span>'])
            continue
        changes = "<br>".join(
            f"<code>{escape(c.key)}</code> {escape(c.change)}: {_t(c.before)} → {_t(c.after)}" for c in d.changes
        )
        rows.append([_t(d.version), _t(d.parent), changes])
    diffs = (
        _table(("Version", "Compared with (parent)", "Changes"), rows) if rows else "<p>No version has a parent.</p>"
    )
    return "<h3>Configuration per version</h3>" + table + "<h3>Changes between consecutive versions</h3>" + diffs


def _evaluation(report: Report, *, charts: bool) -> str:
    ev = report.evaluation
    if ev.thresholds:
        lines = ", ".join(f"{escape(str(t))} <span class='muted'>({escape(t.source)})</span>" for t in ev.thresholds)
        verdict = (
            f'<span class="badge bad">{len(ev.breaches)} breach(es)</span>'
            if ev.breaches
            else '<span class="badge ok">no breach</span>'
        )
        intro = f"<p>Thresholds: {lines}. {verdict}</p>"
    else:
        intro = (
            "<p class='muted'>No thresholds configured (set them in ledger.toml under [export.thresholds], "
            "or give --threshold metric=value).</p>"
        )
    figures = []
    if charts:
        from ledger.export.charts import metric_svg

        for metric in ev.metrics:
            svg = metric_svg(metric, report.versions, ev)
            if svg is not None:
                figures.append(f'<div class="chart">{svg}</div>')

    def cell(v: VersionEntry, metric: str) -> str:
        value = v.metrics.get(metric)
        if value is not None and ev.breached(v.name, metric):
            return f'<td class="breach">{_t(value)} ✗</td>'
        return f"<td>{_t(value)}</td>"

    table = _table(("Version", *ev.metrics), ([_t(v.name), *(cell(v, m) for m in ev.metrics)] for v in report.versions))
    breaches = ""
    if ev.breaches:
        breaches = "<h3>Breaches</h3>" + _table(
            ("Version", "Metric", "Value", "Threshold"),
            ([_t(b.version), _t(b.metric), _t(b.value), _t(str(b.threshold))] for b in ev.breaches),
        )
    return intro + "".join(figures) + table + breaches


def _lifecycle(report: Report) -> str:
    if not report.events:
        return (
            "<p>No lifecycle events (promotions, rollbacks, backups, prunes, restores, key rotations, exports) "
            "in scope.</p>"
        )
    return _table(
        ("Height", "Time (UTC)", "Event", "Version / model", "What happened"),
        ([str(e.height), _t(e.timestamp), _t(e.kind), _t(e.version or e.model), _t(e.summary)] for e in report.events),
    )


def _retention(report: Report) -> str:
    r = report.retention
    out = "<h3>Local retention policy configured (what <code>ledger prune</code> applies)</h3>"
    out += _table(
        ("Model", "Keep major versions", "Keep micro versions", "Set by"),
        _rows(r.configured, "model", "keep_major", "keep_micro", "source"),
    )
    out += "<h3>Policies recorded by prune blocks</h3>"
    if r.recorded:
        out += _table(
            ("Model", "Policy", "Prunes", "First prune block", "Last prune block", "Last prune (UTC)"),
            (
                [
                    _t(p.model),
                    ", ".join(f"{escape(str(k))} = {_t(v)}" for k, v in sorted(p.policy.items())),
                    str(p.prunes),
                    str(p.first_height),
                    str(p.last_height),
                    _t(p.last_timestamp),
                ]
                for p in r.recorded
            ),
        )
    else:
        out += "<p>No prune recorded for the models in scope: no local file has been removed.</p>"
    out += "<ul>" + "".join(f"<li>{escape(s)}</li>" for s in r.statements) + "</ul>"
    out += "<h3>Where the backups are</h3>"
    if r.locations:
        out += _table(
            ("Location", "Versions", "Files", "Bytes", "Last backup block", "Last backup (UTC)", "All verified"),
            _rows(
                r.locations, "location", "versions", "files", "size", "last_height", "last_timestamp", "all_verified"
            ),
        )
        out += "<h3>Backups</h3>"
        out += _table(
            ("Version", "Location", "Block", "Time (UTC)", "Files", "Bytes", "Verified"),
            _rows(r.backups, "version", "location", "height", "timestamp", "files", "size", "verified"),
        )
    else:
        out += "<p>No backup recorded for the versions in scope.</p>"
    out += "<h3>Where each version's files are</h3>"
    out += _table(
        ("Version", "State", "Backup locations"),
        ([_t(s.version), _t(s.state), _t(", ".join(s.locations))] for s in r.states),
    )
    return out


def _findings(report: Report) -> str:
    if not report.findings:
        return '<p><span class="badge ok">none</span> The audit at export time found nothing in scope.</p>'
    return _table(
        ("Severity", "Class", "Height", "Version", "Path", "Message"),
        (
            [
                f'<span class="badge {"bad" if f.severity == "error" else "muted"}">{escape(f.severity)}</span>',
                _t(f.kind),
                _t(f.height),
                _t(f.version),
                _t(f.path),
                _t(f.message),
            ]
            for f in report.findings
        ),
    )


def _signoff(report: Report) -> str:
    labels = {"name": "Responsible person (name)", "role": "Role", "date": "Date", "signature": "Signature"}
    return (
        "<p>I have reviewed this report and confirm it reflects the model's documented state.</p>"
        + '<table class="kv signoff"><tbody>'
        + "".join(f"<tr><th>{escape(labels.get(f, f))}</th><td></td></tr>" for f in report.signoff_fields)
        + "</tbody></table>"
    )


class HtmlFormatter(Formatter):
    """Self-contained HTML5 page."""

    name = "html"
    suffix = ".html"
    media_type = "text/html"
    signed = False

    def render(self, report: Report, context: RenderContext) -> bytes:
        """The page, UTF-8."""
        return render_html(report).encode("utf-8")
