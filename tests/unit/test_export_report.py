"""The export report model (pure): selection, thresholds, diffs, breaches, lifecycle reading, DSSE, CSV safety."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest

from benchmarks.export_data import version_payload
from ledger.audit import AuditReport, FilesMode
from ledger.block import GENESIS_PREV_HASH, Block, seal
from ledger.config import parse_config
from ledger.errors import BadSignatureError, InputError, SelectionError
from ledger.export import dsse
from ledger.export.csv import CsvFormatter
from ledger.export.interface import RenderContext
from ledger.export.registry import FORMATS, formatter
from ledger.export.report import (
    CheckpointInfo,
    ConfiguredPolicy,
    Context,
    Report,
    RetentionSettings,
    Selection,
    Threshold,
    build_report,
    draft_report,
    report_json,
)
from ledger.export.service import merge_thresholds
from ledger.findings import Finding, FindingClass
from ledger.signing import SigningKey
from ledger.versions import VersionId

KEY = SigningKey.generate()
T0 = "2025-11-21T08:00:00.000000Z"


def chain(*items: tuple[str, dict[str, Any]], key: SigningKey = KEY) -> list[Block]:
    """Sealed blocks: a genesis, then ``items`` (kind, payload), one second apart."""
    genesis = seal(
        height=0,
        prev_hash=GENESIS_PREV_HASH,
        timestamp=T0,
        kind="genesis",
        payload={
            "ledger_id": "L",
            "origin": "o",
            "created": T0,
            "algorithm": "ed25519",
            "public_key": key.public.hex(),
        },
        key=key,
    )
    blocks = [genesis]
    for n, (kind, payload) in enumerate(items, start=1):
        stamp = f"2025-11-21T08:00:{n:02d}.000000Z"
        blocks.append(
            seal(height=n, prev_hash=blocks[-1].block_hash, timestamp=stamp, kind=kind, payload=payload, key=key)
        )
    return blocks


def versions(count: int) -> list[tuple[str, dict[str, Any]]]:
    """``count`` version payloads v1.0 ... with parents set."""
    out: list[tuple[str, dict[str, Any]]] = []
    parent = None
    for n in range(count):
        payload = version_payload(n, parent)
        out.append(("version", payload))
        parent = {"version": payload["version"], "height": n + 1, "block_hash": "x" * 64}
    return out


def build(
    blocks: list[Block],
    selection: Selection | None = None,
    thresholds: tuple[Threshold, ...] = (),
    findings: tuple[Finding, ...] = (),
    retention: RetentionSettings | None = None,
    payloads: dict[int, dict[str, Any]] | None = None,
) -> Report:
    audit = AuditReport(
        findings=findings,
        blocks_checked=len(blocks),
        head_height=blocks[-1].height,
        head_hash=blocks[-1].block_hash,
        files_mode=FilesMode.NONE,
        files_checked=0,
        payloads=payloads or {},
    )
    checkpoint = CheckpointInfo("o", len(blocks), "00" * 32, "o\n1\nAA==\n\n— o x\n", "o", "o+00000000+AA")
    context = Context("L", "o", T0, "ledger test", "ledger verify-export r", KEY.key_id, checkpoint)
    return build_report(
        blocks,
        selection=selection or Selection(),
        thresholds=thresholds,
        audit=audit,
        context=context,
        retention=retention,
    )


# --- thresholds and selection -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [
        ("validation_accuracy=0.8", ">=", 0.8),
        ("fairness_score=0.9", ">=", 0.9),
        ("bias_score=0.2", "<=", 0.2),
        ("eval_loss=1.5", "<=", 1.5),
        ("bias_score>=0.1", ">=", 0.1),
        ("validation_accuracy<=0.99", "<=", 0.99),
    ],
)
def test_threshold_direction(text: str, op: str, value: float) -> None:
    threshold = Threshold.parse(text)
    assert (threshold.op, threshold.value) == (op, value)


@pytest.mark.parametrize("text", ["accuracy", "accuracy=", "=0.5", "accuracy=high", "accuracy=nan", "a=inf", "a==1"])
def test_threshold_refused(text: str) -> None:
    with pytest.raises(InputError):
        Threshold.parse(text)


def test_threshold_breach_edges() -> None:
    minimum, maximum = Threshold.parse("acc=0.8"), Threshold.parse("bias_score=0.2")
    assert not minimum.breached(0.8) and minimum.breached(0.7999)
    assert not maximum.breached(0.2) and maximum.breached(0.2001)


@pytest.mark.parametrize("text", ["v1.5..v1.0", "2.0..1.9", "1.10..1.9"])
def test_reversed_version_range(text: str) -> None:
    with pytest.raises(SelectionError, match="other way round"):
        Selection.make(versions=text)


@pytest.mark.parametrize("text", ["v1.0", "v1.0..", "..v1.2", "a..b", "v1.0...v1.2"])
def test_malformed_version_range(text: str) -> None:
    with pytest.raises(SelectionError):
        Selection.make(versions=text)


def test_reversed_time_window() -> None:
    with pytest.raises(SelectionError, match="reversed"):
        Selection.make(since="2025-12-01", until="2025-11-01")
    selection = Selection.make(since="2025-11-01T00:00:00+01:00", versions="v1.9..1.10")
    assert selection.since == "2025-10-31T23:00:00.000000Z"
    assert selection.takes_version(VersionId(1, 10)) and not selection.takes_version(VersionId(1, 11))


# --- building -------------------------------------------------------------------------------------


def test_register_diffs_and_breaches() -> None:
    blocks = chain(*versions(4))
    report = build(blocks, thresholds=(Threshold.parse("validation_accuracy=0.85"), Threshold.parse("bias_score=0.1")))
    assert [v.name for v in report.versions] == [f"oneseek-7b-zero-v1.{n}" for n in range(4)]
    v1 = report.versions[1]
    assert v1.parent == "oneseek-7b-zero-v1.0" and v1.parent_sha256 == report.versions[0].sha256
    assert v1.trainer == "OneSeek-Training-Pipeline" and v1.base_models == ("Mistral-7B", "LLaMA-2")
    # v1.0 (major) trains 5 epochs, v1.1 3: a change, plus the growing dataset size
    changes = {c.key: (c.before, c.after) for c in report.diffs[0].changes}
    assert changes == {"dataset_size": (1000, 1010), "epochs": (5, 3)}
    expected = {
        (v.name, m)
        for v in report.versions
        for m, t in (("validation_accuracy", 0.85), ("bias_score", 0.1))
        if (v.metrics[m] < t if m == "validation_accuracy" else v.metrics[m] > t)
    }
    assert expected, "the fixture must produce breaches"
    assert {(b.version, b.metric) for b in report.evaluation.breaches} == expected
    assert all(report.evaluation.breached(*pair) for pair in expected)
    assert report.evaluation.metrics[:3] == ("validation_accuracy", "fairness_score", "bias_score")


def test_selection_filters() -> None:
    blocks = chain(*versions(5))
    report = build(blocks, Selection.make(versions="v1.1..v1.3"))
    assert [v.version for v in report.versions] == ["1.1", "1.2", "1.3"]
    # the diff of the first selected version is still against its parent, which is outside the range
    assert report.diffs[0].parent == "oneseek-7b-zero-v1.0"
    timed = build(blocks, Selection.make(since="2025-11-21T08:00:02Z", until="2025-11-21T08:00:03Z"))
    assert [v.version for v in timed.versions] == ["1.1", "1.2"]


def test_empty_selection_and_unknown_model() -> None:
    blocks = chain(*versions(2))
    with pytest.raises(SelectionError, match="matches no version"):
        build(blocks, Selection.make(versions="v2.0..v2.5"))
    with pytest.raises(SelectionError, match="no versions in this ledger"):
        build(blocks, Selection(model="other-model"))
    with pytest.raises(SelectionError):
        build(chain())


def test_lifecycle_events_read_generically() -> None:
    rotated = SigningKey.generate()
    items = [
        *versions(2),
        (
            "alias",
            {"model": "oneseek-7b-zero", "alias": "prod", "version": "1.1", "previous": None, "action": "promote"},
        ),
        ("alias", {"model": "other", "alias": "prod", "version": "other-v1.0", "previous": None, "action": "promote"}),
        (
            "backup",
            {
                "version": "oneseek-7b-zero-v1.0",
                "location": "s3://b/m",
                "files": [{"role": "weights", "path": "w", "remote": "r", "size": 10, "sha256": "a", "blake3": "b"}],
                "verified": True,
            },
        ),
        (
            "prune",
            {
                "version": "oneseek-7b-zero-v1.0",
                "files": ["w"],
                "backup_height": 5,
                "location": "s3://b/m",
                "policy": {"keep_major": 2, "keep_micro": 5},
            },
        ),
        ("restore", {"version": "oneseek-7b-zero-v1.0", "location": "s3://b/m", "backup_height": 5, "files": ["w"]}),
        ("key", {"public_key": rotated.public.hex(), "previous_key_id": KEY.key_id, "reason": "annual rotation"}),
        ("export", {"format": "html", "file": "r.html", "sha256": "ab" * 32, "size": 1, "selection": {}}),
        ("checkpoint", {"size": 9, "root": "cd" * 32, "note": "n"}),
        (
            "alias",
            {"model": "oneseek-7b-zero", "alias": "prod", "version": "1.0", "previous": "1.1", "action": "rollback"},
        ),
        ("backup", {"version": None}),  # malformed: listed, not fatal
    ]
    report = build(chain(*items))
    kinds = [e.kind for e in report.events]
    assert kinds == ["alias", "backup", "prune", "restore", "key", "export", "checkpoint", "alias", "backup"]
    assert report.events[-1].summary == "backed up ? to ? (0 files, NOT verified)"
    text = "\n".join(e.summary for e in report.events)
    assert "promoted oneseek-7b-zero alias 'prod' to 1.1" in text
    assert "rolled back oneseek-7b-zero alias 'prod' to 1.0 (was 1.1)" in text
    assert "backed up oneseek-7b-zero-v1.0 to s3://b/m (1 file, verified)" in text
    assert "policy keep 2 major / 5 micro" in text
    assert f"signing key rotated to {rotated.key_id} (previous {KEY.key_id}): annual rotation" in text
    assert [k.key_id for k in report.integrity.keys] == [KEY.key_id, rotated.key_id]
    recorded = [(p.model, dict(p.policy), p.prunes, p.first_height) for p in report.retention.recorded]
    assert recorded == [("oneseek-7b-zero", {"keep_major": 2, "keep_micro": 5}, 1, 6)]
    assert report.retention.configured == (
        ConfiguredPolicy("oneseek-7b-zero", 3, 50, "built-in default (no ledger.toml was read)"),
    )
    assert any("latest prune (block 6) applied keep 2 major / 5 micro" in s for s in report.retention.statements)
    states = {s.version: s.state for s in report.retention.states}
    assert states == {"oneseek-7b-zero-v1.0": "restored", "oneseek-7b-zero-v1.1": "local, no backup"}
    assert report.retention.backups[0].size == 10


def _prune(version: str, policy: dict[str, int], location: str = "file:///backups") -> tuple[str, dict[str, Any]]:
    return (
        "prune",
        {"version": version, "files": ["w"], "backup_height": 1, "location": location, "policy": policy},
    )


def _backup(version: str, location: str, size: int, *, verified: bool = True) -> tuple[str, dict[str, Any]]:
    files = [{"role": "weights", "path": "w", "remote": "r", "size": size, "sha256": "a", "blake3": "b"}]
    return "backup", {"version": version, "location": location, "files": files, "verified": verified}


def test_retention_states_the_configured_policy_per_model_and_the_recorded_ones() -> None:
    config = parse_config(
        """
        [retention]
        keep_major = 1
        keep_micro = 10
        [retention.models."other-model"]
        keep_micro = 2
        """
    )
    ours = [f"oneseek-7b-zero-v1.{n}" for n in range(3)]
    items = [
        *versions(3),
        ("version", version_payload(0, None, model="other-model")),
        ("version", version_payload(1, None, model="other-model")),
        _backup(ours[0], "file:///backups", 10),
        _backup(ours[0], "s3://offsite/m", 10, verified=False),
        _backup(ours[1], "file:///backups", 20),
        _backup("other-model-v1.0", "file:///backups", 5),
        _prune(ours[0], {"keep_major": 3, "keep_micro": 50}),
        _prune(ours[1], {"keep_major": 3, "keep_micro": 50}),
        _prune(ours[1], {"keep_major": 1, "keep_micro": 1}),
        _prune("other-model-v1.0", {"keep_major": 1, "keep_micro": 2}),
        _prune("third-model-v1.0", {"keep_major": 9, "keep_micro": 9}),  # a model outside the ledger's versions
    ]
    report = build(chain(*items), retention=RetentionSettings(config, "models/ledger.toml"))
    r = report.retention
    assert r.configured == (
        ConfiguredPolicy(
            "oneseek-7b-zero", 1, 10, "models/ledger.toml [retention] (built-in defaults for keys it does not set)"
        ),
        ConfiguredPolicy("other-model", 1, 2, 'models/ledger.toml [retention.models."other-model"]'),
    )
    recorded = [(p.model, dict(p.policy), p.prunes, p.first_height, p.last_height) for p in r.recorded]
    assert recorded == [
        ("oneseek-7b-zero", {"keep_major": 3, "keep_micro": 50}, 2, 10, 11),
        ("oneseek-7b-zero", {"keep_major": 1, "keep_micro": 1}, 1, 12, 12),
        ("other-model", {"keep_major": 1, "keep_micro": 2}, 1, 13, 13),
    ]
    changed = [s for s in r.statements if "the configuration now says" in s]
    assert changed == [
        "oneseek-7b-zero: the latest prune (block 12) applied keep 1 major / 1 micro; the configuration now says "
        "keep 1 major / 10 micro (models/ledger.toml [retention] (built-in defaults for keys it does not set))."
    ]
    locations = [
        (loc.location, loc.versions, loc.files, loc.size, loc.last_height, loc.all_verified) for loc in r.locations
    ]
    assert locations == [("file:///backups", 3, 3, 35, 9, True), ("s3://offsite/m", 1, 1, 10, 7, False)]
    document = report_json(report)["retention"]
    assert document["configured"][1] == {
        "model": "other-model",
        "keep_major": 1,
        "keep_micro": 2,
        "source": 'models/ledger.toml [retention.models."other-model"]',
    }
    assert document["locations"][0]["versions"] == 3 and "policy" not in document
    only_other = build(chain(*items), Selection(model="other-model"), retention=RetentionSettings(config, "t"))
    assert [p.model for p in only_other.retention.recorded] == ["other-model"]
    assert [c.model for c in only_other.retention.configured] == ["other-model"]


def test_retention_without_configuration_says_so() -> None:
    r = build(chain(*versions(1))).retention
    assert r.configured == (ConfiguredPolicy("oneseek-7b-zero", 3, 50, "built-in default (no ledger.toml was read)"),)
    assert r.recorded == () and r.locations == ()


def test_thresholds_from_the_configuration_and_flags_override() -> None:
    config = parse_config(
        """
        [export.thresholds]
        validation_accuracy = 0.85
        bias_score = "<= 0.2"
        fairness_score = 1
        """
    )
    merged = merge_thresholds(config.thresholds, ["fairness_score=0.5", "eval_loss=2"], source="models/ledger.toml")
    assert [(t.metric, t.op, t.value, t.source) for t in merged] == [
        ("validation_accuracy", ">=", 0.85, "models/ledger.toml"),
        ("bias_score", "<=", 0.2, "models/ledger.toml"),
        ("fairness_score", ">=", 0.5, "--threshold"),
        ("eval_loss", "<=", 2.0, "--threshold"),
    ]
    report = build(chain(*versions(4)), thresholds=merged)
    document = report_json(report)
    marked = {v["name"]: v["breaches"] for v in document["versions"]}
    expected = {v.name: [b.metric for b in report.evaluation.breaches if b.version == v.name] for v in report.versions}
    assert marked == expected and any(marked.values()) and not all(marked.values())
    assert document["evaluation"]["thresholds"][0] == {
        "metric": "validation_accuracy",
        "op": ">=",
        "value": 0.85,
        "source": "models/ledger.toml",
    }


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[export.thresholds]\nbias_score = "0.2"', 'give a number or a string "<= number"'),
        ("[export.thresholds]\nbias_score = true", "give a number"),
        ("[export]\nthreshold = 1", "unknown key(s) threshold"),
        ("[export]\nthresholds = 1", "[export.thresholds] must be a table"),
        ('[export.thresholds]\n"my metric" = 1', "models/ledger.toml [export.thresholds]: threshold 'my metric=1'"),
        ('[export.thresholds]\nacc = ">= high"', "models/ledger.toml [export.thresholds]: threshold"),
    ],
)
def test_bad_configured_thresholds_are_refused(toml: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        merge_thresholds(parse_config(toml, source="models/ledger.toml").thresholds, [], source="models/ledger.toml")
    assert message in str(info.value)


def test_a_threshold_flag_given_twice_is_refused() -> None:
    with pytest.raises(InputError, match="given twice"):
        merge_thresholds({}, ["bias_score=0.1", "bias_score<=0.3"], source="t")


def test_findings_filtered_to_scope() -> None:
    blocks = chain(*versions(2))
    findings = (
        Finding(1, "oneseek-7b-zero-v1.0", FindingClass.FILE_MISSING, "gone", "w"),
        Finding(None, None, FindingClass.DB_GUARD, "trigger missing"),
        Finding(9, "other-v1.0", FindingClass.FILE_MISSING, "elsewhere"),
    )
    report = build(blocks, Selection.make(versions="v1.0..v1.0"), findings=findings)
    assert [f.message for f in report.findings] == ["gone", "trigger missing"]
    assert not report.integrity.audit.clean and report.integrity.audit.errors == 3


# --- formats --------------------------------------------------------------------------------------


def test_registry_is_complete_and_refuses_unknown() -> None:
    assert set(FORMATS) == {"html", "pdf", "json", "csv", "intoto", "cyclonedx"}
    with pytest.raises(SelectionError, match="unknown export format 'xml'"):
        formatter("xml")


def test_csv_neutralises_formulas() -> None:
    items = versions(1)
    items[0][1]["question"] = "-cmd"
    items[0][1]["metadata"]["content"]["provenance"]["trainer"] = "=HYPERLINK(1)"
    items[0][1]["metadata"]["content"]["metrics"]["bias_score"] = -0.5
    data = CsvFormatter().render(build(chain(*items)), RenderContext(KEY)).decode()
    assert "'-cmd" in data and "'=HYPERLINK(1)" in data and ",-0.5" in data


# --- DSSE -----------------------------------------------------------------------------------------


def test_pae_spec_vector() -> None:
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert dsse.pae("t", "é".encode()) == b"DSSEv1 1 t 2 " + "é".encode()  # lengths count bytes


def test_dsse_sign_verify_and_attacks() -> None:
    envelope = dsse.sign_envelope(b'{"a":1}', dsse.IN_TOTO_PAYLOAD_TYPE, KEY)
    keys = {KEY.key_id: KEY.public}
    verified = dsse.verify_envelope(envelope, keys)
    assert verified.payload == b'{"a":1}' and verified.key_id == KEY.key_id
    # the signature covers PAE, not the bare payload
    raw = base64.b64decode(envelope["signatures"][0]["sig"])
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    Ed25519PublicKey.from_public_bytes(KEY.public).verify(raw, dsse.pae(dsse.IN_TOTO_PAYLOAD_TYPE, b'{"a":1}'))
    with pytest.raises(BadSignatureError):
        dsse.verify_envelope({**envelope, "payload": base64.b64encode(b'{"a":2}').decode()}, keys)
    with pytest.raises(BadSignatureError):
        dsse.verify_envelope({**envelope, "payloadType": "application/json"}, keys)
    with pytest.raises(BadSignatureError, match="no DSSE signature by a key"):
        dsse.verify_envelope(envelope, {"0" * 16: SigningKey.generate().public})
    forged = dsse.sign_envelope(b'{"a":1}', dsse.IN_TOTO_PAYLOAD_TYPE, SigningKey.generate())
    forged["signatures"][0]["keyid"] = KEY.key_id  # claims our key id, signed by another key
    with pytest.raises(BadSignatureError):
        dsse.verify_envelope(forged, keys)
    assert dsse.decode_statement(verified) == {"a": 1}


def test_json_export_of_values_only_a_damaged_ledger_holds() -> None:
    """Payload bytes changed behind the guards to hold an integer beyond 64 bits and an unpaired surrogate (no
    RFC 8785 encoder writes either): the JSON export is still valid, strictly parseable JSON carrying them."""
    blocks = chain(*versions(2))
    damaged = blocks[2].payload.replace(b'"batch_size":32', b'"batch_size":' + str(2**70).encode())
    damaged = damaged.replace(b'"OneSeek-Training-Pipeline"', b'"\\ud800"')
    assert damaged.count(str(2**70).encode()) == 1 and b"\\ud800" in damaged
    blocks[2] = dataclasses.replace(blocks[2], payload=damaged)
    assert formatter("json").prepare(draft_report(blocks, selection=Selection(), thresholds=())) is None
    data = formatter("json").render(build(blocks), RenderContext(KEY))
    assert data.isascii() and data.endswith(b"}\n")
    document = json.loads(data, parse_constant=lambda token: pytest.fail(f"{token} in the export"))
    second = document["versions"][1]
    assert second["training_config"]["batch_size"] == 2**70 and second["trainer"] == "\ud800"
    clean = formatter("json").render(build(chain(*versions(2))), RenderContext(KEY))
    assert json.loads(clean)["versions"][1]["training_config"]["batch_size"] == 32


def test_json_sections_encoded_while_the_audit_runs_render_the_same_bytes() -> None:
    """``prepare`` encodes the chain's sections from the draft before the audit's result is in; the file must be
    byte for byte the one rendered from the finished report alone (breaches, lifecycle and retention included)."""
    blocks = chain(*versions(3), _backup("oneseek-7b-zero-v1.0", "file:///b", 10), _prune("oneseek-7b-zero-v1.0", {}))
    thresholds = (Threshold.parse("validation_accuracy=0.99"),)
    report = build(blocks, thresholds=thresholds)
    json_format = formatter("json")
    prepared = json_format.prepare(draft_report(blocks, selection=Selection(), thresholds=thresholds))
    assert isinstance(prepared, dict) and "versions" in prepared
    assert report.evaluation.breaches and report.events and report.retention.backups
    data = json_format.render(report, RenderContext(KEY, prepared))
    assert data == json_format.render(report, RenderContext(KEY))
    assert json.loads(data) == json.loads(json.dumps(report_json(report)))
    assert all(
        f.prepare(draft_report(blocks, selection=Selection(), thresholds=())) is None
        for n, f in FORMATS.items()
        if n != "json"
    )


def test_version_payloads_the_audit_decoded_are_not_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = chain(*versions(3), _backup("oneseek-7b-zero-v1.0", "file:///b", 10))
    decoded: list[int] = []
    original = Block.data

    def counted(block: Block) -> dict[str, Any]:
        decoded.append(block.height)
        return original(block)

    monkeypatch.setattr(Block, "data", counted)
    plain = build(blocks)
    assert decoded == [0, 1, 2, 3, 4]
    decoded.clear()
    shared = build(blocks, payloads={b.height: original(b) for b in blocks if b.kind == "version"})
    assert decoded == [0, 4] and shared.versions == plain.versions
