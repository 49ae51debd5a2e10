"""Version naming and ordering as the models README defines it: ``{slug}-v{MAJOR}.{MICRO}``, stages."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from ledger.errors import NamingError, VersionOrderError

SLUG_MAX_LEN = 100
QUESTION_MAX_LEN = 200
WEIGHTS_EXTENSIONS = (".pth", ".safetensors")
METADATA_EXTENSION = ".json"
FILE_EXTENSIONS = (*WEIGHTS_EXTENSIONS, METADATA_EXTENSION)

_NUMBER = r"(0|[1-9][0-9]{0,8})"  # no leading zeros, no signs, ASCII digits only, at most 9 digits
_VERSION_RE = re.compile(rf"{_NUMBER}\.{_NUMBER}")
_SLUG_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")
_QUESTION_RE = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_MAX_NAME_LEN = SLUG_MAX_LEN + 2 + 19  # slug, "-v", "MAJOR.MICRO"


def _quote(text: str, limit: int = 80) -> str:
    """Quote user text for a one-line message."""
    quoted = json.dumps(text, ensure_ascii=True)
    return quoted if len(quoted) <= limit else quoted[: limit - 4] + '..."'


@dataclass(frozen=True, slots=True, order=True)
class VersionId:
    """A version ``MAJOR.MICRO``; ordered numerically, so v1.10 comes after v1.9."""

    major: int
    micro: int

    def __post_init__(self) -> None:
        for part in (self.major, self.micro):
            if type(part) is not int or not 0 <= part <= 999_999_999:
                raise NamingError(f"version parts must be integers 0..999999999, got {part!r}")

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``v1.2`` or ``1.2``; refuse leading zeros, signs, whitespace and anything else."""
        if not isinstance(text, str):
            raise NamingError(f"version must be a string, got {type(text).__name__}")
        body = text[1:] if text.startswith("v") else text
        match = _VERSION_RE.fullmatch(body)
        if match is None:
            raise NamingError(f"not a version: {_quote(text)}; expected vMAJOR.MICRO or MAJOR.MICRO, e.g. v1.2")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.major}.{self.micro}"

    @property
    def tag(self) -> str:
        """The version as written in file names: ``v1.2``."""
        return f"v{self}"

    @property
    def is_major(self) -> bool:
        """True for batch-training releases (``MAJOR.0``); micro versions come from microtraining."""
        return self.micro == 0

    def next_micro(self) -> VersionId:
        """The next microtraining version: ``MAJOR.(MICRO+1)``."""
        return VersionId(self.major, self.micro + 1)

    def next_major(self) -> VersionId:
        """The next batch-training version: ``(MAJOR+1).0``."""
        return VersionId(self.major + 1, 0)


def check_slug(slug: str) -> str:
    """Return ``slug`` if it is a valid model slug (used in file and directory names), else NamingError."""
    if not isinstance(slug, str):
        raise NamingError(f"model slug must be a string, got {type(slug).__name__}")
    if len(slug) > SLUG_MAX_LEN:
        raise NamingError(f"model slug {_quote(slug)} is longer than {SLUG_MAX_LEN} characters")
    if _SLUG_RE.fullmatch(slug) is None:
        raise NamingError(
            f"model slug {_quote(slug)} is invalid: use lowercase a-z, 0-9, '.', '_', '-', "
            "starting and ending with a letter or digit"
        )
    return slug


def slugify(model_name: str) -> str:
    """Map a model name to its file-name slug (``OneSeek-7B-Zero`` -> ``oneseek-7b-zero``).

    Only lowercasing is applied; a name that does not then form a valid slug is refused rather
    than rewritten, so two different names can never share a slug by accident.
    """
    if not isinstance(model_name, str):
        raise NamingError(f"model name must be a string, got {type(model_name).__name__}")
    if not model_name.isascii():
        # str.lower() maps some non-ASCII letters onto ASCII (KELVIN SIGN -> "k"): refuse them.
        raise NamingError(f"model name {_quote(model_name)} must be ASCII")
    try:
        return check_slug(model_name.lower())
    except NamingError:
        raise NamingError(
            f"model name {_quote(model_name)} does not give a valid slug: lowercased it must use only "
            f"a-z, 0-9, '.', '_', '-', start and end with a letter or digit, at most {SLUG_MAX_LEN} chars"
        ) from None


