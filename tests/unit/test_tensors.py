"""Tensor figures from the ends kept while hashing equal those read from the file, without a second read."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

from ledger import tensors
from ledger.errors import InputError
from ledger.hashing import hash_file_ends
from ledger.tensors import UnsafePickleError, summarise, summarise_ends


def _state(count: int) -> dict[str, Any]:
    return {f"layer{i}": torch.zeros(i + 1, 3, dtype=torch.float16 if i % 2 else torch.float32) for i in range(count)}


def _no_reopen(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_path: Path) -> Any:
        raise AssertionError("the file was read a second time")

    monkeypatch.setattr(tensors, "summarise", refuse)


@pytest.mark.parametrize("count", [1, 40])
def test_pth_from_ends(tmp_path: Path, count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.pth"
    torch.save(_state(count), path)
    expected = summarise(path)
    digest, ends = hash_file_ends(path)
    _no_reopen(monkeypatch)
    assert summarise_ends(path, ends) == expected
    assert expected.tensors == count and digest.size == path.stat().st_size


def test_large_pth_from_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file far larger than the kept ends (pickle first, directory last) still needs no second read."""
    path = tmp_path / "big.pth"
    torch.save({"big": torch.zeros(6 << 20), **_state(5)}, path)  # 24 MiB of tensor data in the middle
    expected = summarise(path)
    _digest, ends = hash_file_ends(path)
    assert len(ends.head) + len(ends.tail) < ends.size
    _no_reopen(monkeypatch)
    assert summarise_ends(path, ends) == expected


def test_falls_back_when_the_ends_are_too_short(tmp_path: Path) -> None:
    path = tmp_path / "m.pth"
    torch.save(_state(30), path)
    _digest, ends = hash_file_ends(path, keep=64)  # neither the pickle nor the directory fits
    assert summarise_ends(path, ends) == summarise(path)


def test_safetensors_from_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    header = json.dumps({"w": {"dtype": "BF16", "shape": [4, 2], "data_offsets": [0, 16]}}).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + os.urandom(16))
    expected = summarise(path)
    _digest, ends = hash_file_ends(path)
    _no_reopen(monkeypatch)
    assert summarise_ends(path, ends) == expected
    assert expected.dtypes == {"bfloat16": 8}


class _Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("true",))


def test_code_running_pickle_refused_from_ends(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "x": _Exploit()}, path)
    _digest, ends = hash_file_ends(path)
    with pytest.raises(UnsafePickleError):
        summarise_ends(path, ends)


def test_not_an_archive_from_ends(tmp_path: Path) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(os.urandom(5000))
    _digest, ends = hash_file_ends(path)
    with pytest.raises(InputError, match="not a torch zip archive"):
        summarise_ends(path, ends)
