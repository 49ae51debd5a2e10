"""Tests for ledger.strictjson: every refusal, with the right class and a useful one-line message."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import FileInputError, InputError, JSONInputError
from ledger.strictjson import DEFAULT_MAX_BYTES, MAX_DEPTH, load_object, read_object


def refused(data: bytes, **kwargs: int) -> str:
    with pytest.raises(JSONInputError) as info:
        load_object(data, what="meta.json", **kwargs)
    message = str(info.value)
    assert message.startswith("meta.json: ")
    assert "\n" not in message
    return message


def test_accepts_object_and_keeps_values() -> None:
    value = load_object(b'{"a": [1, 2.5, "x", true, null, {"b": {}}]}', what="m")
    assert value == {"a": [1, 2.5, "x", True, None, {"b": {}}]}
    assert isinstance(value["a"][0], int)


def test_accepts_exactly_max_bytes() -> None:
    data = b'{"a": "' + b"x" * (100 - 9) + b'"}'
    assert len(data) == 100
    assert load_object(data, what="m", max_bytes=100) == {"a": "x" * 91}


def test_refuses_over_max_bytes() -> None:
    data = b'{"a": "' + b"x" * (DEFAULT_MAX_BYTES) + b'"}'
    message = refused(data)
    assert str(DEFAULT_MAX_BYTES) in message and "larger" in message


def test_refuses_over_custom_max_bytes() -> None:
    assert "101 bytes" in refused(b"{" + b" " * 99 + b"}", max_bytes=100)


def test_refuses_bom() -> None:
    assert "BOM" in refused(b'\xef\xbb\xbf{"a": 1}')


@pytest.mark.parametrize(
    "data",
    [b'{"a": "\xff"}', b'{"a": "\xc3"}', b'{"a": "\xed\xa0\x80"}', '{"a": "é"}'.encode("latin-1")],
)
def test_refuses_non_utf8(data: bytes) -> None:
    assert "not UTF-8" in refused(data)


def test_refuses_utf16() -> None:
    assert "not UTF-8" in refused('{"a": 1}'.encode("utf-16"))


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b'{"a": 1,}', "line 1:9"),
        (b'{\n  "a": 1\n  "b": 2\n}', "line 3:3"),
        (b"", "line 1:1"),
        (b"{'a': 1}", "line 1:2"),
        (b'{"a": 1} {"b": 2}', "line 1:10"),
        (b'{"a": 01}', "line 1:8"),
    ],
)
def test_refuses_invalid_json_with_position(data: bytes, where: str) -> None:
    message = refused(data)
    assert "invalid JSON" in message and where in message


def test_refuses_duplicate_top_level_key() -> None:
    assert 'duplicate key "a"' in refused(b'{"a": 1, "a": 1}')


def test_refuses_duplicate_nested_key() -> None:
    assert 'duplicate key "lr"' in refused(b'{"x": [{"y": {"lr": 1, "lr": 2}}]}')


def test_duplicate_key_message_stays_one_line() -> None:
    message = refused(b'{"a\\nb": 1, "a\\nb": 2}')
    assert '"a\\nb"' in message


def test_same_key_in_different_objects_is_fine() -> None:
    assert load_object(b'{"a": {"k": 1}, "b": {"k": 2}}', what="m") == {"a": {"k": 1}, "b": {"k": 2}}


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_refuses_non_finite_tokens(token: str) -> None:
    assert token in refused(f'{{"a": {token}}}'.encode())


@pytest.mark.parametrize("token", ["1e400", "-1e400", "1.5e999"])
def test_refuses_numbers_overflowing_to_infinity(token: str) -> None:
    assert "out of range" in refused(f'{{"a": {token}}}'.encode())


def test_refuses_huge_integer_literal() -> None:
    assert "number" in refused(b'{"a": ' + b"9" * 5000 + b"}")


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"[]", "an array"),
        (b'"x"', "a string"),
        (b"1", "a number"),
        (b"null", "null"),
        (b"true", "a boolean"),
    ],
)
def test_refuses_non_object_top_level(data: bytes, kind: str) -> None:
    message = refused(data)
    assert "top level must be a JSON object" in message and kind in message


def test_refuses_deep_nesting_without_recursion_error() -> None:
    assert "nested deeper" in refused(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_nesting_limit_is_exact() -> None:
    ok = b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)
    assert load_object(b'{"a": ' + ok + b"}", what="m")
    too_deep = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert "nested deeper" in refused(b'{"a": ' + too_deep + b"}")


@pytest.mark.parametrize(
    "data",
    [b'{"a": "\\ud800"}', b'{"\\udfff": 1}', b'{"a": "x\\uDBFFy"}', b'{"a": [1, {"b": "\\uDc00"}]}'],
)
def test_refuses_lone_surrogate_escapes(data: bytes) -> None:
    assert "surrogate" in refused(data)


def test_escaped_backslash_before_u_is_not_a_surrogate() -> None:
    assert load_object(b'{"a": "\\\\ud800"}', what="m") == {"a": "\\ud800"}


def test_accepts_surrogate_pair_escape() -> None:
    assert load_object(b'{"a": "\\ud83d\\ude00"}', what="m") == {"a": "\U0001f600"}


def test_what_with_newline_stays_one_line() -> None:
    with pytest.raises(JSONInputError) as info:
        load_object(b"[]", what="evil\nname.json")
    assert "\n" not in str(info.value)


# --- read_object --------------------------------------------------------------------------------


def test_read_object_reads_file(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(b'{"a": 1}')
    assert read_object(path) == {"a": 1}


def test_read_object_names_the_file_in_json_errors(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(b'{"a": 1, "a": 2}')
    with pytest.raises(JSONInputError, match=r"broken\.json.*duplicate key"):
        read_object(path)


def test_read_object_missing(tmp_path: Path) -> None:
    with pytest.raises(FileInputError, match="no such file"):
        read_object(tmp_path / "absent.json")


def test_read_object_directory(tmp_path: Path) -> None:
    with pytest.raises(FileInputError, match="directory"):
        read_object(tmp_path)


def test_read_object_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_bytes(b"")
    with pytest.raises(FileInputError, match="empty"):
        read_object(path)


def test_read_object_fifo_is_not_opened(tmp_path: Path) -> None:
    path = tmp_path / "pipe.json"
    os.mkfifo(path)
    with pytest.raises(FileInputError, match="not a regular file"):
        read_object(path)  # opening a FIFO would block forever


def test_read_object_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.json"
    path.write_bytes(b'{"a": 1}')

    def deny(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", deny)  # the tests run as root, where a mode of 000 denies nothing
    with pytest.raises(FileInputError, match="cannot read: Permission denied"):
        read_object(path)


def test_read_object_socket_is_not_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(FileInputError, match="not a regular file"):
            read_object(path)
    finally:
        server.close()


def _shrunk_fstat(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """Make ``os.fstat`` report ``size`` bytes, as if the file grew between the fstat and the read."""
    real = os.fstat

    def fstat(fd: int) -> os.stat_result:
        r = real(fd)
        return os.stat_result((r.st_mode, r.st_ino, r.st_dev, r.st_nlink, r.st_uid, r.st_gid, size, 0, 0, 0))

    monkeypatch.setattr(os, "fstat", fstat)


def test_read_object_file_that_grew_after_fstat_is_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "g.json"
    path.write_bytes(b'{"a": 1, "b": "' + b"x" * 5000 + b'"}')
    _shrunk_fstat(monkeypatch, 3)
    assert read_object(path) == {"a": 1, "b": "x" * 5000}


def test_read_object_file_that_grew_past_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "g.json"
    path.write_bytes(b'{"a": "' + b"x" * 500 + b'"}')
    _shrunk_fstat(monkeypatch, 3)
    with pytest.raises(JSONInputError, match="larger than the limit of 100 bytes"):
        read_object(path, max_bytes=100)


def test_read_object_refuses_huge_file_without_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:
        handle.truncate(8 << 30)  # sparse 8 GiB

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a file over the limit must not be read")

    monkeypatch.setattr(os, "read", never)
    with pytest.raises(JSONInputError, match=r"huge\.json: is 8589934592 bytes, larger than"):
        read_object(path)


def test_read_object_custom_limit(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(b'{"a": 12345}')
    with pytest.raises(JSONInputError, match="larger than the limit of 5 bytes"):
        read_object(path, max_bytes=5)


def test_read_object_through_symlink(tmp_path: Path) -> None:
    target = tmp_path / "t.json"
    target.write_bytes(b'{"a": 1}')
    link = tmp_path / "l.json"
    link.symlink_to(target)
    assert read_object(link) == {"a": 1}


# --- property: only InputError, never anything else ----------------------------------------------

_texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)  # no lone surrogates
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_texts, children, max_size=4),
    max_leaves=20,
)


def _mutations(data: bytes, cut: int, insert: bytes) -> bytes:
    cut = cut % (len(data) + 1)
    return data[:cut] + insert + data[cut:]


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_json_input_error(data: bytes) -> None:
    try:
        result = load_object(data, what="fuzz")
    except JSONInputError:
        return
    assert isinstance(result, dict)


@settings(max_examples=400)
@given(
    _json_values,
    st.integers(min_value=0),
    st.sampled_from([b"", b"{", b"}", b"[", b",", b'"', b"\\", b"NaN", b"\xff", b"\xef\xbb\xbf", b"1e999"]),
)
def test_mutated_json_parses_or_raises_json_input_error(value: object, cut: int, insert: bytes) -> None:
    data = _mutations(json.dumps({"k": value}).encode(), cut, insert)
    try:
        result = load_object(data, what="fuzz")
    except JSONInputError:
        return
    except InputError as exc:  # pragma: no cover - would be a wrong subclass
        raise AssertionError(f"unexpected InputError subclass {type(exc).__name__}") from exc
    assert isinstance(result, dict)


@settings(max_examples=300)
@given(st.dictionaries(_texts, _json_values, max_size=5))
def test_valid_objects_round_trip(value: dict[str, object]) -> None:
    assert load_object(json.dumps(value).encode(), what="fuzz") == value
