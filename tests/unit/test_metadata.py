"""Tests for ledger.metadata and the shipped schema: each refusal gives MetadataError with its pointer."""

from __future__ import annotations

import copy
import importlib.resources
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import DigestMismatchError, InputError, MetadataError
from ledger.metadata import (
    check_training_data_hash,
    committed_form,
    differs_from_committed,
    fill_training_data_hash,
    load_schema,
    parse_timestamp,
    pointer,
    validate,
    with_block_reference,
)
from ledger.strictjson import load_object
from ledger.versions import VersionId, VersionName

DATA_HEX = "3f" * 32
BLOCK_HEX = "ab" * 32
NAME = VersionName("oneseek-7b-zero", VersionId(1, 0))

# The seed README's example, verbatim except for a real sha256 digest.
SEED_TEXT = """{
  "version": "1.0",
  "model_name": "OneSeek-7B-Zero",
  "timestamp": "2025-11-21T08:00:00Z",
  "base_models": ["Mistral-7B", "LLaMA-2"],
  "training_config": {
    "dataset_size": 1000,
    "epochs": 3,
    "batch_size": 32,
    "learning_rate": 2e-5,
    "use_lora": true,
    "lora_rank": 8,
    "lora_alpha": 32
  },
  "metrics": {
    "validation_accuracy": 0.876,
    "fairness_score": 0.912,
    "bias_score": 0.123
  },
  "provenance": {
    "training_data_hash": "sha256:HASH",
    "ledger_block_id": "block-123",
    "trainer": "OneSeek-Training-Pipeline"
  }
}
""".replace("HASH", DATA_HEX)


def seed() -> dict[str, Any]:
    return load_object(SEED_TEXT.encode(), what="oneseek-7b-zero-v1.0.json")


def error_of(meta: Any, expected: VersionName = NAME) -> MetadataError:
    with pytest.raises(MetadataError) as info:
        validate(meta, expected=expected)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"metadata {info.value.pointer or '/'}: ")
    return info.value


def _parent(meta: dict[str, Any], ptr: str) -> tuple[Any, str | int]:
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in ptr.strip("/").split("/")]
    node: Any = meta
    for part in parts[:-1]:
        node = node[part]
    return node, parts[-1]


def set_at(meta: dict[str, Any], ptr: str, value: Any) -> dict[str, Any]:
    node, last = _parent(meta, ptr)
    node[last] = value
    return meta


def delete_at(meta: dict[str, Any], ptr: str) -> dict[str, Any]:
    node, last = _parent(meta, ptr)
    del node[last]
    return meta


# --- schema file --------------------------------------------------------------------------------


def test_schema_is_shipped_and_valid_2020_12() -> None:
    resource = importlib.resources.files("ledger") / "schemas" / "metadata.schema.json"
    schema = json.loads(resource.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == load_schema()
    assert "required" in schema["description"].lower()


def test_load_schema_returns_a_copy() -> None:
    load_schema()["required"].clear()
    assert "version" in load_schema()["required"]


# --- the seed example ---------------------------------------------------------------------------


def test_seed_example_validates_and_commits_without_block_reference() -> None:
    meta = seed()
    committed = validate(meta, expected=NAME)
    assert "ledger_block_id" not in committed["provenance"]
    assert committed["provenance"]["training_data_hash"] == "sha256:" + DATA_HEX
    assert meta["provenance"]["ledger_block_id"] == "block-123"  # input not mutated
    expected = seed()
    del expected["provenance"]["ledger_block_id"]
    assert committed == expected


def test_seed_placeholder_hash_is_refused() -> None:
    meta = set_at(seed(), "/provenance/training_data_hash", "sha256:...")
    assert error_of(meta).pointer == "/provenance/training_data_hash"


def test_extra_keys_are_kept_everywhere() -> None:
    meta = seed()
    meta["notes"] = {"free": ["form", 1]}
    meta["training_config"]["warmup_steps"] = 10
    meta["metrics"]["toxicity"] = 0.01
    meta["provenance"]["git_commit"] = "abc"
    committed = validate(meta, expected=NAME)
    assert committed["notes"] == {"free": ["form", 1]}
    assert committed["training_config"]["warmup_steps"] == 10
    assert committed["metrics"]["toxicity"] == 0.01
    assert committed["provenance"]["git_commit"] == "abc"


def test_optional_fields_may_be_absent() -> None:
    meta = seed()
    for key in ("training_data_hash", "ledger_block_id"):
        del meta["provenance"][key]
    meta["base_models"] = []
    assert validate(meta, expected=NAME)["provenance"] == {"trainer": "OneSeek-Training-Pipeline"}


def test_block_hash_in_file_is_checked_but_not_committed() -> None:
    meta = set_at(seed(), "/provenance/ledger_block_hash", BLOCK_HEX)
    assert "ledger_block_hash" not in validate(meta, expected=NAME)["provenance"]
    set_at(meta, "/provenance/ledger_block_hash", BLOCK_HEX.upper())
    assert error_of(meta).pointer == "/provenance/ledger_block_hash"


# --- required fields ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ptr",
    [
        "/version",
        "/model_name",
        "/timestamp",
        "/base_models",
        "/training_config",
        "/metrics",
        "/provenance",
        "/training_config/dataset_size",
        "/training_config/epochs",
        "/training_config/batch_size",
        "/training_config/learning_rate",
        "/training_config/use_lora",
        "/training_config/lora_rank",
        "/training_config/lora_alpha",
        "/metrics/validation_accuracy",
        "/metrics/fairness_score",
        "/metrics/bias_score",
        "/provenance/trainer",
    ],
)
def test_missing_required_field(ptr: str) -> None:
    error = error_of(delete_at(seed(), ptr))
    assert error.pointer == ptr
    assert "is required" in str(error)


