"""ledger: an append-only, signed, Merkle-checkpointed provenance ledger for model weights.

``Ledger`` is loaded on first use so that importing ``ledger.errors`` (as the CLI does at start) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger.api import Ledger

__all__ = ["Ledger"]


def __getattr__(name: str) -> Any:
    if name == "Ledger":
        from ledger.api import Ledger

        return Ledger
    raise AttributeError(f"module 'ledger' has no attribute {name!r}")
