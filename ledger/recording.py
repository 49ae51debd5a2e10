"""Turning files on disk into the body of a ``version`` block: names, metadata, digests, adapter, data set.

Everything here runs before the write transaction (hashing a 14 GB file must not hold the lock); what depends
on the chain (order, parent) is decided inside it by ``ledger.api``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import metadata as metadata_rules
from ledger.errors import FileInputError, InputError, MetadataError, NamingError, UnsafePathError
from ledger.fsutil import display_path, relative_inside
from ledger.hashing import FileDigest, hash_file, hash_file_ends
from ledger.manifest import Manifest, hash_directory
from ledger.strictjson import read_object
from ledger.tensors import TensorSummary, summarise_ends
from ledger.versions import VersionName, check_question_id

WEIGHT_SUFFIXES = (".pth", ".safetensors")


@dataclass(frozen=True, slots=True)
class PreparedVersion:
    """A version ready to be committed: its name, stage, metadata file and payload body (parent not yet set)."""

    name: VersionName
    stage: int | None
    question: str | None
    metadata_path: Path
    metadata: dict[str, Any]
    body: dict[str, Any]


def prepare_version(
    *,
    models_dir: Path,
    adapters_dir: Path,
    weights: Path | None,
    metadata: Path | None,
    stage: int | None = None,
    question: str | None = None,
    adapter: Path | None = None,
    data: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> PreparedVersion:
    """Validate names and metadata first (cheap), then hash the data set, adapter and weights (one read each)."""
    if weights is None and metadata is None:
        raise FileInputError("give a weight file, or --metadata for an adapter-only version")
    if question is not None:
        check_question_id(question)
    weights_rel = None
    if weights is not None:
        weights_rel = relative_inside(models_dir, weights)
        name, suffix = VersionName.from_filename(Path(weights_rel).name)
        if suffix not in WEIGHT_SUFFIXES:
            raise NamingError(f"{display_path(weights)}: weight files end in .pth or .safetensors")
        weights_path = models_dir / weights_rel
        metadata = metadata if metadata is not None else weights_path.with_suffix(".json")
    assert metadata is not None
    metadata_rel = relative_inside(models_dir, metadata)
    meta_name, meta_suffix = VersionName.from_filename(Path(metadata_rel).name)
    if meta_suffix != ".json":
        raise NamingError(f"{display_path(metadata)}: metadata files end in .json")
    if weights is None:
        name = meta_name
    elif meta_name != name:
        raise NamingError(f"metadata {display_path(metadata)} names {meta_name}, but the weights are {name}")
    metadata_path = models_dir / metadata_rel
    committed = metadata_rules.validate(read_object(metadata_path), expected=name)
    committed, training_data = training_data_of(committed, data, progress=progress)

    adapter_record = _adapter_record(adapters_dir, adapter, name)
    weights_record = None
    if weights_rel is not None:
        weights_record = weights_record_of(weights_path, weights_rel, progress=progress)
    if weights_record is None and adapter_record is None:
        raise FileInputError(f"{name}: a version needs weights, an adapter directory, or both")
    body = version_body(
        name,
        stage=stage,
        question=question,
        weights=weights_record,
        metadata_rel=metadata_rel,
        committed=committed,
        training_data=training_data,
        adapter=adapter_record,
    )
    return PreparedVersion(name, stage, question, metadata_path, committed, body)


def training_data_of(
    committed: dict[str, Any], data: Path | None, *, progress: Callable[[int], None] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check (or fill in) ``training_data_hash`` from ``data``; the ledger never just trusts a hash it can compute.

    Returns the committed metadata (with the hash filled in when it was absent) and the payload's
    ``training_data`` record. ``progress(n)`` is told the bytes hashed.
    """
    training_data: dict[str, Any] = {"computed": False}
    if data is not None:
        digest, data_kind = _hash_data(data, progress)
        present = metadata_rules.check_training_data_hash(committed, digest)
        if not present:
            committed = metadata_rules.fill_training_data_hash(committed, digest)
        training_data = {"computed": True, "kind": data_kind}
    elif metadata_rules.DATA_HASH_KEY not in committed.get("provenance", {}):
        raise MetadataError(f"/provenance/{metadata_rules.DATA_HASH_KEY}", "is missing: give --data PATH to compute it")
    training_data["hash"] = committed["provenance"][metadata_rules.DATA_HASH_KEY]
    return committed, training_data


