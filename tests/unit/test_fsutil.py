"""Attacks on path confinement; atomic writes never leave a half-written target; flush errors are not lost."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.errors import FileInputError, StorageError, UnsafePathError
from ledger.fsutil import (
    BackgroundFlush,
    check_recorded,
    display_path,
    fsync_dir,
    relative_inside,
    resolve_recorded,
    write_atomic,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "models" / "v1").mkdir(parents=True)
    (root / "models" / "v1" / "w.bin").write_bytes(b"w")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"s")
    return root


@pytest.fixture
def in_dir(root: Path) -> Iterator[Path]:
    old = Path.cwd()
    os.chdir(root / "models")
    try:
        yield root
    finally:
        os.chdir(old)


# --- relative_inside -----------------------------------------------------------------------------


def test_absolute_inside(root: Path) -> None:
    assert relative_inside(root, root / "models" / "v1" / "w.bin") == "models/v1/w.bin"


def test_relative_to_cwd(in_dir: Path) -> None:
    assert relative_inside(in_dir, Path("v1/w.bin")) == "models/v1/w.bin"
    assert relative_inside(in_dir, Path("./v1/./w.bin")) == "models/v1/w.bin"


def test_not_yet_existing_file_is_allowed(root: Path) -> None:
    assert relative_inside(root, root / "models" / "new" / "x.bin") == "models/new/x.bin"


def test_root_given_through_symlink_above(tmp_path: Path, root: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    assert relative_inside(alias, root / "models" / "v1" / "w.bin") == "models/v1/w.bin"
    assert relative_inside(root, alias / "models" / "v1" / "w.bin") == "models/v1/w.bin"


def test_refuses_dotdot_even_when_it_stays_inside(root: Path) -> None:
    with pytest.raises(UnsafePathError, match=r"'\.\.'"):
        relative_inside(root, root / "models" / ".." / "models" / "v1" / "w.bin")


def test_refuses_dotdot_escape(in_dir: Path) -> None:
    with pytest.raises(UnsafePathError):
        relative_inside(in_dir, Path("../../outside/secret"))


def test_refuses_absolute_outside(tmp_path: Path, root: Path) -> None:
    with pytest.raises(UnsafePathError, match="outside"):
        relative_inside(root, tmp_path / "outside" / "secret")
    with pytest.raises(UnsafePathError):
        relative_inside(root, Path("/etc/passwd"))


def test_refuses_sibling_with_common_prefix(tmp_path: Path, root: Path) -> None:
    sibling = tmp_path / "root2"
    sibling.mkdir()
    (sibling / "f").write_bytes(b"f")
    with pytest.raises(UnsafePathError, match="outside"):
        relative_inside(root, sibling / "f")


def test_refuses_root_itself(root: Path) -> None:
    with pytest.raises(UnsafePathError, match="root"):
        relative_inside(root, root)


@pytest.mark.parametrize("where", ["file", "dir", "inner-dir"])
def test_refuses_symlink_below_root_pointing_out(tmp_path: Path, root: Path, where: str) -> None:
    if where == "file":
        (root / "models" / "link").symlink_to(tmp_path / "outside" / "secret")
        target = root / "models" / "link"
    elif where == "dir":
        (root / "models" / "link").symlink_to(tmp_path / "outside")
        target = root / "models" / "link" / "secret"
    else:
        (root / "models" / "link").symlink_to(tmp_path / "outside")
        target = root / "models" / "link" / "not-yet"
    with pytest.raises(UnsafePathError) as exc:
        relative_inside(root, target)
    assert "symbolic link" in str(exc.value)


def test_refuses_symlink_below_root_pointing_inside(root: Path) -> None:
    (root / "alias").symlink_to(root / "models")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        relative_inside(root, root / "alias" / "v1" / "w.bin")
    (root / "self").symlink_to(root)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        relative_inside(root, root / "self" / "models" / "v1" / "w.bin")


def test_refuses_non_utf8_name(root: Path) -> None:
    name = os.fsdecode(b"w\xff.bin")
    with pytest.raises(UnsafePathError) as exc:
        relative_inside(root, root / name)
    message = str(exc.value)
    assert "UTF-8" in message
    assert "\\udcff" in message
    message.encode("utf-8")  # printable without a traceback


def test_refuses_nul(root: Path) -> None:
    with pytest.raises(UnsafePathError, match="NUL"):
        relative_inside(root, root / "a\x00b")


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileInputError):
        relative_inside(tmp_path / "nope", tmp_path / "nope" / "x")


def test_unicode_name_kept(root: Path) -> None:
    (root / "modèles").mkdir()
    assert relative_inside(root, root / "modèles" / "重み.bin") == "modèles/重み.bin"


# --- resolve_recorded ----------------------------------------------------------------------------


def test_resolve_round_trip(root: Path) -> None:
    relative = relative_inside(root, root / "models" / "v1" / "w.bin")
    assert resolve_recorded(root, relative) == root / "models" / "v1" / "w.bin"


@pytest.mark.parametrize(
    "relative",
    ["", "/etc/passwd", "..", "../x", "a/../../x", "a/..", "a//b", "a/", "./a", "a/./b", "a\x00b", "\udcff"],
)
def test_resolve_refuses(root: Path, relative: str) -> None:
    with pytest.raises(UnsafePathError):
        resolve_recorded(root, relative)
    with pytest.raises(UnsafePathError):
        check_recorded(relative)


def test_resolve_refuses_planted_symlink(tmp_path: Path, root: Path) -> None:
    (root / "models" / "v2").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        resolve_recorded(root, "models/v2/secret")


def test_resolve_allows_missing_file(root: Path) -> None:
    assert resolve_recorded(root, "models/gone/w.bin") == root / "models" / "gone" / "w.bin"


def test_display_path() -> None:
    assert display_path("plain/path name") == "plain/path name"
    assert display_path("a\nb") == repr("a\nb")
    assert display_path(os.fsdecode(b"\xff")) == repr("\udcff")


# --- write_atomic --------------------------------------------------------------------------------


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_write_atomic_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    write_atomic(target, b"one")
    assert target.read_bytes() == b"one"
    write_atomic(target, b"two" * 100_000)
    assert target.read_bytes() == b"two" * 100_000
    assert leftovers(tmp_path) == []


def test_write_atomic_mode(tmp_path: Path) -> None:
    target = tmp_path / "key"
    write_atomic(target, b"secret", mode=0o600)
    assert target.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_failure_leaves_target_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    target = tmp_path / "f.json"
    target.write_bytes(b"original")
    seen: list[str] = []

    def boom(*args: object, **kwargs: object) -> None:
        seen.extend(str(a) for a in args)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(StorageError) as exc:
        write_atomic(target, b"replacement")
    monkeypatch.undo()
    message = str(exc.value)
    assert "\n" not in message
    assert str(target) in message
    assert "no space left" in message
    assert target.read_bytes() == b"original"
    assert leftovers(tmp_path) == []
    if failing == "replace":
        assert Path(seen[0]).name.startswith(".f.json.")


def test_partial_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def trickle(fd: int, data: bytes) -> int:
        return real_write(fd, bytes(data)[:5])

    monkeypatch.setattr(os, "write", trickle)
    target = tmp_path / "f"
    write_atomic(target, b"0123456789abcdefghij")
    monkeypatch.undo()
    assert target.read_bytes() == b"0123456789abcdefghij"


def test_interrupt_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "f", b"x")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "error", "words"),
    [
        (errno.EROFS, StorageError, "read-only"),
        (errno.EACCES, StorageError, "permission denied"),
        (errno.ENOENT, FileInputError, "no such file"),
    ],
)
def test_open_errors_are_classified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, error: type[Exception], words: str
) -> None:
    def refuse(*args: object, **kwargs: object) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(error, match=words):
        write_atomic(tmp_path / "f", b"x")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileInputError):
        write_atomic(tmp_path / "missing" / "f", b"x")


def test_target_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(FileInputError):
        write_atomic(tmp_path / "d", b"x")
    assert leftovers(tmp_path) == []


def test_fsync_dir(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    with pytest.raises(FileInputError):
        fsync_dir(tmp_path / "missing")


def test_fsync_dir_tolerates_einval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def einval(fd: int) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "fsync", einval)
    fsync_dir(tmp_path)


def test_background_flush_error_is_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error met by the background flush (it is reported once per open file) fails the save."""

    def failing(_fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with (tmp_path / "f").open("wb") as handle:
        flush = BackgroundFlush(handle.fileno(), step=1, poll=0.001)
        handle.write(b"x" * 4096)
        handle.flush()
        flush._thread.join(timeout=10)  # the thread ends at its first error
        with pytest.raises(OSError, match="Input/output"):
            flush.finish()
