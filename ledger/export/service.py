"""Exporting from a ledger: audit, checkpoint, build the report once, render it, then record the export block.

The caller (the CLI) writes the bytes between ``produce`` and ``record``: the ``export`` block holds the
SHA-256 of the final file, which is why a file never contains its own hash and the block comes last.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import hashlib
import shlex
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger import background
from ledger.audit import AuditReport, FilesMode
from ledger.block import Block
from ledger.errors import InputError, LedgerError
from ledger.export.interface import Formatter, RenderContext
from ledger.export.registry import formatter
from ledger.export.report import (
    Context,
    Draft,
    Report,
    RetentionSettings,
    Selection,
    Threshold,
    draft_report,
    finish_report,
)
from ledger.timeutil import now

if TYPE_CHECKING:
    from ledger.api import Ledger

EXPORT = "export"
TOOL = "ledger 0.1.0"


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """What to export: the format, which versions, the thresholds and how deeply to audit files first."""

    format: str
    selection: Selection
    thresholds: tuple[Threshold, ...] = ()
    files: FilesMode = FilesMode.QUICK
    file_name: str = "report"
    state_dir: Path | None = None
    """Trusted checkpoint state: when it holds a state for this ledger, the chain audit resumes from it."""
    full_audit: bool = False
    """Re-verify every block from the genesis even when a trusted state exists."""
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    """The retention configuration (``ledger.toml``) the report states per model."""


@dataclass(frozen=True, slots=True)
class Produced:
    """A rendered export, not yet written or recorded."""

    format: str
    data: bytes
    sha256: str
    report: Report
    selection: dict[str, Any]


def verify_command(db_url: str, file_name: str) -> str:
    """The exact command that re-verifies an export (database password hidden)."""
    from sqlalchemy.engine import make_url

    safe = make_url(db_url).render_as_string(hide_password=True)
    return f"ledger --db {shlex.quote(safe)} verify-export {shlex.quote(file_name)}"


def build(ledger: Ledger, request: ExportRequest, chosen: Formatter) -> tuple[Report, object]:
    """Audit the ledger, sign a checkpoint at its head and build the report for ``request``, with what
    ``chosen.prepare`` made of its sections.

    The audit runs in a forked process (``ledger.background``) while this one builds the report's sections
    from the same blocks and prepares their rendering; should a block be appended in between, both are done
    again up to the head the audit saw, so the report covers exactly the audited chain.
    """
    from ledger.api import NodesOf
    from ledger.export.attest import sign_checkpoint

    key = ledger.key  # exporting signs a checkpoint and appends a block: fail early without a key
    with background.forked(functools.partial(_audit, ledger, request)) as pending:
        draft = _draft(ledger, request, ledger.head().height)
        prepared = chosen.prepare(draft)
        audit = pending.result()
    if draft.head_height != audit.head_height:
        draft = _draft(ledger, request, audit.head_height)
        prepared = chosen.prepare(draft)
    with ledger.store.reading() as connection:
        checkpoint = sign_checkpoint(
            NodesOf(connection),
            size=audit.head_height + 1,
            origin=ledger.origin,
            ledger_id=ledger.ledger_id,
            key=key,
        )
    context = Context(
        ledger_id=ledger.ledger_id,
        origin=ledger.origin,
        generated=now(),
        tool=TOOL,
        verify_command=verify_command(ledger.store.engine.url.render_as_string(hide_password=False), request.file_name),
        signing_key_id=key.key_id,
        checkpoint=checkpoint,
    )
    return finish_report(draft, audit, context), prepared


def _audit(ledger: Ledger, request: ExportRequest) -> AuditReport:
    """The export-time audit, through connections of its own; without the decoded payloads (the report decodes
    its own, and sending them back would cost more than that)."""
    audit = ledger.reopened().audit(
        files=request.files,
        state_dir=request.state_dir,
        incremental=not request.full_audit and _has_trusted_state(ledger, request.state_dir),
        update_state=False,  # exporting reads the trusted state; only `ledger audit`/`checkpoint` advance it
    )
    return dataclasses.replace(audit, payloads={})


def _draft(ledger: Ledger, request: ExportRequest, head_height: int) -> Draft:
    return draft_report(
        ledger.blocks(0, head_height + 1),
        selection=request.selection,
        thresholds=request.thresholds,
        retention=request.retention,
    )


def _has_trusted_state(ledger: Ledger, state_dir: Path | None) -> bool:
    """Whether an incremental audit can resume from a trusted state (an unusable file means a full audit,
    which reports it)."""
    if state_dir is None:
        return False
    from ledger import trust
    from ledger.errors import CheckpointError, StorageError

    try:
        return trust.load(state_dir, ledger.ledger_id) is not None
    except (CheckpointError, InputError, StorageError):
        return False


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: building a report creates about a million small objects that all
    stay alive until it is rendered, and each automatic collection would re-scan them (~12% of an export's
    time at 10,000 versions) to free nothing. Reference counting still frees everything as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def produce(ledger: Ledger, request: ExportRequest) -> Produced:
    """Build and render an export (nothing is written or appended yet)."""
    chosen = formatter(request.format)
    with _collector_paused():
        report, prepared = build(ledger, request, chosen)
        data = chosen.render(report, RenderContext(key=ledger.key, prepared=prepared))
    selection = {
        **request.selection.to_json(),
        "thresholds": [str(t) for t in request.thresholds],
        "versions_count": report.scope.count,
        "head": {"height": report.integrity.head_height, "hash": report.integrity.head_hash},
    }
    return Produced(chosen.name, data, hashlib.sha256(data).hexdigest(), report, selection)


def record(ledger: Ledger, produced: Produced, file_name: str) -> Block:
    """Append the ``export`` block proving which bytes were handed out, and when."""
    return ledger.append_event(
        EXPORT,
        {
            "format": produced.format,
            "file": file_name,
            "sha256": produced.sha256,
            "size": len(produced.data),
            "selection": produced.selection,
        },
    )


@dataclass(frozen=True, slots=True)
class Exported:
    """An export written to its file and recorded in its ``export`` block."""

    produced: Produced
    block: Block


def export_to(ledger: Ledger, request: ExportRequest, out: Path) -> Exported:
    """Export to the file ``out``: refuse an unwritable path before any work, then produce, write and record;
    the file is removed again when the block cannot be appended (the ledger must vouch for every file)."""
    from ledger.export.output import check_output, write_output

    check_output(out)
    produced = produce(ledger, request)
    write_output(out, produced.data)
    try:
        block = record(ledger, produced, out.name)
    except LedgerError:
        out.unlink(missing_ok=True)
        raise
    return Exported(produced, block)


def parse_thresholds(texts: Sequence[str]) -> tuple[Threshold, ...]:
    """Parse ``--threshold`` options; a metric given twice is refused."""
    out = tuple(Threshold.parse(t) for t in texts)
    seen: set[str] = set()
    for t in out:
        if t.metric in seen:
            raise InputError(f"threshold for {t.metric} given twice")
        seen.add(t.metric)
    return out


def merge_thresholds(configured: Mapping[str, str], flags: Sequence[str], *, source: str) -> tuple[Threshold, ...]:
    """The export's thresholds: ``[export.thresholds]`` from ``source`` (a ledger.toml), each metric replaced by
    a ``--threshold`` flag for it; the configured ones come first, in the file's order."""
    given = parse_thresholds(flags)
    overridden = {t.metric for t in given}
    from_file = []
    for text in configured.values():
        try:
            threshold = Threshold.parse(text, source=source)
        except InputError as exc:
            raise InputError(f"{source} [export.thresholds]: {exc}") from None
        if threshold.metric not in overridden:
            from_file.append(threshold)
    return (*from_file, *given)
