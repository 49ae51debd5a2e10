"""Model metadata files: schema validation, the committed form, and the ledger's block reference."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import importlib.resources
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ledger.errors import DigestMismatchError, InputError, MetadataError, NamingError
from ledger.versions import VersionId, VersionName, slugify

BLOCK_ID_KEY = "ledger_block_id"
BLOCK_HASH_KEY = "ledger_block_hash"
DATA_HASH_KEY = "training_data_hash"
SHA256_PREFIX = "sha256:"

_BLOCK_REFERENCE_KEYS = (BLOCK_ID_KEY, BLOCK_HASH_KEY)
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_DATA_HASH_RE = re.compile(r"sha256:[0-9a-f]{64}")
_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?(Z|\+00:00)"
)
_TIMESTAMP_OFFSET_RE = re.compile(r".*[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?[+-][0-9]{2}:[0-9]{2}")
_MAX_SAFE_INTEGER = 2**53 - 1  # RFC 8785 / I-JSON: integers must be exact as IEEE doubles

_PATTERN_MESSAGES = {
    "/version": "must be MAJOR.MICRO without leading zeros, e.g. 1.2",
    "/timestamp": "must be an RFC 3339 time in UTC, e.g. 2025-11-21T08:00:00Z",
    "/provenance/training_data_hash": "must be 'sha256:' followed by 64 lowercase hex digits",
    "/provenance/ledger_block_hash": "must be 64 lowercase hex digits",
}
_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "object": "an object",
    "array": "an array",
    "boolean": "true or false",
    "null": "null",
}


# --- JSON pointers ------------------------------------------------------------------------------


def _escape(part: str | int) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def pointer(*parts: str | int) -> str:
    """The RFC 6901 JSON pointer of a path, e.g. ``pointer("metrics", "bias_score")``."""
    return "".join("/" + _escape(part) for part in parts)


def _show(value: Any, limit: int = 60) -> str:
    """A short one-line rendering of a JSON value for messages."""
    try:
        text = json.dumps(value, ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --- schema -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class _Problem:
    """One validation problem; ordered by path so the reported error is deterministic."""

    key: tuple[tuple[int, int, str], ...]
    pointer: str
    message: str


def _problem(path: tuple[str | int, ...], message: str) -> _Problem:
    key = tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in path)
    return _Problem(key, pointer(*path), message)


def load_schema() -> dict[str, Any]:
    """The metadata JSON Schema (draft 2020-12) shipped in ``ledger/schemas``."""
    return copy.deepcopy(_schema())


@functools.cache
def _schema() -> dict[str, Any]:
    resource = importlib.resources.files("ledger") / "schemas" / "metadata.schema.json"
    loaded = json.loads(resource.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise InputError("the shipped metadata schema is not a JSON object")  # pragma: no cover
    return loaded


def _is_strict_integer(_checker: Any, instance: Any) -> bool:
    """JSON Schema counts 3.0 as an integer; the ledger wants a real integer (and never a bool)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


@functools.cache
def _validator() -> Any:
    import jsonschema

    base = jsonschema.Draft202012Validator
    cls = jsonschema.validators.extend(base, type_checker=base.TYPE_CHECKER.redefine("integer", _is_strict_integer))
    return cls(_schema())


def _schema_problems(meta: dict[str, Any]) -> Iterator[_Problem]:
    for error in _validator().iter_errors(meta):
        path = tuple(error.absolute_path)
        keyword = error.validator
        schema = error.schema if isinstance(error.schema, dict) else {}
        where = pointer(*path)
        if keyword == "required":
            present = error.instance if isinstance(error.instance, dict) else {}
            for name in error.validator_value:
                if name not in present:
                    yield _problem((*path, name), "is required")
        elif keyword == "type":
            wanted = str(schema.get("type"))
            yield _problem(path, f"must be {_TYPE_NAMES.get(wanted, wanted)}, got {_json_type(error.instance)}")
        elif keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if "minimum" in schema and "maximum" in schema:
                bound = f"in [{schema['minimum']}, {schema['maximum']}]"
            elif "minimum" in schema:
                bound = f">= {schema['minimum']}"
            elif "exclusiveMinimum" in schema:
                bound = f"> {schema['exclusiveMinimum']}"
            else:
                bound = f"within the bound {error.validator_value}"
            yield _problem(path, f"must be {bound}, got {_show(error.instance)}")
        elif keyword == "pattern" and where == "/timestamp":
            try:  # say why: not UTC, not RFC 3339, or not a real date
                parse_timestamp(error.instance)
            except InputError as exc:
                yield _problem(path, str(exc))
            else:  # pragma: no cover - parse_timestamp is stricter than the pattern
                yield _problem(path, f"{_PATTERN_MESSAGES[where]}, got {_show(error.instance)}")
        elif keyword in ("pattern", "maxLength") or (keyword == "minLength" and where in _PATTERN_MESSAGES):
            message = _PATTERN_MESSAGES.get(where, f"must match the pattern {schema.get('pattern')}")
            yield _problem(path, f"{message}, got {_show(error.instance)}")
        elif keyword == "minLength":
            yield _problem(path, "must not be empty")
        else:  # pragma: no cover - the schema uses only the keywords above
            yield _problem(path, " ".join(str(error.message).split())[:200])


