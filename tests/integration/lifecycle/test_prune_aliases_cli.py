"""Retention (prune), promotion/rollback, and the lifecycle commands as a real CLI subprocess."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ledger.aliases import current, promote, rollback
from ledger.audit import FilesMode
from ledger.backup import backup
from ledger.config import RetentionPolicy
from ledger.errors import InputError, NotFoundError, PruneRefusedError
from ledger.lifecycle import read_state
from ledger.remote import Location, RemoteOptions, RemoteStore, open_store
from ledger.retention import prune
from tests.conftest import Workspace
from tests.integration.lifecycle.conftest import S3_ENV
from tests.integration.lifecycle.helpers import (
    MODEL,
    damage,
    kinds,
    memory_location,
    opener,
    payloads,
    prune_block,
    record,
)

KEEP_ONE_MAJOR = lambda _m: RetentionPolicy(keep_major=1, keep_micro=1)  # noqa: E731


def name(version: str) -> str:
    return f"{MODEL}-v{version}"


def files_of(ws: Workspace) -> list[str]:
    """Every file below the models and adapters directories (the database included)."""
    return sorted(str(p.relative_to(ws.root)) for p in ws.root.rglob("*") if "remote" not in p.parts)


def no_store(location: Location) -> RemoteStore:
    raise AssertionError(f"the dry run contacted {location}")


def test_prune_prunes_backed_up_versions_and_lists_those_without(ledger_ws: Workspace) -> None:
    ledger = record(ledger_ws, "1.0", "1.1", "1.2", "2.0")
    store = open_store(memory_location(), RemoteOptions())
    backup(ledger, store, [name("1.0")])
    dry = prune(ledger, KEEP_ONE_MAJOR, open_store=no_store, dry_run=True)  # the dry run stays offline
    assert [i.version for i in dry.plan.prune] == [name("1.0")]
    assert dry.plan.unbacked == (name("1.1"),)
    result = prune(ledger, KEEP_ONE_MAJOR, open_store=opener(), dry_run=False)
    assert [p.version for p in result.pruned] == [name("1.0")]
    assert result.plan.unbacked == (name("1.1"),) and result.not_pruned == ()
    assert not (ledger_ws.models / f"{name('1.0')}.pth").exists()
    assert (ledger_ws.models / f"{name('1.1')}.pth").exists()
    (block,) = payloads(ledger, "prune")
    assert block["version"] == name("1.0") and block["policy"] == {"keep_major": 1, "keep_micro": 1}
    assert block["location"] == store.location.url and sorted(block["files"]) == sorted(
        [f"{name('1.0')}.pth", f"{name('1.0')}.json"]
    )
    assert ledger.audit(files=FilesMode.FULL).clean
    again = prune(ledger, KEEP_ONE_MAJOR, open_store=no_store, dry_run=True)
    assert again.plan.already_pruned == 1 and again.plan.prune == ()
    height = ledger.head().height
    with pytest.raises(PruneRefusedError) as info:  # what is left has no backup: refused, with the list
        prune(ledger, KEEP_ONE_MAJOR, open_store=opener(), dry_run=False)
    assert info.value.versions == (name("1.1"),) and ledger.head().height == height


def test_prune_refused_with_the_list_when_no_version_has_a_backup(ledger_ws: Workspace) -> None:
    ledger = record(ledger_ws, "1.0", "1.1", "1.2", "2.0")
    before, height = files_of(ledger_ws), ledger.head().height
    with pytest.raises(PruneRefusedError, match=f"{name('1.0')}, {name('1.1')}") as info:
        prune(ledger, KEEP_ONE_MAJOR, open_store=opener(), dry_run=False)
    assert info.value.versions == (name("1.0"), name("1.1"))
    assert files_of(ledger_ws) == before and ledger.head().height == height


@pytest.mark.parametrize("how", ["delete", "resize"])
def test_prune_checks_the_remote_copy_before_removing_anything(ledger_ws: Workspace, how: str) -> None:
    ledger = record(ledger_ws, "1.0", "1.1", "1.2", "2.0", adapter=True)
    store = open_store(memory_location(), RemoteOptions())
    backup(ledger, store)
    lost = f"{MODEL}/{name('1.0')}/adapters/{name('1.0')}/sub/notes.txt"
    damage(store, lost, how)
    assert [i.version for i in prune(ledger, KEEP_ONE_MAJOR, open_store=no_store, dry_run=True).plan.prune] == [
        name("1.0"),
        name("1.1"),
    ]
    result = prune(ledger, KEEP_ONE_MAJOR, open_store=opener(), dry_run=False)
    assert [p.version for p in result.pruned] == [name("1.1")]
    ((version, reason),) = result.not_pruned
    assert version == name("1.0") and f"{store.location.url}/{lost}" in reason
    assert (ledger_ws.models / f"{name('1.0')}.pth").exists() and (ledger_ws.adapters / name("1.0")).is_dir()
    assert [p["version"] for p in payloads(ledger, "prune")] == [name("1.1")]
    before, height = files_of(ledger_ws), ledger.head().height
    with pytest.raises(PruneRefusedError, match=f"{name('1.0')}: its backup at .* is not intact") as info:
        prune(ledger, KEEP_ONE_MAJOR, open_store=opener(), dry_run=False)  # nothing else left to prune
    assert info.value.versions == (name("1.0"),)
    assert files_of(ledger_ws) == before and ledger.head().height == height
    backup(ledger, store)  # repairs the copy; then the prune goes ahead
    assert [p.version for p in prune(ledger, KEEP_ONE_MAJOR, open_store=opener(), dry_run=False).pruned] == [
        name("1.0")
    ]
    assert ledger.audit(files=FilesMode.FULL).clean


def test_prune_leaves_a_version_whose_local_files_the_backup_does_not_cover(ledger_ws: Workspace) -> None:
    ledger = record(ledger_ws, "1.0", "1.1", "2.0")
    backup(ledger, open_store(memory_location(), RemoteOptions()))
    (ledger_ws.models / f"{name('1.0')}.pth").write_bytes(b"grown since the backup" * 300)
    (ledger_ws.models / f"{name('1.1')}.json").unlink()  # lost by hand: not for prune to record as pruned
    before, height = files_of(ledger_ws), ledger.head().height
    with pytest.raises(PruneRefusedError) as info:
        prune(ledger, lambda _m: RetentionPolicy(1, 0), open_store=opener(), dry_run=False)
    message = str(info.value)
    assert f"{name('1.0')}: {name('1.0')}.pth has 6600 bytes but its backup has 4096" in message
    assert f"{name('1.1')}: {name('1.1')}.json is missing and no prune released it" in message
    assert files_of(ledger_ws) == before and ledger.head().height == height


def test_prune_finishes_a_partial_prune(ledger_ws: Workspace) -> None:
    ledger = record(ledger_ws, "1.0", "2.0", adapter=True)
    backup(ledger, open_store(memory_location(), RemoteOptions()))
    prune_block(ledger, name("1.0"), [f"{name('1.0')}.pth"])  # an earlier prune removed only the weights
    (ledger_ws.models / f"{name('1.0')}.pth").unlink()
    dry = prune(ledger, KEEP_ONE_MAJOR, open_store=no_store, dry_run=True)
    (item,) = dry.plan.prune
    assert sorted(item.files) == sorted(
        [f"{name('1.0')}.json", f"{name('1.0')}/adapter_model.bin", f"{name('1.0')}/sub/notes.txt"]
    )
    result = prune(ledger, KEEP_ONE_MAJOR, open_store=opener(), dry_run=False)
    (done,) = result.pruned
    assert done.version == name("1.0") and sorted(done.released) == sorted(done.removed) == sorted(item.files)
    assert not (ledger_ws.models / f"{name('1.0')}.json").exists() and not (ledger_ws.adapters / name("1.0")).exists()
    assert [len(p["files"]) for p in payloads(ledger, "prune")] == [1, 3]
    assert len(read_state(ledger).pruned[name("1.0")].files) == 4
    report = ledger.audit(files=FilesMode.FULL)
    assert report.clean and dict(report.pruned) == {name("1.0"): payloads(ledger, "backup")[0]["location"]}
    assert prune(ledger, KEEP_ONE_MAJOR, open_store=no_store, dry_run=True).plan.already_pruned == 1


def test_prune_never_removes_the_promoted_version(ledger_ws: Workspace) -> None:
    ledger = record(ledger_ws, "1.0", "2.0", "3.0")
    backup(ledger, open_store(memory_location(), RemoteOptions()))
    promote(ledger, name("1.0"))
    result = prune(ledger, KEEP_ONE_MAJOR, open_store=opener(), dry_run=False)
    assert [p.version for p in result.pruned] == [name("2.0")]
    assert result.plan.protected == (name("1.0"),)
    assert (ledger_ws.models / f"{name('1.0')}.pth").exists()
    with pytest.raises(InputError, match="restore"):
        promote(ledger, name("2.0"))  # pruned: restore first


def test_promote_current_rollback(ledger_ws: Workspace) -> None:
    ledger = record(ledger_ws, "1.0", "1.1", "1.2")
    with pytest.raises(NotFoundError):
        current(ledger)
    first = promote(ledger, "v1.0")
    assert first.data() == {
        "model": MODEL,
        "alias": "current",
        "version": name("1.0"),
        "previous": None,
        "action": "promote",
    }
    time.sleep(0.01)
    promote(ledger, "1.1")
    promote(ledger, "1.2", alias="staging")
    assert current(ledger).version == name("1.1")
    assert current(ledger, alias="staging").version == name("1.2")
    assert current(ledger, at=first.timestamp).version == name("1.0")
    with pytest.raises(NotFoundError):
        current(ledger, at="2000-01-01T00:00:00.000000Z")
    with pytest.raises(InputError, match="already holds"):
        promote(ledger, "1.1")
    back = rollback(ledger)
    assert back.data()["version"] == name("1.0") and back.data()["previous"] == name("1.1")
    assert back.data()["action"] == "rollback"
    assert current(ledger).version == name("1.0")
    with pytest.raises(NotFoundError, match="no earlier holder"):
        rollback(ledger)
    with pytest.raises(InputError, match="never held"):
        rollback(ledger, to="1.2")
    rollback(ledger, to="1.1")
    assert current(ledger).version == name("1.1")
    assert kinds(ledger).count("alias") == 5  # every move is a block; nothing edited
    assert ledger.audit(files=FilesMode.NONE).clean


def test_cli_lifecycle_end_to_end(sqlite_ws: Workspace, tmp_path: Path) -> None:
    record(sqlite_ws, "1.0", "1.1", "2.0", adapter=True)
    url = f"file://{tmp_path / 'remote'}"
    out = sqlite_ws.cli("--json", "backup", "--to", url, check=True)
    assert [v["status"] for v in json.loads(out.stdout)["versions"]] == ["uploaded"] * 3
    again = sqlite_ws.cli("backup", check=True, LEDGER_BACKUP_URL=url)
    assert again.stdout.count("skipped") == 3
    (sqlite_ws.models / "ledger.toml").write_text("[retention]\nkeep_major = 1\nkeep_micro = 0\n")
    dry = sqlite_ws.cli("prune", "--dry-run", check=True)
    assert f"would prune {name('1.0')}" in dry.stdout and f"would prune {name('1.1')}" in dry.stdout
    assert "remote copies are checked when prune runs" in dry.stdout
    assert (sqlite_ws.models / f"{name('1.0')}.pth").exists()
    sqlite_ws.cli("prune", check=True)
    assert not (sqlite_ws.models / f"{name('1.0')}.pth").exists()
    audit = sqlite_ws.cli("audit", "--files", "full", "--remote=full", check=True)
    assert f"pruned {name('1.0')} (backup at {url})" in audit.stdout
    assert "remote check (full) looked at 12 backup object(s)" in audit.stdout
    sqlite_ws.cli("restore", name("1.0"), check=True)
    assert (sqlite_ws.adapters / name("1.0") / "sub" / "notes.txt").exists()
    sqlite_ws.cli("promote", "1.0", check=True)
    sqlite_ws.cli("promote", "2.0", check=True)
    shown = sqlite_ws.cli("--json", "current", check=True)
    assert json.loads(shown.stdout)["version"] == name("2.0")
    sqlite_ws.cli("rollback", check=True)
    assert sqlite_ws.cli("current", check=True).stdout.startswith(name("1.0"))
    # a remote object disappears: the size-only remote audit finds it
    (tmp_path / "remote" / MODEL / name("2.0") / "models" / f"{name('2.0')}.pth").unlink()
    bad = sqlite_ws.cli("--json", "audit", "--remote")
    assert bad.returncode == 1
    classes = {f["class"] for f in json.loads(bad.stdout)["findings"]}
    assert classes == {"remote"}
    repaired = sqlite_ws.cli("backup", name("2.0"), "--to", url, check=True)
    assert f"{name('2.0')}: repaired" in repaired.stdout
    sqlite_ws.cli("audit", "--remote=full", check=True)


def test_cli_promote_alias_and_current_at(sqlite_ws: Workspace) -> None:
    record(sqlite_ws, "1.0", "1.1", "1.2")
    first = json.loads(sqlite_ws.cli("--json", "promote", "1.0", check=True).stdout)
    staged = json.loads(sqlite_ws.cli("--json", "promote", "1.2", "--alias", "staging", check=True).stdout)
    payload = json.loads(staged["payload"])
    assert payload["alias"] == "staging" and payload["version"] == name("1.2")
    time.sleep(0.01)
    sqlite_ws.cli("promote", "1.1", check=True)
    assert sqlite_ws.cli("current", check=True).stdout.startswith(name("1.1"))
    assert sqlite_ws.cli("current", "--alias", "staging", check=True).stdout.startswith(name("1.2"))
    back = json.loads(sqlite_ws.cli("--json", "current", "--at", first["timestamp"], check=True).stdout)
    assert back["version"] == name("1.0") and back["height"] == first["height"] and back["alias"] == "current"
    naive = first["timestamp"].rstrip("Z")  # no zone means UTC
    assert sqlite_ws.cli("current", "--at", naive, check=True).stdout.startswith(name("1.0"))
    log = sqlite_ws.cli("log", check=True).stdout
    before = sqlite_ws.cli("current", "--at", "2000-01-01T00:00:00Z")
    assert before.returncode == 2 and len(before.stderr.strip().splitlines()) == 1
    bad = sqlite_ws.cli("current", "--at", "yesterday")
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr and "Traceback" not in bad.stderr
    bad_alias = sqlite_ws.cli("promote", "1.0", "--alias", "Prod EU")
    assert bad_alias.returncode == 2 and len(bad_alias.stderr.strip().splitlines()) == 1
    assert sqlite_ws.cli("log", check=True).stdout == log  # nothing appended by the refusals


def test_cli_prune_without_any_backup_is_refused_with_the_list(sqlite_ws: Workspace) -> None:
    record(sqlite_ws, "1.0", "1.1", "2.0")
    before, log = files_of(sqlite_ws), sqlite_ws.cli("log", check=True).stdout
    refused = sqlite_ws.cli("prune", "--keep-major", "1", "--keep-micro", "0")
    assert refused.returncode == 2, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert f"{name('1.0')}, {name('1.1')}" in refused.stderr and "ledger backup" in refused.stderr
    assert files_of(sqlite_ws) == before and sqlite_ws.cli("log", check=True).stdout == log
    gone = sqlite_ws.cli("prune", "--only-backed-up")
    assert gone.returncode == 2 and "--only-backed-up" in gone.stderr  # the flag is gone


def test_cli_bad_url_and_credentials(sqlite_ws: Workspace, tmp_path: Path) -> None:
    record(sqlite_ws, "1.0")
    bad = sqlite_ws.cli("backup", "--to", "ftp://host/x")
    assert bad.returncode == 2 and "--to" in bad.stderr and "ftp://" in bad.stderr
    bad = sqlite_ws.cli("backup", LEDGER_BACKUP_URL="sftp://host/x")
    assert bad.returncode == 2 and "LEDGER_BACKUP_URL" in bad.stderr
    (sqlite_ws.models / "ledger.toml").write_text('[backup]\nurl = "webdav://x"\n')
    bad = sqlite_ws.cli("backup")
    assert bad.returncode == 2 and "[backup] url" in bad.stderr
    (sqlite_ws.models / "ledger.toml").unlink()
    none = sqlite_ws.cli("backup")
    assert none.returncode == 2 and "LEDGER_BACKUP_URL" in none.stderr
    leaky = sqlite_ws.cli("backup", "--to", "s3://AKIAXXX:topsecret@bucket/x")
    assert leaky.returncode == 2 and "topsecret" not in leaky.stderr
    gs = sqlite_ws.cli("backup", "--to", "gs://my-app.appspot.com/models")
    assert gs.returncode == 3 and "LEDGER_GCS_TOKEN" in gs.stderr and "GOOGLE_APPLICATION_CREDENTIALS" in gs.stderr
    empty = tmp_path / "aws"
    empty.mkdir()
    s3 = sqlite_ws.cli(
        "backup",
        "--to",
        "s3://bucket/x",
        LEDGER_S3_ENDPOINT_URL="http://127.0.0.1:9",
        LEDGER_REMOTE_RETRIES="1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(empty / "c"),
        AWS_SHARED_CREDENTIALS_FILE=str(empty / "s"),
    )
    assert s3.returncode == 3 and "AWS_ACCESS_KEY_ID" in s3.stderr, s3.stderr
    assert "backup" not in sqlite_ws.cli("log").stdout


def test_cli_s3_backup_via_endpoint_setting(sqlite_ws: Workspace, s3_bucket: str, s3_endpoint: str) -> None:
    record(sqlite_ws, "1.0")
    (sqlite_ws.models / "ledger.toml").write_text(
        f'[backup]\nurl = "s3://{s3_bucket}/m"\ns3_endpoint_url = "{s3_endpoint}"\n'
    )
    sqlite_ws.cli("backup", check=True, **S3_ENV)
    audit = sqlite_ws.cli("audit", "--remote=full", check=True, **S3_ENV)
    assert "looked at 2 backup object(s)" in audit.stdout
    refused = sqlite_ws.cli("audit", "--remote=deep")
    assert refused.returncode == 2


def test_prune_is_write_ahead_and_a_rerun_removes_what_a_failure_left(
    ledger_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from ledger.errors import StorageError

    ledger = record(ledger_ws, "1.0", "2.0")
    backup(ledger, open_store(memory_location(), RemoteOptions()))
    real_unlink = Path.unlink

    def flaky(self: Path, missing_ok: bool = False) -> None:
        if self.suffix == ".json":
            raise OSError(errno.EROFS, "Read-only file system")
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", flaky)
    with pytest.raises(StorageError, match=r"read-only file system.*next `ledger prune` removes it"):
        prune(ledger, KEEP_ONE_MAJOR, open_store=opener(), dry_run=False)
    monkeypatch.undo()
    (block,) = payloads(ledger, "prune")  # written before anything was removed, naming every file
    assert sorted(block["files"]) == [f"{name('1.0')}.json", f"{name('1.0')}.pth"]
    assert (ledger_ws.models / f"{name('1.0')}.json").exists()
    assert ledger.audit(files=FilesMode.FULL).clean  # released but present: checked like any file
    metadata = ledger_ws.models / f"{name('1.0')}.json"
    original = metadata.read_bytes()
    metadata.write_text("{}")
    assert not ledger.audit(files=FilesMode.FULL).clean
    with pytest.raises(PruneRefusedError, match="has 2 bytes but its backup has"):
        prune(ledger, KEEP_ONE_MAJOR, open_store=opener(), dry_run=False)  # a changed file is never removed
    metadata.write_bytes(original)
    height = ledger.head().height
    (done,) = prune(ledger, KEEP_ONE_MAJOR, open_store=opener(), dry_run=False).pruned
    assert (done.height, done.released, done.removed) == (block_height(ledger), (), (f"{name('1.0')}.json",))
    assert ledger.head().height == height  # finishing needs no second block
    assert not (ledger_ws.models / f"{name('1.0')}.json").exists()
    assert ledger.audit(files=FilesMode.FULL).clean


def block_height(ledger: object) -> int:
    (block,) = ledger.blocks_of_kind("prune")  # type: ignore[attr-defined]
    return int(block.height)
