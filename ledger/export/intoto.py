"""in-toto export: one Statement v1 per version with a SLSA Provenance v1 predicate, each in a DSSE envelope.

The file is an in-toto bundle (JSON Lines, ``.intoto.jsonl``): one envelope per line, signed with the ledger's
Ed25519 key. One statement per version keeps each predicate true to SLSA: one "build" (a training run) with
its own parameters, data and parent produced that version's weight file.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from ledger.export.dsse import IN_TOTO_PAYLOAD_TYPE, sign_envelope
from ledger.export.interface import Formatter, RenderContext
from ledger.export.report import Report, VersionEntry

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
#: The project's build type: "a model version recorded in a ledger"; documented in docs/FORMAT.md (Exports).
BUILD_TYPE = "urn:ledger:build-type:model-version:v1"


def _uri(kind: str, value: str) -> str:
    return f"urn:ledger:{kind}:{urllib.parse.quote(value, safe='')}"


def _digest(text: str | None) -> dict[str, str] | None:
    """``sha256:<hex>`` or bare hex as an in-toto DigestSet."""
    if not text:
        return None
    algorithm, sep, value = text.partition(":")
    return {algorithm: value} if sep else {"sha256": text}


def subject(v: VersionEntry) -> dict[str, Any]:
    """The artifact the statement is about: the weight file, or the adapter directory of an adapter-only version."""
    if v.sha256 is not None:
        return {"name": v.weights_path or v.name, "digest": {"sha256": v.sha256}}
    return {
        "name": f"{v.adapter_path or v.name}/",
        "digest": {"sha256": v.adapter_root or ""},
        "annotations": {"digestOf": "ledger-manifest-v1 root of the adapter directory"},
    }


def statement(report: Report, v: VersionEntry) -> dict[str, Any]:
    """The Statement for one version."""
    dependencies: list[dict[str, Any]] = []
    data = _digest(v.data_hash)
    if data is not None:
        dependencies.append(
            {
                "name": "training-data",
                "uri": _uri("training-data", v.data_hash or ""),
                "digest": data,
                "annotations": {"computedByLedger": v.data_computed, "kind": v.data_kind or "declared"},
            }
        )
    dependencies.extend({"name": base, "uri": _uri("base-model", base)} for base in v.base_models)
    if v.parent is not None:
        parent: dict[str, Any] = {"name": v.parent, "uri": _uri("model-version", v.parent)}
        if v.parent_sha256:
            parent["digest"] = {"sha256": v.parent_sha256}
        parent["annotations"] = {"ledgerBlockHash": v.parent_hash}
        dependencies.append(parent)
    trainer = v.trainer or "unknown"
    builder = trainer if ":" in trainer else _uri("trainer", trainer)
    metadata: dict[str, Any] = {"invocationId": f"{report.integrity.ledger_id}/{v.height}"}
    if v.trained_at:
        metadata["finishedOn"] = v.trained_at
    return {
        "_type": STATEMENT_TYPE,
        "subject": [subject(v)],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"training_config": dict(v.config)},
                "internalParameters": {
                    "ledger": {
                        "ledger_id": report.integrity.ledger_id,
                        "origin": report.integrity.origin,
                        "version": v.name,
                        "height": v.height,
                        "block_hash": v.block_hash,
                        "recorded": v.timestamp,
                        "stage": v.stage,
                        "question": v.question,
                        "head": {"height": report.integrity.head_height, "hash": report.integrity.head_hash},
                    }
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {"builder": {"id": builder}, "metadata": metadata},
        },
    }


class InTotoFormatter(Formatter):
    """DSSE-signed in-toto bundle (JSON Lines)."""

    name = "intoto"
    suffix = ".intoto.jsonl"
    media_type = "application/vnd.in-toto+jsonl"
    signed = True

    def render(self, report: Report, context: RenderContext) -> bytes:
        """One signed envelope per version, one per line."""
        lines = []
        for v in report.versions:
            payload = json.dumps(statement(report, v), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            envelope = sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, context.key)
            lines.append(json.dumps(envelope, separators=(",", ":")))
        return ("\n".join(lines) + "\n").encode("utf-8")