# --- checks the schema cannot express -----------------------------------------------------------


def _json_problems(meta: Any) -> Iterator[_Problem]:
    """Values a JSON document cannot hold or RFC 8785 cannot encode (for dicts not from strictjson)."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), meta)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    yield _problem(path, f"object key {_show(key)} is not a string")
                    continue
                if any(0xD800 <= ord(ch) <= 0xDFFF for ch in key):
                    yield _problem((*path, key), "key contains an unpaired surrogate")
                stack.append(((*path, key), value))
        elif isinstance(node, list):
            stack.extend(((*path, index), value) for index, value in enumerate(node))
        elif isinstance(node, str):
            if any(0xD800 <= ord(ch) <= 0xDFFF for ch in node):
                yield _problem(path, "string contains an unpaired surrogate")
        elif isinstance(node, bool) or node is None:
            continue
        elif isinstance(node, int):
            if abs(node) > _MAX_SAFE_INTEGER:
                yield _problem(path, f"integer {_show(node)} is outside the exact range ±(2^53-1)")
        elif isinstance(node, float):
            if not math.isfinite(node):
                yield _problem(path, f"must be a finite number, got {node!r}")
        else:
            yield _problem(path, f"{type(node).__name__} is not a JSON value")


def parse_timestamp(text: str) -> dt.datetime:
    """Parse an RFC 3339 UTC timestamp (``Z`` or ``+00:00``) into an aware datetime; else InputError."""
    match = _TIMESTAMP_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        if isinstance(text, str) and _TIMESTAMP_OFFSET_RE.fullmatch(text):
            raise InputError(f"timestamp {_show(text)} is not in UTC; use Z or +00:00")
        raise InputError(f"timestamp {_show(text)} is not RFC 3339 UTC, e.g. 2025-11-21T08:00:00Z")
    year, month, day, hour, minute, second, fraction, _zone = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        return dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=dt.UTC)
    except ValueError:
        raise InputError(f"timestamp {_show(text)} is not a valid date and time") from None


def _cross_problems(meta: dict[str, Any], expected: VersionName, failed: set[str]) -> Iterator[_Problem]:
    version = meta.get("version")
    if isinstance(version, str) and "/version" not in failed:
        try:
            parsed = VersionId.parse(version)
        except NamingError:
            yield _problem(("version",), f"{_PATTERN_MESSAGES['/version']}, got {_show(version)}")
        else:
            if parsed != expected.version:
                yield _problem(("version",), f"is {parsed} but the file name {expected} says {expected.version}")
    model_name = meta.get("model_name")
    if isinstance(model_name, str) and "/model_name" not in failed:
        try:
            slug = slugify(model_name)
        except NamingError as exc:
            yield _problem(("model_name",), str(exc))
        else:
            if slug != expected.slug:
                yield _problem(
                    ("model_name",),
                    f"{_show(model_name)} gives slug {slug!r} but the file name {expected} has {expected.slug!r}",
                )
    timestamp = meta.get("timestamp")
    if isinstance(timestamp, str) and "/timestamp" not in failed:
        try:
            parse_timestamp(timestamp)
        except InputError as exc:
            yield _problem(("timestamp",), str(exc))


# --- public API ---------------------------------------------------------------------------------


def validate(meta: dict[str, Any], *, expected: VersionName) -> dict[str, Any]:
    """Check metadata against the schema and its file name; return the committed form.

    Raises MetadataError for the first problem in path order (deterministic), with its JSON pointer.
    ``version`` must equal the file name's version and ``model_name`` must slugify to its slug.
    """
    if not isinstance(meta, dict):
        raise MetadataError("", f"must be a JSON object, got {_json_type(meta)}")
    problems = sorted(_json_problems(meta))
    if problems:  # the schema validator must not see non-JSON values
        raise MetadataError(problems[0].pointer, problems[0].message)
    problems = sorted(_schema_problems(meta))
    failed = {problem.pointer for problem in problems}
    problems = sorted([*problems, *_cross_problems(meta, expected, failed)])
    if problems:
        raise MetadataError(problems[0].pointer, problems[0].message)
    return committed_form(meta)


def committed_form(meta: dict[str, Any]) -> dict[str, Any]:
    """A deep copy without the block reference (``ledger_block_id``/``_hash``), which the ledger writes
    back after the append and so cannot be part of what is committed; nothing else is changed."""
    result = copy.deepcopy(meta)
    provenance = result.get("provenance")
    if isinstance(provenance, dict):
        for key in _BLOCK_REFERENCE_KEYS:
            provenance.pop(key, None)
    return result


def _provenance_of(meta: dict[str, Any]) -> dict[str, Any]:
    provenance = meta.get("provenance") if isinstance(meta, dict) else None
    if not isinstance(provenance, dict):
        raise MetadataError("/provenance", "is required and must be an object")
    return provenance


def with_block_reference(meta: dict[str, Any], *, height: int, block_hash: str) -> dict[str, Any]:
    """A copy with ``provenance.ledger_block_id = "block-<height>"`` and ``ledger_block_hash`` set,
    for writing back to the metadata file after the append."""
    if type(height) is not int or height < 0:
        raise MetadataError(pointer("provenance", BLOCK_ID_KEY), f"height must be an integer >= 0, got {height!r}")
    if not isinstance(block_hash, str) or _HEX64_RE.fullmatch(block_hash) is None:
        raise MetadataError(
            pointer("provenance", BLOCK_HASH_KEY), f"{_PATTERN_MESSAGES['/provenance/ledger_block_hash']}"
        )
    result = copy.deepcopy(meta)
    provenance = _provenance_of(result)
    provenance[BLOCK_ID_KEY] = f"block-{height}"
    provenance[BLOCK_HASH_KEY] = block_hash
    return result


def _data_hash_value(digest_hex: str) -> str:
    if not isinstance(digest_hex, str) or _HEX64_RE.fullmatch(digest_hex) is None:
        raise InputError(f"training data digest must be 64 lowercase hex digits, got {_show(digest_hex)}")
    return SHA256_PREFIX + digest_hex


def check_training_data_hash(meta: dict[str, Any], digest_hex: str) -> bool:
    """Compare the file's ``training_data_hash`` with the digest computed from --data.

    Returns True if present and equal, False if absent; DigestMismatchError (naming both) if they
    differ, MetadataError if the present value is malformed.
    """
    computed = _data_hash_value(digest_hex)
    provenance = _provenance_of(meta)
    if DATA_HASH_KEY not in provenance:
        return False
    stated = provenance[DATA_HASH_KEY]
    if not isinstance(stated, str) or _DATA_HASH_RE.fullmatch(stated) is None:
        raise MetadataError(
            pointer("provenance", DATA_HASH_KEY),
            f"{_PATTERN_MESSAGES['/provenance/training_data_hash']}, got {_show(stated)}",
        )
    if stated != computed:
        raise DigestMismatchError(
            f"training data hash mismatch: metadata says {stated} but --data hashes to {computed}"
        )
    return True


def fill_training_data_hash(meta: dict[str, Any], digest_hex: str) -> dict[str, Any]:
    """A copy with ``provenance.training_data_hash`` set from --data; a different stated hash is refused."""
    result = copy.deepcopy(meta)
    if not check_training_data_hash(result, digest_hex):
        _provenance_of(result)[DATA_HASH_KEY] = _data_hash_value(digest_hex)
    return result


def _same_leaf(left: Any, right: Any) -> bool:
    """Equal as JSON values: 1 and 1.0 are the same number (same canonical form), true is not 1."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    return type(left) is type(right) and left == right


