"""Synthetic ledgers for export tests and the export benchmark: many real, sealed, signed version blocks.

Blocks are made with ``ledger.block.seal`` against the previous hash and stored with their Merkle nodes and
version index rows exactly as ``Ledger._commit`` does, but thousands per transaction, so a 10,000-version
ledger takes seconds and still passes ``ledger audit`` (weight files are not created: audit with files=none).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from ledger import merkle
from ledger.api import Ledger, NodesOf
from ledger.block import Block, seal
from ledger.signing import SigningKey
from ledger.store import Store
from ledger.timeutil import now

MODEL = "oneseek-7b-zero"
MICROS_PER_MAJOR = 100


def version_payload(n: int, parent: dict[str, Any] | None, *, model: str = MODEL) -> dict[str, Any]:
    """The ``n``-th synthetic version (v1.0, v1.1, ... v1.99, v2.0, ...), shaped like ``ledger.recording``."""
    major, micro = 1 + n // MICROS_PER_MAJOR, n % MICROS_PER_MAJOR
    version = f"{major}.{micro}"
    name = f"{model}-v{version}"
    digest = hashlib.sha256(name.encode()).hexdigest()
    content: dict[str, Any] = {
        "version": version,
        "model_name": "OneSeek-7B-Zero",
        "timestamp": "2025-11-21T08:00:00Z",
        "base_models": ["Mistral-7B", "LLaMA-2"],
        "training_config": {
            "dataset_size": 1000 + 10 * n,
            "epochs": 3 if micro else 5,
            "batch_size": 32,
            "learning_rate": 2e-5,
            "use_lora": True,
            "lora_rank": 8,
            "lora_alpha": 32,
        },
        "metrics": {
            "validation_accuracy": round(0.80 + 0.1 * ((n * 37) % 100) / 100, 4),
            "fairness_score": round(0.85 + 0.1 * ((n * 53) % 100) / 100, 4),
            "bias_score": round(0.05 + 0.2 * ((n * 71) % 100) / 100, 4),
        },
        "provenance": {
            "training_data_hash": "sha256:" + hashlib.sha256(f"data-{major}".encode()).hexdigest(),
            "trainer": "OneSeek-Training-Pipeline",
        },
    }
    return {
        "model": model,
        "version": version,
        "name": name,
        "release": "major" if micro == 0 else "micro",
        "stage": None,
        "question": None,
        "weights": {
            "path": f"{name}.pth",
            "format": "pth",
            "size": 4096 + n,
            "sha256": digest,
            "blake3": hashlib.sha256(digest.encode()).hexdigest(),
            "mtime_ns": "0",
            "tensors": None,
        },
        "metadata": {"path": f"{name}.json", "content": content},
        "training_data": {"computed": False, "hash": content["provenance"]["training_data_hash"]},
        "adapter": None,
        "parent": parent,
    }


@dataclass(frozen=True, slots=True)
class _Tip:
    """Where the next batch starts: the head block, the Merkle frontier and the last version (the parent)."""

    head: Block
    frontier: tuple[bytes, ...]
    parent: dict[str, Any] | None


def _batch(connection: Connection, tip: _Tip, *, key: SigningKey, first: int, todo: int, model: str) -> _Tip:
    """Seal and store ``todo`` versions; pure in ``tip`` so Store.write may safely run it again."""
    head, links, parent = tip.head, list(tip.frontier), tip.parent
    for n in range(first, first + todo):
        payload = version_payload(n, parent, model=model)
        height = head.height + 1
        block = seal(
            height=height,
            prev_hash=head.block_hash,
            timestamp=max(now(), head.timestamp),
            kind="version",
            payload=payload,
            key=key,
        )
        Store.insert_block(connection, block)
        nodes, links = merkle.completed_nodes(height, merkle.leaf_hash(bytes.fromhex(block.block_hash)), links)
        Store.insert_nodes(connection, nodes)
        major, _, micro = payload["version"].partition(".")
        Store.insert_version_index(connection, height=height, model=model, major=int(major), micro=int(micro))
        parent = {"version": payload["version"], "height": height, "block_hash": block.block_hash}
        head = block
    return _Tip(head, tuple(links), parent)


def fill_versions(ledger: Ledger, count: int, *, model: str = MODEL, batch: int = 2000) -> None:
    """Append ``count`` version blocks of ``model`` (starting at v1.0) in batched transactions."""
    head = ledger.head()
    with ledger.store.reading() as connection:
        frontier = merkle.load_frontier(NodesOf(connection), head.height + 1)
    tip = _Tip(head, tuple(frontier), None)
    for first in range(0, count, batch):
        todo = min(batch, count - first)
        tip = ledger.store.write(
            functools.partial(_batch, tip=tip, key=ledger.key, first=first, todo=todo, model=model)
        )