@dataclass(frozen=True, slots=True, order=True)
class VersionName:
    """A model version's name, ``{slug}-v{MAJOR}.{MICRO}``; also its LoRA adapter directory name."""

    slug: str
    version: VersionId

    def __post_init__(self) -> None:
        check_slug(self.slug)
        if not isinstance(self.version, VersionId):
            raise NamingError(f"version must be a VersionId, got {type(self.version).__name__}")

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse a full name such as ``oneseek-7b-zero-v1.2``."""
        if not isinstance(text, str):
            raise NamingError(f"version name must be a string, got {type(text).__name__}")
        slug, sep, version = text.rpartition("-v")
        if len(text) > _MAX_NAME_LEN or not sep or _VERSION_RE.fullmatch(version) is None:
            raise NamingError(f"not a version name: {_quote(text)}; expected e.g. oneseek-7b-zero-v1.2")
        return cls(check_slug(slug), VersionId.parse(version))

    @classmethod
    def from_filename(cls, name: str) -> tuple[Self, str]:
        """Split ``{slug}-v{MAJOR}.{MICRO}{ext}`` into the name and ``ext`` (.pth, .safetensors, .json)."""
        if not isinstance(name, str):
            raise NamingError(f"file name must be a string, got {type(name).__name__}")
        for ext in FILE_EXTENSIONS:
            if name.endswith(ext):
                try:
                    return cls.parse(name[: -len(ext)]), ext
                except NamingError:
                    break
        raise NamingError(
            f"file name {_quote(name)} does not follow the convention "
            "{slug}-v{MAJOR}.{MICRO}.pth|.safetensors|.json, e.g. oneseek-7b-zero-v1.2.pth"
        )

    def __str__(self) -> str:
        return f"{self.slug}-{self.version.tag}"

    def weights_filename(self, ext: str = ".pth") -> str:
        """The weights file name for this version; ``ext`` is ``.pth`` or ``.safetensors``."""
        if ext not in WEIGHTS_EXTENSIONS:
            raise NamingError(f"weights extension must be one of {', '.join(WEIGHTS_EXTENSIONS)}, got {ext!r}")
        return f"{self}{ext}"

    def metadata_filename(self) -> str:
        """The metadata file name for this version: ``{name}.json``."""
        return f"{self}{METADATA_EXTENSION}"

    def adapter_dirname(self) -> str:
        """The LoRA adapter directory name (under ``lora_adapters/``): the version name itself."""
        return str(self)


def resolve_ref(text: str, *, models: Sequence[str], model: str | None) -> VersionName:
    """Resolve a VERSION argument: a full name, or ``v1.2`` / ``1.2`` when the model is unambiguous.

    ``models`` are the slugs in the ledger; ``model`` is the ``--model`` option (a name or slug).
    Whether the version exists is the caller's question, not this function's.
    """
    if not isinstance(text, str):
        raise NamingError(f"version must be a string, got {type(text).__name__}")
    try:
        short = VersionId.parse(text)
    except NamingError:
        short = None
    if short is None:
        try:
            full = VersionName.parse(text)
        except NamingError:
            raise NamingError(
                f"not a version: {_quote(text)}; expected NAME-vMAJOR.MICRO (e.g. oneseek-7b-zero-v1.2), "
                "vMAJOR.MICRO or MAJOR.MICRO"
            ) from None
        if model is not None and slugify(model) != full.slug:
            raise NamingError(f"{full} does not belong to --model {_quote(model)}")
        return full
    if model is not None:
        return VersionName(slugify(model), short)
    slugs = sorted(set(models))
    if len(slugs) == 1:
        return VersionName(slugs[0], short)
    if not slugs:
        raise NamingError(f"version {_quote(text)} names no model and the ledger has no models; pass --model")
    raise NamingError(f"version {_quote(text)} is ambiguous: pass --model or a full name; models: {', '.join(slugs)}")


def check_question_id(question: str) -> str:
    """Return ``question`` if it is a valid question id (1..200 chars of ``[A-Za-z0-9._:-]``)."""
    if not isinstance(question, str) or _QUESTION_RE.fullmatch(question) is None:
        shown = _quote(question) if isinstance(question, str) else repr(type(question).__name__)
        raise NamingError(
            f"question id {shown} is invalid: use 1..{QUESTION_MAX_LEN} characters of A-Z a-z 0-9 . _ : -"
        )
    return question


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """What ordering needs to know about one appended version: its id and microtraining stage."""

    version: VersionId
    stage: int | None
    question: str | None


def expected_next(history: Sequence[VersionRecord]) -> tuple[VersionId, ...]:
    """The versions that may be appended next: ``(1.0,)`` first, then the next micro or next major.

    ``history`` is the model's records in append order; the last record is the latest version.
    """
    if not history:
        return (VersionId(1, 0),)
    last = history[-1].version
    return (last.next_micro(), last.next_major())


def _expected_text(history: Sequence[VersionRecord]) -> str:
    if not history:
        return "expected v1.0 (first version)"
    micro, major = expected_next(history)
    return f"expected {micro.tag} (micro) or {major.tag} (major)"


def check_append(
    slug: str,
    history: Sequence[VersionRecord],
    new: VersionId,
    *,
    stage: int | None,
    question: str | None,
) -> None:
    """Refuse an append that would break the model's version order or its stage pairing.

    Rules: no duplicates, gaps or regressions (the next version is the next micro or next major);
    ``stage`` is 1 or 2 and comes with a question id (and a question id with a stage); stages are
    micro versions only; a stage 2 must directly follow the stage 1 of the same question.
    """
    name = VersionName(check_slug(slug), new)
    if question is not None:
        check_question_id(question)
    if stage is not None and (type(stage) is not int or stage not in (1, 2)):
        raise VersionOrderError(f"{name}: stage must be 1 or 2, got {stage!r}")
    if stage is not None and question is None:
        raise VersionOrderError(f"{name}: stage {stage} needs a question id")
    if question is not None and stage is None:
        raise VersionOrderError(f"{name}: question id {_quote(question)} needs a stage (1 or 2)")

    if any(record.version == new for record in history):
        raise VersionOrderError(f"{name} already exists; {_expected_text(history)}")
    if new not in expected_next(history):
        latest = f"the latest is {history[-1].version.tag}" if history else "the model has no versions yet"
        kind = "a regression" if history and new < history[-1].version else "a gap"
        raise VersionOrderError(f"{name} is not next: {_expected_text(history)} ({latest}; this is {kind})")

    if stage is not None and new.is_major:
        raise VersionOrderError(
            f"{name} is a major version and cannot be microtraining stage {stage}; stages are micro versions"
        )
    if stage == 2:
        previous = history[-1] if history else None
        if previous is None or previous.stage != 1 or previous.question != question:
            if previous is None:
                found = "there is no previous version"
            elif previous.stage is None:
                found = f"the previous version {previous.version.tag} has no stage"
            else:
                found = (
                    f"the previous version {previous.version.tag} is stage {previous.stage} "
                    f"of question {_quote(previous.question or '')}"
                )
            raise VersionOrderError(
                f"{name}: stage 2 of question {_quote(question or '')} must directly follow its stage 1, but {found}"
            )


def pending_stage1(history: Sequence[VersionRecord]) -> list[VersionRecord]:
    """Stage-1 records not directly followed by their stage 2 (the audit warns about these)."""
    pending: list[VersionRecord] = []
    for index, record in enumerate(history):
        if record.stage != 1:
            continue
        following = history[index + 1] if index + 1 < len(history) else None
        if following is None or following.stage != 2 or following.question != record.question:
            pending.append(record)
    return pending


def parent_of(history: Sequence[VersionRecord], new: VersionId) -> VersionId | None:
    """The version ``new`` was derived from, for lineage; None for the first version.

    A micro version's parent is the previous version (``1.3`` -> ``1.2``; ``2.1`` -> ``2.0``); a
    major version's parent is the previous version of the model, i.e. the last record before it
    (``2.0`` -> ``1.7``). Both are the greatest version in ``history`` below ``new``.
    """
    return max((record.version for record in history if record.version < new), default=None)