def test_missing_fields_report_first_in_path_order() -> None:
    meta = delete_at(delete_at(seed(), "/version"), "/metrics/bias_score")
    assert error_of(meta).pointer == "/metrics/bias_score"
    meta = delete_at(delete_at(seed(), "/timestamp"), "/model_name")
    assert error_of(meta).pointer == "/model_name"


def test_array_index_order_is_numeric() -> None:
    meta = seed()
    meta["base_models"] = ["a"] * 10 + ["", ""]
    meta["base_models"][2] = 5
    assert error_of(meta).pointer == "/base_models/2"


# --- wrong types and ranges ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ptr", "value", "wanted"),
    [
        ("/version", 1.0, "a string"),
        ("/model_name", ["x"], "a string"),
        ("/timestamp", 1732176000, "a string"),
        ("/base_models", "Mistral-7B", "an array"),
        ("/base_models/0", 7, "a string"),
        ("/training_config", [], "an object"),
        ("/training_config/dataset_size", 1000.0, "an integer"),
        ("/training_config/dataset_size", "1000", "an integer"),
        ("/training_config/epochs", True, "an integer"),
        ("/training_config/batch_size", 32.5, "an integer"),
        ("/training_config/learning_rate", "2e-5", "a number"),
        ("/training_config/learning_rate", True, "a number"),
        ("/training_config/use_lora", 1, "true or false"),
        ("/training_config/use_lora", "true", "true or false"),
        ("/training_config/lora_rank", None, "an integer"),
        ("/training_config/lora_alpha", "32", "a number"),
        ("/metrics", None, "an object"),
        ("/metrics/bias_score", "0.1", "a number"),
        ("/metrics/fairness_score", False, "a number"),
        ("/provenance", "x", "an object"),
        ("/provenance/trainer", 3, "a string"),
        ("/provenance/training_data_hash", 5, "a string"),
        ("/provenance/ledger_block_id", 123, "a string"),
    ],
)
def test_wrong_types(ptr: str, value: Any, wanted: str) -> None:
    error = error_of(set_at(seed(), ptr, value))
    assert error.pointer == ptr
    assert f"must be {wanted}" in str(error)


@pytest.mark.parametrize(
    ("ptr", "value", "bound"),
    [
        ("/metrics/bias_score", 1.5, "in [0, 1]"),
        ("/metrics/bias_score", -0.01, "in [0, 1]"),
        ("/metrics/validation_accuracy", 1.0000001, "in [0, 1]"),
        ("/metrics/fairness_score", 2, "in [0, 1]"),
        ("/training_config/dataset_size", -1, ">= 0"),
        ("/training_config/epochs", -3, ">= 0"),
        ("/training_config/batch_size", 0, ">= 1"),
        ("/training_config/learning_rate", 0, "> 0"),
        ("/training_config/learning_rate", -2e-5, "> 0"),
        ("/training_config/lora_rank", -8, ">= 0"),
        ("/training_config/lora_alpha", -0.5, ">= 0"),
    ],
)
def test_out_of_range(ptr: str, value: Any, bound: str) -> None:
    error = error_of(set_at(seed(), ptr, value))
    assert error.pointer == ptr
    assert f"must be {bound}, got {json.dumps(value)}" in str(error)


