"""The export's output file: proved writable before any work, written atomically, and a failure is bad input.

Permission bits say nothing when the exporter runs as root, and a path under ``/proc`` or ``/sys`` or on a
read-only mount only shows its refusal when a file is really created there; so the check creates one.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from ledger.errors import FileInputError, StorageError
from ledger.fsutil import display_path, os_reason, write_atomic


def check_output(path: Path) -> None:
    """Refuse an output path the export could not write (FileInputError, exit 2) before the audit runs, by
    creating and removing a file in its directory, where ``write_output`` will create its temporary file."""
    shown = display_path(path)
    if path.is_dir():
        raise FileInputError(f"output {shown} is a directory; give a file name")
    try:
        mode: int | None = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # the probe below says which directory is missing
        mode = None
    except OSError as exc:
        raise FileInputError(f"output {shown}: {os_reason(exc)}") from None
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise FileInputError(f"output {shown} exists and is not a regular file")
    directory = path.parent
    probe = directory / f".{path.name}.{secrets.token_hex(8)}.probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise FileInputError(f"cannot write output {shown}: {_why(directory, exc)}") from None


def _why(directory: Path, exc: OSError) -> str:
    shown = display_path(directory)
    if not directory.exists():
        return f"directory {shown} does not exist"
    if not directory.is_dir():
        return f"{shown} is not a directory"
    return f"cannot create a file in directory {shown}: {os_reason(exc)}"


def write_output(path: Path, data: bytes) -> None:
    """Write the export atomically; a failure (disk full, file too large, directory gone) is the output path's
    fault, so it is the same bad-input error as the check (exit 2), raised before anything is recorded."""
    try:
        write_atomic(path, data, mode=0o644)
    except (FileInputError, StorageError) as exc:
        raise FileInputError(f"{exc}; the export was not recorded") from None
