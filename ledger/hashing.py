"""Streaming SHA-256 + BLAKE3 digests of files and of bytes as they are written, at hardware speed."""

from __future__ import annotations

import bisect
import errno
import hashlib
import io
import math
import mmap
import os
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeAlias

import blake3

from ledger.errors import FileInputError
from ledger.fsutil import display_path, os_reason

StrPath: TypeAlias = str | os.PathLike[str]
"""A file to hash, as a string or a path object (directory walks pass strings: cheaper by the thousand)."""

CHUNK_SIZE = 8 * 1024 * 1024
"""Bytes per read and per hand-off to the hashers; both hashers release the GIL on buffers this large."""

_SMALL_READ = 64 * 1024
"""Smallest read buffer for files that fit in one chunk."""

_BUFFERS = 4
"""Buffers in flight per file: one being read while the hashers work on the others."""


@dataclass(frozen=True, slots=True)
class FileDigest:
    """Size and lowercase hex digests of one file's bytes."""

    size: int
    sha256: str
    blake3: str


@dataclass(frozen=True, slots=True)
class FileEnds:
    """The first and last bytes of a file, kept from the read that hashed it.

    Enough for readers that look only at a file's ends (a zip archive's directory and first entry, a
    safetensors header) to describe the file without reading it a second time.
    """

    size: int
    head: bytes
    tail: bytes


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of a small in-memory value (canonical JSON, record bodies)."""
    return hashlib.sha256(data).hexdigest()


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a FIFO, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    return "is not a regular file"


def _read_error(path: StrPath, exc: OSError, *, follow_symlinks: bool) -> FileInputError:
    if exc.errno == errno.ELOOP and not follow_symlinks:
        reason = "is a symbolic link"
    elif exc.errno == errno.ENOENT:
        reason = "no such file"
    else:
        reason = os_reason(exc)
    return FileInputError(f"cannot read {display_path(path)}: {reason}")


def _open_regular(path: StrPath, *, follow_symlinks: bool) -> tuple[int, os.stat_result]:
    """Open a regular file for reading without ever blocking on a FIFO; refuse anything else."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: opening a FIFO must not hang
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _read_error(path, exc, follow_symlinks=follow_symlinks) from None
    except ValueError:  # embedded NUL character
        raise FileInputError(f"cannot read {display_path(path)}: invalid file name") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileInputError(f"cannot read {display_path(path)}: {_kind(info.st_mode)}")
    except OSError as exc:
        os.close(fd)
        raise _read_error(path, exc, follow_symlinks=follow_symlinks) from None
    except FileInputError:
        os.close(fd)
        raise
    return fd, info


def hash_file(
    path: StrPath,
    *,
    progress: Callable[[int], None] | None = None,
    follow_symlinks: bool = True,
) -> FileDigest:
    """Read a file once and compute its SHA-256 and BLAKE3 together, as fast as the disk and SHA-256 allow.

    Files larger than one chunk are read into a ring of preallocated buffers while one thread per hasher
    digests earlier buffers, so reading, SHA-256 and BLAKE3 overlap. ``progress(n)`` is called on the
    calling thread after each chunk of ``n`` bytes is read. ``follow_symlinks=False`` refuses a symbolic
    link as the last component (directory manifests use it).
    """
    return _hash(path, progress=progress, follow_symlinks=follow_symlinks, keep=0)[0]


def hash_file_ends(
    path: Path, *, keep: int = CHUNK_SIZE, progress: Callable[[int], None] | None = None
) -> tuple[FileDigest, FileEnds]:
    """``hash_file``, also keeping the first and last ``keep`` bytes (at most one chunk) of the same read."""
    digest, ends = _hash(path, progress=progress, follow_symlinks=True, keep=min(keep, CHUNK_SIZE))
    assert ends is not None
    return digest, ends


def _hash(
    path: StrPath, *, progress: Callable[[int], None] | None, follow_symlinks: bool, keep: int
) -> tuple[FileDigest, FileEnds | None]:
    fd, info = _open_regular(path, follow_symlinks=follow_symlinks)
    with open(fd, "rb", buffering=0, closefd=True) as stream:
        try:
            if info.st_size <= CHUNK_SIZE:
                return _hash_serial(stream, progress, info.st_size, keep)
            return _hash_parallel(stream, progress, keep)
        except OSError as exc:
            raise _read_error(path, exc, follow_symlinks=follow_symlinks) from None


def _hash_serial(
    stream: io.FileIO, progress: Callable[[int], None] | None, expected: int, keep: int
) -> tuple[FileDigest, FileEnds | None]:
    sha = hashlib.sha256()
    b3 = blake3.blake3()
    # Sized to the file: a zeroed 8 MiB buffer per small file cost more than hashing it (adapter directories
    # hold thousands). A file that grows while being read is still read to its end, in buffer-sized steps.
    buffer = bytearray(min(CHUNK_SIZE, max(expected, _SMALL_READ)))
    view = memoryview(buffer)
    size = 0
    head = tail = b""
    while n := stream.readinto(view):
        sha.update(view[:n])
        b3.update(view[:n])
        if keep:
            if size < keep:
                head += view[: min(n, keep - size)]
            tail = (tail + view[:n])[-keep:]
        size += n
        if progress is not None:
            progress(n)
    digest = FileDigest(size, sha.hexdigest(), b3.hexdigest())
    return digest, FileEnds(size, head, tail) if keep else None


