"""RFC 8785 canonical JSON: the only byte encoding the ledger ever hashes or signs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import rfc8785

from ledger.errors import InputError


def canonical(obj: Mapping[str, Any] | list[Any]) -> bytes:
    """Encode ``obj`` as RFC 8785 bytes with the ``rfc8785`` package; refuse values JCS cannot represent exactly.

    Everything the ledger stores, hashes or signs is encoded here, by the maintained implementation.
    """
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:
        raise InputError(f"value cannot be canonicalised (RFC 8785): {exc}") from exc


def decode(data: bytes | str) -> Any:
    """Parse JSON (UTF-8 bytes, or text) into Python values: every parse of bytes from outside the process.

    Bytes that are not UTF-8, malformed JSON, the ``NaN``/``Infinity`` tokens Python's parser would otherwise
    take (they are not JSON, and no output could carry them on), and nesting too deep for the parser (a hostile
    database or file) all raise ``ValueError``; a ``RecursionError`` never escapes as a crash.
    """
    try:
        return _DECODER.decode(data.decode("utf-8") if isinstance(data, bytes) else data)
    except RecursionError:
        raise ValueError("JSON is nested too deeply") from None


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_not_json)


_MAX_SAFE_INT = 2**53 - 1


class _NotSimple(Exception):
    """Raised inside the fast path when a value needs the full RFC 8785 encoder."""


def _fast_float(token: str) -> float:
    value = float(token)
    # Inside this range a non-integral double prints the same in Python's repr and in ECMAScript.
    if not (1e-4 <= abs(value) < 1e16) or value.is_integer() or repr(value) != token:
        raise _NotSimple
    return value


def _fast_int(token: str) -> int:
    value = int(token)
    if abs(value) > _MAX_SAFE_INT:
        raise _NotSimple
    return value


def _reject(_token: str) -> Any:
    raise _NotSimple


def _ecmascript_small(value: float) -> str:
    """ECMAScript's Number::toString for 1e-6 <= |value| < 1e-4: plain decimals, where ``repr`` uses an exponent."""
    text = repr(value)
    sign = "-" if text.startswith("-") else ""
    mantissa, _, exponent = text.lstrip("-").partition("e")
    return f"{sign}0.{'0' * (-int(exponent) - 1)}{mantissa.replace('.', '')}"


class _SmallFloats:
    """Accepts floats such as ``0.00002`` (learning rates) that RFC 8785 prints plainly and ``repr`` does not.

    The C encoder then prints them as ``repr`` (``2e-05``); ``restore`` puts the RFC 8785 text back, and only
    when every occurrence of each ``repr`` text in the output is one of those floats (else it gives up).
    """

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, int]] = {}

    def parse(self, token: str) -> float:
        value = float(token)
        if 1e-6 <= abs(value) < 1e-4 and _ecmascript_small(value) == token:
            plain, count = self.seen.get(repr(value), (token, 0))
            self.seen[repr(value)] = (plain, count + 1)
            return value
        return _fast_float(token)

    def restore(self, encoded: str) -> str | None:
        for printed, (plain, count) in self.seen.items():
            if encoded.count(printed) != count:
                return None
            encoded = encoded.replace(printed, plain)  # plain text has no "e": it cannot create new matches
        return encoded


#: Reused on the audit's hot path (``json.loads``/``json.dumps`` build a decoder or encoder on every call).
_FAST_DECODER = json.JSONDecoder(parse_float=_fast_float, parse_int=_fast_int, parse_constant=_reject)
_FAST_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def is_canonical(data: bytes) -> bool:
    """True when ``data`` is exactly the RFC 8785 encoding of the JSON it holds.

    ASCII documents whose numbers are safe integers or plainly printed doubles are checked with the C JSON
    encoder (identical output for that subset, and the audit's hot path); anything else goes through rfc8785.
    """
    if data.isascii():
        text = data.decode("ascii")
        small = _SmallFloats() if "0.0000" in text else None
        decoder = (
            _FAST_DECODER
            if small is None
            else json.JSONDecoder(parse_float=small.parse, parse_int=_fast_int, parse_constant=_reject)
        )
        try:
            value, end = decoder.raw_decode(text)
        except _NotSimple:
            pass
        except (ValueError, RecursionError):
            return False
        else:
            # leading whitespace already failed above; trailing data is what json.loads calls "Extra data"
            if end != len(text):
                return False
            encoded: str | None = _FAST_ENCODER.encode(value)
            if small is not None and small.seen and encoded is not None:
                encoded = small.restore(encoded)
            if encoded is not None:
                return encoded == text
    try:
        return rfc8785.dumps(decode(data)) == data
    except (ValueError, RecursionError, rfc8785.CanonicalizationError):
        return False
