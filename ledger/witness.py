"""The witness location: a directory or fsspec URL outside the database where signed checkpoints are published.

One file per checkpoint, named ``<ledger id>.<size, 20 digits>.<first 16 hex of the root>.checkpoint`` so
that two checkpoints of one size with different roots (a fork) sit side by side instead of overwriting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.errors import RemoteStoreError
from ledger.note import SignedCheckpoint

SUFFIX = ".checkpoint"


def file_name(ledger_id: str, signed: SignedCheckpoint) -> str:
    """The witness file name of a checkpoint: by ledger id, size and root, sortable by size."""
    cp = signed.checkpoint
    return f"{ledger_id}.{cp.size:020d}.{cp.root.hex()[:16]}{SUFFIX}"


@dataclass(frozen=True, slots=True)
class WitnessNote:
    """A note read from the witness, with where it came from (for messages)."""

    location: str
    note: bytes


class Witness:
    """A witness location reached through fsspec (a plain directory is fsspec's local file system)."""

    def __init__(self, location: str) -> None:
        import fsspec

        self.location = location
        try:
            fs, root = fsspec.core.url_to_fs(location)
        except (ValueError, ImportError, OSError) as exc:
            raise RemoteStoreError(f"cannot use witness location {location!r}: {exc}") from exc
        self._fs: Any = fs
        self._root: str = root.rstrip("/")

    def _path(self, name: str) -> str:
        return f"{self._root}/{name}"

    def publish(self, ledger_id: str, signed: SignedCheckpoint) -> str:
        """Write the checkpoint note (never overwriting a different one); return where it was written."""
        name = file_name(ledger_id, signed)
        path = self._path(name)
        try:
            self._fs.makedirs(self._root, exist_ok=True)
            if self._fs.exists(path):
                if self._fs.cat_file(path) == signed.note:
                    return self._shown(name)
                name = name[: -len(SUFFIX)] + f".{len(self._fs.ls(self._root, detail=False))}{SUFFIX}"
                path = self._path(name)
            with self._fs.open(path, "wb") as handle:
                handle.write(signed.note)
        except OSError as exc:
            raise RemoteStoreError(f"cannot write checkpoint to witness {self.location}: {exc}") from exc
        return self._shown(name)

    def notes(self, ledger_id: str) -> list[WitnessNote]:
        """Every checkpoint note this witness holds for ``ledger_id``, in file name order (by size)."""
        try:
            if not self._fs.exists(self._root):
                return []
            names = sorted(
                str(p).rsplit("/", 1)[-1] for p in self._fs.ls(self._root, detail=False) if str(p).endswith(SUFFIX)
            )
            return [
                WitnessNote(self._shown(n), bytes(self._fs.cat_file(self._path(n))))
                for n in names
                if n.startswith(f"{ledger_id}.")
            ]
        except OSError as exc:
            raise RemoteStoreError(f"cannot read witness {self.location}: {exc}") from exc

    def _shown(self, name: str) -> str:
        return f"{self.location.rstrip('/')}/{name}"
