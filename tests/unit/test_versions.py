"""Tests for ledger.versions: naming, parsing, ordering and stage rules from the models README."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InputError, NamingError, VersionOrderError
from ledger.versions import (
    VersionId,
    VersionName,
    VersionRecord,
    check_append,
    check_question_id,
    expected_next,
    parent_of,
    pending_stage1,
    resolve_ref,
    slugify,
)

SLUG = "oneseek-7b-zero"


def v(text: str) -> VersionId:
    return VersionId.parse(text)


def rec(text: str, stage: int | None = None, question: str | None = None) -> VersionRecord:
    return VersionRecord(v(text), stage, question)


# --- VersionId ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "major", "micro"),
    [("v1.2", 1, 2), ("1.2", 1, 2), ("v10.0", 10, 0), ("0.0", 0, 0), ("1.10", 1, 10)],
)
def test_version_parse(text: str, major: int, micro: int) -> None:
    assert VersionId.parse(text) == VersionId(major, micro)


@pytest.mark.parametrize(
    "text",
    [
        "01.2",
        "1.02",
        "1.00",
        "+1.2",
        "-1.2",
        "1.-2",
        " 1.2",
        "1.2 ",
        "1.2\n",
        "v 1.2",
        "V1.2",
        "vv1.2",
        "1",
        "1.",
        ".2",
        "1.2.3",
        "",
        "v",
        "1,2",
        "١.٢",  # Arabic-Indic digits: int() would accept them
        "１.２",  # fullwidth digits
        "1_0.2",
        "1234567890.0",
    ],
)
def test_version_parse_refuses(text: str) -> None:
    with pytest.raises(NamingError, match="not a version"):
        VersionId.parse(text)


def test_version_parse_refuses_non_string() -> None:
    with pytest.raises(NamingError):
        VersionId.parse(1.2)  # type: ignore[arg-type]


@pytest.mark.parametrize("parts", [(-1, 0), (1, -1), (True, 0), (1, 2.0)])
def test_version_id_refuses_bad_parts(parts: tuple[object, object]) -> None:
    with pytest.raises(NamingError):
        VersionId(*parts)  # type: ignore[arg-type]


def test_version_ordering_is_numeric() -> None:
    assert v("1.10") > v("1.9")
    assert v("2.0") > v("1.99")
    assert v("10.0") > v("9.5")
    assert sorted([v("1.10"), v("1.2"), v("1.9"), v("2.0"), v("1.0")]) == [
        v("1.0"),
        v("1.2"),
        v("1.9"),
        v("1.10"),
        v("2.0"),
    ]


def test_version_str_tag_is_major() -> None:
    assert str(v("v1.2")) == "1.2"
    assert v("1.2").tag == "v1.2"
    assert v("2.0").is_major and not v("2.1").is_major
    assert v("1.2").next_micro() == v("1.3") and v("1.2").next_major() == v("2.0")


def test_version_is_frozen_and_hashable() -> None:
    version = v("1.2")
    with pytest.raises(AttributeError):
        version.major = 3  # type: ignore[misc]
    assert {version: 1}[VersionId(1, 2)] == 1


# --- slugify ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("OneSeek-7B-Zero", "oneseek-7b-zero"),
        ("a", "a"),
        ("Model_v2.1-x", "model_v2.1-x"),
        ("x" * 100, "x" * 100),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


@pytest.mark.parametrize(
    "name",
    [
        "",
        "One Seek",
        "-model",
        "model-",
        ".hidden",
        "model.",
        "a/b",
        "..",
        "x" * 101,
        "Modèle",
        "\u212aelvin",  # KELVIN SIGN lowercases to ASCII "k"
        "İstanbul",
        "model\n",
        "a\\b",
    ],
)
def test_slugify_refuses(name: str) -> None:
    with pytest.raises(NamingError, match="model name"):
        slugify(name)


# --- VersionName --------------------------------------------------------------------------------


def test_version_name_str_and_files() -> None:
    name = VersionName(SLUG, v("1.2"))
    assert str(name) == "oneseek-7b-zero-v1.2"
    assert name.weights_filename() == "oneseek-7b-zero-v1.2.pth"
    assert name.weights_filename(".safetensors") == "oneseek-7b-zero-v1.2.safetensors"
    assert name.metadata_filename() == "oneseek-7b-zero-v1.2.json"
    assert name.adapter_dirname() == "oneseek-7b-zero-v1.2"


@pytest.mark.parametrize("ext", [".json", "pth", ".bin", ""])
def test_weights_filename_refuses_other_extensions(ext: str) -> None:
    with pytest.raises(NamingError, match="weights extension"):
        VersionName(SLUG, v("1.2")).weights_filename(ext)


@pytest.mark.parametrize("slug", ["Upper", "", "a b", "-a", "x" * 101])
def test_version_name_refuses_bad_slug(slug: str) -> None:
    with pytest.raises(NamingError):
        VersionName(slug, v("1.0"))


@pytest.mark.parametrize(
    ("text", "slug", "version"),
    [
        ("oneseek-7b-zero-v1.2", SLUG, "1.2"),
        ("a-v1.10", "a", "1.10"),
        ("model-v1-v2.0", "model-v1", "2.0"),  # the last "-v" starts the version
        ("m-vx-v3.4", "m-vx", "3.4"),
    ],
)
def test_version_name_parse(text: str, slug: str, version: str) -> None:
    assert VersionName.parse(text) == VersionName(slug, v(version))
    assert str(VersionName.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "oneseek-7b-zero",
        "oneseek-7b-zero-1.2",
        "oneseek-7b-zero-v01.2",
        "oneseek-7b-zero-vv1.2",
        "OneSeek-7B-Zero-v1.2",
        "oneseek-7b-zero-v1.2 ",
        "oneseek-7b-zero-v1.2\n",
        "-v1.2",
        "v1.2",
        "oneseek-7b-zero-V1.2",
        "oneseek-7b-zero-v1.2.pth",
        "x" * 101 + "-v1.0",
    ],
)
def test_version_name_parse_refuses(text: str) -> None:
    with pytest.raises(NamingError):
        VersionName.parse(text)


@pytest.mark.parametrize(
    ("filename", "ext"),
    [
        ("oneseek-7b-zero-v1.0.pth", ".pth"),
        ("oneseek-7b-zero-v1.2.json", ".json"),
        ("oneseek-7b-zero-v2.11.safetensors", ".safetensors"),
    ],
)
def test_from_filename(filename: str, ext: str) -> None:
    name, got_ext = VersionName.from_filename(filename)
    assert got_ext == ext
    assert name.slug == SLUG
    assert str(name) + ext == filename


@pytest.mark.parametrize(
    "filename",
    [
        "oneseek-7b-zero-v1.0.bin",
        "oneseek-7b-zero-v1.0",
        "oneseek-7b-zero-v1.0.PTH",
        "OneSeek-7B-Zero-v1.0.pth",
        "oneseek-7b-zero-v1.0.pth.json",
        "oneseek-7b-zero-v01.0.json",
        "dir/oneseek-7b-zero-v1.0.pth",
        ".pth",
        "oneseek-7b-zero.json",
    ],
)
def test_from_filename_refuses(filename: str) -> None:
    with pytest.raises(NamingError, match="does not follow the convention"):
        VersionName.from_filename(filename)


# --- resolve_ref --------------------------------------------------------------------------------


def test_resolve_full_name() -> None:
    assert resolve_ref("oneseek-7b-zero-v1.2", models=["a", SLUG], model=None) == VersionName(SLUG, v("1.2"))


def test_resolve_full_name_with_matching_model() -> None:
    assert resolve_ref("a-v1.2", models=[], model="A") == VersionName("a", v("1.2"))


def test_resolve_full_name_with_other_model_refused() -> None:
    with pytest.raises(NamingError, match="does not belong"):
        resolve_ref("a-v1.2", models=["a", "b"], model="b")


@pytest.mark.parametrize("text", ["v1.2", "1.2"])
def test_resolve_short_with_model(text: str) -> None:
    assert resolve_ref(text, models=["a", SLUG], model="OneSeek-7B-Zero") == VersionName(SLUG, v("1.2"))


@pytest.mark.parametrize("text", ["v1.2", "1.2"])
def test_resolve_short_with_single_model(text: str) -> None:
    assert resolve_ref(text, models=[SLUG], model=None) == VersionName(SLUG, v("1.2"))
    assert resolve_ref(text, models=[SLUG, SLUG], model=None) == VersionName(SLUG, v("1.2"))


def test_resolve_short_ambiguous_lists_models() -> None:
    with pytest.raises(NamingError, match=r"pass --model.*models: a, b") as info:
        resolve_ref("v1.2", models=["b", "a"], model=None)
    assert "\n" not in str(info.value)


def test_resolve_short_without_models() -> None:
    with pytest.raises(NamingError, match="pass --model"):
        resolve_ref("1.2", models=[], model=None)


@pytest.mark.parametrize("text", ["", "latest", "01.2", "a-v01.2", "A-v1.2"])
def test_resolve_refuses_non_versions(text: str) -> None:
    with pytest.raises(NamingError, match="not a version"):
        resolve_ref(text, models=["a"], model=None)


def test_resolve_refuses_bad_model_option() -> None:
    with pytest.raises(NamingError, match="model name"):
        resolve_ref("1.2", models=["a"], model="bad model")


# --- ordering -----------------------------------------------------------------------------------


def test_expected_next() -> None:
    assert expected_next([]) == (v("1.0"),)
    assert expected_next([rec("1.0")]) == (v("1.1"), v("2.0"))
    assert expected_next([rec("1.0"), rec("1.1"), rec("2.0")]) == (v("2.1"), v("3.0"))
    assert expected_next([rec(f"1.{i}") for i in range(10)]) == (v("1.10"), v("2.0"))


def test_check_append_accepts_next_versions() -> None:
    check_append(SLUG, [], v("1.0"), stage=None, question=None)
    history = [rec("1.0")]
    check_append(SLUG, history, v("1.1"), stage=None, question=None)
    check_append(SLUG, history, v("2.0"), stage=None, question=None)
    check_append(SLUG, [rec(f"1.{i}") for i in range(10)], v("1.10"), stage=None, question=None)


def test_first_version_must_be_1_0() -> None:
    for new in ("0.1", "1.1", "2.0", "0.0"):
        with pytest.raises(VersionOrderError, match=r"is not next: expected v1\.0 \(first version\)"):
            check_append(SLUG, [], v(new), stage=None, question=None)


def test_duplicate_refused() -> None:
    history = [rec("1.0"), rec("1.1")]
    with pytest.raises(VersionOrderError, match=r"oneseek-7b-zero-v1\.1 already exists; expected v1\.2"):
        check_append(SLUG, history, v("1.1"), stage=None, question=None)
    with pytest.raises(VersionOrderError, match="already exists"):
        check_append(SLUG, history, v("1.0"), stage=None, question=None)


@pytest.mark.parametrize(("new", "kind"), [("1.3", "gap"), ("3.0", "gap"), ("2.1", "gap"), ("0.5", "regression")])
def test_gaps_and_regressions_refused(new: str, kind: str) -> None:
    history = [rec("1.0"), rec("1.1")]
    with pytest.raises(VersionOrderError) as info:
        check_append(SLUG, history, v(new), stage=None, question=None)
    message = str(info.value)
    assert message.startswith(f"oneseek-7b-zero-v{new} is not next: expected v1.2 (micro) or v2.0 (major)")
    assert kind in message and "latest is v1.1" in message


def test_micro_after_new_major_restarts() -> None:
    history = [rec("1.0"), rec("1.1"), rec("2.0")]
    with pytest.raises(VersionOrderError, match="regression"):
        check_append(SLUG, history, v("1.2"), stage=None, question=None)
    check_append(SLUG, history, v("2.1"), stage=None, question=None)


def test_bad_slug_refused() -> None:
    with pytest.raises(NamingError):
        check_append("Bad Slug", [], v("1.0"), stage=None, question=None)


# --- stages -------------------------------------------------------------------------------------


def test_stage_pair_accepted() -> None:
    history = [rec("1.0")]
    check_append(SLUG, history, v("1.1"), stage=1, question="q-1")
    history.append(rec("1.1", 1, "q-1"))
    check_append(SLUG, history, v("1.2"), stage=2, question="q-1")


@pytest.mark.parametrize("stage", [0, 3, -1, True])
def test_stage_must_be_1_or_2(stage: int) -> None:
    with pytest.raises(VersionOrderError, match="stage must be 1 or 2"):
        check_append(SLUG, [rec("1.0")], v("1.1"), stage=stage, question="q")


def test_stage_requires_question() -> None:
    with pytest.raises(VersionOrderError, match="needs a question id"):
        check_append(SLUG, [rec("1.0")], v("1.1"), stage=1, question=None)


def test_question_requires_stage() -> None:
    with pytest.raises(VersionOrderError, match="needs a stage"):
        check_append(SLUG, [rec("1.0")], v("1.1"), stage=None, question="q")


@pytest.mark.parametrize("question", ["", "has space", "a/b", "x" * 201, "é", "q\n", "a;b"])
def test_bad_question_ids_refused(question: str) -> None:
    with pytest.raises(NamingError, match="question id"):
        check_append(SLUG, [rec("1.0")], v("1.1"), stage=1, question=question)
    with pytest.raises(NamingError):
        check_question_id(question)


@pytest.mark.parametrize("question", ["q", "Q-1.2_x:y", "x" * 200, "2025-11-21:42"])
def test_good_question_ids(question: str) -> None:
    assert check_question_id(question) == question


def test_stage_on_major_refused() -> None:
    with pytest.raises(VersionOrderError, match=r"v2\.0 is a major version"):
        check_append(SLUG, [rec("1.0")], v("2.0"), stage=1, question="q")
    with pytest.raises(VersionOrderError, match="major version"):
        check_append(SLUG, [rec("1.0", None, None), rec("1.1", 1, "q")], v("2.0"), stage=2, question="q")


def test_stage2_must_follow_stage1_of_same_question() -> None:
    with pytest.raises(VersionOrderError, match=r'previous version v1\.1 is stage 1 of question "other"'):
        check_append(SLUG, [rec("1.0"), rec("1.1", 1, "other")], v("1.2"), stage=2, question="q")


def test_stage2_after_unstaged_refused() -> None:
    with pytest.raises(VersionOrderError, match=r"v1\.1 has no stage"):
        check_append(SLUG, [rec("1.0"), rec("1.1")], v("1.2"), stage=2, question="q")


def test_stage2_after_stage2_refused() -> None:
    history = [rec("1.0"), rec("1.1", 1, "q"), rec("1.2", 2, "q")]
    with pytest.raises(VersionOrderError, match="must directly follow its stage 1"):
        check_append(SLUG, history, v("1.3"), stage=2, question="q")


def test_stage2_not_directly_after_stage1_refused() -> None:
    history = [rec("1.0"), rec("1.1", 1, "q"), rec("1.2")]
    with pytest.raises(VersionOrderError, match="must directly follow"):
        check_append(SLUG, history, v("1.3"), stage=2, question="q")


def test_stage2_as_first_micro_refused() -> None:
    with pytest.raises(VersionOrderError, match=r"v1\.0 has no stage"):
        check_append(SLUG, [rec("1.0")], v("1.1"), stage=2, question="q")


def test_pending_stage1() -> None:
    history = [
        rec("1.0"),
        rec("1.1", 1, "a"),
        rec("1.2", 2, "a"),
        rec("1.3", 1, "b"),
        rec("1.4"),
        rec("1.5", 1, "c"),
        rec("1.6", 2, "d"),
        rec("1.7", 1, "e"),
    ]
    assert [r.version for r in pending_stage1(history)] == [v("1.3"), v("1.5"), v("1.7")]
    assert pending_stage1([]) == []


def test_parent_of() -> None:
    history = [rec("1.0"), rec("1.1"), rec("1.2")]
    assert parent_of([], v("1.0")) is None
    assert parent_of(history, v("1.3")) == v("1.2")
    assert parent_of(history, v("2.0")) == v("1.2")
    assert parent_of([*history, rec("2.0")], v("2.1")) == v("2.0")
    assert parent_of([*history, rec("2.0")], v("3.0")) == v("2.0")
    # lineage of an existing record from its prefix
    assert parent_of(history[:1], v("1.1")) == v("1.0")
    assert parent_of([rec(f"1.{i}") for i in range(11)], v("1.11")) == v("1.10")


# --- property: only NamingError, never anything else ---------------------------------------------

_version_like = st.text(alphabet="v0123456789.-+ \n", max_size=12)


@settings(max_examples=500)
@given(st.one_of(st.text(), _version_like))
def test_version_parse_total(text: str) -> None:
    try:
        parsed = VersionId.parse(text)
    except NamingError:
        return
    except InputError as exc:  # pragma: no cover
        raise AssertionError(f"wrong error class {type(exc).__name__}") from exc
    assert VersionId.parse(parsed.tag) == parsed
    assert text in (str(parsed), parsed.tag)


@settings(max_examples=500)
@given(st.one_of(st.text(), st.builds("{}-v{}".format, st.text(max_size=8), _version_like)))
def test_version_name_parse_total(text: str) -> None:
    try:
        parsed = VersionName.parse(text)
    except NamingError:
        return
    assert str(parsed) == text


@settings(max_examples=300)
@given(st.text(), st.lists(st.sampled_from(["a", "b", SLUG]), max_size=3), st.none() | st.text(max_size=10))
def test_resolve_ref_total(text: str, models: list[str], model: str | None) -> None:
    try:
        resolve_ref(text, models=models, model=model)
    except NamingError:
        return


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), max_size=6),
    st.tuples(st.integers(0, 3), st.integers(0, 5)),
)
def test_check_append_accepts_exactly_expected_next(history_parts: list[tuple[int, int]], new: tuple[int, int]) -> None:
    history = [VersionRecord(VersionId(*p), None, None) for p in history_parts]
    version = VersionId(*new)
    try:
        check_append(SLUG, history, version, stage=None, question=None)
    except VersionOrderError:
        assert version not in expected_next(history) or version in {r.version for r in history}
    else:
        assert version in expected_next(history)
        assert version not in {r.version for r in history}
