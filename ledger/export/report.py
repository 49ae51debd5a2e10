"""The export report model: built once from the chain's blocks (pure), then rendered by every format.

``build_report`` takes plain ``Block`` values plus the audit result and the signed checkpoint taken at export
time; it reads lifecycle blocks (alias, backup, prune, restore, key, export, checkpoint) generically by the
payload fields agreed in the contract, so a block kind this code has never seen is listed, not lost.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.audit import AuditReport
from ledger.block import Block
from ledger.chain import payload_of
from ledger.config import FILENAME, LifecycleConfig
from ledger.errors import InputError, NamingError, SelectionError
from ledger.timeutil import parse_user_time
from ledger.versions import VersionId, VersionName

SCHEMA = "ledger-export/v2"
INTEGRITY_SCHEMA = "ledger-export-integrity/v1"
STANDARD_METRICS = ("validation_accuracy", "fairness_score", "bias_score")
LIFECYCLE_KINDS = ("alias", "backup", "prune", "restore", "key", "export", "checkpoint")
_LOWER_IS_BETTER = re.compile(r"bias|loss|error|perplexity", re.IGNORECASE)
_THRESHOLD_RE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(>=|<=|=)\s*(\S+)\s*$")


# --- selection ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Threshold:
    """A pass line for one metric: ``>=`` a minimum (accuracy, fairness) or ``<=`` a maximum (bias)."""

    metric: str
    op: str
    value: float
    source: str = "--threshold"
    """Where the line was set: ``--threshold`` or the ``ledger.toml`` it was read from."""

    @classmethod
    def parse(cls, text: str, *, source: str = "--threshold") -> Threshold:
        """Parse ``metric=value`` (direction from the metric's name) or an explicit ``metric>=v`` / ``metric<=v``."""
        match = _THRESHOLD_RE.match(text)
        if match is None:
            raise InputError(f"threshold {text!r} is not metric=value, metric>=value or metric<=value")
        metric, op, raw = match.groups()
        try:
            value = float(raw)
        except ValueError:
            raise InputError(f"threshold {text!r}: {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise InputError(f"threshold {text!r}: the value must be finite")
        if op == "=":
            op = "<=" if _LOWER_IS_BETTER.search(metric) else ">="
        return cls(metric, op, value, source)

    def breached(self, value: float) -> bool:
        """True when ``value`` is on the wrong side of the line."""
        return value < self.value if self.op == ">=" else value > self.value

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which versions a report covers: a model, a UTC time window on block times, a version range."""

    model: str | None = None
    since: str | None = None
    until: str | None = None
    first: VersionId | None = None
    last: VersionId | None = None

    @classmethod
    def make(
        cls,
        *,
        model: str | None = None,
        since: str | None = None,
        until: str | None = None,
        versions: str | None = None,
    ) -> Selection:
        """Parse the command-line selection; a reversed time window or version range is refused."""
        start = parse_user_time(since) if since else None
        end = parse_user_time(until) if until else None
        if start is not None and end is not None and start > end:
            raise SelectionError(f"--since {since} is after --until {until}: the time window is reversed")
        first = last = None
        if versions is not None:
            left, sep, right = versions.partition("..")
            if not sep or not left or not right:
                raise SelectionError(f"--versions {versions!r} is not a range A..B, e.g. v1.0..v1.5")
            try:
                first, last = VersionId.parse(left.strip()), VersionId.parse(right.strip())
            except NamingError as exc:
                raise SelectionError(f"--versions {versions!r}: {exc}") from None
            if first > last:
                raise SelectionError(
                    f"--versions {versions}: the range is the other way round (v{first} comes after v{last})"
                )
        return cls(model=model, since=start, until=end, first=first, last=last)

    @property
    def versions(self) -> str | None:
        """The version range as written in reports, ``v1.0..v1.5``."""
        if self.first is None or self.last is None:
            return None
        return f"{self.first.tag}..{self.last.tag}"

    def takes_time(self, timestamp: str) -> bool:
        """True when a canonical UTC time lies in the window (both ends inclusive)."""
        return (self.since is None or timestamp >= self.since) and (self.until is None or timestamp <= self.until)

    def takes_version(self, version: VersionId) -> bool:
        """True when a version lies in the range (both ends inclusive)."""
        return (self.first is None or version >= self.first) and (self.last is None or version <= self.last)

    def to_json(self) -> dict[str, Any]:
        """The selection as recorded in reports and in the ``export`` block."""
        return {"model": self.model, "since": self.since, "until": self.until, "versions": self.versions}


# --- model values ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A signing key the chain introduced (genesis or key rotation)."""

    key_id: str
    public_key: str
    height: int
    timestamp: str
    reason: str
    previous_key_id: str | None


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """The signed checkpoint (C2SP signed note) over the Merkle tree of every block up to the head."""

    origin: str
    size: int
    root: str
    note: str
    key_name: str
    verifier_key: str


@dataclass(frozen=True, slots=True)
class AuditSummary:
    """The audit result at export time."""

    clean: bool
    blocks_checked: int
    files_mode: str
    files_checked: int
    errors: int
    warnings: int
    notes: tuple[str, ...]
    incremental_from: int | None = None
    """Trusted checkpoint size the export-time audit resumed from (blocks below it were verified earlier)."""

    @property
    def mode(self) -> str:
        """``full`` (every block from the genesis) or ``incremental`` (from a trusted checkpoint)."""
        return "full" if self.incremental_from is None else "incremental"


@dataclass(frozen=True, slots=True)
class Integrity:
    """What lets a reader re-check the report against the ledger: head, checkpoint, audit, keys, command."""

    ledger_id: str
    origin: str
    generated: str
    head_height: int
    head_hash: str
    checkpoint: CheckpointInfo
    audit: AuditSummary
    verify_command: str
    keys: tuple[KeyInfo, ...]
    signing_key_id: str


@dataclass(frozen=True, slots=True)
class VersionEntry:
    """One version in the register, with everything the other sections need."""

    model: str
    version: str
    name: str
    release: str
    stage: int | None
    question: str | None
    height: int
    block_hash: str
    timestamp: str
    key_id: str
    trainer: str | None
    trained_at: str | None
    weights_path: str | None
    weights_format: str | None
    sha256: str | None
    size: int | None
    adapter_path: str | None
    adapter_root: str | None
    parent: str | None
    parent_hash: str | None
    parent_sha256: str | None
    data_hash: str | None
    data_computed: bool
    data_kind: str | None
    base_models: tuple[str, ...]
    config: Mapping[str, Any]
    metrics: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """One training-configuration key that differs from the parent version (dotted path)."""

    key: str
    change: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    """What changed in the training configuration between a version and its parent."""

    model: str
    version: str
    parent: str
    changes: tuple[ConfigChange, ...]


@dataclass(frozen=True, slots=True)
class Breach:
    """A metric value on the wrong side of its threshold."""

    version: str
    metric: str
    value: float
    threshold: Threshold


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Metrics shown (standard three first), thresholds configured and the breaches found."""

    metrics: tuple[str, ...]
    thresholds: tuple[Threshold, ...]
    breaches: tuple[Breach, ...]
    index: frozenset[tuple[str, str]] = frozenset()

    def breached(self, version: str, metric: str) -> bool:
        """True when ``version`` breaches the threshold of ``metric``."""
        return (version, metric) in self.index


@dataclass(frozen=True, slots=True)
class Event:
    """A lifecycle block: promotion, rollback, backup, prune, restore, key rotation, checkpoint, export."""

    height: int
    timestamp: str
    kind: str
    summary: str
    model: str | None
    version: str | None
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BackupRecord:
    """A verified copy of a version's files at a remote location."""

    version: str
    location: str
    height: int
    timestamp: str
    files: int
    size: int
    verified: bool


@dataclass(frozen=True, slots=True)
class VersionRetention:
    """Where a version's files are now: local, pruned (with the backup holding them) or restored."""

    version: str
    state: str
    locations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """The retention configuration ``ledger prune`` applies (``ledger.toml``), read by the caller and passed in:
    building the report reads no file. ``file`` is the file's name as shown, None when there is none."""

    config: LifecycleConfig = field(default_factory=LifecycleConfig)
    file: str | None = None

    def policy(self, model: str) -> ConfiguredPolicy:
        """The policy a prune of ``model`` would apply now, and which section of which file sets it."""
        found = self.config.policy_for(model)
        if self.file is None:
            source = f"built-in default (no {FILENAME} was read)"
        elif model in self.config.per_model:
            source = f'{self.file} [retention.models."{model}"]'
        else:
            source = f"{self.file} [retention] (built-in defaults for keys it does not set)"
        return ConfiguredPolicy(model, found.keep_major, found.keep_micro, source)


@dataclass(frozen=True, slots=True)
class ConfiguredPolicy:
    """How many of a model's newest major and micro versions the configuration keeps on local disk."""

    model: str
    keep_major: int
    keep_micro: int
    source: str


@dataclass(frozen=True, slots=True)
class RecordedPolicy:
    """A policy as prune blocks recorded it when they removed a model's files (one entry per distinct policy)."""

    model: str
    policy: Mapping[str, Any]
    prunes: int
    first_height: int
    last_height: int
    last_timestamp: str


@dataclass(frozen=True, slots=True)
class BackupLocation:
    """One place holding backups of versions in scope, summed over its backup blocks."""

    location: str
    versions: int
    files: int
    size: int
    last_height: int
    last_timestamp: str
    all_verified: bool


@dataclass(frozen=True, slots=True)
class Retention:
    """The retention policy configured and recorded per model, and where the backups are."""

    configured: tuple[ConfiguredPolicy, ...]
    recorded: tuple[RecordedPolicy, ...]
    locations: tuple[BackupLocation, ...]
    backups: tuple[BackupRecord, ...]
    states: tuple[VersionRetention, ...]
    statements: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FindingEntry:
    """An audit finding as shown in the report."""

    height: int | None
    version: str | None
    kind: str
    severity: str
    path: str | None
    message: str


@dataclass(frozen=True, slots=True)
class Scope:
    """What the report covers."""

    models: tuple[str, ...]
    selection: Selection
    first: str
    last: str
    count: int


@dataclass(frozen=True, slots=True)
class Report:
    """The whole report; every format renders this value and nothing else."""

    generated: str
    tool: str
    scope: Scope
    integrity: Integrity
    versions: tuple[VersionEntry, ...]
    diffs: tuple[ConfigDiff, ...]
    evaluation: Evaluation
    events: tuple[Event, ...]
    retention: Retention
    findings: tuple[FindingEntry, ...]
    signoff_fields: tuple[str, ...] = ("name", "role", "date", "signature")
    schema: str = SCHEMA


# --- building -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Context:
    """Facts about the ledger and the moment of export that the chain alone does not give."""

    ledger_id: str
    origin: str
    generated: str
    tool: str
    verify_command: str
    signing_key_id: str
    checkpoint: CheckpointInfo


@dataclass(frozen=True, slots=True)
class Draft:
    """Every section the chain's blocks give, up to the last block read; ``finish_report`` adds the audit
    result and the facts of the export, so the two can be worked out side by side."""

    head_height: int
    scope: Scope
    versions: tuple[VersionEntry, ...]
    diffs: tuple[ConfigDiff, ...]
    evaluation: Evaluation
    events: tuple[Event, ...]
    retention: Retention
    keys: tuple[KeyInfo, ...]


def build_report(
    blocks: Iterable[Block],
    *,
    selection: Selection,
    thresholds: Sequence[Threshold],
    audit: AuditReport,
    context: Context,
    retention: RetentionSettings | None = None,
) -> Report:
    """Build the report in one pass over the chain, taking the version payloads the audit already decoded from
    ``audit.payloads``; an empty selection is an error (nothing to hand out)."""
    draft = draft_report(
        blocks, selection=selection, thresholds=thresholds, retention=retention, payloads=audit.payloads
    )
    return finish_report(draft, audit, context)


def draft_report(
    blocks: Iterable[Block],
    *,
    selection: Selection,
    thresholds: Sequence[Threshold],
    retention: RetentionSettings | None = None,
    payloads: Mapping[int, dict[str, Any]] | None = None,
) -> Draft:
    """The report's chain sections in one pass over ``blocks`` (version payloads taken from ``payloads`` where
    given, decoded otherwise); an empty selection is an error (nothing to hand out)."""
    decoded = payloads or {}
    head_height = -1
    entries: list[VersionEntry] = []
    order: list[tuple[str, VersionId, str]] = []  # (model, version, name) of each entry, for the scope's ends
    flat_configs: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {}  # every version's, for the diffs
    sha_by_name: dict[str, str] = {}
    slug_of: dict[str, str] = {}  # version name -> model, for the lifecycle events naming them
    models_seen: set[str] = set()
    keys: list[KeyInfo] = []
    lifecycle: list[tuple[Block, dict[str, Any]]] = []
    wanted_model = selection.model
    for block in blocks:
        head_height = block.height
        kind = block.kind
        if kind == "version":
            placed = _version_entry(block, decoded.get(block.height) or payload_of(block), sha_by_name)
            if placed is None:
                continue
            entry, version = placed
            models_seen.add(entry.model)
            slug_of[entry.name] = entry.model
            flat_configs[entry.name] = (flatten(entry.config), entry.base_models)
            if entry.sha256 is not None:
                sha_by_name[entry.name] = entry.sha256
            if (
                (wanted_model is None or entry.model == wanted_model)
                and selection.takes_time(entry.timestamp)
                and selection.takes_version(version)
            ):
                entries.append(entry)
                order.append((entry.model, version, entry.name))
        elif kind in LIFECYCLE_KINDS or kind == "genesis":
            payload = payload_of(block)
            if kind in ("genesis", "key"):
                info = _key_info(block, payload)
                if info is not None:
                    keys.append(info)
            if kind in LIFECYCLE_KINDS:
                lifecycle.append((block, payload))
    if wanted_model is not None and wanted_model not in models_seen:
        known = ", ".join(sorted(models_seen)) or "none"
        raise SelectionError(f"model {wanted_model!r} has no versions in this ledger (models: {known})")
    if not entries:
        raise SelectionError(
            "the selection matches no version: nothing to export (check --model, --since, --until, --versions)"
        )
    names = {e.name for e in entries}
    models = tuple(sorted({e.model for e in entries}))
    events = tuple(
        event
        for block, payload in lifecycle
        if (event := _event(block, payload, slug_of)) is not None and _event_selected(event, selection, names, models)
    )
    diffs = tuple(_diff(entry, flat_configs) for entry in entries if entry.parent is not None)
    return Draft(
        head_height=head_height,
        scope=Scope(models, selection, min(order)[2], max(order)[2], len(entries)),
        versions=tuple(entries),
        diffs=tuple(d for d in diffs if d is not None),
        evaluation=_evaluation(entries, thresholds),
        events=events,
        retention=_retention(lifecycle, entries, models, slug_of, retention or RetentionSettings()),
        keys=tuple(keys),
    )


def finish_report(draft: Draft, audit: AuditReport, context: Context) -> Report:
    """The report: ``draft`` with the integrity section and the findings about its versions."""
    names = {entry.name for entry in draft.versions}
    return Report(
        generated=context.generated,
        tool=context.tool,
        scope=draft.scope,
        integrity=Integrity(
            ledger_id=context.ledger_id,
            origin=context.origin,
            generated=context.generated,
            head_height=audit.head_height,
            head_hash=audit.head_hash,
            checkpoint=context.checkpoint,
            audit=_audit_summary(audit),
            verify_command=context.verify_command,
            keys=draft.keys,
            signing_key_id=context.signing_key_id,
        ),
        versions=draft.versions,
        diffs=draft.diffs,
        evaluation=draft.evaluation,
        events=draft.events,
        retention=draft.retention,
        findings=tuple(
            FindingEntry(f.height, f.version, str(f.kind), "warning" if f.is_warning else "error", f.path, f.message)
            for f in audit.findings
            if f.version is None or f.version in names
        ),
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _version_entry(
    block: Block, payload: dict[str, Any], sha_by_name: Mapping[str, str]
) -> tuple[VersionEntry, VersionId] | None:
    """A register entry and its parsed version, or None for a payload too broken to place (the audit reports
    it)."""
    try:
        name = VersionName.parse(str(payload.get("name")))
    except NamingError:
        return None
    weights = _dict(payload.get("weights"))
    adapter = _dict(payload.get("adapter"))
    meta = _dict(_dict(payload.get("metadata")).get("content"))
    provenance = _dict(meta.get("provenance"))
    data = _dict(payload.get("training_data"))
    parent = _dict(payload.get("parent"))
    parent_name = None
    if parent.get("version") is not None:
        parent_name = f"{name.slug}-v{parent.get('version')}"
    base = (
        [str(b) for b in meta.get("base_models", []) if isinstance(b, str)]
        if isinstance(meta.get("base_models"), list)
        else []
    )
    if isinstance(adapter.get("base_model"), str) and adapter["base_model"] not in base:
        base.append(adapter["base_model"])
    metrics = {
        str(k): float(v)
        for k, v in _dict(meta.get("metrics")).items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    entry = VersionEntry(
        model=name.slug,
        version=str(name.version),
        name=str(name),
        release=_str(payload.get("release")) or ("major" if name.version.is_major else "micro"),
        stage=_int(payload.get("stage")),
        question=_str(payload.get("question")),
        height=block.height,
        block_hash=block.block_hash,
        timestamp=block.timestamp,
        key_id=block.key_id,
        trainer=_str(provenance.get("trainer")),
        trained_at=_str(meta.get("timestamp")),
        weights_path=_str(weights.get("path")),
        weights_format=_str(weights.get("format")),
        sha256=_str(weights.get("sha256")),
        size=_int(weights.get("size")),
        adapter_path=_str(adapter.get("path")),
        adapter_root=_str(adapter.get("root")),
        parent=parent_name,
        parent_hash=_str(parent.get("block_hash")),
        parent_sha256=sha_by_name.get(parent_name) if parent_name else None,
        data_hash=_str(data.get("hash")) or _str(provenance.get("training_data_hash")),
        data_computed=data.get("computed") is True,
        data_kind=_str(data.get("kind")),
        base_models=tuple(base),
        config=_dict(meta.get("training_config")),
        metrics=metrics,
    )
    return entry, name.version


def _key_info(block: Block, payload: dict[str, Any]) -> KeyInfo | None:
    from ledger.chain import introduced_key

    found = introduced_key(block)
    if found is None:
        return None
    reason = _str(payload.get("reason")) or ("ledger created" if block.kind == "genesis" else "key rotation")
    return KeyInfo(
        found[0], found[1].hex(), block.height, block.timestamp, reason, _str(payload.get("previous_key_id"))
    )


def _audit_summary(audit: AuditReport) -> AuditSummary:
    warnings = sum(1 for f in audit.findings if f.is_warning)
    return AuditSummary(
        clean=audit.clean,
        blocks_checked=audit.blocks_checked,
        files_mode=str(audit.files_mode),
        files_checked=audit.files_checked,
        errors=len(audit.findings) - warnings,
        warnings=warnings,
        notes=audit.notes,
        incremental_from=audit.incremental_from,
    )


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested configuration as dotted keys (``optimizer.lr``), so changes can be listed key by key."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _diff(entry: VersionEntry, flat_configs: Mapping[str, tuple[dict[str, Any], tuple[str, ...]]]) -> ConfigDiff | None:
    assert entry.parent is not None
    found = flat_configs.get(entry.parent)
    if found is None:
        return None
    before, after = found[0], flat_configs[entry.name][0]
    if found[1] != entry.base_models:
        before = {**before, "base_models": list(found[1])}
        after = {**after, "base_models": list(entry.base_models)}
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            changes.append(ConfigChange(key, "removed", before[key], None))
        elif key not in before:
            changes.append(ConfigChange(key, "added", None, after[key]))
        elif before[key] != after[key] or type(before[key]) is not type(after[key]):
            changes.append(ConfigChange(key, "changed", before[key], after[key]))
    return ConfigDiff(entry.model, entry.name, entry.parent, tuple(changes))


def _evaluation(entries: Sequence[VersionEntry], thresholds: Sequence[Threshold]) -> Evaluation:
    found = {metric for e in entries for metric in e.metrics}
    extra = sorted((found | {t.metric for t in thresholds}) - set(STANDARD_METRICS))
    metrics = (*STANDARD_METRICS, *extra)
    breaches = []
    for entry in entries:
        for threshold in thresholds:
            value = entry.metrics.get(threshold.metric)
            if value is not None and threshold.breached(value):
                breaches.append(Breach(entry.name, threshold.metric, value, threshold))
    index = frozenset((b.version, b.metric) for b in breaches)
    return Evaluation(metrics, tuple(thresholds), tuple(breaches), index)


# --- lifecycle ------------------------------------------------------------------------------------


def _model_of(version: str | None, known: Mapping[str, str]) -> str | None:
    """The model a version name belongs to: looked up among the ledger's versions, else parsed."""
    if version is None:
        return None
    if version in known:
        return known[version]
    try:
        return VersionName.parse(version).slug
    except NamingError:
        return None


def _short(digest: Any) -> str:
    return f"{digest[:16]}…" if isinstance(digest, str) and len(digest) > 16 else str(digest)


def _files(value: Any) -> str:
    """``N file(s)`` for a payload's ``files`` list."""
    count = len(value) if isinstance(value, list) else 0
    return f"{count} file" if count == 1 else f"{count} files"


def _summary(kind: str, p: dict[str, Any]) -> str:
    """One line for a person, from the agreed payload fields (missing fields show as '?')."""
    g = {k: ("?" if v is None else v) for k, v in p.items()}
    get = g.get
    if kind == "alias":
        verb = "rolled back" if p.get("action") == "rollback" else "promoted"
        was = f" (was {p['previous']})" if p.get("previous") else ""
        return f"{verb} {get('model', '?')} alias '{get('alias', '?')}' to {get('version', '?')}{was}"
    if kind == "backup":
        verified = "verified" if p.get("verified") is True else "NOT verified"
        return f"backed up {get('version', '?')} to {get('location', '?')} ({_files(p.get('files'))}, {verified})"
    if kind == "prune":
        policy = _dict(p.get("policy"))
        kept = f"; policy keep {policy.get('keep_major', '?')} major / {policy.get('keep_micro', '?')} micro"
        return (
            f"pruned {get('version', '?')}: {_files(p.get('files'))} released locally, copy at "
            f"{get('location', '?')} (backup block {get('backup_height', '?')}){kept if policy else ''}"
        )
    if kind == "restore":
        return (
            f"restored {get('version', '?')} from {get('location', '?')} ({_files(p.get('files'))}, "
            f"backup block {get('backup_height', '?')})"
        )
    if kind == "key":
        from ledger.signing import key_id

        try:
            new = key_id(bytes.fromhex(str(p.get("public_key"))))
        except ValueError:
            new = "?"
        return f"signing key rotated to {new} (previous {get('previous_key_id', '?')}): {get('reason', '?')}"
    if kind == "export":
        return f"exported {get('format', '?')} report {get('file', '?')} (sha256 {_short(p.get('sha256'))})"
    if kind == "checkpoint":
        return f"checkpoint signed at tree size {get('size', '?')}, root {_short(p.get('root'))}"
    return f"{kind} block"


def _event(block: Block, payload: dict[str, Any], slug_of: Mapping[str, str]) -> Event | None:
    version = _str(payload.get("version")) if block.kind != "alias" else None
    model = _str(payload.get("model")) if block.kind == "alias" else _model_of(version, slug_of)
    if block.kind == "alias" and isinstance(payload.get("version"), str):
        version = _alias_version(payload)
    return Event(block.height, block.timestamp, block.kind, _summary(block.kind, payload), model, version, payload)


def _alias_version(payload: Mapping[str, Any]) -> str:
    """Alias payloads may give a short version (``1.2``) or a full name; report the full name."""
    text = str(payload["version"])
    model = payload.get("model")
    try:
        VersionName.parse(text)
    except NamingError:
        if isinstance(model, str):
            return f"{model}-v{text.removeprefix('v')}"
    return text


def _event_selected(event: Event, selection: Selection, names: set[str], models: tuple[str, ...]) -> bool:
    if not selection.takes_time(event.timestamp):
        return False
    if event.version is not None and event.kind != "alias":
        return event.version in names
    if event.model is not None:
        return event.model in models
    return True


def _retention(
    lifecycle: Sequence[tuple[Block, dict[str, Any]]],
    entries: Sequence[VersionEntry],
    models: Sequence[str],
    slug_of: Mapping[str, str],
    settings: RetentionSettings,
) -> Retention:
    names = {e.name for e in entries}
    backups: list[BackupRecord] = []
    recorded: dict[tuple[str, str], RecordedPolicy] = {}
    state: dict[str, str] = {}
    for block, p in lifecycle:
        version = _str(p.get("version"))
        if block.kind == "backup" and version is not None and version in names:
            raw = p.get("files")
            files: list[Any] = raw if isinstance(raw, list) else []
            size = sum(_int(_dict(f).get("size")) or 0 for f in files)
            backups.append(
                BackupRecord(
                    version,
                    str(p.get("location")),
                    block.height,
                    block.timestamp,
                    len(files),
                    size,
                    p.get("verified") is True,
                )
            )
        elif block.kind == "prune":
            model = _model_of(version, slug_of)
            if isinstance(p.get("policy"), dict) and model is not None and model in models:
                _record_policy(recorded, model, p["policy"], block)
            if version is not None:
                state[version] = "pruned"
        elif block.kind == "restore" and version is not None:
            state[version] = "restored"
    where: dict[str, list[str]] = {}
    for b in backups:
        if b.location not in where.setdefault(b.version, []):
            where[b.version].append(b.location)
    states = tuple(
        VersionRetention(
            e.name,
            state.get(e.name, "local") if where.get(e.name) or e.name in state else "local, no backup",
            tuple(where.get(e.name, [])),
        )
        for e in entries
    )
    configured = tuple(settings.policy(model) for model in models)
    statements = (
        "The ledger is append-only: blocks are never updated or deleted, so every event above stays provable.",
        "EU AI Act Art. 18: keep the technical documentation (this report and the ledger) for 10 years after "
        "the system is placed on the market.",
        "EU AI Act Art. 19: keep the automatically generated logs (the ledger's blocks) for at least 6 months.",
        *_policy_changes(configured, recorded.values()),
    )
    return Retention(configured, tuple(recorded.values()), _locations(backups), tuple(backups), states, statements)


def _record_policy(
    recorded: dict[tuple[str, str], RecordedPolicy], model: str, policy: dict[str, Any], block: Block
) -> None:
    """Count a prune block under its (model, policy); the first prune applying a policy gives its position."""
    key = (model, json.dumps(policy, sort_keys=True))
    seen = recorded.get(key)
    first = block.height if seen is None else seen.first_height
    prunes = 1 if seen is None else seen.prunes + 1
    recorded[key] = RecordedPolicy(model, policy, prunes, first, block.height, block.timestamp)


def _policy_changes(configured: Iterable[ConfiguredPolicy], recorded: Iterable[RecordedPolicy]) -> list[str]:
    """A statement per model whose configured policy is not the one its latest prune applied."""
    latest: dict[str, RecordedPolicy] = {}
    for r in recorded:
        if r.model not in latest or r.last_height > latest[r.model].last_height:
            latest[r.model] = r
    out = []
    for c in configured:
        last = latest.get(c.model)
        if last is not None and dict(last.policy) != {"keep_major": c.keep_major, "keep_micro": c.keep_micro}:
            out.append(
                f"{c.model}: the latest prune (block {last.last_height}) applied keep "
                f"{last.policy.get('keep_major', '?')} major / {last.policy.get('keep_micro', '?')} micro; the "
                f"configuration now says keep {c.keep_major} major / {c.keep_micro} micro ({c.source})."
            )
    return out


def _locations(backups: Sequence[BackupRecord]) -> tuple[BackupLocation, ...]:
    """Backups summed per location, in the order the locations were first used."""
    grouped: dict[str, list[BackupRecord]] = {}
    for b in backups:
        grouped.setdefault(b.location, []).append(b)
    return tuple(
        BackupLocation(
            location,
            len({b.version for b in group}),
            sum(b.files for b in group),
            sum(b.size for b in group),
            group[-1].height,
            group[-1].timestamp,
            all(b.verified for b in group),
        )
        for location, group in grouped.items()
    )


# --- JSON -----------------------------------------------------------------------------------------


def integrity_json(report: Report) -> dict[str, Any]:
    """The machine-readable integrity section every report format carries (verify-export reads it)."""
    i = report.integrity
    return {
        "schema": INTEGRITY_SCHEMA,
        "ledger_id": i.ledger_id,
        "origin": i.origin,
        "generated": i.generated,
        "head": {"height": i.head_height, "hash": i.head_hash},
        "checkpoint": {
            "origin": i.checkpoint.origin,
            "size": i.checkpoint.size,
            "root": i.checkpoint.root,
            "note": i.checkpoint.note,
            "key_name": i.checkpoint.key_name,
            "verifier_key": i.checkpoint.verifier_key,
        },
        "audit": {
            "clean": i.audit.clean,
            "blocks_checked": i.audit.blocks_checked,
            "files_mode": i.audit.files_mode,
            "files_checked": i.audit.files_checked,
            "errors": i.audit.errors,
            "warnings": i.audit.warnings,
            "notes": list(i.audit.notes),
            "mode": i.audit.mode,
            "incremental_from": i.audit.incremental_from,
        },
        "verify_command": i.verify_command,
        "signing_key_id": i.signing_key_id,
        "keys": [
            {
                "key_id": k.key_id,
                "public_key": k.public_key,
                "height": k.height,
                "timestamp": k.timestamp,
                "reason": k.reason,
                "previous_key_id": k.previous_key_id,
            }
            for k in i.keys
        ],
        "blocks": [[v.height, v.block_hash] for v in report.versions],
    }


def _version_json(v: VersionEntry, breaches: Sequence[str]) -> dict[str, Any]:
    return {
        "model": v.model,
        "version": v.version,
        "name": v.name,
        "release": v.release,
        "stage": v.stage,
        "question": v.question,
        "height": v.height,
        "block_hash": v.block_hash,
        "timestamp": v.timestamp,
        "key_id": v.key_id,
        "trainer": v.trainer,
        "trained_at": v.trained_at,
        "weights": None
        if v.weights_path is None
        else {"path": v.weights_path, "format": v.weights_format, "sha256": v.sha256, "size": v.size},
        "adapter": None if v.adapter_path is None else {"path": v.adapter_path, "root": v.adapter_root},
        "parent": None
        if v.parent is None
        else {"name": v.parent, "block_hash": v.parent_hash, "sha256": v.parent_sha256},
        "training_data": {"hash": v.data_hash, "computed": v.data_computed, "kind": v.data_kind},
        "base_models": list(v.base_models),
        "training_config": dict(v.config),
        "metrics": dict(v.metrics),
        "breaches": list(breaches),
    }


def chain_sections_json(sections: Draft | Report) -> dict[str, Any]:
    """The parts of the JSON document the chain's blocks alone give (``versions`` to ``retention``), which an
    export can encode while its audit still runs."""
    ev = sections.evaluation
    r = sections.retention
    breached: dict[str, list[str]] = {}
    for b in ev.breaches:
        breached.setdefault(b.version, []).append(b.metric)
    return {
        "versions": [_version_json(v, breached.get(v.name, ())) for v in sections.versions],
        "config_changes": [
            {
                "model": d.model,
                "version": d.version,
                "parent": d.parent,
                "changes": [
                    {"key": c.key, "change": c.change, "before": c.before, "after": c.after} for c in d.changes
                ],
            }
            for d in sections.diffs
        ],
        "evaluation": {
            "metrics": list(ev.metrics),
            "thresholds": [
                {"metric": t.metric, "op": t.op, "value": t.value, "source": t.source} for t in ev.thresholds
            ],
            "breaches": [
                {
                    "version": b.version,
                    "metric": b.metric,
                    "value": b.value,
                    "op": b.threshold.op,
                    "threshold": b.threshold.value,
                }
                for b in ev.breaches
            ],
        },
        "lifecycle": [
            {
                "height": e.height,
                "timestamp": e.timestamp,
                "kind": e.kind,
                "summary": e.summary,
                "model": e.model,
                "version": e.version,
                "payload": dict(e.payload),
            }
            for e in sections.events
        ],
        "retention": {
            "configured": [
                {"model": c.model, "keep_major": c.keep_major, "keep_micro": c.keep_micro, "source": c.source}
                for c in r.configured
            ],
            "recorded": [
                {
                    "model": p.model,
                    "policy": dict(p.policy),
                    "prunes": p.prunes,
                    "first_height": p.first_height,
                    "last_height": p.last_height,
                    "last_timestamp": p.last_timestamp,
                }
                for p in r.recorded
            ],
            "locations": [
                {
                    "location": loc.location,
                    "versions": loc.versions,
                    "files": loc.files,
                    "size": loc.size,
                    "last_height": loc.last_height,
                    "last_timestamp": loc.last_timestamp,
                    "all_verified": loc.all_verified,
                }
                for loc in r.locations
            ],
            "backups": [
                {
                    "version": b.version,
                    "location": b.location,
                    "height": b.height,
                    "timestamp": b.timestamp,
                    "files": b.files,
                    "size": b.size,
                    "verified": b.verified,
                }
                for b in r.backups
            ],
            "versions": [{"version": s.version, "state": s.state, "locations": list(s.locations)} for s in r.states],
            "statements": list(r.statements),
        },
    }


def report_json(report: Report, *, chain_sections: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The report as the documented JSON document (``ledger/schemas/export-report.schema.json``);
    ``chain_sections`` stands in for ``chain_sections_json(report)`` where the caller has encoded them already."""
    return {
        "schema": report.schema,
        "generated": report.generated,
        "tool": report.tool,
        "scope": {
            "ledger_id": report.integrity.ledger_id,
            "origin": report.integrity.origin,
            "models": list(report.scope.models),
            "first": report.scope.first,
            "last": report.scope.last,
            "count": report.scope.count,
            "selection": report.scope.selection.to_json(),
        },
        "integrity": integrity_json(report),
        **(chain_sections_json(report) if chain_sections is None else chain_sections),
        "findings": [
            {
                "height": f.height,
                "version": f.version,
                "class": f.kind,
                "severity": f.severity,
                "path": f.path,
                "message": f.message,
            }
            for f in report.findings
        ],
        "signoff": {name: None for name in report.signoff_fields},
    }
