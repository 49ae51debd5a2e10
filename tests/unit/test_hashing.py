"""Tests of streaming file hashing and the hashing writer against hashlib/blake3 references."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from pathlib import Path
from typing import IO, Any, cast

import blake3
import pytest

from ledger import hashing
from ledger.errors import FileInputError
from ledger.hashing import FileDigest, HashingWriter, blake3_file, hash_file, hash_file_ends, sha256_hex

SMALL_CHUNK = 1024


def reference(data: bytes) -> FileDigest:
    return FileDigest(len(data), hashlib.sha256(data).hexdigest(), blake3.blake3(data).hexdigest())


def sizes(chunk: int) -> list[int]:
    return [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 7]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Read chunks, and the size from which HashingWriter hashes a write in place, shrunk to 1 KiB."""
    monkeypatch.setattr(hashing, "CHUNK_SIZE", SMALL_CHUNK)
    monkeypatch.setattr(hashing, "_IN_PLACE", SMALL_CHUNK)
    return SMALL_CHUNK


def write(path: Path, size: int, seed: int = 0) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def test_constants() -> None:
    assert hashing.CHUNK_SIZE >= 8 * 1024 * 1024


@pytest.mark.parametrize("index", range(6))
def test_hash_file_matches_reference_small_chunks(tmp_path: Path, small_chunks: int, index: int) -> None:
    size = sizes(small_chunks)[index]
    path = tmp_path / "f.bin"
    data = write(path, size, seed=index)
    seen: list[int] = []
    assert hash_file(path, progress=seen.append) == reference(data)
    assert sum(seen) == size
    assert all(0 < n <= small_chunks for n in seen)
    assert blake3_file(path) == (size, blake3.blake3(data).hexdigest())


@pytest.mark.parametrize("index", range(6))
def test_hash_file_matches_reference_real_chunks(tmp_path: Path, index: int) -> None:
    size = sizes(hashing.CHUNK_SIZE)[index]
    path = tmp_path / "f.bin"
    data = write(path, size, seed=index)
    seen: list[int] = []
    assert hash_file(path, progress=seen.append) == reference(data)
    assert sum(seen) == size
    assert blake3_file(path) == (size, blake3.blake3(data).hexdigest())


@pytest.mark.parametrize("size", sizes(hashing._SMALL_READ))
def test_small_files_around_the_small_buffer(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f.bin"
    data = write(path, size, seed=size)
    assert hash_file(path) == reference(data)


def test_file_larger_than_its_stat_is_read_to_the_end(tmp_path: Path) -> None:
    # A file that grew after fstat: the buffer sized from the stale size must still read every byte.
    path = tmp_path / "f.bin"
    data = write(path, 5 * hashing._SMALL_READ + 11)
    with open(path, "rb", buffering=0) as stream:
        assert hashing._hash_serial(stream, None, 10, 0) == (reference(data), None)


def test_many_chunks_wrap_the_buffer_ring(tmp_path: Path, small_chunks: int) -> None:
    # Far more chunks than buffers: a buffer refilled before the hashers finish would corrupt the digest.
    path = tmp_path / "f.bin"
    data = write(path, 50 * small_chunks + 3)
    assert hash_file(path) == reference(data)


@pytest.mark.parametrize("keep", [1, 100, SMALL_CHUNK])
@pytest.mark.parametrize("index", range(6))
def test_hash_file_ends_keeps_head_and_tail_of_the_one_read(
    tmp_path: Path, small_chunks: int, index: int, keep: int
) -> None:
    size = sizes(small_chunks)[index] + (50 * small_chunks if index == 5 else 0)  # also past the buffer ring
    path = tmp_path / "f.bin"
    data = write(path, size, seed=index)
    digest, ends = hash_file_ends(path, keep=keep)
    assert digest == reference(data) == hash_file(path)
    assert (ends.size, ends.head, ends.tail) == (size, data[:keep], data[-keep:] if size else b"")


def test_known_answer(tmp_path: Path) -> None:
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    digest = hash_file(path)
    assert digest.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert digest.blake3 == "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    assert sha256_hex(b"abc") == digest.sha256


def test_progress_exception_propagates(tmp_path: Path, small_chunks: int) -> None:
    path = tmp_path / "f.bin"
    write(path, 10 * small_chunks)

    class StopError(Exception):
        pass

    def progress(_: int) -> None:
        raise StopError

    with pytest.raises(StopError):
        hash_file(path, progress=progress)


def assert_one_line_naming(exc: pytest.ExceptionInfo[FileInputError], path: Path) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message


@pytest.mark.parametrize("func", [hash_file, blake3_file])
def test_missing_file(tmp_path: Path, func: Callable[[Path], object]) -> None:
    path = tmp_path / "nope.bin"
    with pytest.raises(FileInputError) as exc:
        func(path)
    assert_one_line_naming(exc, path)
    assert "no such file" in str(exc.value)


@pytest.mark.parametrize("func", [hash_file, blake3_file])
def test_directory(tmp_path: Path, func: Callable[[Path], object]) -> None:
    with pytest.raises(FileInputError) as exc:
        func(tmp_path)
    assert_one_line_naming(exc, tmp_path)
    assert "directory" in str(exc.value)


@pytest.mark.parametrize("func", [hash_file, blake3_file])
def test_fifo_is_refused_without_blocking(tmp_path: Path, func: Callable[[Path], object]) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FileInputError) as exc:
        func(fifo)
    assert_one_line_naming(exc, fifo)
    assert "FIFO" in str(exc.value)


