"""One function run in a forked child process while the caller goes on, its result handed back pickled.

An export audits the ledger and builds its report from the same blocks, about the same work each at 10,000
versions; on a machine with two cores the audit runs on the second. Only where ``os.fork`` exists, more
than one core is usable and the process runs a single thread (a child forked from a threaded process can
inherit a lock another thread held, and wait for it forever); anywhere else the function simply runs in the
caller, first, with the same result. The child must not use the parent's database connections (open its
own: ``Ledger.reopened``), writes its result or ledger error to a pipe and ends with ``os._exit``, so none of
the parent's clean-up (closing connections, flushing buffers) runs twice. Only ``LedgerError``s travel back:
any other exception is a bug, which ends the child without a result (a ``StorageError`` here) or, run in the
caller, propagates as itself.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from ledger import errors
from ledger.errors import StorageError

T = TypeVar("T")


def can_fork() -> bool:
    """Whether ``forked`` runs its function in a child process here."""
    if not hasattr(os, "fork") or threading.active_count() != 1:
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores > 1


class Pending(Generic[T]):
    """A function's result, from a child process or (where none can be forked) from running it at once."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._pid: int | None = None
        self._pipe: int | None = None
        self._outcome: tuple[bool, object] | None = None
        if not can_fork():
            self._outcome = _run(fn)
            return
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: run, report, and end without the parent's clean-up
            status = 1
            try:
                os.close(read)
                _send(write, pickle.dumps(_portable(_run(fn)), protocol=pickle.HIGHEST_PROTOCOL))
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        self._pid, self._pipe = pid, read

    def result(self) -> T:
        """The function's return value, or its exception raised here (a ``StorageError`` when the child died)."""
        if self._outcome is None:
            self._outcome = self._collect()
        ok, value = self._outcome
        if not ok:
            assert isinstance(value, BaseException)
            raise value
        return value  # type: ignore[return-value]

    def _collect(self) -> tuple[bool, object]:
        assert self._pipe is not None and self._pid is not None
        chunks = []
        try:
            while chunk := os.read(self._pipe, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(self._pipe)
            self._pipe = None
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        if status != 0:  # the child exits 0 only once all of its result is written: anything else is cut short
            return False, StorageError(f"the background process ended without a result ({_describe(status)})")
        outcome = pickle.loads(b"".join(chunks))
        assert isinstance(outcome, tuple)
        return outcome

    def close(self) -> None:
        """Stop a child whose result is no longer wanted, and reap it."""
        if self._pid is not None:
            os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
            self._pid = None
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None


@contextmanager
def forked(fn: Callable[[], T]) -> Iterator[Pending[T]]:
    """Start ``fn`` in a child process; leaving the block stops it unless its result was collected."""
    pending = Pending(fn)
    try:
        yield pending
    finally:
        pending.close()


def _send(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the pipe ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _run(fn: Callable[[], T]) -> tuple[bool, object]:
    try:
        return True, fn()
    except errors.LedgerError as exc:  # handed to the caller, who raises it
        return False, exc


def _portable(outcome: tuple[bool, object]) -> tuple[bool, object]:
    """``outcome`` as the child sends it: a ledger error carries the child's traceback as a note, and is sent as
    itself when it survives pickling, else as the nearest ledger error class that does (so the exit code stays
    right; ``LedgerError`` itself always does)."""
    ok, value = outcome
    if ok or not isinstance(value, BaseException):
        return outcome
    value.add_note("in the background process:\n" + "".join(traceback.format_exception(value)).rstrip())
    if _survives_pickling(value):
        return False, value
    plainer: list[BaseException] = []
    for cls in type(value).__mro__:
        if issubclass(cls, errors.LedgerError) and getattr(errors, cls.__name__, None) is cls:
            try:
                plainer.append(cls(str(value)))
            except TypeError:  # another constructor: try its base class
                continue
    for exc in plainer:
        exc.__notes__ = list(getattr(value, "__notes__", []))
        if _survives_pickling(exc):
            return False, exc
    raise AssertionError("unreachable: a LedgerError with text notes always pickles")  # pragma: no cover


def _survives_pickling(exc: BaseException) -> bool:
    try:
        copy = pickle.loads(pickle.dumps(exc))
    except (pickle.PickleError, TypeError, AttributeError):  # unpicklable state, a local class, another signature
        return False
    return type(copy) is type(exc) and str(copy) == str(exc)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
