"""Backup and verified restore on memory://, file:// and a real S3-compatible server (moto over HTTP)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from ledger.audit import FilesMode
from ledger.backup import RemoteCheck, Status, audit_backups, backup
from ledger.config import RetentionPolicy
from ledger.errors import NotFoundError, RemoteCopyError, RemoteStoreError, StorageError
from ledger.findings import FindingClass
from ledger.remote import RemoteOptions, open_store, parse_location
from ledger.restore import restore
from ledger.retention import prune
from tests.conftest import Workspace
from tests.integration.lifecycle.conftest import CuttingProxy
from tests.integration.lifecycle.helpers import (
    MODEL,
    damage,
    kinds,
    memory_location,
    opener,
    payloads,
    prune_block,
    record,
    temp_leftovers,
)

V10, V11 = f"{MODEL}-v1.0", f"{MODEL}-v1.1"
KEEP_NONE = lambda _m: RetentionPolicy(0, 0)  # noqa: E731


def test_backup_memory_records_verified_block_and_is_idempotent(ledger_ws: Workspace) -> None:
    ledger = record(ledger_ws, "1.0", "1.1", adapter=True)
    store = open_store(memory_location(), RemoteOptions())
    outcomes = backup(ledger, store)
    assert [o.status for o in outcomes] == [Status.UPLOADED, Status.UPLOADED]
    (first, _second) = payloads(ledger, "backup")
    assert first["version"] == V10 and first["verified"] is True and first["location"] == store.location.url
    roles = sorted(f["role"] for f in first["files"])
    assert roles == ["adapter", "adapter", "metadata", "weights"]
    weights = next(f for f in first["files"] if f["role"] == "weights")
    version = ledger.find(V10).data()["weights"]
    assert (weights["sha256"], weights["blake3"], weights["size"]) == (version["sha256"], version["blake3"], 4096)
    assert weights["remote"] == f"{store.location.url}/{MODEL}/{V10}/models/{V10}.pth"
    assert store.size(f"{MODEL}/{V10}/adapters/{V10}/sub/notes.txt") is not None
    height = ledger.head().height
    again = backup(ledger, store)
    assert [o.status for o in again] == [Status.SKIPPED, Status.SKIPPED]
    assert ledger.head().height == height
    findings, checked = audit_backups(ledger, mode=RemoteCheck.FULL, open_store=opener())
    assert findings == [] and checked == 8


@pytest.mark.parametrize("scheme", ["file", "s3"])
@pytest.mark.parametrize("how", ["delete", "resize"])
def test_backup_rerun_repairs_a_remote_copy_that_is_gone(
    ledger_ws: Workspace, request: pytest.FixtureRequest, tmp_path: Path, scheme: str, how: str
) -> None:
    """Only verified copies are skipped: a re-run looks at every recorded object and uploads again what is not
    there (or not of the recorded size), verifies it and records a new block."""
    ledger = record(ledger_ws, "1.0", "1.1", adapter=True)
    if scheme == "s3":
        options = RemoteOptions(s3_endpoint_url=request.getfixturevalue("s3_endpoint"), retries=1)
        location = parse_location(f"s3://{request.getfixturevalue('s3_bucket')}/b")
    else:
        options, location = RemoteOptions(), parse_location(f"file://{tmp_path / 'remote'}")
    store = open_store(location, options)
    backup(ledger, store)
    lost = f"{MODEL}/{V10}/adapters/{V10}/sub/notes.txt"
    damage(store, lost, how)
    assert audit_backups(ledger, mode=RemoteCheck.SIZE, open_store=opener(options))[0] != []
    height = ledger.head().height
    again = backup(ledger, open_store(location, options))
    assert [o.status for o in again] == [Status.REPAIRED, Status.SKIPPED]
    assert again[0].height == height + 1 and ledger.head().height == height + 1
    assert again[0].uploaded_bytes == len(f"adapter of {V10}\n")  # the verified objects were not sent again
    assert [p["version"] for p in payloads(ledger, "backup")] == [V10, V11, V10]
    for mode in RemoteCheck:
        assert audit_backups(ledger, mode=mode, open_store=opener(options))[0] == [], mode
    assert [o.status for o in backup(ledger, open_store(location, options))] == [Status.SKIPPED] * 2


def test_backup_refuses_changed_local_file(ledger_ws: Workspace) -> None:
    ledger = record(ledger_ws, "1.0")
    (ledger_ws.models / f"{V10}.pth").write_bytes(os.urandom(4096))  # same size, other bytes
    store = open_store(memory_location(), RemoteOptions())
    with pytest.raises(RemoteCopyError, match="does not match"):
        backup(ledger, store)
    assert "backup" not in kinds(ledger)


def test_remote_audit_finds_missing_and_changed_objects(ledger_ws: Workspace) -> None:
    ledger = record(ledger_ws, "1.0", "1.1")
    store = open_store(memory_location(), RemoteOptions())
    backup(ledger, store)
    store.remove(f"{MODEL}/{V10}/models/{V10}.pth")
    store.fs.pipe_file(store.location.path(f"{MODEL}/{V11}/models/{V11}.pth"), os.urandom(4096))
    size_only, _ = audit_backups(ledger, mode=RemoteCheck.SIZE, open_store=opener())
    assert [(f.kind, f.version) for f in size_only] == [(FindingClass.REMOTE, V10)]
    assert "missing" in size_only[0].message
    full, _ = audit_backups(ledger, mode=RemoteCheck.FULL, open_store=opener())
    assert sorted(f.version or "" for f in full) == [V10, V11]
    assert any("content differs" in f.message for f in full)


def test_prune_then_audit_then_restore_file_store(ledger_ws: Workspace, tmp_path: Path) -> None:
    ledger = record(ledger_ws, "1.0", "1.1", adapter=True)
    location = parse_location(f"file://{tmp_path / 'backup'}")
    backup(ledger, open_store(location, RemoteOptions()))
    result = prune(ledger, KEEP_NONE, open_store=opener(), dry_run=False)
    assert [p.version for p in result.pruned] == [V10, V11]
    assert not (ledger_ws.models / f"{V10}.pth").exists() and not (ledger_ws.adapters / V10).exists()
    report = ledger.audit(files=FilesMode.FULL)
    assert report.clean, report.findings
    assert dict(report.pruned) == {V10: location.url, V11: location.url}
    assert report.to_json()["pruned"][0] == {"version": V10, "location": location.url}

    outcome = restore(ledger, V10, open_store=opener())
    assert outcome.location == location.url and len(outcome.files) == 4
    assert (ledger_ws.adapters / V10 / "sub" / "notes.txt").read_text() == f"adapter of {V10}\n"
    for mode in FilesMode:
        report = ledger.audit(files=mode)
        assert report.clean, (mode, report.findings)
    assert dict(report.pruned) == {V11: location.url}
    assert payloads(ledger, "restore")[0] == {
        "version": V10,
        "location": location.url,
        "backup_height": payloads_height(ledger, "backup", V10),
        "files": list(outcome.files),
    }
    # a pruned file that comes back without a restore block is checked again like any other
    (ledger_ws.models / f"{V11}.pth").write_bytes(b"x")
    assert not ledger.audit(files=FilesMode.QUICK).clean


def payloads_height(ledger: object, kind: str, version: str) -> int:
    for block in ledger.blocks_of_kind(kind):  # type: ignore[attr-defined]
        if block.data()["version"] == version:
            return int(block.height)
    raise AssertionError(version)


def test_missing_local_file_without_prune_is_still_a_finding(ledger_ws: Workspace) -> None:
    ledger = record(ledger_ws, "1.0")
    backup(ledger, open_store(memory_location(), RemoteOptions()))
    (ledger_ws.models / f"{V10}.pth").unlink()
    assert [f.kind for f in ledger.audit().findings] == [FindingClass.FILE_MISSING]


def test_missing_file_a_prune_block_does_not_list_is_still_a_finding(ledger_ws: Workspace) -> None:
    ledger = record(ledger_ws, "1.0", adapter=True)
    backup(ledger, open_store(memory_location(), RemoteOptions()))
    kept = f"{V10}/adapter_model.bin"
    prune_block(ledger, V10, [f"{V10}.pth", f"{V10}/sub/notes.txt"])
    (ledger_ws.models / f"{V10}.pth").unlink()
    (ledger_ws.adapters / V10 / "sub" / "notes.txt").unlink()
    for mode in (FilesMode.FULL, FilesMode.QUICK):
        assert ledger.audit(files=mode).clean, mode  # released by the block: absent is fine
    (ledger_ws.models / f"{V10}.json").unlink()  # lost by hand: no prune block covers it
    (ledger_ws.adapters / kept).unlink()
    for mode in (FilesMode.FULL, FilesMode.QUICK):
        found = [(f.kind, f.path) for f in ledger.audit(files=mode).findings]
        assert (FindingClass.FILE_MISSING, f"{V10}.json") in found, mode
        assert any(path == kept for _kind, path in found), (mode, found)
        assert not any(path in (f"{V10}.pth", f"{V10}/sub/notes.txt") for _kind, path in found), found
    shutil.rmtree(ledger_ws.adapters / V10)
    found = [(f.kind, f.path) for f in ledger.audit().findings]
    assert (FindingClass.FILE_MISSING, V10) in found  # the directory is gone with a file no prune released


@pytest.mark.parametrize("attack", ["corrupt", "substitute", "truncate", "delete"])
def test_restore_refuses_bad_remote_copy_and_places_nothing(ledger_ws: Workspace, attack: str) -> None:
    ledger = record(ledger_ws, "1.0", "1.1")
    store = open_store(memory_location(), RemoteOptions())
    backup(ledger, store)
    prune(ledger, KEEP_NONE, open_store=opener(), dry_run=False)
    target = store.location.path(f"{MODEL}/{V10}/models/{V10}.pth")
    other = store.location.path(f"{MODEL}/{V11}/models/{V11}.pth")
    good = store.fs.cat_file(target)
    if attack == "corrupt":
        store.fs.pipe_file(target, bytes([good[0] ^ 1]) + good[1:])
    elif attack == "substitute":
        store.fs.pipe_file(target, store.fs.cat_file(other))
    elif attack == "truncate":
        store.fs.pipe_file(target, good[:100])
    else:
        store.fs.rm_file(target)
    height = ledger.head().height
    with pytest.raises(RemoteCopyError):
        restore(ledger, V10, open_store=opener())
    assert not (ledger_ws.models / f"{V10}.pth").exists()
    assert not (ledger_ws.models / f"{V10}.json").exists()
    assert temp_leftovers(ledger_ws.models, ledger_ws.adapters) == []
    assert ledger.head().height == height


def test_restore_without_backup(ledger_ws: Workspace) -> None:
    ledger = record(ledger_ws, "1.0")
    with pytest.raises(NotFoundError, match="no verified backup"):
        restore(ledger, V10, open_store=opener())


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_restore_disk_full_or_unwritable_places_nothing(
    ledger_ws: Workspace, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    ledger = record(ledger_ws, "1.0", adapter=True, size=3 << 20)
    backup(ledger, open_store(memory_location(), RemoteOptions()))
    prune(ledger, KEEP_NONE, open_store=opener(), dry_run=False)
    height = ledger.head().height
    import ledger.hashing as hashing

    if code == errno.ENOSPC:
        real_write = hashing.HashingWriter.write
        calls = {"n": 0}

        def full(self: hashing.HashingWriter, data: bytes) -> int:
            calls["n"] += 1
            if calls["n"] > 2:  # the disk fills up part-way through the download
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(self, data)

        monkeypatch.setattr(hashing.HashingWriter, "write", full)
        message = "no space left on device"
    else:
        real_open = os.open

        def refuse(path: str, flags: int, mode: int = 0o777) -> int:
            if ".tmp" in str(path) and "lora_adapters" in str(path):  # temporaries, or in a staging dir
                raise OSError(errno.EACCES, "Permission denied")
            return real_open(path, flags, mode)

        monkeypatch.setattr(os, "open", refuse)
        message = "permission denied"
    with pytest.raises(StorageError, match=message):
        restore(ledger, V10, open_store=opener())
    monkeypatch.undo()
    assert sorted(p.name for p in ledger_ws.models.iterdir()) == ["ledger.db"] or not any(
        p.name.startswith(V10) for p in ledger_ws.models.iterdir()
    )
    assert not (ledger_ws.adapters / V10).exists()
    assert temp_leftovers(ledger_ws.models, ledger_ws.adapters) == []
    assert ledger.head().height == height
    restore(ledger, V10, open_store=opener())  # and with the disk fixed it completes
    assert ledger.audit(files=FilesMode.FULL).clean


# --- real S3-compatible server over HTTP ----------------------------------------------------------


def test_s3_backup_multipart_prune_restore_audit(ledger_ws: Workspace, s3_bucket: str, s3_endpoint: str) -> None:
    ledger = record(ledger_ws, "1.0", "1.1", adapter=True, size=(11 << 20) + 123)  # 3 parts of 5 MiB
    options = RemoteOptions(s3_endpoint_url=s3_endpoint, part_size=5 << 20, concurrency=2)
    location = parse_location(f"s3://{s3_bucket}/backups")
    store = open_store(location, options)
    outcomes = backup(ledger, store)
    assert [o.status for o in outcomes] == [Status.UPLOADED, Status.UPLOADED]
    assert all(p["location"] == f"s3://{s3_bucket}/backups" for p in payloads(ledger, "backup"))
    assert "testing" not in str(payloads(ledger, "backup")) and "127.0.0.1" not in str(payloads(ledger, "backup"))
    assert store.size(f"{MODEL}/{V10}/models/{V10}.pth") == (11 << 20) + 123
    for version in (V10, V11):  # the server assembled each weight file from 3 uploaded parts
        etag = store.fs.info(store.location.path(f"{MODEL}/{version}/models/{version}.pth"))["ETag"]
        assert etag.strip('"').endswith("-3"), etag
    etag = store.fs.info(store.location.path(f"{MODEL}/{V10}/models/{V10}.json"))["ETag"]
    assert "-" not in etag  # a small file is one plain PUT
    findings, checked = audit_backups(ledger, mode=RemoteCheck.FULL, open_store=opener(options))
    assert findings == [] and checked == 8
    prune(ledger, KEEP_NONE, open_store=opener(options), dry_run=False)
    outcome = restore(ledger, V11, open_store=opener(options), location=location)
    assert outcome.files[0] == f"{V11}.pth" or f"{V11}.pth" in outcome.files
    report = ledger.audit(files=FilesMode.FULL)
    assert report.clean and dict(report.pruned) == {V10: location.url}


def test_s3_server_stops_mid_upload_then_rerun_completes(
    ledger_ws: Workspace, s3_bucket: str, proxy: CuttingProxy
) -> None:
    ledger = record(ledger_ws, "1.0", size=(12 << 20) + 7)
    options = RemoteOptions(s3_endpoint_url=proxy.url, part_size=5 << 20, concurrency=1, retries=1)
    store = open_store(parse_location(f"s3://{s3_bucket}/b"), options)
    proxy.cut(after=7 << 20)  # the server goes away in the middle of the second part
    with pytest.raises(RemoteStoreError, match=f"s3://{s3_bucket}/b/"):
        backup(ledger, store)
    assert "backup" not in kinds(ledger)
    proxy.heal()
    store = open_store(parse_location(f"s3://{s3_bucket}/b"), options)
    assert store.size(f"{MODEL}/{V10}/models/{V10}.pth") is None  # an aborted multipart leaves no object
    outcomes = backup(ledger, store)
    assert [o.status for o in outcomes] == [Status.UPLOADED]
    assert kinds(ledger).count("backup") == 1
    assert audit_backups(ledger, mode=RemoteCheck.FULL, open_store=opener(options))[0] == []


def test_s3_missing_credentials_names_the_setting(
    ledger_ws: Workspace, s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = record(ledger_ws, "1.0")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = open_store(parse_location(f"s3://{s3_bucket}/b"), RemoteOptions(s3_endpoint_url=s3_endpoint, retries=1))
    with pytest.raises(RemoteStoreError, match="AWS_ACCESS_KEY_ID"):
        backup(ledger, store)
    assert "backup" not in kinds(ledger)


def test_s3_unreachable_endpoint_names_the_setting(ledger_ws: Workspace, s3_env: dict[str, str]) -> None:
    from tests.integration.lifecycle.conftest import free_port

    ledger = record(ledger_ws, "1.0")
    options = RemoteOptions(s3_endpoint_url=f"http://127.0.0.1:{free_port()}", retries=1)
    store = open_store(parse_location("s3://bucket/b"), options)
    with pytest.raises(RemoteStoreError, match="LEDGER_S3_ENDPOINT_URL"):
        backup(ledger, store)