def test_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(FileInputError) as exc:
            hash_file(path)
    assert_one_line_naming(exc, path)


def test_device_is_refused() -> None:
    with pytest.raises(FileInputError, match="device"):
        hash_file(Path("/dev/zero"))


def test_path_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    path = tmp_path / "file" / "child"
    with pytest.raises(FileInputError) as exc:
        hash_file(path)
    assert_one_line_naming(exc, path)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Permission denied at open (simulated: the suite runs as root, which reads mode-000 files)."""
    path = tmp_path / "secret"
    path.write_bytes(b"x")
    real_open = os.open

    def deny(target: str | os.PathLike[str], *args: Any, **kwargs: Any) -> int:
        if os.fspath(target) == os.fspath(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(target, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(FileInputError) as exc:
        hash_file(path)
    assert_one_line_naming(exc, path)
    assert "permission denied" in str(exc.value).lower()


def test_symlink_followed_or_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    data = write(target, 100)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert hash_file(link) == reference(data)
    with pytest.raises(FileInputError, match="symbolic link"):
        hash_file(link, follow_symlinks=False)
    with pytest.raises(FileInputError, match="symbolic link"):
        blake3_file(link, follow_symlinks=False)


def test_unprintable_name_stays_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad\nname"
    with pytest.raises(FileInputError) as exc:
        hash_file(path)
    assert "\n" not in str(exc.value)
    assert "bad\\nname" in str(exc.value)


def test_read_error_is_wrapped(tmp_path: Path, small_chunks: int, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.bin"
    write(path, 5 * small_chunks)

    class Failing(io.FileIO):
        calls = 0

        def readinto(self, buffer: object) -> int:
            Failing.calls += 1
            if Failing.calls == 3:
                raise OSError(5, "Input/output error")
            return super().readinto(buffer)  # type: ignore[arg-type]

    def fake_open(fd: int, mode: str, buffering: int, closefd: bool) -> io.FileIO:
        return Failing(fd, mode, closefd=closefd)

    monkeypatch.setattr(hashing, "open", fake_open, raising=False)
    with pytest.raises(FileInputError) as exc:
        hash_file(path)
    assert_one_line_naming(exc, path)
    assert "input/output error" in str(exc.value)


# --- HashingWriter -------------------------------------------------------------------------------


def test_writer_random_write_sizes(tmp_path: Path, small_chunks: int) -> None:
    rng = random.Random(7)
    data = rng.randbytes(40 * small_chunks + 5)
    path = tmp_path / "out.bin"
    with path.open("wb") as f, HashingWriter(f) as writer:
        offset = 0
        while offset < len(data):
            n = rng.choice([0, 1, 7, small_chunks - 1, small_chunks, small_chunks + 1, 5 * small_chunks])
            piece = bytearray(data[offset : offset + n])
            assert writer.write(piece) == len(piece)
            piece[:] = b"\0" * len(piece)  # the caller reuses its buffer: the digest must not change
            offset += n
        assert writer.tell() == len(data)
        digest = writer.finish()
        assert writer.closed
    assert digest == reference(data)
    assert path.read_bytes() == data
    assert hash_file(path) == digest


_SHA256 = hashlib.sha256


class _GatedSha256:
    """hashlib's SHA-256, but ``update`` waits until the test opens the gate: shows who waits for the hasher."""

    gate = threading.Event()

    def __init__(self) -> None:
        self._real = _SHA256()

    def update(self, data: Any) -> None:
        assert self.gate.wait(10)
        self._real.update(data)

    def hexdigest(self) -> str:
        return self._real.hexdigest()


