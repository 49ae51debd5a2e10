"""Tensor figures of a weight file (count, parameters, dtypes, bytes) read without running any code.

``.safetensors``: the JSON header. ``.pth`` (torch zip archives): the pickle is walked by a restricted
unpickler that knows only the globals a plain tensor archive uses and builds descriptions, not tensors, so
a pickle that would import or call anything else is refused. ``inspect_with_torch`` is the cross-check
through ``torch.load(weights_only=True, mmap=True)`` for ``ledger inspect``.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from ledger.canonical import decode
from ledger.errors import FileInputError, InputError
from ledger.hashing import FileEnds

MAX_PICKLE_BYTES = 64 << 20
MAX_HEADER_BYTES = 100 << 20

#: Legacy typed storage classes torch writes into pickles, with their dtype name and element size.
_STORAGE_TYPES = {
    "FloatStorage": ("float32", 4),
    "DoubleStorage": ("float64", 8),
    "HalfStorage": ("float16", 2),
    "BFloat16Storage": ("bfloat16", 2),
    "LongStorage": ("int64", 8),
    "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2),
    "CharStorage": ("int8", 1),
    "ByteStorage": ("uint8", 1),
    "BoolStorage": ("bool", 1),
    "ComplexFloatStorage": ("complex64", 8),
    "ComplexDoubleStorage": ("complex128", 16),
}
_SAFETENSORS_SIZES = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
}


class UnsafePickleError(InputError):
    """The pickle in a weight file would import or call something a tensor archive never needs."""


@dataclass(frozen=True, slots=True)
class TensorSummary:
    """What a weight file holds: tensor count, parameter count, bytes per dtype."""

    tensors: int
    parameters: int
    bytes: int
    dtypes: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        """The summary as it is recorded in a version payload."""
        return {
            "tensors": self.tensors,
            "parameters": self.parameters,
            "bytes": self.bytes,
            "dtypes": self.dtypes,
        }


@dataclass(frozen=True, slots=True)
class _Storage:
    dtype: str
    itemsize: int


@dataclass(frozen=True, slots=True)
class _Tensor:
    dtype: str
    numel: int
    itemsize: int


def _summarise(tensors: list[_Tensor]) -> TensorSummary:
    dtypes: Counter[str] = Counter()
    for tensor in tensors:
        dtypes[tensor.dtype] += tensor.numel
    return TensorSummary(
        tensors=len(tensors),
        parameters=sum(t.numel for t in tensors),
        bytes=sum(t.numel * t.itemsize for t in tensors),
        dtypes=dict(sorted(dtypes.items())),
    )


def _rebuild_tensor(storage: Any, _offset: Any, size: Any, *_rest: Any) -> _Tensor:
    if not isinstance(storage, _Storage) or not isinstance(size, tuple):
        raise UnsafePickleError("tensor record has an unexpected shape")
    return _Tensor(storage.dtype, math.prod(int(n) for n in size), storage.itemsize)


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    return data


class _OrderedDict(dict[Any, Any]):
    """Stands in for ``collections.OrderedDict``; a subclass so that the pickle may set attributes on it
    (``Module.state_dict()`` carries a ``_metadata`` attribute, restored by the pickle's BUILD)."""


def _ordered_dict(*args: Any) -> dict[Any, Any]:
    return _OrderedDict(*args)


_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _DescribingUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the allow-listed globals, to functions of ours that build descriptions."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_TYPES:
            return _STORAGE_TYPES[name]
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise UnsafePickleError(f"the pickle would import {module}.{name}: refused (not a plain tensor archive)")

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], tuple):
            dtype, itemsize = pid[1]
            return _Storage(dtype, itemsize)
        raise UnsafePickleError("the pickle refers to an unknown persistent object")


