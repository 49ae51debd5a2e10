"""DSSE envelopes (github.com/secure-systems-lab/dsse, protocol v1) signed with the ledger's Ed25519 key.

The signature covers ``PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`` (LEN in bytes,
ASCII decimal), never the payload alone, so a signature cannot be replayed under another payload type.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.canonical import decode
from ledger.errors import BadSignatureError, JSONInputError
from ledger.signing import SigningKey

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """The pre-authentication encoding the DSSE signature covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign_envelope(payload: bytes, payload_type: str, key: SigningKey) -> dict[str, Any]:
    """A DSSE envelope with one Ed25519 signature by ``key`` (``keyid`` is the ledger key id)."""
    signature = key.private.sign(pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": key.key_id, "sig": base64.b64encode(signature).decode("ascii")}],
    }


@dataclass(frozen=True, slots=True)
class Verified:
    """A DSSE envelope whose signature verified: the exact signed payload and the key id that signed it."""

    payload_type: str
    payload: bytes
    key_id: str


def verify_envelope(envelope: Any, keys: Mapping[str, bytes]) -> Verified:
    """Check an envelope against trusted ``key id -> raw public key``; return the payload that was signed."""
    if not isinstance(envelope, dict):
        raise JSONInputError("a DSSE envelope is a JSON object")
    payload_type, encoded, signatures = envelope.get("payloadType"), envelope.get("payload"), envelope.get("signatures")
    if not isinstance(payload_type, str) or not isinstance(encoded, str) or not isinstance(signatures, list):
        raise JSONInputError("a DSSE envelope needs payloadType, payload and signatures")
    try:
        payload = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise JSONInputError("the DSSE payload is not base64") from exc
    message = pae(payload_type, payload)
    tried = []
    for entry in signatures:
        if not isinstance(entry, dict) or not isinstance(entry.get("sig"), str):
            continue
        key_id = entry.get("keyid")
        public = keys.get(key_id) if isinstance(key_id, str) else None
        if public is None:
            tried.append(str(key_id))
            continue
        try:
            signature = base64.b64decode(entry["sig"], validate=True)
            Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
        except (binascii.Error, InvalidSignature, ValueError) as exc:
            raise BadSignatureError(
                f"the DSSE signature by key {key_id} does not verify: the envelope was altered"
            ) from exc
        assert isinstance(key_id, str)
        return Verified(payload_type, payload, key_id)
    raise BadSignatureError(
        f"no DSSE signature by a key this ledger introduced (signed by: {', '.join(tried) or 'nobody'})"
    )


def decode_statement(verified: Verified) -> dict[str, Any]:
    """The in-toto Statement inside a verified envelope."""
    if verified.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise JSONInputError(f"DSSE payload type is {verified.payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE}")
    try:
        statement = decode(verified.payload)
    except ValueError as exc:
        raise JSONInputError("the signed payload is not JSON") from exc
    if not isinstance(statement, dict):
        raise JSONInputError("the signed payload is not a JSON object")
    return statement
