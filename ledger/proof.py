"""Proof bundles: self-contained JSON that proves a block is in the ledger, or that one checkpoint extends another.

An inclusion bundle carries one block (every field and the exact canonical payload bytes), its leaf index and
RFC 9162 audit path, the signed checkpoint whose root the path leads to, the checkpoint's verifier key, and the
chain of key blocks from the one that introduced the block's signing key to the one that introduced the key
that signed the checkpoint (each with its own audit path): that chain is what shows the signing key had not
been retired before the block. A consistency bundle carries two signed checkpoints and the RFC 9162
consistency proof between them. Everything here is pure: bytes in, a result or a typed error out
(``InputError`` for a malformed bundle, a ``VerificationError`` for a false one).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger import merkle
from ledger.block import Block
from ledger.canonical import decode, is_canonical
from ledger.chain import GENESIS, KEY, introduced_key
from ledger.errors import BadSignatureError, CheckpointError, InputError, ProofError
from ledger.note import Checkpoint, SignedCheckpoint, parse_verifier_key
from ledger.signing import verify_signature

SCHEMA = "ledger-proof/v2"
SCHEMA_V1 = "ledger-proof/v1"
"""The first format: its inclusion bundles carry only the key block that introduced the signing key."""
SCHEMAS = (SCHEMA, SCHEMA_V1)
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


@dataclass(frozen=True, slots=True)
class Included:
    """A block with its audit path in the bundle's tree."""

    block: Block
    path: Sequence[bytes]

    def to_json(self) -> dict[str, Any]:
        """The bundle object ``{"block", "inclusion_path"}``."""
        return {"block": block_to_json(self.block), "inclusion_path": [h.hex() for h in self.path]}


