"""Ed25519 signing keys: generation, safe loading from PEM files, and block signatures.

The private key lives only in a file the operator controls (mode 0600); the database holds public keys only.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import AlreadyExistsError, KeyFileError

#: Domain separation for block signatures: the signed message is this prefix followed by the raw block hash.
SIGNATURE_DOMAIN = b"ledger/block-signature/v1\x00"


def key_id(public_key: bytes) -> str:
    """Stable identifier of a raw Ed25519 public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A loaded Ed25519 private key with its raw public key and key id."""

    private: Ed25519PrivateKey
    public: bytes
    key_id: str

    @classmethod
    def from_private(cls, private: Ed25519PrivateKey) -> SigningKey:
        """Wrap a cryptography private key."""
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(private=private, public=public, key_id=key_id(public))

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh random key (tests and key rotation)."""
        return cls.from_private(Ed25519PrivateKey.generate())

    def sign(self, block_hash: bytes) -> bytes:
        """Sign a block hash under the block-signature domain."""
        return self.private.sign(SIGNATURE_DOMAIN + block_hash)

    def pem(self, passphrase: bytes | None) -> bytes:
        """PKCS#8 PEM, encrypted with ``passphrase`` when one is given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        )
        return self.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


@functools.lru_cache(maxsize=64)
def _public(public_key: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public_key)


def verify_signature(public_key: bytes, block_hash: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid block signature by ``public_key``."""
    try:
        _public(bytes(public_key)).verify(signature, SIGNATURE_DOMAIN + block_hash)
    except (InvalidSignature, ValueError):
        return False
    return True


def write_key_file(path: Path, key: SigningKey, passphrase: bytes | None) -> None:
    """Write ``key`` as PEM with mode 0600, refusing to overwrite an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise AlreadyExistsError(f"key file already exists: {path}") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.pem(passphrase))
        handle.flush()
        os.fsync(handle.fileno())


def load_key_file(path: Path, passphrase: bytes | None) -> SigningKey:
    """Load a PEM private key, refusing files that group or others can read."""
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise KeyFileError(f"key file not found: {path} (create one with `ledger keys generate`)") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"key file is not a regular file: {path}")
    if info.st_mode & 0o077:
        raise KeyFileError(
            f"key file {path} is readable by group or others (mode {info.st_mode & 0o777:o}); chmod 600 it"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    try:
        private = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError as exc:
        hint = "set LEDGER_KEY_PASSPHRASE" if passphrase is None else "the key file is not encrypted"
        raise KeyFileError(f"cannot load key {path}: {hint}") from exc
    except ValueError as exc:
        if b"ENCRYPTED" in data:
            raise KeyFileError(f"wrong passphrase for key file {path}") from exc
        raise KeyFileError(f"key file {path} is not a PEM private key") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} does not hold an Ed25519 key")
    return SigningKey.from_private(private)