def version_body(
    name: VersionName,
    *,
    stage: int | None,
    question: str | None,
    weights: dict[str, Any] | None,
    metadata_rel: str,
    committed: dict[str, Any],
    training_data: dict[str, Any],
    adapter: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ``version`` payload without its parent (decided under the write lock): one shape for every writer."""
    return {
        "model": name.slug,
        "version": str(name.version),
        "name": str(name),
        "release": "major" if name.version.is_major else "micro",
        "stage": stage,
        "question": question,
        "weights": weights,
        "metadata": {"path": metadata_rel, "content": committed},
        "training_data": training_data,
        "adapter": adapter,
    }


def weights_record_of(
    path: Path,
    relative: str,
    *,
    written: tuple[FileDigest, TensorSummary] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The payload's ``weights`` record for the file at ``path``, recorded under ``relative``.

    The file is read once: that read gives both digests and the ends the tensor figures come from.
    ``written`` is what ``save_version`` already knows (the digests of the bytes it streamed out, the figures of
    the state dict it saved): then the file is not read at all.
    """
    before = _stat(path)
    if before.st_size == 0:
        raise FileInputError(f"weight file {display_path(path)} is empty")
    refused = None
    tensors: TensorSummary | None
    if written is None:
        digest, ends = hash_file_ends(path, progress=progress)
        try:
            tensors = summarise_ends(path, ends)
        except InputError as exc:  # unsafe or unreadable pickles are recorded by their bytes alone
            tensors, refused = None, str(exc)
    else:
        digest, tensors = written
        if digest.size != before.st_size:
            raise FileInputError(
                f"weight file {display_path(path)} has {before.st_size} bytes, but {digest.size} were written"
            )
    record: dict[str, Any] = {
        "path": relative,
        "format": Path(relative).suffix.lstrip("."),
        "size": digest.size,
        "sha256": digest.sha256,
        "blake3": digest.blake3,
        "mtime_ns": str(_stat(path).st_mtime_ns),  # a string: JCS integers stop at 2**53
        "tensors": None if tensors is None else tensors.to_json(),
    }
    if refused is not None:
        record["not_inspected"] = refused
    return record


def _adapter_record(adapters_dir: Path, adapter: Path | None, name: VersionName) -> dict[str, Any] | None:
    directory = adapter if adapter is not None else adapters_dir / name.adapter_dirname()
    if adapter is None and not directory.is_dir():
        return None
    if directory.is_symlink():
        raise UnsafePathError(f"adapter directory {display_path(directory)} is a symbolic link")
    if not adapters_dir.is_dir():
        raise FileInputError(f"adapters directory {display_path(adapters_dir)} does not exist")
    relative = relative_inside(adapters_dir, directory)
    return adapter_record_of(adapters_dir / relative, relative)


def adapter_record_of(directory: Path, relative: str) -> dict[str, Any]:
    """The payload's ``adapter`` record: the directory manifest (symlinks and special files refused) and the
    ``base_model_name_or_path`` of its ``adapter_config.json`` when present; recorded under ``relative``."""
    manifest = hash_directory(directory)
    record: dict[str, Any] = {"path": relative, "root": manifest.root, "manifest": manifest.to_json()}
    base = _adapter_base_model(directory, manifest)
    if base is not None:
        record["base_model"] = base
    return record


def _adapter_base_model(directory: Path, manifest: Manifest) -> str | None:
    if not any(entry.path == "adapter_config.json" for entry in manifest.entries):
        return None
    config = read_object(directory / "adapter_config.json")
    value = config.get("base_model_name_or_path")
    return value if isinstance(value, str) else None


def _hash_data(path: Path, progress: Callable[[int], None] | None) -> tuple[str, str]:
    if path.is_dir() and not path.is_symlink():
        return hash_directory(path, progress=progress).root, "directory"
    return hash_file(path, progress=progress).sha256, "file"


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        raise FileInputError(f"weight file not found: {display_path(path)}") from None
    except OSError as exc:
        raise FileInputError(f"cannot read {display_path(path)}: {exc.strerror}") from None
