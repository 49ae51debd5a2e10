"""RFC 8785 canonical JSON: the only byte encoding the ledger ever hashes or signs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import rfc8785

from ledger.errors import InputError


def canonical(obj: Mapping[str, Any] | list[Any]) -> bytes:
    """Encode ``obj`` as RFC 8785 bytes; refuse values JCS cannot represent exactly."""
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:
        raise InputError(f"value cannot be canonicalised (RFC 8785): {exc}") from exc


def decode(data: bytes) -> Any:
    """Parse canonical bytes back into Python values (no validation beyond JSON)."""
    return json.loads(data)


def is_canonical(data: bytes) -> bool:
    """True when ``data`` is exactly the RFC 8785 encoding of the JSON it holds."""
    try:
        return rfc8785.dumps(json.loads(data)) == data
    except (ValueError, rfc8785.CanonicalizationError):
        return False
