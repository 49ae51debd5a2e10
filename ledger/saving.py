"""Saving a model version straight from torch: number it, stream the weights through the hashers, commit.

Order of work (``save_version``):

1. cheap checks first: kind, stage/question, metadata schema against the name the ledger gives the version;
2. the adapter directory is copied to a hidden temporary directory beside its ledgered place and hashed;
3. ``torch.save`` writes the weights to a hidden temporary file through ``HashingWriter`` (SHA-256 and BLAKE3
   computed while the bytes stream out, no second read), which is fsynced; then the metadata JSON;
4. under the write lock, once the order and stage rules pass, the files get their ledgered names (hard link,
   which never replaces an existing file) and the block commits; then the JSON gets its block reference.

If anything fails before the block commits, every file this call created is removed again: no file is left
under a ledgered name, and no existing file is ever replaced.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import os
import pickle
import secrets
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ledger import metadata as metadata_rules
from ledger.errors import (
    AlreadyExistsError,
    FileInputError,
    InputError,
    MetadataError,
    StorageError,
    VersionOrderError,
)
from ledger.faults import crash_point
from ledger.fsutil import BackgroundFlush, display_path, fsync_dir, os_reason
from ledger.hashing import FileDigest, HashingWriter
from ledger.manifest import hash_directory
from ledger.recording import PreparedVersion, adapter_record_of, training_data_of, version_body, weights_record_of
from ledger.tensors import summarise_tensors
from ledger.timeutil import now
from ledger.versions import VersionName, check_append, check_question_id, slugify

if TYPE_CHECKING:
    from ledger.api import Ledger
    from ledger.block import Block

KINDS = ("major", "micro")
_WRITE_BUFFER = 1 << 20


def save_version(
    ledger: Ledger,
    obj: Any,
    metadata: Mapping[str, Any],
    *,
    kind: Literal["major", "micro"] = "micro",
    stage: int | None = None,
    question: str | None = None,
    adapter_dir: Path | None = None,
    data: Path | None = None,
) -> Block:
    """Save ``obj`` (a state dict, or an ``nn.Module`` whose state dict is saved) as the next version.

    The model is ``metadata["model_name"]``; the version is the ledger's next ``kind`` ("major" or "micro")
    version of it, written into the metadata (a ``version`` already there must agree). ``adapter_dir`` is a
    LoRA adapter directory to record with the version: it is copied to ``<adapters>/<name>/``. ``data`` is
    the training data file or directory, hashed and checked against (or filled into) ``training_data_hash``.
    Raises ``VersionOrderError`` naming the expected versions when another writer took the version first.
    """
    if kind not in KINDS:
        raise InputError(f"kind must be 'major' or 'micro', not {kind!r}")
    ledger.key  # no key: fail before writing gigabytes  # noqa: B018
    if question is not None:
        check_question_id(question)
    meta = _metadata_dict(metadata)
    model_name = meta.get("model_name")
    if not isinstance(model_name, str):
        raise MetadataError("/model_name", "is required (a string): it names the model being saved")
    slug = slugify(model_name)
    name = VersionName(slug, ledger.next_version(slug, major=kind == "major"))
    stated = meta.setdefault("version", str(name.version))
    if stated != str(name.version):
        raise VersionOrderError(
            f"metadata /version is {json.dumps(stated)}, but the next {kind} version of {slug} is {name.version}"
        )
    meta.setdefault("timestamp", now())
    # The order and stage rules are checked again under the write lock; this early check avoids writing the
    # weights for a save that cannot succeed (a stage 2 without its stage 1, a major save with a stage).
    _check_order(ledger, name, stage=stage, question=question)
    committed = metadata_rules.validate(meta, expected=name)
    committed, training_data = training_data_of(committed, data)
    state = _state_dict(obj)

    files = _Files.for_version(ledger.models_dir, ledger.adapters_dir, name)
    try:
        files.refuse_existing(adapter=adapter_dir is not None)
    except AlreadyExistsError:
        _check_order(ledger, name, stage=stage, question=question)  # taken meanwhile: say what is expected next
        raise
    committed_ok = False
    try:
        adapter_record = None
        if adapter_dir is not None:
            adapter_record = files.stage_adapter(adapter_dir)
        digest = files.write_weights(state)
        weights_record = weights_record_of(
            files.weights_tmp, files.weights.name, written=(digest, summarise_tensors(state))
        )
        files.write_metadata(committed)
        crash_point("save:written")
        body = version_body(
            name,
            stage=stage,
            question=question,
            weights=weights_record,
            metadata_rel=files.metadata.name,
            committed=committed,
            training_data=training_data,
            adapter=adapter_record,
        )
        prepared = PreparedVersion(name, stage, question, files.metadata, committed, body)
        block = ledger.record_version(prepared, place=files.place)
        committed_ok = True
        crash_point("save:committed")
    finally:
        if committed_ok:
            files.forget_temporaries()
        else:
            files.discard()
    ledger.write_block_reference(prepared, block)  # the block is committed: its files stay whatever happens here
    return block


def _check_order(ledger: Ledger, name: VersionName, *, stage: int | None, question: str | None) -> None:
    last = ledger.last_version(name.slug)
    check_append(name.slug, [] if last is None else [last], name.version, stage=stage, question=question)


def _metadata_dict(metadata: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(metadata, Mapping):
        raise MetadataError("", f"must be a mapping (a JSON object), got {type(metadata).__name__}")
    return copy.deepcopy(dict(metadata))


def _state_dict(obj: Any) -> Mapping[str, Any]:
    """The state dict to save: ``obj`` itself when it is a mapping, else ``obj.state_dict()`` for a module."""
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        return obj
    raise InputError(f"save_version needs a state dict or an nn.Module, got {type(obj).__name__}")


def _tensor_memory(state: Mapping[str, Any]) -> list[tuple[int, int]]:
    """The memory of the state dict's CPU tensors, which ``torch.save`` writes straight from: it stays allocated
    while this save holds the state dict, and unchanged as long as nobody trains the model during its own save
    (which would make the saved file itself inconsistent), so the hashers may read it after each write."""
    import torch

    out = []
    for value in state.values():
        if isinstance(value, torch.Tensor) and value.device.type == "cpu":
            storage = value.untyped_storage()
            out.append((storage.data_ptr(), storage.nbytes()))
    return out


def _hidden_temp(final: Path) -> Path:
    """A hidden, unique temporary name beside ``final`` (the audit reports leftovers as unledgered)."""
    return final.parent / f".{final.name}.{secrets.token_hex(6)}.tmp"


@dataclass(slots=True)
class _Files:
    """The files one save creates: temporary names first, ledgered names once placed under the write lock."""

    weights: Path
    metadata: Path
    adapter: Path
    weights_tmp: Path
    metadata_tmp: Path
    adapter_tmp: Path | None = None
    created: list[Path] = field(default_factory=list)
    placed: dict[Path, int] = field(default_factory=dict)  # ledgered path -> inode we put there
    adapter_placed: bool = False
    stale_adapter: bool = False
    adapter_in_place: bool = False

    @classmethod
    def for_version(cls, models_dir: Path, adapters_dir: Path, name: VersionName) -> _Files:
        """The ledgered and temporary names for ``name``."""
        weights = models_dir / name.weights_filename(".pth")
        metadata = models_dir / name.metadata_filename()
        return cls(
            weights=weights,
            metadata=metadata,
            adapter=adapters_dir / name.adapter_dirname(),
            weights_tmp=_hidden_temp(weights),
            metadata_tmp=_hidden_temp(metadata),
        )

    def refuse_existing(self, *, adapter: bool) -> None:
        """Never replace a file: a weight, metadata file or adapter directory already under the new name is
        refused (an adapter directory is checked when no adapter is given: it would look recorded)."""
        if not self.weights.parent.is_dir():
            raise FileInputError(f"models directory {display_path(self.weights.parent)} does not exist")
        paths = [self.weights, self.weights.with_suffix(".safetensors"), self.metadata]
        if not adapter:
            paths.append(self.adapter)
        for path in paths:
            if os.path.lexists(path) and not _left_by_crashed_save(path):
                raise AlreadyExistsError(
                    f"{display_path(path)} already exists but is not in the ledger; move it away and save again"
                )

    # --- writing under temporary names -----------------------------------------------------------

    def stage_adapter(self, source: Path) -> dict[str, Any]:
        """Copy the adapter directory beside its ledgered place and hash the copy (symlinks refused)."""
        if _same_directory(source, self.adapter):
            self.adapter_in_place = True  # the caller wrote it under the ledgered name already: record as is
            return adapter_record_of(self.adapter, self.adapter.name)
        original = hash_directory(source)  # refuses symlinks and special files before anything is copied
        # A save killed after placing its files (weights first, adapter last) but before its block leaves this
        # directory behind, next to weights that are a hard link of its hidden temporary: replaced under the lock.
        self.stale_adapter = os.path.lexists(self.adapter) and _left_by_crashed_save(self.weights)
        if os.path.lexists(self.adapter) and not self.stale_adapter:
            raise AlreadyExistsError(
                f"adapter directory {display_path(self.adapter)} already exists but is not in the ledger; "
                "move it away and save again"
            )
        root = self.adapter.parent
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.adapter_tmp = _hidden_temp(self.adapter)
            shutil.copytree(source, self.adapter_tmp, symlinks=True)
        except OSError as exc:
            raise StorageError(f"cannot copy adapter {display_path(source)}: {os_reason(exc)}") from None
        record = adapter_record_of(self.adapter_tmp, self.adapter.name)
        if record["root"] != original.root:
            raise InputError(f"adapter directory {display_path(source)} changed while it was copied; save again")
        return record

    def write_weights(self, state: Mapping[str, Any]) -> FileDigest:
        """``torch.save`` into the hidden temporary file through the hashers, then fsync it."""
        import torch

        path = self.weights_tmp
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise StorageError(f"cannot create {display_path(path)}: {os_reason(exc)}") from None
        self.created.append(path)
        try:
            with open(fd, "wb", buffering=_WRITE_BUFFER) as raw:
                flush = BackgroundFlush(fd)  # write-back overlaps the writing; stopped before the file closes
                try:
                    with HashingWriter(raw, stable=_tensor_memory(state)) as writer:
                        try:
                            torch.save(state, writer)  # type: ignore[arg-type]  # a write-only stream is enough
                        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # pickle's errors
                            raise InputError(f"cannot serialise the state dict: {' '.join(str(exc).split())}") from None
                        digest = writer.finish()
                    flush.finish()
                finally:
                    flush.stop()
        except OSError as exc:
            raise StorageError(f"cannot write {display_path(path)}: {os_reason(exc)}") from None
        except RuntimeError as exc:  # torch's writer wraps I/O errors of the stream it writes to
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StorageError(f"torch.save failed writing {display_path(path)}: {first}") from None
        return digest

    def write_metadata(self, committed: dict[str, Any]) -> None:
        """Write the committed metadata to its temporary file (the block reference is added after the commit)."""
        path = self.metadata_tmp
        data = (json.dumps(committed, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise StorageError(f"cannot create {display_path(path)}: {os_reason(exc)}") from None
        self.created.append(path)
        try:
            with open(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise StorageError(f"cannot write {display_path(path)}: {os_reason(exc)}") from None

    # --- placing (under the write lock) and cleaning up -------------------------------------------

    def place(self) -> None:
        """Give the files their ledgered names without ever replacing one; idempotent (builds may be retried)."""
        for tmp, final in ((self.weights_tmp, self.weights), (self.metadata_tmp, self.metadata)):
            if final not in self.placed:
                self.placed[final] = _link_new(tmp, final)
        if self.adapter_tmp is not None and not self.adapter_placed:
            if os.path.lexists(self.adapter):
                if not self.stale_adapter:
                    raise AlreadyExistsError(f"adapter directory {display_path(self.adapter)} appeared meanwhile")
                try:  # kept under a hidden name (the audit reports it), never deleted
                    os.rename(self.adapter, _hidden_temp(self.adapter))
                except OSError as exc:
                    raise StorageError(f"cannot move aside {display_path(self.adapter)}: {os_reason(exc)}") from None
            try:
                os.rename(self.adapter_tmp, self.adapter)
            except OSError as exc:
                raise StorageError(f"cannot place {display_path(self.adapter)}: {os_reason(exc)}") from None
            self.adapter_placed = True
            fsync_dir(self.adapter.parent)
        fsync_dir(self.weights.parent)
        crash_point("save:placed")

    def forget_temporaries(self) -> None:
        """After the commit: drop the temporary names (the ledgered names keep the data)."""
        for path in self.created:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.created.clear()
        with contextlib.suppress(StorageError, FileInputError):
            fsync_dir(self.weights.parent)

    def discard(self) -> None:
        """Remove everything this save created (best effort: the original error is the one to report)."""
        for final, inode in self.placed.items():
            with contextlib.suppress(OSError):
                if os.lstat(final).st_ino == inode:  # never remove a file someone else put there
                    os.unlink(final)
        for path in self.created:
            with contextlib.suppress(OSError):
                os.unlink(path)
        if self.adapter_placed:
            shutil.rmtree(self.adapter, ignore_errors=True)
        elif self.adapter_tmp is not None:
            shutil.rmtree(self.adapter_tmp, ignore_errors=True)
        self.placed.clear()
        self.created.clear()


def _same_directory(left: Path, right: Path) -> bool:
    try:
        return os.path.samefile(left, right)
    except OSError:
        return False


def _link_new(tmp: Path, final: Path) -> int:
    """Give ``tmp``'s file the name ``final`` unless that name exists (a hard link never replaces); its inode."""
    if _left_by_crashed_save(final):
        # Safe to drop: we hold the write lock and the order check passed, so no block records this name and
        # no live save is between placing and committing it; the crashed save's hidden temporary stays.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(final)
    try:
        os.link(tmp, final, follow_symlinks=False)
    except FileExistsError:
        raise AlreadyExistsError(
            f"{display_path(final)} already exists but is not in the ledger; move it away and save again"
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise StorageError(f"cannot place {display_path(final)}: {os_reason(exc)}") from None
        # File systems without hard links: check, then rename (the window is tiny and we hold the write lock).
        if os.path.lexists(final):
            raise AlreadyExistsError(f"{display_path(final)} already exists but is not in the ledger") from None
        try:
            os.rename(tmp, final)
        except OSError as exc2:
            raise StorageError(f"cannot place {display_path(final)}: {os_reason(exc2)}") from None
    return os.lstat(final).st_ino


def _left_by_crashed_save(final: Path) -> bool:
    """Whether ``final`` is a name a killed save placed before its block committed: a regular file that is a
    hard link of one of its own hidden temporaries (a committed save unlinks those right after the commit).

    Only called for names the ledger does not record, so a save killed after its commit (whose temporary may
    remain) never matches: its name is taken and the next save gets the next version.
    """
    try:
        info = os.lstat(final)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_nlink < 2:
        return False
    prefix, suffix = f".{final.name}.", ".tmp"
    try:
        siblings = [entry for entry in os.scandir(final.parent) if entry.name.startswith(prefix)]
    except OSError:
        return False
    for entry in siblings:
        if not entry.name.endswith(suffix):
            continue
        with contextlib.suppress(OSError):
            other = entry.stat(follow_symlinks=False)
            if (other.st_ino, other.st_dev) == (info.st_ino, info.st_dev):
                return True
    return False
