"""Bulk path: build a large, real, signed ledger fast (benchmarks, load tests) without going through ``append``.

Blocks are sealed in memory exactly as ``Ledger._commit`` would seal them (same canonical payloads, block
hashes, Ed25519 signatures, RFC 9162 nodes via ``merkle.completed_nodes``), then inserted with executemany in
large transactions. Hash chaining is sequential and cheap; signing is spread over worker processes because a
signature does not feed into any hash. Payloads are ``event`` blocks ``{"seq": i, "sha256": <hex>}``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from sqlalchemy.engine import Connection

from ledger import merkle
from ledger.api import Ledger, NodesOf
from ledger.block import FORMAT_VERSION, Block, header_bytes, payload_hash
from ledger.canonical import canonical
from ledger.signing import SigningKey
from ledger.store import Store

KIND = "event"
NodeRow = tuple[int, int, bytes]
BATCH = 20_000


def _payload(seq: int) -> bytes:
    return canonical({"seq": seq, "sha256": hashlib.sha256(seq.to_bytes(8, "big")).hexdigest()})


def _sign_batch(args: tuple[bytes, list[bytes]]) -> list[bytes]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger.signing import SIGNATURE_DOMAIN

    private = Ed25519PrivateKey.from_private_bytes(args[0])
    return [private.sign(SIGNATURE_DOMAIN + h) for h in args[1]]


def _unsigned(start: int, count: int, prev: str, timestamp: str, key_id: str) -> Iterator[Block]:
    for height in range(start, start + count):
        body = _payload(height)
        digest = payload_hash(body)
        block_hash = hashlib.sha256(
            header_bytes(
                format=FORMAT_VERSION,
                height=height,
                prev_hash=prev,
                timestamp=timestamp,
                kind=KIND,
                payload_hash=digest,
                key_id=key_id,
            )
        ).hexdigest()
        yield Block(FORMAT_VERSION, height, prev, timestamp, KIND, body, digest, key_id, block_hash, b"")
        prev = block_hash


def extend(ledger: Ledger, count: int, *, workers: int | None = None) -> int:
    """Append ``count`` signed event blocks to ``ledger`` (whose key must be the active one); return the size."""
    from concurrent.futures import ProcessPoolExecutor

    from cryptography.hazmat.primitives import serialization

    key = ledger.key
    head = ledger.head()
    ledger.key_schedule().require_active(key.key_id, head.height + 1)
    raw = key.private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    with ledger.store.reading() as connection:
        frontier = merkle.load_frontier(NodesOf(connection), head.height + 1)
    prev, start, done = head.block_hash, head.height + 1, 0
    procs = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=procs) as pool:
        while done < count:
            n = min(BATCH, count - done)
            blocks = list(_unsigned(start + done, n, prev, head.timestamp, key.key_id))
            hashes = [bytes.fromhex(b.block_hash) for b in blocks]
            step = -(-n // procs)
            parts = pool.map(_sign_batch, [(raw, hashes[i : i + step]) for i in range(0, n, step)])
            signatures = [s for part in parts for s in part]
            signed = [replace(b, signature=s) for b, s in zip(blocks, signatures, strict=True)]
            nodes: list[NodeRow] = []
            for block, digest in zip(signed, hashes, strict=True):
                new, frontier = merkle.completed_nodes(block.height, merkle.leaf_hash(digest), frontier)
                nodes.extend(new)

            def write(connection: Connection, blocks: list[Block] = signed, new: list[NodeRow] = nodes) -> None:
                Store.insert_blocks(connection, blocks)
                Store.insert_nodes(connection, new)

            ledger.store.write(write)
            prev = signed[-1].block_hash
            done += n
    return start + count


def build(db_url: str, count: int, *, key: SigningKey, models_dir: Path, workers: int | None = None) -> Ledger:
    """Create a ledger at ``db_url`` holding the genesis plus ``count`` signed event blocks."""
    ledger = Ledger.create(db_url, models_dir=models_dir, key=key)
    extend(ledger, count, workers=workers)
    return ledger