@pytest.mark.parametrize(
    ("ptr", "value"),
    [
        ("/metrics/bias_score", 0),
        ("/metrics/bias_score", 1),
        ("/metrics/bias_score", 0.0),
        ("/training_config/epochs", 0),
        ("/training_config/lora_rank", 0),
        ("/training_config/lora_alpha", 16.5),
        ("/training_config/learning_rate", 1e-300),
    ],
)
def test_boundaries_accepted(ptr: str, value: Any) -> None:
    validate(set_at(seed(), ptr, value), expected=NAME)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_from_python_refused(value: float) -> None:
    error = error_of(set_at(seed(), "/metrics/bias_score", value))
    assert error.pointer == "/metrics/bias_score"
    assert "finite" in str(error)


def test_nan_in_file_refused_by_parser() -> None:
    with pytest.raises(InputError, match="NaN"):
        load_object(SEED_TEXT.replace("0.123", "NaN").encode(), what="m.json")


def test_integers_beyond_2_53_refused_anywhere() -> None:
    meta = seed()
    meta["extra"] = {"big": [2**53]}
    error = error_of(meta)
    assert error.pointer == "/extra/big/0"
    assert "range" in str(error)
    meta["extra"] = {"big": [2**53 - 1, -(2**53 - 1)]}
    validate(meta, expected=NAME)


def test_non_json_python_values_refused() -> None:
    meta = seed()
    meta["extra"] = {"t": (1, 2)}
    assert error_of(meta).pointer == "/extra/t"
    meta["extra"] = {1: "x"}
    assert "not a string" in str(error_of(meta))
    meta["extra"] = {"s": "\ud800"}
    assert "surrogate" in str(error_of(meta))


def test_top_level_not_object() -> None:
    error = error_of([seed()])
    assert error.pointer == "" and str(error) == "metadata /: must be a JSON object, got an array"


def test_empty_strings_refused() -> None:
    meta = set_at(seed(), "/base_models/1", "")
    assert error_of(meta).pointer == "/base_models/1"
    meta = set_at(seed(), "/provenance/trainer", "")
    assert "must not be empty" in str(error_of(meta))


@pytest.mark.parametrize(
    "value",
    [
        "sha256:" + DATA_HEX.upper(),
        "sha256:" + DATA_HEX[:-1],
        "sha256:" + DATA_HEX + "0",
        "sha256:" + DATA_HEX + "\n",
        "SHA256:" + DATA_HEX,
        DATA_HEX,
        "sha512:" + DATA_HEX,
    ],
)
def test_bad_training_data_hash(value: str) -> None:
    error = error_of(set_at(seed(), "/provenance/training_data_hash", value))
    assert error.pointer == "/provenance/training_data_hash"
    assert "64 lowercase hex" in str(error)


# --- version, model name, timestamp cross-checks ------------------------------------------------


@pytest.mark.parametrize("value", ["v1.0", "01.0", "1", "1.0.0", " 1.0", "1.0\n", "1.00", "+1.0"])
def test_malformed_version(value: str) -> None:
    error = error_of(set_at(seed(), "/version", value))
    assert error.pointer == "/version"
    assert "MAJOR.MICRO" in str(error)


def test_version_must_match_file_name() -> None:
    error = error_of(set_at(seed(), "/version", "1.1"))
    assert error.pointer == "/version"
    assert "is 1.1 but the file name oneseek-7b-zero-v1.0 says 1.0" in str(error)
    validate(seed(), expected=NAME)
    ten = VersionName("oneseek-7b-zero", VersionId(1, 10))
    validate(set_at(seed(), "/version", "1.10"), expected=ten)
    assert error_of(set_at(seed(), "/version", "1.1"), ten).pointer == "/version"


def test_model_name_must_match_file_name() -> None:
    error = error_of(set_at(seed(), "/model_name", "OneSeek-13B"))
    assert error.pointer == "/model_name"
    assert "oneseek-13b" in str(error) and "oneseek-7b-zero" in str(error)
    validate(set_at(seed(), "/model_name", "oneseek-7b-zero"), expected=NAME)
    validate(set_at(seed(), "/model_name", "ONESEEK-7B-ZERO"), expected=NAME)


@pytest.mark.parametrize("value", ["One Seek", "", "-x", "Modèle"])
def test_model_name_without_valid_slug(value: str) -> None:
    assert error_of(set_at(seed(), "/model_name", value)).pointer == "/model_name"


