"""Proof bundles: self-contained JSON that anyone can verify without the database (docs/FORMAT.md).

An inclusion bundle carries one block (every field and the exact canonical payload bytes), its leaf index and
RFC 9162 audit path, the signed checkpoint whose root the path leads to, the checkpoint's verifier key, and the
key block that introduced the block's signing key (with its own audit path). A consistency bundle carries two
signed checkpoints and the RFC 9162 consistency proof between them. Everything here is pure: bytes in, a
result or a typed error out (``InputError`` for a malformed bundle, a ``VerificationError`` for a false one).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger import merkle
from ledger.block import Block
from ledger.canonical import is_canonical
from ledger.chain import GENESIS, KEY, introduced_key
from ledger.errors import BadSignatureError, CheckpointError, InputError, ProofError
from ledger.note import Checkpoint, SignedCheckpoint, parse_verifier_key
from ledger.signing import key_id, verify_signature

SCHEMA = "ledger-proof/v1"
INCLUSION = "inclusion"
CONSISTENCY = "consistency"


# --- encoding -------------------------------------------------------------------------------------------------


def block_to_json(block: Block) -> dict[str, Any]:
    """A block as a bundle object: hex hashes, base64 of the exact payload bytes, hex signature."""
    return {
        "format": block.format,
        "height": block.height,
        "prev_hash": block.prev_hash,
        "timestamp": block.timestamp,
        "kind": block.kind,
        "payload_base64": base64.b64encode(block.payload).decode("ascii"),
        "payload_hash": block.payload_hash,
        "key_id": block.key_id,
        "block_hash": block.block_hash,
        "signature": block.signature.hex(),
    }


def inclusion_bundle(
    *,
    ledger_id: str,
    block: Block,
    path: Sequence[bytes],
    checkpoint: SignedCheckpoint,
    verifier_key: str,
    key_block: Block,
    key_path: Sequence[bytes],
) -> dict[str, Any]:
    """Assemble an inclusion bundle (see docs/FORMAT.md, proof bundles)."""
    cp = checkpoint.checkpoint
    return {
        "schema": SCHEMA,
        "type": INCLUSION,
        "ledger_id": ledger_id,
        "origin": cp.origin,
        "leaf_index": block.height,
        "tree_size": cp.size,
        "block": block_to_json(block),
        "inclusion_path": [h.hex() for h in path],
        "key_block": {"block": block_to_json(key_block), "inclusion_path": [h.hex() for h in key_path]},
        "checkpoint": checkpoint.note.decode("utf-8"),
        "verifier_key": verifier_key,
    }


def consistency_bundle(
    *,
    ledger_id: str,
    old: SignedCheckpoint,
    new: SignedCheckpoint,
    path: Sequence[bytes],
    verifier_keys: Sequence[str],
) -> dict[str, Any]:
    """Assemble a consistency bundle: old and new signed checkpoints and the proof between them."""
    return {
        "schema": SCHEMA,
        "type": CONSISTENCY,
        "ledger_id": ledger_id,
        "origin": new.checkpoint.origin,
        "old_checkpoint": old.note.decode("utf-8"),
        "new_checkpoint": new.note.decode("utf-8"),
        "consistency_path": [h.hex() for h in path],
        "verifier_keys": list(verifier_keys),
    }


# --- decoding (malformed input is InputError) -------------------------------------------------------------------


def _field(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in obj:
        raise InputError(f"{where}: missing field {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError(f"{where}: field {name!r} has the wrong type")
    return value


def _hex(value: Any, where: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"{where} is not a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise InputError(f"{where} is not hex") from exc
    if value != raw.hex() or (size is not None and len(raw) != size):
        raise InputError(f"{where} is not {size or 'any'}-byte lowercase hex")
    return raw


def _path(value: Any, where: str) -> list[bytes]:
    if not isinstance(value, list):
        raise InputError(f"{where} is not a list of hashes")
    return [_hex(h, f"{where}[{i}]", merkle.HASH_SIZE) for i, h in enumerate(value)]


def block_from_json(obj: Any, where: str = "block") -> Block:
    """Parse a bundle block object strictly."""
    if not isinstance(obj, dict):
        raise InputError(f"{where} is not an object")
    try:
        payload = base64.b64decode(_field(obj, "payload_base64", str, where), validate=True)
    except binascii.Error as exc:
        raise InputError(f"{where}: payload_base64 is not base64") from exc
    return Block(
        format=_field(obj, "format", int, where),
        height=_field(obj, "height", int, where),
        prev_hash=_field(obj, "prev_hash", str, where),
        timestamp=_field(obj, "timestamp", str, where),
        kind=_field(obj, "kind", str, where),
        payload=payload,
        payload_hash=_field(obj, "payload_hash", str, where),
        key_id=_field(obj, "key_id", str, where),
        block_hash=_field(obj, "block_hash", str, where),
        signature=_hex(_field(obj, "signature", str, where), f"{where}.signature"),
    )


def load_bundle(data: bytes) -> dict[str, Any]:
    """Parse bundle bytes into its JSON object, checking the schema and type."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"proof bundle is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise InputError("proof bundle is not a JSON object")
    if obj.get("schema") != SCHEMA:
        raise InputError(f"proof bundle schema is {obj.get('schema')!r}, expected {SCHEMA!r}")
    if obj.get("type") not in (INCLUSION, CONSISTENCY):
        raise InputError(f"proof bundle type {obj.get('type')!r} is neither inclusion nor consistency")
    return obj


# --- verification -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProofResult:
    """What a verified bundle proves."""

    type: str
    origin: str
    size: int
    root: bytes
    block: Block | None = None
    old_size: int | None = None
    pinned: bool = False
    """True when the checkpoint key came from the caller (``--vkey``), not from the bundle itself."""