def _diff(left: Any, right: Any, path: tuple[str | int, ...], out: list[str]) -> None:
    if isinstance(left, dict) and isinstance(right, dict):
        for key in sorted(set(left) | set(right)):
            if key not in left or key not in right:
                out.append(pointer(*path, key))
            else:
                _diff(left[key], right[key], (*path, key), out)
    elif isinstance(left, list) and isinstance(right, list):
        for index in range(max(len(left), len(right))):
            if index >= len(left) or index >= len(right):
                out.append(pointer(*path, index))
            else:
                _diff(left[index], right[index], (*path, index), out)
    elif isinstance(left, dict | list) or isinstance(right, dict | list) or not _same_leaf(left, right):
        out.append(pointer(*path))


def differs_from_committed(on_disk: dict[str, Any], committed: dict[str, Any]) -> list[str]:
    """JSON pointers where the file on disk differs from what was committed (audit ``metadata-mismatch``).

    The block reference fields are ignored: the ledger writes them after committing.
    """
    left, right = _without_block_reference(on_disk), _without_block_reference(committed)
    # The usual answer, "no difference", at C speed: equal sorted encodings mean equal values of equal JSON
    # types (Python's == alone would take true for 1). Anything else, 1 against 1.0 included, and values
    # orjson refuses (integers beyond 64 bits), gets the exact walk.
    try:
        if orjson.dumps(left, option=orjson.OPT_SORT_KEYS) == orjson.dumps(right, option=orjson.OPT_SORT_KEYS):
            return []
    except TypeError:
        pass
    out: list[str] = []
    _diff(left, right, (), out)
    return out


def _without_block_reference(meta: dict[str, Any]) -> dict[str, Any]:
    """``committed_form`` for reading only: shares everything but the provenance object (no deep copy; the
    audit compares thousands of metadata files)."""
    provenance = meta.get("provenance")
    if not isinstance(provenance, dict) or provenance.keys().isdisjoint(_BLOCK_REFERENCE_KEYS):
        return meta
    return {**meta, "provenance": {k: v for k, v in provenance.items() if k not in _BLOCK_REFERENCE_KEYS}}
