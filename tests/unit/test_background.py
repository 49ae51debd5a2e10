"""``ledger.background``: a function run in a forked child hands back its value or its exception, a dead child
is an error rather than a hang, an abandoned child is stopped, and a threaded process runs the function itself."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ledger import background
from ledger.errors import InputError, MetadataError, SelectionError, StorageError

CAN_FORK = background.can_fork
pytestmark = pytest.mark.usefixtures("forking")


def _result(fn: Callable[[], Any]) -> Any:
    with background.forked(fn) as pending:
        return pending.result()


def test_the_value_comes_from_a_child_process() -> None:
    big = {"rows": [{"n": i, "text": "x" * 50} for i in range(20_000)]}  # more than a pipe buffer
    pid, value = _result(lambda: (os.getpid(), big))
    assert pid != os.getpid() and value == big


def test_a_ledger_error_comes_back_as_itself() -> None:
    def fail() -> None:
        raise SelectionError("the selection matches no version")

    with pytest.raises(SelectionError, match="matches no version") as caught:
        _result(fail)
    assert any("in the background process" in note for note in caught.value.__notes__)


def test_an_error_that_cannot_be_rebuilt_comes_back_as_its_nearest_ledger_class() -> None:
    """MetadataError takes two arguments, so unpickling its message alone fails: it travels as InputError."""

    def fail() -> None:
        raise MetadataError("/metrics/bias_score", "must be in [0, 1]")

    with pytest.raises(InputError, match=r"metadata /metrics/bias_score: must be in \[0, 1\]") as caught:
        _result(fail)
    assert type(caught.value) is InputError


def test_an_unpicklable_ledger_error_comes_back_as_its_nearest_ledger_class() -> None:
    class Odd(SelectionError):
        def __init__(self) -> None:
            super().__init__("odd failure")
            self.lock = threading.Lock()

    def fail() -> None:
        raise Odd()

    with pytest.raises(SelectionError, match="odd failure") as caught:
        _result(fail)
    assert type(caught.value) is SelectionError


def test_an_unexpected_exception_in_the_child_is_no_result_not_a_ledger_error() -> None:
    """Only ledger errors travel back: anything else is a bug, and the child ends without a result."""

    def fail() -> None:
        raise ZeroDivisionError("a bug")

    with pytest.raises(StorageError, match=r"without a result \(exit status 1\)"):
        _result(fail)


def test_a_killed_child_is_an_error_not_a_hang() -> None:
    parent = os.getpid()

    def die() -> None:
        if os.getpid() != parent:  # never the test process itself
            os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(StorageError, match="killed by signal 9"):
        _result(die)


def test_a_child_killed_while_sending_its_result_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Half a result on the pipe is no result: the parent goes by the child's exit status, not the bytes."""
    real = background._send

    def half_then_die(fd: int, data: bytes) -> None:
        real(fd, data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)  # only the child sends

    monkeypatch.setattr(background, "_send", half_then_die)
    with pytest.raises(StorageError, match="killed by signal 9"):
        _result(lambda: list(range(10_000)))


def test_leaving_the_block_stops_an_unwanted_child() -> None:
    start = time.monotonic()
    with background.forked(lambda: time.sleep(60)) as pending:
        pid = pending._pid
    assert pid is not None and time.monotonic() - start < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: no zombie left behind


def test_a_threaded_process_runs_the_function_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "can_fork", CAN_FORK)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait)
    helper.start()
    try:
        assert not background.can_fork()
        assert _result(os.getpid) == os.getpid()
        with pytest.raises(SelectionError):
            _result(lambda: (_ for _ in ()).throw(SelectionError("nothing")))
        with pytest.raises(ZeroDivisionError):  # run in the caller, an unexpected exception is itself
            _result(lambda: (_ for _ in ()).throw(ZeroDivisionError("a bug")))
    finally:
        stop.set()
        helper.join()