def _hash_parallel(
    stream: io.FileIO, progress: Callable[[int], None] | None, keep: int
) -> tuple[FileDigest, FileEnds | None]:
    sha = hashlib.sha256()
    b3 = blake3.blake3()
    buffers = [bytearray(CHUNK_SIZE) for _ in range(_BUFFERS)]
    pending: list[tuple[Future[object], Future[object]] | None] = [None] * _BUFFERS
    size = 0
    head = b""
    last: list[memoryview] = []  # the last two chunks: their ring slots are not refilled before the loop ends
    with (
        ThreadPoolExecutor(1, thread_name_prefix="ledger-sha256") as sha_worker,
        ThreadPoolExecutor(1, thread_name_prefix="ledger-blake3") as b3_worker,
    ):
        slot = 0
        while True:
            busy = pending[slot]
            if busy is not None:  # the hashers must be done with this buffer before it is refilled
                busy[0].result()
                busy[1].result()
                pending[slot] = None
            view = memoryview(buffers[slot])
            n = stream.readinto(view)
            if not n:
                break
            chunk = view[:n]
            pending[slot] = (sha_worker.submit(sha.update, chunk), b3_worker.submit(b3.update, chunk))
            if keep:
                if size < keep:
                    head += chunk[: keep - size]
                last = [*last[-1:], chunk]
            size += n
            if progress is not None:
                progress(n)
            slot = (slot + 1) % _BUFFERS
        for busy in pending:
            if busy is not None:
                busy[0].result()
                busy[1].result()
    digest = FileDigest(size, sha.hexdigest(), b3.hexdigest())
    return digest, FileEnds(size, head, b"".join(bytes(c) for c in last)[-keep:]) if keep else None


_MAPPED_STEP = 256 << 20
"""Bytes of a memory-mapped file hashed per call (all threads), between progress reports."""


