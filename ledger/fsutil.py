"""Safe file-system paths inside a root and crash-safe atomic writes."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path, PurePosixPath

from ledger.errors import FileInputError, StorageError, UnsafePathError
from ledger.faults import crash_point

_STORAGE_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
_INPUT_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP})


def display_path(path: str | os.PathLike[str]) -> str:
    """Render a path for a one-line message: as is when printable, else as a Python repr (never raises)."""
    text = os.fspath(path)
    return text if text.isprintable() else repr(text)


def os_reason(exc: OSError) -> str:
    """One-line lower-case reason for an OSError, without the path (the caller names the path)."""
    if exc.errno in _STORAGE_REASONS:
        return _STORAGE_REASONS[exc.errno]
    reason = exc.strerror or type(exc).__name__
    return reason[:1].lower() + reason[1:]


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise UnsafePathError(f"path {display_path(text)} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePathError(f"path {display_path(text)} is not valid UTF-8") from None


def relative_inside(root: Path, path: Path) -> str:
    """Turn a user-given path into the POSIX path relative to ``root`` that the ledger records.

    ``path`` may be absolute or relative to the current directory. It is refused when it has a ``..``
    component, is not valid UTF-8, lies outside ``root`` once resolved, is ``root`` itself, or passes
    through a symbolic link at any component below ``root`` (including the last one).
    """
    shown = display_path(path)
    _check_text(os.fspath(path))
    _check_text(os.fspath(root))
    if ".." in path.parts:
        raise UnsafePathError(f"path {shown} contains a '..' component")
    try:
        real_root = root.resolve(strict=True)
    except OSError as exc:
        raise FileInputError(f"root directory {display_path(root)}: {os_reason(exc)}") from None
    absolute = path if path.is_absolute() else Path.cwd() / path
    parts = absolute.parts
    # Find the shortest prefix that resolves to the root: everything above may be a symlink (the user's
    # way of reaching the root), nothing below may be.
    start: int | None = None
    for index in range(1, len(parts) + 1):
        prefix = Path(*parts[:index])
        if os.path.realpath(prefix) == os.fspath(real_root):
            start = index
            break
    if start is None:
        raise UnsafePathError(f"path {shown} is outside {display_path(root)}")
    below = parts[start:]
    if not below:
        raise UnsafePathError(f"path {shown} is the root directory itself, not a file inside it")
    current = real_root
    for name in below:
        current = current / name
        try:
            mode = current.lstat().st_mode
        except FileNotFoundError:
            break  # nothing further down can be a symlink
        except OSError as exc:
            raise FileInputError(f"path {shown}: {os_reason(exc)}") from None
        if stat.S_ISLNK(mode):
            raise UnsafePathError(f"path {shown} passes through the symbolic link {display_path(current)}")
    return PurePosixPath(*below).as_posix()


def check_recorded(relative: str) -> None:
    """Refuse a recorded relative path that is not in the canonical form ``relative_inside`` produces."""
    if not relative:
        raise UnsafePathError("recorded path is empty")
    _check_text(relative)
    if relative.startswith("/"):
        raise UnsafePathError(f"recorded path {display_path(relative)} is absolute")
    for part in relative.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(f"recorded path {display_path(relative)} has an empty, '.' or '..' component")


def resolve_recorded(root: Path, relative: str) -> Path:
    """Map a relative path read from the ledger back under ``root``, refusing anything that could escape.

    Besides the lexical checks, no existing component below ``root`` may be a symbolic link, so a link
    planted in the tree cannot redirect an audit to a file outside it.
    """
    locate_recorded(os.fspath(root), relative)
    return root / relative


def locate_recorded(root: str, relative: str) -> tuple[str, os.stat_result | None]:
    """``resolve_recorded`` as plain strings, with the ``lstat`` of the file itself (None when a component is
    missing), which is its ``stat`` too since it is no link: an audit locates every recorded file, and pathlib
    objects and a second stat per file cost more than the system calls."""
    check_recorded(relative)
    current = root
    info: os.stat_result | None = None
    for part in relative.split("/"):
        current = f"{current}/{part}"
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            return f"{root}/{relative}", None
        except OSError as exc:
            raise FileInputError(f"path {display_path(current)}: {os_reason(exc)}") from None
        if stat.S_ISLNK(info.st_mode):
            raise UnsafePathError(
                f"recorded path {display_path(relative)} passes through the symbolic link {display_path(current)}"
            )
    return current, info


def _storage_error(action: str, path: Path, exc: OSError) -> FileInputError | StorageError:
    message = f"cannot {action} {display_path(path)}: {os_reason(exc)}"
    if exc.errno in _INPUT_ERRNOS:
        return FileInputError(message)
    return StorageError(message)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry to disk so a rename or create inside it survives a crash."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _storage_error("open directory", path, exc) from None
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # some file systems cannot fsync a directory; nothing more to do
            raise _storage_error("sync directory", path, exc) from None
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o666) -> None:
    """Replace ``path`` with ``data`` so that readers and crashes see either the old or the new content.

    Writes a hidden temporary file in the same directory, fsyncs it, renames it over the target and fsyncs
    the directory. On failure before the rename the temporary file is removed and the target untouched.
    ``mode`` is the permission of a new file before the umask (use 0o600 for secrets).
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = -1
    created = replaced = False
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            created = True
        except OSError as exc:
            raise _storage_error("write", path, exc) from None
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            closing, fd = fd, -1
            os.close(closing)
            crash_point("atomic:written")
            os.replace(tmp, path)
            crash_point("atomic:renamed")
        except OSError as exc:
            raise _storage_error("write", path, exc) from None
        replaced = True
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        if created and not replaced:
            with contextlib.suppress(OSError):  # best effort: the original error is the one to report
                os.unlink(tmp)
    fsync_dir(directory)


class BackgroundFlush:
    """Push a file's dirty pages to disk in a background thread while it is being written.

    A durable write ends with an fsync; for a multi-GiB file written at memory speed that fsync alone can cost
    a third of the write. Flushing every ``step`` bytes as they arrive overlaps the write-back with the writing,
    so the final fsync finds little left to do. An error the background flush meets is raised by ``finish``
    (on Linux an fsync error is reported once per open file, so it must not be lost in the thread).
    """

    def __init__(self, fd: int, *, step: int = 128 << 20, poll: float = 0.02) -> None:
        import threading

        self._fd = fd
        self._step = step
        self._poll = poll
        self._stop = threading.Event()
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="ledger-flush", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        flushed = 0
        while not self._stop.wait(self._poll):
            try:
                size = os.fstat(self._fd).st_size
                if size - flushed >= self._step:
                    os.fdatasync(self._fd)
                    flushed = size
            except OSError as exc:
                self._error = exc
                return

    def stop(self) -> None:
        """Stop the thread (idempotent); the file stays open."""
        self._stop.set()
        self._thread.join()

    def finish(self) -> None:
        """Stop flushing and make the whole file durable; raises what the background flush or fsync met."""
        self.stop()
        if self._error is not None:
            raise self._error
        os.fsync(self._fd)
