"""CLI commands ``ledger export`` and ``ledger verify-export``: parse options, call the library, render the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.errors import EXIT_FINDINGS
from cli.main import app, emit, open_ledger, settings_of


@app.command()
def export(
    ctx: typer.Context,
    format: Annotated[str, typer.Option("--format", "-f", help="html, pdf, json, csv, intoto or cyclonedx.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write (replaced atomically).")],
    model: Annotated[str | None, typer.Option(help="Only this model (slug or model name).")] = None,
    since: Annotated[str | None, typer.Option(help="Versions recorded at or after this UTC time.")] = None,
    until: Annotated[str | None, typer.Option(help="Versions recorded at or before this UTC time.")] = None,
    versions: Annotated[str | None, typer.Option(help="Version range A..B, e.g. v1.0..v1.5.")] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            help="metric=value (repeatable; overrides ledger.toml [export.thresholds] for that metric); "
            "bias/loss/error are maxima, others minima; or m>=v, m<=v."
        ),
    ] = None,
    audit_files: Annotated[str, typer.Option(help="File check of the audit run first: full, quick or none.")] = "quick",
    full_audit: Annotated[
        bool, typer.Option("--full-audit", help="Re-verify every block even when a trusted checkpoint state exists.")
    ] = False,
) -> None:
    """Write a compliance report and record its SHA-256 in an export block."""
    from ledger.audit import FilesMode
    from ledger.config import FILENAME, load_config
    from ledger.errors import InputError
    from ledger.export.registry import formatter
    from ledger.export.report import RetentionSettings, Selection
    from ledger.export.service import ExportRequest, export_to, merge_thresholds
    from ledger.fsutil import display_path
    from ledger.versions import slugify

    settings = settings_of(ctx)
    formatter(format)  # an unknown format fails before anything else
    config = load_config(settings.models_dir)  # the same ledger.toml `ledger prune` reads
    toml = settings.models_dir / FILENAME
    try:
        files = FilesMode(audit_files)
    except ValueError:
        raise InputError(f"--audit-files must be full, quick or none, not {audit_files!r}") from None
    selection = Selection.make(model=slugify(model) if model else None, since=since, until=until, versions=versions)
    request = ExportRequest(
        format=format,
        selection=selection,
        thresholds=merge_thresholds(config.thresholds, threshold or [], source=display_path(toml)),
        files=files,
        file_name=out.name,
        state_dir=settings.state_dir,
        full_audit=full_audit,
        retention=RetentionSettings(config, display_path(toml) if toml.is_file() else None),
    )
    exported = export_to(open_ledger(settings, signing=True), request, out)
    produced, block = exported.produced, exported.block
    report = produced.report
    emit(
        settings,
        {
            "file": str(out),
            "format": produced.format,
            "sha256": produced.sha256,
            "size": len(produced.data),
            "versions": report.scope.count,
            "head": {"height": report.integrity.head_height, "hash": report.integrity.head_hash},
            "audit_clean": report.integrity.audit.clean,
            "breaches": len(report.evaluation.breaches),
            "export_block": block.to_json(),
        },
        f"wrote {out} ({produced.format}, {len(produced.data)} bytes, {report.scope.count} versions, "
        f"sha256 {produced.sha256})\nrecorded as export block {block.height} {block.block_hash}",
    )


@app.command("verify-export")
def verify_export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="An exported report, BOM or attestation bundle.")],
) -> None:
    """Check an export against the ledger: its export block, signatures and integrity section; exit 1 if not."""
    from ledger.errors import FileInputError
    from ledger.export.verify import verify_export as verify
    from ledger.fsutil import display_path, os_reason

    settings = settings_of(ctx)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise FileInputError(f"cannot read {display_path(file)}: {os_reason(exc)}") from None
    result = verify(open_ledger(settings), data)
    lines = [f"{file}: {result.format}, {result.size} bytes, sha256 {result.sha256}"]
    lines.extend(f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in result.checks)
    lines.append("export verified" if result.ok else "export does NOT verify")
    emit(settings, result.to_json(), "\n".join(lines))
    if not result.ok:
        raise typer.Exit(EXIT_FINDINGS)