@pytest.mark.parametrize(
    "value",
    [
        "2025-11-21T08:00:00Z",
        "2025-11-21T08:00:00+00:00",
        "2025-11-21T08:00:00.123456Z",
        "2025-11-21T08:00:00.1Z",
        "2025-11-21T08:00:00.123456789+00:00",
        "2024-02-29T23:59:59Z",
    ],
)
def test_timestamps_accepted(value: str) -> None:
    validate(set_at(seed(), "/timestamp", value), expected=NAME)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2025-11-21T08:00:00+01:00", "not in UTC"),
        ("2025-11-21T08:00:00-00:00", "not in UTC"),
        ("2025-11-21T08:00:00-05:00", "not in UTC"),
        ("2025-11-21T08:00:00", "RFC 3339"),
        ("2025-11-21 08:00:00Z", "RFC 3339"),
        ("2025-11-21", "RFC 3339"),
        ("20251121T080000Z", "RFC 3339"),
        ("2025-11-21T08:00Z", "RFC 3339"),
        ("2025-11-21T08:00:00Z\n", "RFC 3339"),
        ("2025-02-30T08:00:00Z", "not a valid date"),
        ("2025-13-01T08:00:00Z", "not a valid date"),
        ("2025-11-21T24:00:00Z", "not a valid date"),
        ("2025-11-21T08:00:60Z", "not a valid date"),
        ("2023-02-29T00:00:00Z", "not a valid date"),
        ("yesterday", "RFC 3339"),
    ],
)
def test_timestamps_refused(value: str, reason: str) -> None:
    error = error_of(set_at(seed(), "/timestamp", value))
    assert error.pointer == "/timestamp"
    assert reason in str(error)


def test_parse_timestamp_value() -> None:
    parsed = parse_timestamp("2025-11-21T08:00:00.5+00:00")
    assert parsed.isoformat() == "2025-11-21T08:00:00.500000+00:00"


# --- committed form and block reference ---------------------------------------------------------


def test_committed_form_removes_only_block_reference() -> None:
    meta = with_block_reference(seed(), height=7, block_hash=BLOCK_HEX)
    meta["x"] = {"ledger_block_id": "kept: not under provenance"}
    committed = committed_form(meta)
    assert "ledger_block_id" not in committed["provenance"]
    assert "ledger_block_hash" not in committed["provenance"]
    assert committed["x"] == {"ledger_block_id": "kept: not under provenance"}
    rest = copy.deepcopy(meta)
    del rest["provenance"]["ledger_block_id"], rest["provenance"]["ledger_block_hash"]
    assert committed == rest
    assert meta["provenance"]["ledger_block_id"] == "block-7"  # input untouched


def test_committed_form_is_a_deep_copy() -> None:
    meta = seed()
    committed = committed_form(meta)
    committed["training_config"]["epochs"] = 99
    assert meta["training_config"]["epochs"] == 3


def test_committed_form_tolerates_missing_provenance() -> None:
    assert committed_form({"a": 1}) == {"a": 1}


def test_with_block_reference() -> None:
    meta = seed()
    result = with_block_reference(meta, height=123, block_hash=BLOCK_HEX)
    assert result["provenance"]["ledger_block_id"] == "block-123"
    assert result["provenance"]["ledger_block_hash"] == BLOCK_HEX
    assert "ledger_block_hash" not in meta["provenance"]
    assert validate(result, expected=NAME) == committed_form(meta)


@pytest.mark.parametrize(
    ("height", "block_hash", "ptr"),
    [
        (-1, BLOCK_HEX, "/provenance/ledger_block_id"),
        (True, BLOCK_HEX, "/provenance/ledger_block_id"),
        (1, BLOCK_HEX.upper(), "/provenance/ledger_block_hash"),
        (1, "ab", "/provenance/ledger_block_hash"),
    ],
)
def test_with_block_reference_refuses_bad_input(height: int, block_hash: str, ptr: str) -> None:
    with pytest.raises(MetadataError) as info:
        with_block_reference(seed(), height=height, block_hash=block_hash)
    assert info.value.pointer == ptr


def test_with_block_reference_needs_provenance() -> None:
    with pytest.raises(MetadataError) as info:
        with_block_reference({"a": 1}, height=1, block_hash=BLOCK_HEX)
    assert info.value.pointer == "/provenance"


# --- training data hash -------------------------------------------------------------------------


def test_fill_training_data_hash_when_absent() -> None:
    meta = delete_at(seed(), "/provenance/training_data_hash")
    assert check_training_data_hash(meta, DATA_HEX) is False
    filled = fill_training_data_hash(meta, DATA_HEX)
    assert filled["provenance"]["training_data_hash"] == "sha256:" + DATA_HEX
    assert "training_data_hash" not in meta["provenance"]


