"""The block: one signed, hash-linked entry of the ledger, and the exact bytes its hash covers.

Block hash = SHA-256(b"ledger/block/v1\\n" || RFC 8785 header), where the header holds every field except the
signature; the payload enters through its SHA-256. See docs/FORMAT.md for the layout and test vectors.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ledger.canonical import canonical, decode
from ledger.errors import DamagedBlockError
from ledger.signing import SigningKey

FORMAT_VERSION = 1
HASH_DOMAIN = b"ledger/block/v1\n"
HASH_DOMAIN_TEXT = HASH_DOMAIN.decode("ascii")
GENESIS_PREV_HASH = "0" * 64


def payload_hash(payload: bytes) -> str:
    """SHA-256 of the canonical payload bytes, lowercase hex."""
    return hashlib.sha256(payload).hexdigest()


def header_bytes(
    *, format: int, height: int, prev_hash: str, timestamp: str, kind: str, payload_hash: str, key_id: str
) -> bytes:
    """The domain-separated canonical header whose SHA-256 is the block hash."""
    header = {
        "format": format,
        "height": height,
        "kind": kind,
        "key_id": key_id,
        "payload_hash": payload_hash,
        "prev_hash": prev_hash,
        "timestamp": timestamp,
    }
    return HASH_DOMAIN + canonical(header)


#: Printable ASCII without ``"`` and ``\\``: strings RFC 8785 and the C JSON encoder both copy verbatim.
_PLAIN = re.compile(r"[ !#-\[\]-~]*")
_SAFE_INT = 2**53


def plain_header_bytes(
    format: object,
    height: object,
    prev_hash: object,
    timestamp: object,
    kind: object,
    payload_hash: object,
    key_id: object,
) -> bytes | None:
    """``header_bytes`` for the common case, formatted directly (the audit's hot path); None when not plain.

    Plain means safe integers and printable ASCII strings without quote or backslash, where the encoding is a
    fixed template; anything else must go through ``header_bytes``.
    """
    if type(format) is not int or type(height) is not int or abs(format) >= _SAFE_INT or abs(height) >= _SAFE_INT:
        return None
    strings = (prev_hash, timestamp, kind, payload_hash, key_id)
    if any(type(v) is not str for v in strings) or _PLAIN.fullmatch("".join(strings)) is None:  # type: ignore[arg-type]
        return None
    return (
        f'{HASH_DOMAIN_TEXT}{{"format":{format},"height":{height},"key_id":"{key_id}","kind":"{kind}",'
        f'"payload_hash":"{payload_hash}","prev_hash":"{prev_hash}","timestamp":"{timestamp}"}}'
    ).encode("ascii")


@dataclass(frozen=True, slots=True)
class Block:
    """A block as stored: every field, including the exact canonical payload bytes that were hashed."""

    format: int
    height: int
    prev_hash: str
    timestamp: str
    kind: str
    payload: bytes
    payload_hash: str
    key_id: str
    block_hash: str
    signature: bytes

    def computed_hash(self) -> str:
        """Recompute the block hash from the stored fields (the payload through its stored hash); audits call it
        for every block they re-check, so the common plain header takes ``plain_header_bytes``."""
        header = plain_header_bytes(
            self.format, self.height, self.prev_hash, self.timestamp, self.kind, self.payload_hash, self.key_id
        )
        if header is None:
            header = header_bytes(
                format=self.format,
                height=self.height,
                prev_hash=self.prev_hash,
                timestamp=self.timestamp,
                kind=self.kind,
                payload_hash=self.payload_hash,
                key_id=self.key_id,
            )
        return hashlib.sha256(header).hexdigest()

    def data(self) -> dict[str, Any]:
        """The payload as a JSON object; ``DamagedBlockError`` when the stored bytes are not one (a hostile or
        damaged database: the audit reports it as a ``payload`` finding)."""
        try:
            value = decode(self.payload)
        except ValueError as exc:
            raise DamagedBlockError(
                f"block {self.height}: payload is not valid JSON ({exc}); run `ledger audit`"
            ) from None
        if not isinstance(value, dict):
            raise DamagedBlockError(f"block {self.height}: payload is not a JSON object; run `ledger audit`")
        return value

    def to_json(self) -> dict[str, Any]:
        """The block as a JSON object (payload embedded as a JSON string of its exact bytes)."""
        return {
            "format": self.format,
            "height": self.height,
            "prev_hash": self.prev_hash,
            "timestamp": self.timestamp,
            "kind": self.kind,
            "payload": self.payload.decode("utf-8", errors="replace"),  # damaged bytes must not crash a listing
            "payload_hash": self.payload_hash,
            "key_id": self.key_id,
            "block_hash": self.block_hash,
            "signature": self.signature.hex(),
        }


def seal(
    *, height: int, prev_hash: str, timestamp: str, kind: str, payload: Mapping[str, Any], key: SigningKey
) -> Block:
    """Canonicalise ``payload``, hash every field and sign: the one way blocks are made."""
    body = canonical(payload)
    unsigned = Block(
        format=FORMAT_VERSION,
        height=height,
        prev_hash=prev_hash,
        timestamp=timestamp,
        kind=kind,
        payload=body,
        payload_hash=payload_hash(body),
        key_id=key.key_id,
        block_hash="",
        signature=b"",
    )
    digest = unsigned.computed_hash()
    return replace(unsigned, block_hash=digest, signature=key.sign(bytes.fromhex(digest)))
