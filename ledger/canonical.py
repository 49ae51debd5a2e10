"""RFC 8785 canonical JSON: the only byte encoding the ledger ever hashes or signs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import rfc8785

from ledger.errors import InputError


def canonical(obj: Mapping[str, Any] | list[Any]) -> bytes:
    """Encode ``obj`` as RFC 8785 bytes; refuse values JCS cannot represent exactly.

    Values in the subset where the C JSON encoder's output is byte-identical to RFC 8785 (ASCII keys, safe
    integers, doubles that print plainly in both, any strings) take the fast path (every append); anything
    else goes through the ``rfc8785`` package. A property test compares the two on random values.
    """
    if _encodes_plainly(obj):
        try:
            return _FAST_ENCODER.encode(obj).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: let rfc8785 say why it cannot be encoded
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:
        raise InputError(f"value cannot be canonicalised (RFC 8785): {exc}") from exc


def _encodes_plainly(value: Any, depth: int = 0) -> bool:
    """True when the C encoder prints ``value`` exactly as RFC 8785 does."""
    if depth > 64:
        return False
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(abs(value) <= _MAX_SAFE_INT)
    if kind is float:
        # non-integral doubles in this range print the same in Python's repr and in ECMAScript
        return bool(1e-4 <= abs(value) < 1e16 and not value.is_integer())
    if kind is dict:
        return all(type(k) is str and k.isascii() and _encodes_plainly(v, depth + 1) for k, v in value.items())
    if kind is list:
        return all(_encodes_plainly(item, depth + 1) for item in value)
    return False


def decode(data: bytes) -> Any:
    """Parse canonical bytes back into Python values (no validation beyond JSON)."""
    return json.loads(data)


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
        except ValueError:
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
        return rfc8785.dumps(json.loads(data)) == data
    except (ValueError, rfc8785.CanonicalizationError):
        return False
