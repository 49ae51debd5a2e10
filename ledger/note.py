"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys and tlog checkpoints (c2sp.org/tlog-checkpoint).

A signed note is ``text`` (ending in a newline), a blank line, then signature lines
``— <key name> <base64(4-byte key ID || signature)>``. Every failure raises ``CheckpointError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import CheckpointError

ED25519_TYPE = 0x01
"""Signature type byte of plain Ed25519 note signatures."""
MAX_NOTE_BYTES = 1 << 20
"""Notes (text plus signatures) larger than 1 MiB are refused."""
MAX_SIGNATURES = 100
"""At most this many signature lines (the spec asks verifiers to accept at least 16)."""

_SIG_PREFIX = "— "  # em dash U+2014, space
_HASH_SIZE = 32
_KEY_SIZE = 32
_SIG_SIZE = 64
_MAX_TREE_SIZE = 2**64 - 1
_SIZE_RE = re.compile(r"0|[1-9][0-9]*", re.ASCII)


# --- small strict helpers -----------------------------------------------------------------------------------


def _b64decode(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 section 4), padded and canonical; anything else is refused."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise CheckpointError(f"{what} is not valid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 and c != "\n" for c in text)


def _check_name(name: str) -> None:
    """Key names are non-empty, contain no Unicode space, no plus and no control character."""
    if not isinstance(name, str) or not name:
        raise CheckpointError("key name is empty")
    for c in name:
        if c.isspace() or c == "+" or ord(c) < 0x20 or c == "\x7f":
            raise CheckpointError(f"key name {name!r} contains a space, plus or control character")


def _check_public_key(public_key: bytes) -> bytes:
    if not isinstance(public_key, bytes) or len(public_key) != _KEY_SIZE:
        raise CheckpointError("an Ed25519 public key is exactly 32 bytes")
    return public_key


def _decode_utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{what} is not valid UTF-8") from exc


# --- keys ---------------------------------------------------------------------------------------------------


