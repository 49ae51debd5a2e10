"""Golden vectors for block hashing and signing: regenerated only on purpose (docs/FORMAT.md explains each byte)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.block import Block, seal
from ledger.chain import verify_chain
from ledger.signing import SIGNATURE_DOMAIN, SigningKey

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "blocks.json").read_text(encoding="utf-8"))
KEY = SigningKey.from_private(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(VECTORS["private_key_seed_hex"])))


def as_block(item: dict[str, Any]) -> Block:
    return Block(
        format=item["format"],
        height=item["height"],
        prev_hash=item["prev_hash"],
        timestamp=item["timestamp"],
        kind=item["kind"],
        payload=item["payload"].encode("utf-8"),
        payload_hash=item["payload_hash"],
        key_id=item["key_id"],
        block_hash=item["block_hash"],
        signature=bytes.fromhex(item["signature"]),
    )


@pytest.mark.parametrize("item", VECTORS["blocks"], ids=lambda i: i["kind"])
def test_seal_reproduces_vector(item: dict[str, Any]) -> None:
    block = seal(
        height=item["height"],
        prev_hash=item["prev_hash"],
        timestamp=item["timestamp"],
        kind=item["kind"],
        payload=json.loads(item["payload"]),
        key=KEY,
    )
    assert block == as_block(item)


@pytest.mark.parametrize("item", VECTORS["blocks"], ids=lambda i: i["kind"])
def test_independent_recomputation(item: dict[str, Any]) -> None:
    """Recompute from the documented layout with hashlib, rfc8785 and cryptography only (no ledger code)."""
    payload = item["payload"].encode("utf-8")
    assert rfc8785.dumps(json.loads(payload)) == payload
    assert hashlib.sha256(payload).hexdigest() == item["payload_hash"]
    header = {k: item[k] for k in ("format", "height", "kind", "key_id", "payload_hash", "prev_hash", "timestamp")}
    header_bytes = b"ledger/block/v1\n" + rfc8785.dumps(header)
    assert header_bytes.hex() == item["header_bytes_hex"]
    block_hash = hashlib.sha256(header_bytes).digest()
    assert block_hash.hex() == item["block_hash"]
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(VECTORS["public_key_hex"]))
    public.verify(bytes.fromhex(item["signature"]), SIGNATURE_DOMAIN + block_hash)
    assert hashlib.sha256(bytes.fromhex(VECTORS["public_key_hex"])).hexdigest()[:16] == item["key_id"]


def test_vector_chain_verifies() -> None:
    assert verify_chain(as_block(item) for item in VECTORS["blocks"]) == []