def _walk(value: Any, out: list[_Tensor]) -> None:
    if isinstance(value, _Tensor):
        out.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _walk(item, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk(item, out)


def summarise_pth(path: Path) -> TensorSummary:
    """Describe a torch zip archive from its pickle alone, never executing it."""
    return _opened(path, _summarise_pth)


def _opened(path: Path, describe: Callable[[BinaryIO, str], TensorSummary]) -> TensorSummary:
    try:
        with path.open("rb") as handle:
            return describe(handle, path.name)
    except OSError as exc:
        raise FileInputError(f"cannot read {path}: {exc.strerror}") from exc


def _summarise_pth(source: BinaryIO, name: str) -> TensorSummary:
    try:
        with zipfile.ZipFile(source) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                raise InputError(f"{name}: not a torch archive (no single data.pkl)")
            info = archive.getinfo(names[0])
            if info.file_size > MAX_PICKLE_BYTES:
                raise InputError(f"{name}: pickle of {info.file_size} bytes is too large to inspect")
            data = archive.read(names[0])
    except zipfile.BadZipFile as exc:
        raise InputError(f"{name}: not a torch zip archive (legacy pickle files are not supported)") from exc
    try:
        root = _DescribingUnpickler(_BytesReader(data)).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise InputError(f"{name}: malformed pickle: {exc}") from exc
    tensors: list[_Tensor] = []
    _walk(root, tensors)
    return _summarise(tensors)


class _BytesReader:
    """Minimal file object over bytes for the unpickler."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._pos + n
        chunk = bytes(self._data[self._pos : end])
        self._pos += len(chunk)
        return chunk

    def readline(self) -> bytes:
        rest = bytes(self._data[self._pos :])
        cut = rest.find(b"\n")
        line = rest if cut < 0 else rest[: cut + 1]
        self._pos += len(line)
        return line

    def readinto(self, buffer: bytearray | memoryview) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def summarise_safetensors(path: Path) -> TensorSummary:
    """Describe a ``.safetensors`` file from its JSON header."""
    return _opened(path, _summarise_safetensors)


def _summarise_safetensors(source: BinaryIO, name: str) -> TensorSummary:
    try:
        prefix = source.read(8)
        if len(prefix) != 8:
            raise InputError(f"{name}: too short for a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES:
            raise InputError(f"{name}: safetensors header of {length} bytes is too large")
        header = decode(source.read(length))
    except ValueError as exc:  # not UTF-8 or not JSON
        raise InputError(f"{name}: malformed safetensors header") from exc
    if not isinstance(header, dict):
        raise InputError(f"{name}: malformed safetensors header")
    tensors = []
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, itemsize = _SAFETENSORS_SIZES[entry["dtype"]]
            numel = math.prod(int(n) for n in entry["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{name}: tensor {key!r} has a malformed header entry") from exc
        tensors.append(_Tensor(dtype, numel, itemsize))
    return _summarise(tensors)


def summarise(path: Path) -> TensorSummary:
    """Describe a weight file by its extension, without importing torch or running code."""
    if path.suffix == ".safetensors":
        return summarise_safetensors(path)
    return summarise_pth(path)


def summarise_ends(path: Path, ends: FileEnds) -> TensorSummary:
    """``summarise`` from the ends of the file kept while it was hashed, so it is not read a second time.

    A torch archive's directory is at its end and its pickle is its first entry; a safetensors header is at
    its start. Only when what is needed lies outside the kept ends (a pickle or directory of many MiB) is
    the file opened again.
    """
    describe = _summarise_safetensors if path.suffix == ".safetensors" else _summarise_pth
    try:
        return describe(cast(BinaryIO, _EndsReader(ends)), path.name)
    except _NotKept:
        return summarise(path)


class _NotKept(Exception):
    """A read outside the kept ends of a file."""


class _EndsReader(io.RawIOBase):
    """A seekable, read-only view of a file of which only the first and last bytes are known."""

    def __init__(self, ends: FileEnds) -> None:
        self._ends = ends
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._ends.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        ends = self._ends
        view = memoryview(buffer).cast("B")
        want = min(len(view), max(0, ends.size - self._pos))
        tail_start = ends.size - len(ends.tail)
        done = 0
        while done < want:
            pos = self._pos + done
            if pos < len(ends.head):
                piece = ends.head[pos : pos + want - done]
            elif pos >= tail_start:
                piece = ends.tail[pos - tail_start : pos - tail_start + want - done]
            else:
                raise _NotKept
            view[done : done + len(piece)] = piece
            done += len(piece)
        self._pos += done
        return done


def inspect_with_torch(path: Path) -> TensorSummary:
    """Describe a weight file through torch itself (``weights_only=True, mmap=True``): the reference reader."""
    if path.suffix == ".safetensors":
        return summarise_safetensors(path)
    import torch

    try:
        loaded = torch.load(path, weights_only=True, mmap=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused"
        raise UnsafePickleError(f"{path.name}: torch refused to load it safely: {first}") from exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise InputError(f"{path.name}: not a loadable torch file: {exc}") from exc
    return summarise_tensors(loaded)


def summarise_tensors(obj: Any) -> TensorSummary:
    """Describe the tensors of an object in memory (a loaded file, or a state dict about to be saved): the
    figures the saved file's pickle gives, without reading any file."""
    import torch

    tensors: list[_Tensor] = []

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            tensors.append(_Tensor(str(value.dtype).removeprefix("torch."), value.numel(), value.element_size()))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(obj)
    return _summarise(tensors)