def test_writer_returns_early_only_for_stable_memory(small_chunks: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write from inside a ``stable`` range returns while the hasher still has it; any other large write (also
    one reaching past the range) returns only once hashed, as its buffer may be reused at once; the digest
    keeps the order of all of them."""
    import numpy

    memory = numpy.frombuffer(random.Random(1).randbytes(8 * small_chunks), dtype=numpy.uint8)
    sink = io.BytesIO()
    with monkeypatch.context() as patch:  # only the writer gets the gated hasher; the references do not
        patch.setattr(hashlib, "sha256", _GatedSha256)
        writer = HashingWriter(sink, stable=[(int(memory.ctypes.data), 4 * small_chunks)])
    pool = ThreadPoolExecutor(1)
    expected = b""

    def returns_while_gated(data: Any) -> bool:
        nonlocal expected
        expected += bytes(data)
        _GatedSha256.gate.clear()
        done = pool.submit(writer.write, data)
        try:
            done.result(timeout=0.3)
            early = True
        except FuturesTimeout:
            early = False
        _GatedSha256.gate.set()
        assert done.result(timeout=5) == len(data)
        return early

    view = memoryview(memory.data)
    assert returns_while_gated(view[: 3 * small_chunks])  # stable memory: nobody waited for the hasher
    writer.write(b"small")  # gathered, hashed with the next large write
    expected += b"small"
    other = bytearray(random.Random(2).randbytes(2 * small_chunks))
    assert not returns_while_gated(other)
    other[:] = bytes(len(other))  # reused once the write returned: it was hashed already
    assert not returns_while_gated(view[3 * small_chunks : 5 * small_chunks])  # reaches past the range
    assert not returns_while_gated(view[6 * small_chunks :])  # after the range
    assert writer.finish() == reference(expected)
    assert sink.getvalue() == expected
    pool.shutdown()


@pytest.mark.parametrize("size", sizes(hashing.CHUNK_SIZE))
def test_writer_real_chunks(size: int) -> None:
    data = random.Random(size).randbytes(size)
    sink = io.BytesIO()
    writer = HashingWriter(sink)
    writer.write(memoryview(data))
    assert writer.finish() == reference(data)
    assert sink.getvalue() == data


def test_writer_forward_seek_writes_zeros(small_chunks: int) -> None:
    sink = io.BytesIO()
    writer = HashingWriter(sink)
    writer.write(b"head")
    assert writer.seek(3 * small_chunks + 1, os.SEEK_CUR) == 4 + 3 * small_chunks + 1
    assert writer.seek(writer.tell()) == writer.tell()
    writer.write(b"tail")
    expected = b"head" + bytes(3 * small_chunks + 1) + b"tail"
    with pytest.raises(OSError, match="forward"):
        writer.seek(0)
    with pytest.raises(OSError, match="forward"):
        writer.seek(0, os.SEEK_END)
    assert writer.finish() == reference(expected)
    assert sink.getvalue() == expected


def test_writer_refuses_use_after_finish() -> None:
    writer = HashingWriter(io.BytesIO())
    writer.write(b"x")
    writer.finish()
    with pytest.raises(OSError, match="finished"):
        writer.write(b"y")
    with pytest.raises(OSError, match="finished"):
        writer.finish()
    writer.close()  # idempotent


def test_writer_propagates_write_errors() -> None:
    class Full(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    writer = HashingWriter(cast(IO[bytes], Full()))
    with pytest.raises(OSError, match="space"):
        writer.write(b"abc")
    writer.close()


def test_writer_handles_partial_raw_writes() -> None:
    class Trickle(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, data: object) -> int:
            chunk = bytes(cast(memoryview, data)[:3])
            self.data += chunk
            return len(chunk)

    raw = Trickle()
    writer = HashingWriter(cast(IO[bytes], raw))
    writer.write(b"0123456789")
    assert writer.finish() == reference(b"0123456789")
    assert bytes(raw.data) == b"0123456789"


def _state_dict() -> dict[str, object]:
    import torch

    generator = torch.Generator().manual_seed(0)
    return {
        "embed.weight": torch.randn(300, 64, generator=generator),
        "layer.0.weight": torch.randn(64, 64, generator=generator, dtype=torch.float64),
        "layer.0.bias": torch.zeros(64, dtype=torch.bfloat16),
        "step": torch.tensor(12, dtype=torch.int64),
        "empty": torch.empty(0),
    }


@pytest.mark.parametrize("chunked", [False, True])
def test_torch_save_round_trip(
    tmp_path: Path, chunked: bool, small_chunks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    if not chunked:
        monkeypatch.setattr(hashing, "_IN_PLACE", 8 * 1024 * 1024)
    state = _state_dict()
    path = tmp_path / "model.pt"
    with path.open("wb") as f:
        writer = HashingWriter(f)
        torch.save(state, cast(IO[bytes], writer))
        digest = writer.finish()
    assert digest == hash_file(path)
    assert digest.size == path.stat().st_size
    loaded = torch.load(path, weights_only=True)
    assert loaded.keys() == state.keys()
    for key, tensor in state.items():
        assert isinstance(tensor, torch.Tensor)
        assert torch.equal(loaded[key], tensor)
        assert loaded[key].dtype == tensor.dtype
    # Same bytes as torch.save to a plain file.
    plain = tmp_path / "plain.pt"
    with plain.open("wb") as f:
        torch.save(state, f)
    assert hash_file(plain) == digest
