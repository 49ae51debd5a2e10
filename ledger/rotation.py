"""Key rotation: a ``key`` block signed by the current key introduces the next one, which signs from then on.

Key files: without an explicit new path the new key takes the current key's path (so ``--key`` / LEDGER_KEY
keep working) and the old file is kept beside it as ``<name>.retired-<key id>``; with a path, the new key is
loaded from it (or generated there, mode 0600, encrypted with the same passphrase) and the operator points
``--key`` at it. Signing with a retired key afterwards is refused (``KeyFileError``) before anything is written.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.chain import KEY
from ledger.errors import AlreadyExistsError, KeyFileError
from ledger.signing import SigningKey, load_key_file, write_key_file

if TYPE_CHECKING:
    from ledger.api import Ledger
    from ledger.block import Block


@dataclass(frozen=True, slots=True)
class Rotated:
    """The key block and where the keys are now."""

    block: Block
    new_key: SigningKey
    new_path: Path
    retired_path: Path | None


def rotate(ledger: Ledger, new_key: SigningKey, *, reason: str) -> Block:
    """Append the ``key`` block introducing ``new_key`` (signed by the current key) and switch to it."""
    old = ledger.key
    if new_key.key_id in ledger.key_schedule().known():
        raise AlreadyExistsError(f"key {new_key.key_id} was already introduced in this ledger; use a fresh key")
    payload = {"public_key": new_key.public.hex(), "previous_key_id": old.key_id, "reason": reason}
    block = ledger.append_event(KEY, payload)
    ledger.use_key(new_key)
    return block


def rotate_files(
    ledger: Ledger, *, key_path: Path, new_path: Path | None, passphrase: bytes | None, reason: str
) -> Rotated:
    """Rotate and arrange the key files as the module docstring describes."""
    if new_path is not None:
        if new_path.exists():
            key = load_key_file(new_path, passphrase)
        else:
            key = SigningKey.generate()
            write_key_file(new_path, key, passphrase)
        return Rotated(rotate(ledger, key, reason=reason), key, new_path, None)
    key = SigningKey.generate()
    staged = key_path.with_name(key_path.name + ".next")
    write_key_file(staged, key, passphrase)
    committed = False
    try:
        block = rotate(ledger, key, reason=reason)
        committed = True
    finally:
        if not committed:  # any failure, Ctrl-C included: the staged key never signed anything
            with contextlib.suppress(OSError):
                staged.unlink()
    retired = key_path.with_name(f"{key_path.name}.retired-{block.key_id}")
    try:
        os.replace(key_path, retired)
        os.replace(staged, key_path)
    except OSError as exc:
        raise KeyFileError(
            f"the key block {block.height} is committed but the key files could not be swapped ({exc.strerror}): "
            f"the new key is in {staged}; point --key at it"
        ) from exc
    return Rotated(block, key, key_path, retired)
