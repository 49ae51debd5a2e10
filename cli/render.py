"""Rendering for people (text, tables, progress) and machines (JSON). Only formatting lives here."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger.audit import AuditReport
    from ledger.block import Block
    from ledger.settings import Settings

PROGRESS_THRESHOLD = 64 << 20


def to_json(data: Any) -> str:
    """Stable, indented JSON for stdout."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


def block_line(block: Block) -> str:
    """One line naming a block."""
    label = _label(block)
    return f"block {block.height} {block.kind}{label} {block.block_hash}"


def resumed_line(block: Block) -> str:
    """What a re-run append that only finished an interrupted metadata write-back says."""
    return f"{block.data().get('name')} already recorded at block {block.height}; metadata reference written"


def _label(block: Block) -> str:
    from ledger.errors import DamagedBlockError

    if block.kind != "version":
        return ""
    try:
        data = block.data()
    except DamagedBlockError:
        return " (damaged payload: run `ledger audit`)"
    stage = f" stage {data.get('stage')} q={data.get('question')}" if data.get("stage") else ""
    return f" {data.get('name')}{stage}"


def log_text(blocks: Sequence[Block]) -> str:
    """The log as aligned lines, newest first."""
    return "\n".join(f"{b.height:>7}  {b.timestamp}  {b.kind:<10} {b.block_hash[:16]}{_label(b)}" for b in blocks)


def block_text(block: Block) -> str:
    """A block's fields and decoded payload."""
    lines = [
        f"height       {block.height}",
        f"kind         {block.kind}",
        f"timestamp    {block.timestamp}",
        f"prev_hash    {block.prev_hash}",
        f"block_hash   {block.block_hash}",
        f"payload_hash {block.payload_hash}",
        f"key_id       {block.key_id}",
        f"signature    {block.signature.hex()}",
        "payload:",
        json.dumps(block.data(), indent=2, sort_keys=True, ensure_ascii=False),
    ]
    return "\n".join(lines)


def audit_text(report: AuditReport) -> str:
    """The audit result for a person."""
    lines = [
        f"checked {report.blocks_checked} blocks (head {report.head_height} {report.head_hash[:16]}), "
        f"{report.files_checked} files ({report.files_mode})"
    ]
    lines.extend(f"note: {note}" for note in report.notes)
    lines.extend(f"pruned {version} (backup at {location})" for version, location in report.pruned)
    for f in report.findings:
        where = f"height {f.height}" if f.height is not None else "-"
        severity = "warning" if f.is_warning else "FINDING"
        lines.append(f"{severity} [{f.kind}] {where} {f.version or ''} {f.message}".replace("  ", " "))
    lines.append(
        "audit clean" if report.clean else f"audit found {sum(not f.is_warning for f in report.findings)} problem(s)"
    )
    return "\n".join(lines)


ProgressStart = Callable[[int], Callable[[int], None] | None]


def shows_progress(settings: Settings) -> bool:
    """Progress is drawn only for a person: never with --json or when stderr is not a terminal."""
    return not settings.json and sys.stderr.isatty()


@contextmanager
def rich_bar() -> Iterator[Any]:
    """A transient Rich progress display on stderr: each task's label, a bar, bytes done and speed."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield progress


@contextmanager
def progress_bar(settings: Settings) -> Iterator[ProgressStart]:
    """Yields ``start(total)``, which draws a progress bar for hashing ``total`` bytes and returns its callback;
    it returns None (no bar) below 64 MiB or when ``shows_progress`` says no."""
    with ExitStack() as stack:

        def start(total: int) -> Callable[[int], None] | None:
            if not shows_progress(settings) or total < PROGRESS_THRESHOLD:
                return None
            bar = stack.enter_context(rich_bar())
            task = bar.add_task("hashing", total=total)
            return lambda n: bar.advance(task, n)

        yield start


def size_of(*paths: Path | None) -> int:
    """Bytes in these files and directories (missing ones count 0): what hashing them reads."""
    total = 0
    for path in paths:
        if path is None:
            continue
        if path.is_dir():
            total += sum(_size(Path(folder) / name) for folder, _dirs, files in os.walk(path) for name in files)
        else:
            total += _size(path)
    return total


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0