def check_block_bytes(block: Block) -> bytes:
    """Recompute a block's payload hash and block hash; return its RFC 9162 leaf hash."""
    if not is_canonical(block.payload):
        raise ProofError(f"block {block.height}: payload bytes are not RFC 8785 canonical JSON")
    if hashlib.sha256(block.payload).hexdigest() != block.payload_hash:
        raise ProofError(f"block {block.height}: payload does not match its payload hash")
    if block.computed_hash() != block.block_hash:
        raise ProofError(f"block {block.height}: block hash does not match the block's fields")
    return merkle.leaf_hash(bytes.fromhex(block.block_hash))


def _open_checkpoint(note: Any, keys: Sequence[str], origin: str, where: str) -> SignedCheckpoint:
    if not isinstance(note, str):
        raise InputError(f"{where} is not a string")
    verifiers = [parse_verifier_key(k) for k in keys]
    if not any(name == origin for name, _ in verifiers):
        raise CheckpointError(f"no verifier key is named after the origin {origin!r}")
    return SignedCheckpoint.verify(note.encode("utf-8"), verifiers=verifiers, origin=origin)


def verify_bundle(data: bytes, *, vkey: str | None = None) -> ProofResult:
    """Verify a proof bundle with no database; ``vkey`` pins the checkpoint key (else the bundle's is used)."""
    obj = load_bundle(data)
    origin = _field(obj, "origin", str, "bundle")
    if obj["type"] == INCLUSION:
        return _verify_inclusion(obj, origin, vkey)
    return _verify_consistency(obj, origin, vkey)


def _verify_inclusion(obj: dict[str, Any], origin: str, vkey: str | None) -> ProofResult:
    block = block_from_json(obj.get("block"))
    index = _field(obj, "leaf_index", int, "bundle")
    size = _field(obj, "tree_size", int, "bundle")
    path = _path(obj.get("inclusion_path"), "inclusion_path")
    keys = [vkey] if vkey is not None else [_field(obj, "verifier_key", str, "bundle")]
    checkpoint = _open_checkpoint(obj.get("checkpoint"), keys, origin, "checkpoint").checkpoint
    if checkpoint.size != size:
        raise ProofError(f"bundle claims tree size {size} but its checkpoint is of size {checkpoint.size}")
    if index != block.height:
        raise ProofError(f"leaf index {index} is not the block's height {block.height}")
    merkle.verify_inclusion(leaf=check_block_bytes(block), index=index, size=size, path=path, root=checkpoint.root)
    _verify_block_key(obj, block, checkpoint)
    return ProofResult(INCLUSION, origin, size, checkpoint.root, block=block, pinned=vkey is not None)


def _verify_block_key(obj: dict[str, Any], block: Block, checkpoint: Checkpoint) -> None:
    """The block's signature, under a key introduced by a genesis/key block included in the same tree."""
    holder = obj.get("key_block")
    if not isinstance(holder, dict):
        raise InputError("bundle: key_block is missing or not an object")
    key_block = block_from_json(holder.get("block"), "key_block.block")
    key_path = _path(holder.get("inclusion_path"), "key_block.inclusion_path")
    merkle.verify_inclusion(
        leaf=check_block_bytes(key_block),
        index=key_block.height,
        size=checkpoint.size,
        path=key_path,
        root=checkpoint.root,
    )
    introduced = introduced_key(key_block) if key_block.kind in (GENESIS, KEY) else None
    if introduced is None or introduced[0] != block.key_id:
        raise BadSignatureError(f"key_block does not introduce the block's signing key {block.key_id}")
    if key_block.height > block.height or (key_block.height == block.height and key_block.kind != GENESIS):
        raise BadSignatureError(f"key {block.key_id} was introduced after block {block.height}")
    public = introduced[1]
    if key_id(public) != block.key_id:
        raise BadSignatureError(f"public key does not have key id {block.key_id}")
    if not verify_signature(public, bytes.fromhex(block.block_hash), block.signature):
        raise BadSignatureError(f"block {block.height}: signature does not verify under key {block.key_id}")


def _verify_consistency(obj: dict[str, Any], origin: str, vkey: str | None) -> ProofResult:
    bundled = _field(obj, "verifier_keys", list, "bundle")
    if not all(isinstance(k, str) for k in bundled):
        raise InputError("bundle: verifier_keys must be strings")
    new_keys = [vkey] if vkey is not None else list(bundled)
    old = _open_checkpoint(obj.get("old_checkpoint"), [*new_keys, *bundled], origin, "old_checkpoint").checkpoint
    new = _open_checkpoint(obj.get("new_checkpoint"), new_keys, origin, "new_checkpoint").checkpoint
    path = _path(obj.get("consistency_path"), "consistency_path")
    merkle.verify_consistency(size1=old.size, size2=new.size, root1=old.root, root2=new.root, path=path)
    return ProofResult(CONSISTENCY, origin, new.size, new.root, old_size=old.size, pinned=vkey is not None)


def check_weights(block: Block, *, size: int, sha256: str, blake3: str) -> None:
    """Compare a re-hashed weight file with the block's ``weights`` record; raise ``ProofError`` on a mismatch."""
    data = block.data()
    record = data.get("weights") if isinstance(data, dict) else None
    if not isinstance(record, dict):
        raise ProofError(f"block {block.height} ({block.kind}) records no weight file")
    for name, have in (("size", size), ("sha256", sha256), ("blake3", blake3)):
        if record.get(name) != have:
            raise ProofError(f"weight file {name} {have} differs from the block's {record.get(name)}")
