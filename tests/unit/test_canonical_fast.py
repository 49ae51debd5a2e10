"""The fast canonical-JSON paths agree with the rfc8785 reference (they sit on the audit's hot path)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.block import HASH_DOMAIN, header_bytes
from ledger.canonical import is_canonical

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
)


def reference(data: bytes) -> bool:
    try:
        return bool(rfc8785.dumps(json.loads(data)) == data)
    except (ValueError, rfc8785.CanonicalizationError):
        return False


@settings(max_examples=400, deadline=None)
@given(values)
def test_is_canonical_matches_reference(value: Any) -> None:
    candidates = [
        json.dumps(value).encode(),
        json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
    ]
    with contextlib.suppress(rfc8785.CanonicalizationError):
        candidates.append(rfc8785.dumps(value))
    for data in candidates:
        assert is_canonical(data) == reference(data), data


def test_is_canonical_edge_cases() -> None:
    for text in [
        "2e-05",
        "0.00002",
        "1e+16",
        "10000000000000000",
        "1.0",
        "1",
        "-0",
        "0",
        "1.5",
        "0.1",
        "9007199254740992",
        "9007199254740991",
        "NaN",
        '{"b":1,"a":2}',
        '{"a":2,"b":1}',
        '"\\u00e9"',
        '"é"',
        '{"a":1,"a":1}',
        '"\\u001f"',
        '"\\/"',
    ]:
        data = text.encode()
        assert is_canonical(data) == reference(data), text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=10), st.integers(min_value=0, max_value=2**62))
def test_header_fast_path_matches_reference(kind: str, height: int) -> None:
    fields: dict[str, Any] = {
        "format": 1,
        "height": height,
        "prev_hash": "ab" * 32,
        "timestamp": "2025-01-01T00:00:00.000000Z",
        "kind": kind,
        "payload_hash": "cd" * 32,
        "key_id": "0123456789abcdef",
    }
    try:
        expected = HASH_DOMAIN + rfc8785.dumps(fields)
    except rfc8785.CanonicalizationError:
        return
    assert header_bytes(**fields) == expected