def inclusion_bundle(
    *,
    ledger_id: str,
    block: Block,
    path: Sequence[bytes],
    checkpoint: SignedCheckpoint,
    verifier_key: str,
    key_blocks: Sequence[Included],
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
        "key_blocks": [k.to_json() for k in key_blocks],
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


def _hex(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"{where} is not a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise InputError(f"{where} is not hex") from exc
    if value != raw.hex():
        raise InputError(f"{where} is not lowercase hex")
    return raw


def _path(value: Any, where: str) -> list[bytes]:
    """A list of hex strings as bytes; their lengths are the proof verifier's to judge (a false proof, not bad JSON)."""
    if not isinstance(value, list):
        raise InputError(f"{where} is not a list of hashes")
    return [_hex(h, f"{where}[{i}]") for i, h in enumerate(value)]


def _integer(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"{where} is not an integer")
    return value


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
        obj = decode(data)
    except ValueError as exc:
        raise InputError(f"proof bundle is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise InputError("proof bundle is not a JSON object")
    if obj.get("schema") not in SCHEMAS:
        raise InputError(f"proof bundle schema is {obj.get('schema')!r}, expected one of {', '.join(SCHEMAS)}")
    if obj.get("type") not in (INCLUSION, CONSISTENCY):
        raise InputError(f"proof bundle type {obj.get('type')!r} is neither inclusion nor consistency")
    return obj


# --- the proof checks, on the values as the bundle holds them ------------------------------------------------------


def check_inclusion(
    *, leaf: bytes, index: Any, size: Any, path: Any, root: bytes, where: str = "inclusion_path"
) -> None:
    """Check an RFC 9162 audit path given as the bundle holds it (integer index and size, list of hex hashes).

    ``leaf`` is the leaf hash and ``root`` the checkpoint's root. This is the one inclusion check
    ``verify_bundle`` runs (for the block and for each key block), public so that published probe vectors can
    drive exactly that code. Raises ``InputError`` for values that are not integers or hex, else ``ProofError``.
    """
    merkle.verify_inclusion(
        leaf=leaf,
        index=_integer(index, "leaf index"),
        size=_integer(size, "tree size"),
        path=_path(path, where),
        root=root,
    )


def check_consistency(*, size1: int, size2: int, root1: bytes, root2: bytes, path: Any) -> None:
    """Check an RFC 9162 consistency proof given as the bundle holds it (a list of hex hashes).

    The sizes and roots are the two checkpoints'. The one consistency check ``verify_bundle`` runs, public for
    the probe vectors; raises ``InputError`` for a path that is not a list of hex strings, else ``ProofError``.
    """
    merkle.verify_consistency(
        size1=_integer(size1, "old tree size"),
        size2=_integer(size2, "new tree size"),
        root1=root1,
        root2=root2,
        path=_path(path, "consistency_path"),
    )


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
    key = vkey if vkey is not None else _field(obj, "verifier_key", str, "bundle")
    checkpoint = _open_checkpoint(obj.get("checkpoint"), [key], origin, "checkpoint").checkpoint
    if checkpoint.size != size:
        raise ProofError(f"bundle claims tree size {size} but its checkpoint is of size {checkpoint.size}")
    if index != block.height:
        raise ProofError(f"leaf index {index} is not the block's height {block.height}")
    check_inclusion(
        leaf=check_block_bytes(block), index=index, size=size, path=obj.get("inclusion_path"), root=checkpoint.root
    )
    signer = parse_verifier_key(key)[1]
    _verify_block_key(_key_blocks(obj), block, checkpoint, signer, legacy=obj["schema"] == SCHEMA_V1)
    return ProofResult(INCLUSION, origin, size, checkpoint.root, block=block, pinned=vkey is not None)


def _key_blocks(obj: dict[str, Any]) -> list[tuple[Block, Any]]:
    """The bundle's key-block chain as (block, raw inclusion path); a v1 bundle's single ``key_block`` is a chain
    of one, which only verifies while the block's key is still the one that signs checkpoints."""
    if obj["schema"] == SCHEMA_V1:
        holders: Any = [obj.get("key_block")]
        names = ["key_block"]
    else:
        holders = obj.get("key_blocks")
        if not isinstance(holders, list) or not holders:
            raise InputError("bundle: key_blocks is missing or not a non-empty list")
        names = [f"key_blocks[{i}]" for i in range(len(holders))]
    out = []
    for name, holder in zip(names, holders, strict=True):
        if not isinstance(holder, dict):
            raise InputError(f"bundle: {name} is missing or not an object")
        out.append((block_from_json(holder.get("block"), f"{name}.block"), holder.get("inclusion_path")))
    return out


def _verify_block_key(
    chain: Sequence[tuple[Block, Any]], block: Block, checkpoint: Checkpoint, signer: bytes, *, legacy: bool
) -> None:
    """The block's signature, under a key the tree shows was still active at the block's height.

    ``chain[0]`` introduces the block's key; every later entry is the ``key`` block signed by the key before it
    (the rotation that retired that key, so none can be skipped), and the last one introduces ``signer``, the
    key that signed the checkpoint. The block must come after its key's introduction and not after the key
    block that retired it (which is itself the last block the old key signs).
    """
    for key_block, path in chain:
        check_inclusion(
            leaf=check_block_bytes(key_block),
            index=key_block.height,
            size=checkpoint.size,
            path=path,
            root=checkpoint.root,
            where=f"inclusion_path of key block {key_block.height}",
        )
    first = chain[0][0]
    introduces = first.kind == KEY or (first.kind == GENESIS and first.height == 0)
    active = introduced_key(first) if introduces else None
    if active is None or active[0] != block.key_id:
        raise BadSignatureError(f"the first key block does not introduce the block's signing key {block.key_id}")
    if first.height > block.height or (first.height == block.height and first.kind != GENESIS):
        raise BadSignatureError(f"key {block.key_id} was introduced after block {block.height}")
    if not verify_signature(active[1], bytes.fromhex(block.block_hash), block.signature):
        raise BadSignatureError(f"block {block.height}: signature does not verify under key {block.key_id}")
    height = first.height
    for i, (rotation, _path_value) in enumerate(chain[1:]):
        if rotation.kind != KEY or rotation.height <= height:
            raise BadSignatureError(f"key block {rotation.height} is not a later `key` block of the chain")
        signed = verify_signature(active[1], bytes.fromhex(rotation.block_hash), rotation.signature)
        if rotation.key_id != active[0] or not signed:
            raise BadSignatureError(f"key block {rotation.height} is not signed by the key {active[0]} it retires")
        if i == 0 and rotation.height < block.height:
            raise BadSignatureError(
                f"block {block.height} is signed by key {block.key_id}, which the key block at height "
                f"{rotation.height} retired"
            )
        following = introduced_key(rotation)
        if following is None:
            raise BadSignatureError(f"key block {rotation.height} introduces no key")
        active, height = following, rotation.height
    if active[1] != signer:
        hint = " (a ledger-proof/v1 bundle cannot show it across a key rotation: make a new one)" if legacy else ""
        raise BadSignatureError(
            f"the key blocks end at key {active[0]}, not at the key that signed the checkpoint, so they do not show "
            f"that key {block.key_id} was still active at height {block.height}{hint}"
        )


def _verify_consistency(obj: dict[str, Any], origin: str, vkey: str | None) -> ProofResult:
    bundled = _field(obj, "verifier_keys", list, "bundle")
    if not all(isinstance(k, str) for k in bundled):
        raise InputError("bundle: verifier_keys must be strings")
    new_keys = [vkey] if vkey is not None else list(bundled)
    old = _open_checkpoint(obj.get("old_checkpoint"), [*new_keys, *bundled], origin, "old_checkpoint").checkpoint
    new = _open_checkpoint(obj.get("new_checkpoint"), new_keys, origin, "new_checkpoint").checkpoint
    check_consistency(size1=old.size, size2=new.size, root1=old.root, root2=new.root, path=obj.get("consistency_path"))
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
