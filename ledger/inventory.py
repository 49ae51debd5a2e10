"""The version inventory behind ``ledger versions``: one row per recorded version with its state on disk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger.audit import FilesMode, VersionState, check_files
from ledger.findings import FindingClass
from ledger.versions import VersionId, slugify

if TYPE_CHECKING:
    from ledger.api import Ledger

SEED_METRICS = ("validation_accuracy", "fairness_score", "bias_score")
PRESENT, MISSING, MISMATCH = "present", "missing", "mismatch"


@dataclass(frozen=True, slots=True)
class VersionRow:
    """What ``ledger versions`` shows for one version; ``problems`` says why a state is not ``present``."""

    name: str
    model: str
    version: VersionId
    release: str
    stage: int | None
    question: str | None
    height: int
    sha256: str | None
    size: int | None
    adapter_root: str | None
    metrics: dict[str, float | None]
    state: str
    problems: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The row in the ``--json`` shape."""
        return {
            "name": self.name,
            "model": self.model,
            "version": str(self.version),
            "release": self.release,
            "stage": self.stage,
            "question": self.question,
            "height": self.height,
            "sha256": self.sha256,
            "size": self.size,
            "adapter_root": self.adapter_root,
            "metrics": self.metrics,
            "state": self.state,
            "problems": list(self.problems),
        }


def list_versions(ledger: Ledger, *, model: str | None = None) -> list[VersionRow]:
    """Every recorded version (of ``model``, a name or slug, when given) in numeric order, with a quick file
    check (sizes and modification times, as ``audit --files quick``: cheap, and not a proof)."""
    slug = slugify(model) if model is not None else None
    states: list[VersionState] = []
    for block in ledger.blocks_of_kind("version"):
        payload = block.data()
        if slug is not None and payload.get("model") != slug:
            continue
        states.append(VersionState(block.height, str(payload.get("name")), payload))
    findings, _checked = check_files(
        states, models_dir=ledger.models_dir, adapters_dir=ledger.adapters_dir, mode=FilesMode.QUICK
    )
    problems: dict[str, list[tuple[FindingClass, str]]] = {}
    for finding in findings:
        if finding.version is not None:
            problems.setdefault(finding.version, []).append((finding.kind, finding.message))
    rows = [_row(state, problems.get(state.name, [])) for state in states]
    rows.sort(key=lambda row: (row.model, row.version))
    return rows


def _row(state: VersionState, problems: list[tuple[FindingClass, str]]) -> VersionRow:
    payload = state.payload
    weights: dict[str, Any] | None = payload["weights"] if isinstance(payload.get("weights"), dict) else None
    adapter: dict[str, Any] | None = payload["adapter"] if isinstance(payload.get("adapter"), dict) else None
    content = (payload.get("metadata") or {}).get("content") or {}
    metrics: dict[str, Any] = content["metrics"] if isinstance(content.get("metrics"), dict) else {}
    if not problems:
        status = PRESENT
    elif any(kind is FindingClass.FILE_MISSING for kind, _ in problems):
        status = MISSING
    else:
        status = MISMATCH
    return VersionRow(
        name=state.name,
        model=str(payload.get("model")),
        version=VersionId.parse(str(payload.get("version"))),
        release=str(payload.get("release")),
        stage=payload.get("stage"),
        question=payload.get("question"),
        height=state.height,
        sha256=weights.get("sha256") if weights else None,
        size=weights.get("size") if weights else None,
        adapter_root=adapter.get("root") if adapter else None,
        metrics={key: _number(metrics.get(key)) for key in SEED_METRICS},
        state=status,
        problems=tuple(message for _, message in problems),
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
