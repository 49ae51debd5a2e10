"""Strict JSON input: one parser for every JSON document the ledger accepts from outside."""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any, NoReturn

from ledger.errors import FileInputError, JSONInputError

DEFAULT_MAX_BYTES = 1 << 20
"""Largest JSON document accepted (1 MiB); metadata files are ~1-2 KB."""

MAX_DEPTH = 64
"""Deepest nesting of arrays/objects accepted; deeper documents are refused, never a RecursionError."""

_UTF8_BOM = b"\xef\xbb\xbf"
_NON_FINITE = ("NaN", "Infinity", "-Infinity")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Strictly decoded UTF-8 holds no surrogate, so after parsing one can only come from a \uD800-\uDFFF escape;
# text without such an escape (an over-match such as an escaped backslash only costs the full walk) needs none.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _one_line(text: str, limit: int = 120) -> str:
    """Quote ``text`` as one printable line, shortened, so messages stay one line."""
    quoted = json.dumps(text, ensure_ascii=True)
    return quoted if len(quoted) <= limit else quoted[: limit - 4] + '..."'


def _refuse(what: str, reason: str) -> NoReturn:
    raise JSONInputError(f"{_one_line(what)[1:-1]}: {reason}")


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build an object, refusing a key seen twice (json keeps the last one silently)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JSONInputError(f"duplicate key {_one_line(key)}")
        result[key] = value
    return result


def _parse_constant(token: str) -> NoReturn:
    raise JSONInputError(f"{token} is not a JSON number")


def _parse_float(token: str) -> float:
    """Parse a float, refusing numbers that overflow to infinity (``1e400``)."""
    value = float(token)
    if not math.isfinite(value):
        raise JSONInputError(f"number {token[:40]} is out of range")
    return value


def _has_lone_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _needs_tree_check(text: str) -> bool:
    """Whether the parsed tree of ``text`` can break a rule ``_check_tree`` enforces: deeper than MAX_DEPTH
    needs that many brackets, a lone surrogate needs a surrogate escape (the audit reads thousands of files)."""
    return text.count("{") + text.count("[") > MAX_DEPTH or _SURROGATE_ESCAPE.search(text) is not None


def _check_tree(root: Any) -> None:
    """Refuse over-deep nesting and lone surrogates (not I-JSON, not encodable as UTF-8)."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > MAX_DEPTH:
                raise JSONInputError(f"nested deeper than {MAX_DEPTH} levels")
            for key, value in node.items():
                if _has_lone_surrogate(key):
                    raise JSONInputError(f"key {_one_line(key)} contains an unpaired surrogate escape")
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            if depth > MAX_DEPTH:
                raise JSONInputError(f"nested deeper than {MAX_DEPTH} levels")
            stack.extend((value, depth + 1) for value in node)
        elif isinstance(node, str) and _has_lone_surrogate(node):
            raise JSONInputError(f"string {_one_line(node)} contains an unpaired surrogate escape")


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def load_object(data: bytes, *, what: str, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """Parse ``data`` as one JSON object, refusing anything ambiguous so the ledger never guesses.

    Refused (JSONInputError, one line starting with ``what``): more than ``max_bytes``, a UTF-8 BOM,
    invalid UTF-8, invalid JSON (with line:col), duplicate keys at any depth, NaN/Infinity tokens or
    numbers overflowing to infinity, unpaired surrogate escapes, nesting deeper than MAX_DEPTH, and a
    top level that is not an object.
    """
    if len(data) > max_bytes:
        _refuse(what, f"is {len(data)} bytes, larger than the limit of {max_bytes} bytes")
    if data.startswith(_UTF8_BOM):
        _refuse(what, "starts with a UTF-8 byte order mark (BOM); save it as UTF-8 without BOM")
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        _refuse(what, f"is not UTF-8 (invalid byte at offset {exc.start})")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs_hook,
            parse_constant=_parse_constant,
            parse_float=_parse_float,
        )
        if _needs_tree_check(text):
            _check_tree(value)
    except JSONInputError as exc:  # raised by the hooks above without the document's name
        _refuse(what, str(exc))
    except json.JSONDecodeError as exc:
        _refuse(what, f"invalid JSON at line {exc.lineno}:{exc.colno}: {exc.msg}")
    except RecursionError:
        _refuse(what, f"nested deeper than {MAX_DEPTH} levels")
    except ValueError as exc:  # e.g. an integer literal longer than Python's 4300-digit limit
        _refuse(what, f"invalid JSON number: {_one_line(str(exc), 80)}")
    if not isinstance(value, dict):
        _refuse(what, f"top level must be a JSON object, got {_json_type(value)}")
    return value


def read_object(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """Read and strictly parse the JSON object in ``path``; huge files are refused before reading.

    One open, one ``fstat`` of the open file and one read (the audit reads every metadata file, and the
    pathlib stat-open-read sequence cost three times as much). ``O_NONBLOCK`` keeps the open of a FIFO from
    waiting for a writer; it is refused by the ``fstat`` before anything is read.

    FileInputError: missing, a directory, not a regular file, empty or unreadable.
    JSONInputError: everything ``load_object`` refuses.
    """
    name = _one_line(str(path))[1:-1]
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise FileInputError(f"{name}: no such file") from None
    except OSError as exc:
        raise FileInputError(f"{name}: {_unopenable(path, exc)}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FileInputError(f"{name}: is a directory, expected a JSON file")
        if not stat.S_ISREG(info.st_mode):
            raise FileInputError(f"{name}: not a regular file")
        if info.st_size > max_bytes:
            _refuse(str(path), f"is {info.st_size} bytes, larger than the limit of {max_bytes} bytes")
        data = _read_up_to(fd, info.st_size, max_bytes)
    except OSError as exc:
        raise FileInputError(f"{name}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if not data:
        raise FileInputError(f"{name}: is empty")
    return load_object(data, what=str(path), max_bytes=max_bytes)


def _read_up_to(fd: int, expected: int, max_bytes: int) -> bytes:
    """The file's bytes, ``expected`` of them in one read; a file that grew since its ``fstat`` is read on,
    up to one byte past ``max_bytes`` so that ``load_object`` still refuses it."""
    data = os.read(fd, expected + 1)
    if len(data) <= expected:
        return data
    chunks = [data]
    total = len(data)
    while total <= max_bytes and (chunk := os.read(fd, max_bytes + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _unopenable(path: str | Path, exc: OSError) -> str:
    """Why ``path`` could not be opened: a socket or other special file says so, not just its errno."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    if mode and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return "not a regular file"
    return f"cannot read: {exc.strerror or exc}"