def blake3_file(
    path: StrPath, *, follow_symlinks: bool = True, progress: Callable[[int], None] | None = None
) -> tuple[int, str]:
    """Size and BLAKE3 of a file by the fastest path, for audits: one plain read for a small file, a memory
    map hashed on all cores for a large one.

    The size reported is the size of the bytes hashed (from the same open file), so a file replaced
    between the size check and the hashing cannot produce a mismatched pair. ``progress(n)`` is called
    after each step of ``n`` bytes.
    """
    fd, info = _open_regular(path, follow_symlinks=follow_symlinks)
    try:
        if info.st_size <= CHUNK_SIZE:  # a map and a thread pool cost more than reading a small file
            with open(fd, "rb", buffering=0, closefd=False) as stream:
                try:
                    digest = _blake3_serial(stream, info.st_size)
                except OSError as exc:
                    raise _read_error(path, exc, follow_symlinks=follow_symlinks) from None
            if progress is not None:
                progress(digest[0])
            return digest
        try:
            mapped = mmap.mmap(fd, info.st_size, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise _read_error(path, exc, follow_symlinks=follow_symlinks) from None
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        with mapped, memoryview(mapped) as view:  # every view released before the map closes
            for start in range(0, info.st_size, _MAPPED_STEP):
                with view[start : start + _MAPPED_STEP] as step:
                    hasher.update(step)
                    if progress is not None:
                        progress(len(step))
        return info.st_size, hasher.hexdigest()
    finally:
        os.close(fd)


def _blake3_serial(stream: io.FileIO, expected: int) -> tuple[int, str]:
    hasher = blake3.blake3()
    view = memoryview(bytearray(max(expected, _SMALL_READ)))
    size = 0
    while n := stream.readinto(view):
        hasher.update(view[:n])
        size += n
    return size, hasher.hexdigest()


_IN_PLACE = 1 << 20
"""Writes at least this large are hashed in place, in the hashing threads; smaller ones are gathered first."""


class HashingWriter:
    """Binary write-only file object that writes through to ``raw`` and digests the bytes on the way.

    Lets ``torch.save(obj, HashingWriter(f))`` produce the file and its SHA-256/BLAKE3 in one pass. Large writes
    go to one thread per hasher (each in submission order) while this thread writes them to ``raw``. Normally
    ``write`` returns only when the hashers are done with the caller's buffer, which the caller may then reuse.
    Memory named in ``stable`` (``(address, length)`` ranges the caller guarantees stay allocated and unchanged
    until ``finish``, such as the storages of the tensors ``torch.save`` is writing) is different: a write from
    inside it returns as soon as the bytes are in ``raw``, and the hashers read it on their own time, so
    torch's serialisation of the next record (which releases the GIL) runs alongside the hashing of this one
    instead of waiting for it. Nothing is copied either way. Small writes are gathered and hashed when they
    fill ``_IN_PLACE`` bytes. Bytes are written to ``raw`` synchronously, so write errors surface at the
    ``write`` call. The digest covers exactly the bytes written through this object. Call ``finish()`` once at
    the end; ``close()`` (or leaving a ``with`` block) stops the threads without closing ``raw``.
    """

    def __init__(self, raw: IO[bytes], *, stable: Sequence[tuple[int, int]] = ()) -> None:
        self._raw = raw
        self._sha = hashlib.sha256()
        self._b3 = blake3.blake3()
        self._sha_worker = ThreadPoolExecutor(1, thread_name_prefix="ledger-sha256")
        self._b3_worker = ThreadPoolExecutor(1, thread_name_prefix="ledger-blake3")
        self._stable = sorted(stable)
        self._pending: list[Future[object]] = []  # hashing submitted and not yet waited for
        self._gathered = bytearray()  # small writes not hashed yet
        self._size = 0
        self._closed = False

    # -- file-object protocol ------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write all of ``data`` to the wrapped file and hash it; returns its length."""
        self._check_open()
        view = memoryview(data).cast("B")
        total = len(view)
        if total >= _IN_PLACE:
            self._hash_gathered()  # keep the hashing order: the gathered bytes came first
            self._hash(view)
            if self._is_stable(view):
                self._write_all(view)
            else:
                try:
                    self._write_all(view)
                finally:  # the caller's buffer may be reused once we return: the hashers must be done with it
                    self._wait()
        elif total:
            self._write_all(view)
            self._gathered += view
            if len(self._gathered) >= _IN_PLACE:
                self._hash_gathered()
        self._size += total
        return total

    def flush(self) -> None:
        """Flush the wrapped file (pending bytes for the hashers need no flushing)."""
        self._check_open()
        self._raw.flush()

    def tell(self) -> int:
        """Bytes written so far through this writer."""
        return self._size

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Support only the seeks a sequential writer can honour: to the current position, or forward.

        A forward relative seek (torch uses ``seek(n, 1)`` to skip data) writes ``n`` zero bytes, which is
        what a reader would see in the gap, so the digest stays the digest of the file.
        """
        self._check_open()
        target = {os.SEEK_SET: offset, os.SEEK_CUR: self._size + offset}.get(whence)
        if target is None or target < self._size:
            raise OSError(errno.ESPIPE, "HashingWriter can only seek forward")
        gap = target - self._size
        zeros = bytes(min(gap, CHUNK_SIZE))
        while gap:
            step = min(gap, len(zeros))
            self.write(zeros if step == len(zeros) else zeros[:step])
            gap -= step
        return self._size

    def writable(self) -> bool:
        """A HashingWriter only writes."""
        return True

    def readable(self) -> bool:
        """A HashingWriter never reads."""
        return False

    def seekable(self) -> bool:
        """Only forward seeks work, so report not seekable to libraries that would seek back."""
        return False

    @property
    def closed(self) -> bool:
        """True once ``finish`` or ``close`` was called."""
        return self._closed

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- digests ------------------------------------------------------------------------------------

    def finish(self) -> FileDigest:
        """Hash the last bytes, flush the wrapped file and return the digest of everything written."""
        self._check_open()
        try:
            self._hash_gathered()
            self._wait()
            self._raw.flush()
            return FileDigest(self._size, self._sha.hexdigest(), self._b3.hexdigest())
        finally:
            self.close()

    def close(self) -> None:
        """Stop the hashing threads (idempotent); the wrapped file stays open and belongs to the caller."""
        if self._closed:
            return
        self._closed = True
        self._sha_worker.shutdown(wait=True, cancel_futures=True)
        self._b3_worker.shutdown(wait=True, cancel_futures=True)
        self._gathered = bytearray()

    # -- internals ----------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "HashingWriter is already finished")

    def _write_all(self, view: memoryview) -> None:
        while view:
            written = self._raw.write(view)
            if written is None:  # non-blocking raw stream with nothing written: not supported
                raise BlockingIOError(errno.EAGAIN, "wrapped stream would block")
            view = view[written:]

    def _hash(self, data: memoryview | bytearray) -> None:
        """Queue ``data`` for both hashers; each hasher's single thread keeps the order of the writes."""
        self._pending.append(self._sha_worker.submit(self._sha.update, data))
        self._pending.append(self._b3_worker.submit(self._b3.update, data))

    def _wait(self) -> None:
        """Wait until the hashers have read everything queued; raise what they met."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def _hash_gathered(self) -> None:
        if self._gathered:
            self._hash(self._gathered)
            self._gathered = bytearray()  # a new buffer: the queued one is the hashers' until they are done

    def _is_stable(self, view: memoryview) -> bool:
        """Whether all of ``view`` lies inside one of the ``stable`` ranges."""
        if not self._stable:
            return False
        import numpy  # the address of a read-only buffer; imported only by writers given stable memory

        start = int(numpy.frombuffer(view, dtype=numpy.uint8).ctypes.data)
        index = bisect.bisect_right(self._stable, (start, math.inf)) - 1
        if index < 0:
            return False
        base, length = self._stable[index]
        return start + len(view) <= base + length
