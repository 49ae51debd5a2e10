"""The transparency-dev/merkle probe vectors (tests/vectors/merkle), loaded once for every proof verifier's tests."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent / "vectors" / "merkle"


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe: an inclusion or consistency case, its hashes decoded, and whether a verifier must reject it."""

    name: str
    kind: str
    case: dict[str, Any]
    proof: list[bytes]
    want_error: bool

    def raw(self, field: str) -> bytes:
        """A base64 field (root, leafHash, root1, root2) as bytes, whatever its length."""
        return base64.b64decode(self.case[field])


def probes() -> list[Probe]:
    """Every probe file, sorted by path."""
    files = sorted(VECTORS.rglob("*.json"))
    assert len(files) > 150, f"probe vectors missing under {VECTORS}"
    out = []
    for path in files:
        case: dict[str, Any] = json.loads(path.read_text())
        out.append(
            Probe(
                name=str(path.relative_to(VECTORS)),
                kind=path.relative_to(VECTORS).parts[0],
                case=case,
                proof=[base64.b64decode(p) for p in case["proof"] or []],
                want_error=bool(case["wantErr"]),
            )
        )
    return out


PROBES = probes()
INCLUSION = [p for p in PROBES if p.kind == "inclusion"]
CONSISTENCY = [p for p in PROBES if p.kind == "consistency"]
