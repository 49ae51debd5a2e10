"""Typed errors of the ledger core: one class per failure, each with a message written for a person.

The CLI maps the three families to exit codes in one place (``cli/errors.py``):
``InputError`` -> 2 (bad input or usage), ``EnvironmentProblem`` -> 3 (database, key, store),
``VerificationError`` -> 1 (something checked and found wrong).
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the core raises on purpose."""


# --- bad input or usage (exit 2) -------------------------------------------------------------


class InputError(LedgerError):
    """The caller gave something the ledger refuses; nothing was changed."""


class JSONInputError(InputError):
    """A JSON document is not UTF-8, not valid JSON, too large, has duplicate keys or is not an object."""


class MetadataError(InputError):
    """Metadata fails the schema; ``pointer`` is the JSON pointer of the offending field."""

    def __init__(self, pointer: str, message: str) -> None:
        self.pointer = pointer
        super().__init__(f"metadata {pointer or '/'}: {message}")


class NamingError(InputError):
    """A file or version name breaks the naming convention."""


class VersionOrderError(InputError):
    """A version is a duplicate, a gap, a regression, or a stage out of order."""


class UnsafePathError(InputError):
    """A path is absolute, escapes its root, is a symlink or a special file."""


class FileInputError(InputError):
    """An input file is missing, a directory, empty or unreadable."""


class AlreadyExistsError(InputError):
    """Something that must be created once already exists (a ledger, a key file)."""


class NotFoundError(InputError):
    """A height, version, alias or record asked for does not exist."""


class DigestMismatchError(InputError):
    """A digest given by the caller does not match what the ledger computed."""


class SelectionError(InputError):
    """A selection (versions, time range, format) is empty, reversed or unknown."""


class RemoteURLError(InputError):
    """A backup URL has an unknown scheme, embedded credentials, or no bucket or path."""


class PruneRefusedError(InputError):
    """Versions outside the retention policy have no verified backup, so prune removes nothing."""

    def __init__(self, message: str, versions: tuple[str, ...]) -> None:
        self.versions = versions
        super().__init__(message)


# --- environment (exit 3) ---------------------------------------------------------------------


class EnvironmentProblem(LedgerError):
    """The environment stops the operation: database, key, disk or remote store."""


class StorageError(EnvironmentProblem):
    """The database is unreachable, read-only, full, or not a ledger."""


class CommitUnknownError(StorageError):
    """The connection was lost while a write committed, so it may or may not have happened; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"connection lost while committing ({reason}): the write may or may not have happened; "
            "check with `ledger log` before retrying"
        )

    def __reduce__(self) -> tuple[type[CommitUnknownError], tuple[str]]:
        return type(self), (self.reason,)


class KeyFileError(EnvironmentProblem):
    """The signing key is missing, unreadable, too widely readable, or its passphrase is wrong."""


class RemoteStoreError(EnvironmentProblem):
    """A remote store (backup target, witness) is unreachable or refuses access."""


# --- verification (exit 1) --------------------------------------------------------------------


class VerificationError(LedgerError):
    """Something was checked and is not what it claims to be."""


class BadSignatureError(VerificationError):
    """A signature does not verify under the key it names."""


class ProofError(VerificationError):
    """An inclusion or consistency proof does not verify."""


class CheckpointError(VerificationError):
    """A checkpoint or signed note is malformed or does not verify."""


class RemoteCopyError(VerificationError):
    """A remote (backup) copy is missing, or its bytes do not match the digests the chain recorded."""


class IndexMismatchError(VerificationError):
    """The ``version_index`` lookup row points at a block that does not record that version."""


class DamagedBlockError(VerificationError):
    """A stored block's payload is not a JSON object: the database was changed behind its guards."""