def key_hash(name: str, public_key: bytes) -> bytes:
    """4-byte key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4], naming the key in signature lines."""
    _check_name(name)
    _check_public_key(public_key)
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519_TYPE]) + public_key).digest()[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    """Encode a public key as ``<name>+<8 hex key ID>+<base64(0x01 || key)>``, the form clients configure."""
    kid = key_hash(name, public_key)
    return f"{name}+{kid.hex()}+{_b64encode(bytes([ED25519_TYPE]) + public_key)}"


def parse_verifier_key(text: str) -> tuple[str, bytes]:
    """Decode a verifier key into (name, 32-byte public key), checking its key ID; refuse anything else."""
    if not isinstance(text, str):
        raise CheckpointError("verifier key must be a string")
    parts = text.split("+", 2)  # the name has no '+', the base64 part may
    if len(parts) != 3:
        raise CheckpointError("verifier key is not of the form name+keyid+key")
    name, kid_hex, b64 = parts
    _check_name(name)
    if not re.fullmatch(r"[0-9a-f]{8}", kid_hex, re.ASCII):
        raise CheckpointError("verifier key ID is not 8 lowercase hex digits")
    raw = _b64decode(b64, "verifier key")
    if len(raw) != 1 + _KEY_SIZE or raw[0] != ED25519_TYPE:
        raise CheckpointError("verifier key is not an Ed25519 (type 0x01) key of 32 bytes")
    public_key = raw[1:]
    if key_hash(name, public_key).hex() != kid_hex:
        raise CheckpointError(f"verifier key ID {kid_hex} does not match the key named {name!r}")
    return name, public_key


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of a signing key, as used by ``verifier_key`` and ``open_note``."""
    return private_key.public_key().public_bytes_raw()


# --- notes --------------------------------------------------------------------------------------------------


def _check_text(text: bytes) -> str:
    if not isinstance(text, bytes):
        raise CheckpointError("note text must be bytes")
    if not text.endswith(b"\n"):
        raise CheckpointError("note text must be non-empty and end with a newline")
    if len(text) > MAX_NOTE_BYTES:
        raise CheckpointError(f"note text is larger than {MAX_NOTE_BYTES} bytes")
    decoded = _decode_utf8(text, "note text")
    if _has_control(decoded):
        raise CheckpointError("note text contains a control character other than newline")
    return decoded


def _signature_line(text: bytes, name: str, private_key: Ed25519PrivateKey) -> bytes:
    _check_name(name)
    if not isinstance(private_key, Ed25519PrivateKey):
        raise CheckpointError("signing key must be an Ed25519 private key")
    kid = key_hash(name, public_key_bytes(private_key))
    signature = private_key.sign(text)
    return f"{_SIG_PREFIX}{name} {_b64encode(kid + signature)}\n".encode()


def sign_note(text: bytes, *, name: str, private_key: Ed25519PrivateKey) -> bytes:
    """Sign ``text`` as key ``name``: the full note, text then blank line then one signature line."""
    _check_text(text)
    note = text + b"\n" + _signature_line(text, name, private_key)
    if len(note) > MAX_NOTE_BYTES:
        raise CheckpointError(f"signed note would be larger than {MAX_NOTE_BYTES} bytes")
    return note


def add_signature(note: bytes, *, name: str, private_key: Ed25519PrivateKey) -> bytes:
    """Append another signature (a cosignature, a rotated key) to a well-formed note, text unchanged."""
    text, _ = _split_note(note)
    signed = note + _signature_line(text, name, private_key)
    if len(signed) > MAX_NOTE_BYTES:
        raise CheckpointError(f"signed note would be larger than {MAX_NOTE_BYTES} bytes")
    return signed


def _split_note(note: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Syntax check of a whole note: (text, [(key name, key ID || signature)])."""
    if not isinstance(note, bytes):
        raise CheckpointError("note must be bytes")
    if len(note) > MAX_NOTE_BYTES:
        raise CheckpointError(f"note is larger than {MAX_NOTE_BYTES} bytes")
    decoded = _decode_utf8(note, "note")
    if _has_control(decoded):
        raise CheckpointError("note contains a control character other than newline (CR is refused too)")
    split = note.rfind(b"\n\n")
    if split < 0:
        raise CheckpointError("note has no blank line between its text and its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise CheckpointError("note has no signature lines")
    if not block.endswith(b"\n"):
        raise CheckpointError("the last signature line does not end with a newline")
    lines = block[:-1].decode("utf-8").split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"note has more than {MAX_SIGNATURES} signatures")
    sigs: list[tuple[str, bytes]] = []
    for n, line in enumerate(lines, start=1):
        if not line.startswith(_SIG_PREFIX):
            raise CheckpointError(f"signature line {n} does not start with an em dash and a space")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep:
            raise CheckpointError(f"signature line {n} has no signature after the key name")
        _check_name(name)
        raw = _b64decode(b64, f"signature on line {n}")
        if len(raw) < 5:
            raise CheckpointError(f"signature on line {n} is shorter than a key ID and a signature")
        sigs.append((name, raw))
    return text, sigs


def open_note(note: bytes, *, verifiers: Sequence[tuple[str, bytes]]) -> tuple[bytes, tuple[str, ...]]:
    """Check a note's signatures against trusted ``(name, public key)`` pairs; return (text, signer names).

    Signatures by unknown keys are ignored (that is how witnesses cosign and keys rotate); a signature by a
    known key that does not verify rejects the whole note, and so does a note no known key signed.
    """
    text, sigs = _split_note(note)
    known: dict[tuple[str, bytes], Ed25519PublicKey] = {}
    for name, public_key in verifiers:
        try:
            key = Ed25519PublicKey.from_public_bytes(_check_public_key(public_key))
        except ValueError as exc:
            raise CheckpointError(f"verifier key for {name!r} is not a valid Ed25519 key") from exc
        known[(name, key_hash(name, public_key))] = key
    signed: list[str] = []
    for name, raw in sigs:
        found = known.get((name, raw[:4]))
        if found is None:
            continue
        signature = raw[4:]
        if len(signature) != _SIG_SIZE:
            raise CheckpointError(f"signature by {name!r} is not a {_SIG_SIZE}-byte Ed25519 signature")
        try:
            found.verify(signature, text)
        except InvalidSignature as exc:
            raise CheckpointError(f"signature by {name!r} does not verify: the note was altered") from exc
        if name not in signed:
            signed.append(name)
    if not signed:
        raise CheckpointError("note carries no signature from a trusted key")
    return text, tuple(signed)


# --- checkpoints --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's signed tree head: origin line, tree size, root hash and optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "checkpoint origin")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise CheckpointError("checkpoint tree size must be an integer")
        if not 0 <= self.size <= _MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint tree size {self.size} is out of range")
        if not isinstance(self.root, bytes) or len(self.root) != _HASH_SIZE:
            raise CheckpointError("checkpoint root must be a 32-byte hash")
        if not isinstance(self.extensions, tuple):
            raise CheckpointError("checkpoint extensions must be a tuple of lines")
        for ext in self.extensions:
            _check_line(ext, "checkpoint extension line")

    def body(self) -> bytes:
        """The note text: origin, size, base64 root and extension lines, each ending with a newline."""
        lines = [self.origin, str(self.size), _b64encode(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    @classmethod
    def parse(cls, body: bytes) -> Checkpoint:
        """Parse a checkpoint note text strictly (no leading zeros, canonical 32-byte root, final newline)."""
        if not isinstance(body, bytes):
            raise CheckpointError("checkpoint body must be bytes")
        text = _check_text(body)
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("checkpoint needs origin, tree size and root hash lines")
        origin, size_text, root_text, *extensions = lines
        if not _SIZE_RE.fullmatch(size_text):
            raise CheckpointError(f"checkpoint tree size {size_text!r} is not a decimal without leading zeros")
        root = _b64decode(root_text, "checkpoint root hash")
        if len(root) != _HASH_SIZE:
            raise CheckpointError(f"checkpoint root hash is {len(root)} bytes, expected {_HASH_SIZE}")
        return cls(origin=origin, size=int(size_text), root=root, extensions=tuple(extensions))


def _check_line(line: str, what: str) -> None:
    if not isinstance(line, str) or not line:
        raise CheckpointError(f"{what} must be a non-empty string")
    if "\n" in line or _has_control(line):
        raise CheckpointError(f"{what} contains a newline or control character")


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint together with the exact signed note it came from (``signers``: keys that verified)."""

    checkpoint: Checkpoint
    note: bytes
    signers: tuple[str, ...] = ()

    @classmethod
    def sign(cls, checkpoint: Checkpoint, *, name: str, private_key: Ed25519PrivateKey) -> SignedCheckpoint:
        """Sign a checkpoint as key ``name`` (which should equal the origin)."""
        note = sign_note(checkpoint.body(), name=name, private_key=private_key)
        return cls(checkpoint=checkpoint, note=note, signers=(name,))

    @classmethod
    def verify(
        cls, note: bytes, *, verifiers: Sequence[tuple[str, bytes]], origin: str | None = None
    ) -> SignedCheckpoint:
        """Open a signed checkpoint note, check its signatures and (if given) its origin, and parse it."""
        text, signers = open_note(note, verifiers=verifiers)
        checkpoint = Checkpoint.parse(text)
        if origin is not None and checkpoint.origin != origin:
            raise CheckpointError(f"checkpoint is for log {checkpoint.origin!r}, expected {origin!r}")
        return cls(checkpoint=checkpoint, note=note, signers=signers)
