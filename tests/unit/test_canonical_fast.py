"""The fast canonical-JSON paths agree with the rfc8785 reference (they sit on the audit's hot path)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.block import HASH_DOMAIN, header_bytes, plain_header_bytes
from ledger.canonical import decode, is_canonical

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
        "0.00002",
        "2e-05",
        "-0.00002",
        "0.0000015",
        "0.000001",
        "0.0000001",
        "1e-7",
        "0.00009999999999999999",
        "0.0001",
        "[0.00002,0.000012,-0.00002,0.00002]",
        "[0.000012,2e-05]",
        '{"a":"2e-05","b":0.00002}',
        '{"a":"x0.00002","b":0.00002}',
        '{"2e-05":0.00002}',
        '{"a":0.00002,"lr":0.00002}',
        '{"a":0.000020,"b":1}',
        '{"a":0.00002 }',
    ]:
        data = text.encode()
        assert is_canonical(data) == reference(data), text


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.integers(min_value=-(2**54), max_value=2**54), st.booleans(), st.text(max_size=3)),
    st.integers(min_value=-(2**54), max_value=2**54),
    st.lists(st.one_of(st.text(max_size=6), st.sampled_from(["ab" * 32, 'a"b', "a\\b", "\x7f", "é"])), min_size=5),
)
def test_plain_header_matches_reference(fmt: Any, height: int, texts: list[str]) -> None:
    fields: dict[str, Any] = dict(
        zip(["prev_hash", "timestamp", "kind", "payload_hash", "key_id"], texts[:5], strict=True),
        format=fmt,
        height=height,
    )
    fast = plain_header_bytes(**fields)
    if fast is None:
        return
    assert type(fmt) is int
    assert fast == HASH_DOMAIN + rfc8785.dumps(fields)


def test_plain_header_refuses_what_it_cannot_encode() -> None:
    base: dict[str, Any] = {
        "format": 1,
        "height": 7,
        "prev_hash": "ab" * 32,
        "timestamp": "2025-01-01T00:00:00.000000Z",
        "kind": "event",
        "payload_hash": "cd" * 32,
        "key_id": "0123456789abcdef",
    }
    fast = plain_header_bytes(**base)
    assert fast == header_bytes(**base)
    for name, bad in [("kind", 'a"b'), ("kind", "a\\b"), ("key_id", "\x7f"), ("prev_hash", "é"), ("kind", "\n")]:
        assert plain_header_bytes(**{**base, name: bad}) is None
    for name, bad_int in [("height", 2**53), ("format", True), ("height", "7")]:
        assert plain_header_bytes(**{**base, name: bad_int}) is None


small = st.floats(min_value=1e-6, max_value=1e-4) | st.floats(min_value=-1e-4, max_value=-1e-6)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(small | st.text(alphabet="0123456789.e-x", max_size=8), max_size=5),
    st.dictionaries(st.text(max_size=4), small, max_size=3),
)
def test_small_floats_match_reference(items: list[Any], mapping: dict[str, float]) -> None:
    values: list[Any] = [items, mapping, [mapping, items]]
    for value in values:
        candidates = [json.dumps(value).encode()]
        with contextlib.suppress(rfc8785.CanonicalizationError):
            candidates.append(rfc8785.dumps(value))
        for data in candidates:
            assert is_canonical(data) == reference(data), data


def test_small_floats_take_the_fast_path() -> None:
    from ledger.canonical import _SmallFloats

    seen = _SmallFloats()
    assert seen.parse("0.00002") == 2e-05
    assert seen.parse("-0.0000015") == -1.5e-06
    assert seen.restore(json.dumps([2e-05, -1.5e-06], separators=(",", ":"))) == "[0.00002,-0.0000015]"
    assert seen.restore('["2e-05",2e-05,-1.5e-06]') is None  # a string holds the same text: give up


def test_decode_refuses_what_is_not_json() -> None:
    """Python's parser takes NaN and Infinity; no JSON output could carry them on, so ``decode`` refuses them
    like any other malformed input (a damaged block reads as damaged)."""
    assert decode(b'{"a":[1,2.5,"x"]}') == {"a": [1, 2.5, "x"]}
    for text in (b'{"a":NaN}', b"[Infinity]", b"-Infinity", b'{"a":', b"\xff"):
        with pytest.raises(ValueError):
            decode(text)
