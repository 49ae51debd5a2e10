"""Commands about model versions: ``ledger versions`` (the inventory) and ``ledger inspect`` (a weight file)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.main import app, emit, open_ledger, settings_of

if TYPE_CHECKING:
    from ledger.inventory import VersionRow
    from ledger.tensors import TensorSummary


@app.command()
def versions(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="Only this model (name or slug).")] = None,
) -> None:
    """List recorded versions: kind, stage, height, digest, size, seed metrics and state on disk (quick check)."""
    from ledger.inventory import list_versions

    settings = settings_of(ctx)
    rows = list_versions(open_ledger(settings), model=model)
    emit(settings, [row.to_json() for row in rows], versions_text(rows))


@app.command()
def inspect(
    ctx: typer.Context,
    weights: Annotated[Path, typer.Argument(help="Weight file (.pth or .safetensors).")],
) -> None:
    """Describe a weight file (tensors, parameters, dtypes, bytes) without running any code it contains."""
    from ledger.tensors import inspect_with_torch, summarise

    settings = settings_of(ctx)
    # The restricted reader first: it refuses a pickle that would import anything and says what; then torch
    # itself (weights_only=True, mmap=True) gives the reference figures.
    summarise(weights)
    summary = inspect_with_torch(weights)
    emit(settings, {"path": str(weights), **summary.to_json()}, inspect_text(weights, summary))


# --- rendering --------------------------------------------------------------------------------


def human_size(size: int | None) -> str:
    """Bytes in binary units for people (``1.5 GiB``)."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def versions_text(rows: Sequence[VersionRow]) -> str:
    """The inventory as an aligned table, then one line per version whose files are not as recorded."""
    if not rows:
        return "no versions recorded"
    header = ("VERSION", "KIND", "STAGE/QUESTION", "HEIGHT", "SHA256", "SIZE", "ACC", "FAIR", "BIAS", "STATE")
    table: list[tuple[str, ...]] = [header]
    for row in rows:
        stage = f"{row.stage}/{row.question}" if row.stage is not None else "-"
        table.append(
            (
                row.name,
                row.release,
                stage,
                str(row.height),
                row.sha256[:12] if row.sha256 else "-",
                human_size(row.size),
                *(_metric(value) for value in row.metrics.values()),
                row.state,
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in table]
    lines.extend(f"{row.name}: {problem}" for row in rows for problem in row.problems)
    return "\n".join(lines)


def inspect_text(path: Path, summary: TensorSummary) -> str:
    """A weight file's figures for people."""
    dtypes = ", ".join(f"{dtype} {count}" for dtype, count in summary.dtypes.items()) or "-"
    lines: list[Any] = [
        f"file        {path}",
        f"tensors     {summary.tensors}",
        f"parameters  {summary.parameters}",
        f"bytes       {summary.bytes} ({human_size(summary.bytes)})",
        f"dtypes      {dtypes} (parameters per dtype)",
    ]
    return "\n".join(lines)
