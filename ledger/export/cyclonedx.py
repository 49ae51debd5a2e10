"""CycloneDX 1.6 ML-BOM export: a ``machine-learning-model`` component per version, datasets as ``data``.

Each model component carries the weights' SHA-256, a ``modelCard`` (datasets by reference to ``data``
components that hold the training data hash; performance metrics as strings; training config as properties)
and its parent version as a pedigree ancestor. The ledger's integrity section sits in ``metadata.properties``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ledger.export.interface import Formatter, RenderContext
from ledger.export.report import Report, VersionEntry, flatten

SPEC_VERSION = "1.6"
PREFIX = "ledger:"


def _prop(name: str, value: Any) -> dict[str, str]:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return {"name": PREFIX + name, "value": text}


def _data_ref(hash_text: str) -> str:
    return f"data:{hash_text}"


def _hex(hash_text: str) -> str | None:
    algorithm, sep, value = hash_text.partition(":")
    value = value if sep else algorithm
    if sep and algorithm != "sha256":
        return None
    return value if len(value) == 64 else None


def _model(v: VersionEntry) -> dict[str, Any]:
    component: dict[str, Any] = {
        "type": "machine-learning-model",
        "bom-ref": f"model:{v.name}",
        "name": v.model,
        "version": v.version,
        "description": f"{v.name} ({v.release}" + (f", stage {v.stage}, question {v.question})" if v.stage else ")"),
    }
    if v.sha256:
        component["hashes"] = [{"alg": "SHA-256", "content": v.sha256}]
    card: dict[str, Any] = {"bom-ref": f"model-card:{v.name}"}
    parameters: dict[str, Any] = {}
    if v.data_hash:
        parameters["datasets"] = [{"ref": _data_ref(v.data_hash)}]
    if v.base_models:
        parameters["modelArchitecture"] = "fine-tuned from " + ", ".join(v.base_models)
    if parameters:
        card["modelParameters"] = parameters
    if v.metrics:
        card["quantitativeAnalysis"] = {
            "performanceMetrics": [{"type": k, "value": repr(val)} for k, val in sorted(v.metrics.items())]
        }
    config = [_prop(f"training_config:{k}", val) for k, val in sorted(flatten(v.config).items())]
    if config:
        card["properties"] = config
    component["modelCard"] = card
    if v.parent is not None:
        slug, _, version = v.parent.rpartition("-v")
        ancestor: dict[str, Any] = {"type": "machine-learning-model", "name": slug, "version": version}
        if v.parent_sha256:
            ancestor["hashes"] = [{"alg": "SHA-256", "content": v.parent_sha256}]
        ancestor["properties"] = [_prop("block_hash", v.parent_hash or "")]
        component["pedigree"] = {"ancestors": [ancestor]}
    props = [
        _prop("height", str(v.height)),
        _prop("block_hash", v.block_hash),
        _prop("recorded", v.timestamp),
        _prop("release", v.release),
    ]
    for key, value in (
        ("trainer", v.trainer),
        ("weights_path", v.weights_path),
        ("size", None if v.size is None else str(v.size)),
        ("adapter_root", v.adapter_root),
        ("question", v.question),
        ("stage", None if v.stage is None else str(v.stage)),
    ):
        if value is not None:
            props.append(_prop(key, value))
    props.extend(_prop("base_model", b) for b in v.base_models)
    component["properties"] = props
    return component


def _dataset(hash_text: str, users: list[VersionEntry]) -> dict[str, Any]:
    first = users[0]
    component: dict[str, Any] = {
        "type": "data",
        "bom-ref": _data_ref(hash_text),
        "name": f"training data {hash_text}",
        "data": [
            {
                "type": "dataset",
                "name": f"training data {hash_text}",
                "description": "hash computed by the ledger from the " + (first.data_kind or "data")
                if first.data_computed
                else "hash declared in the version metadata",
            }
        ],
        "properties": [_prop("training_data_hash", hash_text), _prop("used_by", ", ".join(u.name for u in users))],
    }
    digest = _hex(hash_text)
    if digest is not None:
        component["hashes"] = [{"alg": "SHA-256", "content": digest}]
    return component


def bom(report: Report) -> dict[str, Any]:
    """The BOM document."""
    i = report.integrity
    datasets: dict[str, list[VersionEntry]] = {}
    for v in report.versions:
        if v.data_hash:
            datasets.setdefault(v.data_hash, []).append(v)
    components = [_model(v) for v in report.versions]
    components.extend(_dataset(h, users) for h, users in datasets.items())
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:ledger:{i.ledger_id}:{i.head_hash}:{report.generated}")
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": report.generated,
            "tools": {
                "components": [{"type": "application", "name": "ledger", "version": report.tool.partition(" ")[2]}]
            },
            "properties": [
                _prop("ledger_id", i.ledger_id),
                _prop("origin", i.origin),
                _prop("head_height", str(i.head_height)),
                _prop("head_hash", i.head_hash),
                _prop("checkpoint_size", str(i.checkpoint.size)),
                _prop("checkpoint_root", i.checkpoint.root),
                _prop("checkpoint_note", i.checkpoint.note),
                _prop("checkpoint_key_name", i.checkpoint.key_name),
                _prop("audit_clean", "true" if i.audit.clean else "false"),
                _prop("signing_key_id", i.signing_key_id),
                _prop("verify_command", i.verify_command),
            ],
        },
        "components": components,
        "dependencies": [
            {"ref": f"model:{v.name}", "dependsOn": [_data_ref(v.data_hash)] if v.data_hash else []}
            for v in report.versions
        ]
        + [{"ref": _data_ref(h), "dependsOn": []} for h in datasets],
    }


class CycloneDxFormatter(Formatter):
    """CycloneDX 1.6 JSON."""

    name = "cyclonedx"
    suffix = ".cdx.json"
    media_type = "application/vnd.cyclonedx+json"
    signed = False

    def render(self, report: Report, context: RenderContext) -> bytes:
        """The BOM, indented."""
        return (json.dumps(bom(report), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