def test_fill_training_data_hash_when_equal() -> None:
    assert check_training_data_hash(seed(), DATA_HEX) is True
    assert fill_training_data_hash(seed(), DATA_HEX) == seed()


def test_training_data_hash_mismatch_names_both() -> None:
    other = "00" * 32
    with pytest.raises(DigestMismatchError) as info:
        fill_training_data_hash(seed(), other)
    assert f"sha256:{DATA_HEX}" in str(info.value) and f"sha256:{other}" in str(info.value)


def test_training_data_hash_malformed_in_file() -> None:
    meta = set_at(seed(), "/provenance/training_data_hash", "sha256:...")
    with pytest.raises(MetadataError) as info:
        fill_training_data_hash(meta, DATA_HEX)
    assert info.value.pointer == "/provenance/training_data_hash"


@pytest.mark.parametrize("digest", ["", DATA_HEX.upper(), "sha256:" + DATA_HEX, DATA_HEX[:-2]])
def test_training_data_digest_argument_checked(digest: str) -> None:
    with pytest.raises(InputError, match="64 lowercase hex"):
        fill_training_data_hash(seed(), digest)


def test_training_data_hash_needs_provenance() -> None:
    with pytest.raises(MetadataError, match="/provenance"):
        fill_training_data_hash({"a": 1}, DATA_HEX)


# --- differs_from_committed ---------------------------------------------------------------------


def test_no_difference_ignoring_block_reference() -> None:
    committed = validate(seed(), expected=NAME)
    on_disk = with_block_reference(seed(), height=5, block_hash=BLOCK_HEX)
    assert differs_from_committed(on_disk, committed) == []
    assert differs_from_committed(committed, on_disk) == []
    assert on_disk["provenance"]["ledger_block_id"] == "block-5"  # the inputs are read, never changed


def test_differences_are_reported_as_pointers() -> None:
    committed = validate(seed(), expected=NAME)
    on_disk = seed()
    on_disk["metrics"]["bias_score"] = 0.5
    on_disk["base_models"].append("Extra")
    del on_disk["timestamp"]
    on_disk["new/key~x"] = 1
    on_disk["training_config"]["use_lora"] = 1  # true vs 1 are different JSON
    assert differs_from_committed(on_disk, committed) == [
        "/base_models/2",
        "/metrics/bias_score",
        "/new~1key~0x",
        "/timestamp",
        "/training_config/use_lora",
    ]


def test_int_and_equal_float_are_not_a_difference() -> None:
    committed = validate(seed(), expected=NAME)
    on_disk = set_at(seed(), "/training_config/lora_alpha", 32.0)
    assert differs_from_committed(on_disk, committed) == []


def test_type_change_is_a_difference() -> None:
    committed = validate(seed(), expected=NAME)
    assert differs_from_committed(set_at(seed(), "/metrics", []), committed) == ["/metrics"]
    assert differs_from_committed(set_at(seed(), "/version", 1.0), committed) == ["/version"]


def test_integers_beyond_64_bits_are_compared_exactly() -> None:
    """The fast equality check cannot encode them; the exact walk still decides, either way."""
    committed = set_at(validate(seed(), expected=NAME), "/training_config/seed", 2**70)
    assert differs_from_committed(set_at(seed(), "/training_config/seed", 2**70), committed) == []
    assert differs_from_committed(set_at(seed(), "/training_config/seed", 2**70 + 1), committed) == [
        "/training_config/seed"
    ]


def test_pointer_escaping() -> None:
    assert pointer("a/b", "c~d", 0) == "/a~1b/c~0d/0"
    assert pointer() == ""


# --- property: arbitrary input gives MetadataError or a committed form ----------------------------

_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
_values = st.recursive(
    _leaves,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=10,
)
_seed_paths = [
    "/version",
    "/model_name",
    "/timestamp",
    "/base_models",
    "/training_config/epochs",
    "/training_config/learning_rate",
    "/metrics/bias_score",
    "/provenance/training_data_hash",
    "/provenance",
]


@settings(max_examples=400)
@given(st.sampled_from(_seed_paths), _values)
def test_any_mutation_gives_metadata_error_or_valid(ptr: str, value: Any) -> None:
    meta = set_at(seed(), ptr, value)
    try:
        committed = validate(meta, expected=NAME)
    except MetadataError as exc:
        assert exc.pointer.startswith(ptr) or exc.pointer == ptr.rsplit("/", 1)[0]
        return
    assert committed == committed_form(meta)


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=12), _values, max_size=8))
def test_arbitrary_objects_give_metadata_error(meta: dict[str, Any]) -> None:
    with pytest.raises(MetadataError):
        validate(meta, expected=NAME)
