"""Pure lifecycle values: backup URLs, ledger.toml, retention planning and the alias stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.aliases import check_alias, holder_at, stack
from ledger.config import RetentionPolicy, parse_config
from ledger.errors import InputError, RemoteStoreError, RemoteURLError
from ledger.lifecycle import AliasEvent, BackupFile, BackupRecord, IndexedVersion, LifecycleState, PruneRecord
from ledger.remote import Location, RemoteOptions, open_store, parse_location
from ledger.retention import outside_policy, plan

# --- backup URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "root", "canonical"),
    [
        ("s3://bucket/a/b/", "s3", "bucket/a/b", "s3://bucket/a/b"),
        ("S3://bucket", "s3", "bucket", "s3://bucket"),
        ("gs://my-app.appspot.com/models", "gs", "my-app.appspot.com/models", "gs://my-app.appspot.com/models"),
        ("gcs://b/p", "gs", "b/p", "gs://b/p"),
        ("file:///srv/backup/", "file", "/srv/backup", "file:///srv/backup"),
        ("file://localhost/srv", "file", "/srv", "file:///srv"),
        ("memory://t1/x", "memory", "/t1/x", "memory://t1/x"),
    ],
)
def test_parse_location(url: str, scheme: str, root: str, canonical: str) -> None:
    location = parse_location(url)
    assert (location.scheme, location.root, location.url) == (scheme, root, canonical)
    assert parse_location(location.url) == location
    assert location.url_of("m/x.pth") == canonical + "/m/x.pth"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ftp://host/x", "ftp://"),
        ("http://host/x", "http://"),
        ("/plain/path", "no scheme"),
        ("s3://AKIA:secret@bucket/x", "credentials"),
        ("gs://token@bucket", "credentials"),
        ("s3://bucket/x?versionId=1", "query"),
        ("s3:///x", "no bucket"),
        ("file://relative/path", "absolute"),
        ("file:///srv/../etc", "'..'"),
    ],
)
def test_parse_location_refused(url: str, needle: str) -> None:
    with pytest.raises(RemoteURLError) as info:
        parse_location(url, setting="LEDGER_BACKUP_URL")
    assert needle in str(info.value)
    assert "AKIA" not in str(info.value) and "secret" not in str(info.value)


def test_unknown_scheme_names_the_setting() -> None:
    with pytest.raises(RemoteURLError, match="LEDGER_BACKUP_URL"):
        parse_location("ftp://x/y", setting="LEDGER_BACKUP_URL")


def test_gs_without_credentials_names_the_setting() -> None:
    with pytest.raises(RemoteStoreError, match=r"LEDGER_GCS_TOKEN.*GOOGLE_APPLICATION_CREDENTIALS"):
        open_store(Location("gs", "bucket/x"), RemoteOptions())


def test_gs_with_missing_token_file() -> None:
    with pytest.raises(RemoteStoreError, match="does not exist"):
        open_store(Location("gs", "bucket/x"), RemoteOptions(gcs_token="/nonexistent/sa.json"))


def test_gs_with_malformed_token_file(tmp_path: Path) -> None:
    token = tmp_path / "sa.json"
    token.write_text("{}")
    with pytest.raises(RemoteStoreError, match="LEDGER_GCS_TOKEN"):
        open_store(Location("gs", "bucket/x"), RemoteOptions(gcs_token=str(token)))


def test_gs_unreachable_token_endpoint_is_a_store_error(tmp_path: Path) -> None:
    """A well-formed service-account key whose token endpoint is down: a clear store error, no traceback."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    token = tmp_path / "sa.json"
    token.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "demo",
                "private_key_id": "1",
                "private_key": pem,
                "client_email": "ledger@demo.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "http://127.0.0.1:9/token",
            }
        )
    )
    store = open_store(
        Location("gs", "demo.appspot.com/backups"), RemoteOptions(gcs_token=str(token), gcs_project="demo", retries=1)
    )
    assert store.location.url == "gs://demo.appspot.com/backups"
    with pytest.raises(RemoteStoreError, match=r"gs://demo\.appspot\.com/backups/x"):
        store.size("x")


# --- ledger.toml ---------------------------------------------------------------------------------


def test_config_defaults_and_per_model() -> None:
    config = parse_config(
        """
        [backup]
        url = "s3://b/p"
        s3_endpoint_url = "http://127.0.0.1:9000"
        [retention]
        keep_micro = 10
        [retention.models."oneseek-7b-zero"]
        keep_major = 5
        """
    )
    assert config.backup["url"] == "s3://b/p"
    assert config.policy_for("other") == RetentionPolicy(3, 10)
    assert config.policy_for("oneseek-7b-zero") == RetentionPolicy(5, 10)
    assert parse_config("").policy_for("x") == RetentionPolicy(3, 50)


@pytest.mark.parametrize(
    "text",
    [
        "[backup]\nurll = 'x'",
        "[retention]\nkeep_majors = 1",
        "[retention]\nkeep_major = -1",
        "[retention]\nkeep_major = true",
        "[retention]\nkeep_major = 1.5",
        "[backups]\nurl = 'x'",
        "[backup]\nurl = 3",
        "not toml [",
    ],
)
def test_config_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_config(text)


# --- retention -----------------------------------------------------------------------------------


def _versions(model: str, spec: list[tuple[int, int]]) -> list[IndexedVersion]:
    return [IndexedVersion(model, major, micro, i + 1) for i, (major, micro) in enumerate(spec)]


def test_outside_policy_keeps_newest_majors_and_micros() -> None:
    spec = [(m, n) for m in range(1, 6) for n in range(0, 4)]  # v1.0..v5.3: 5 majors, 15 micros
    drop = outside_policy(_versions("m", spec), RetentionPolicy(keep_major=3, keep_micro=4))
    names = {f"v{v.major}.{v.micro}" for v in drop}
    assert names == {"v1.0", "v2.0"} | {f"v{m}.{n}" for m in range(1, 5) for n in (1, 2, 3)} - {"v4.3"}
    assert "v4.3" not in names and "v5.1" not in names  # the 4 newest micros: v4.3, v5.1, v5.2, v5.3
    assert outside_policy(_versions("m", spec), RetentionPolicy(100, 100)) == []
    assert len(outside_policy(_versions("m", spec), RetentionPolicy(0, 0))) == len(spec)


def test_outside_policy_orders_numerically() -> None:
    spec = [(1, 0)] + [(1, n) for n in range(1, 12)]
    drop = outside_policy(_versions("m", spec), RetentionPolicy(keep_major=1, keep_micro=2))
    assert [v.micro for v in drop] == list(range(1, 10))  # v1.10 and v1.11 are the newest, not v1.9


def _backup(name: str, height: int) -> BackupRecord:
    file = BackupFile("weights", f"{name}.pth", f"memory://b/{name}.pth", 1, "0" * 64, "0" * 64)
    return BackupRecord(height, "2025-01-01T00:00:00.000000Z", name, "memory://b", (file,))


def test_plan_sorts_versions_into_prune_unbacked_protected_pruned() -> None:
    versions = _versions("m", [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)])
    state = LifecycleState()
    state.backups["m-v1.0"] = [_backup("m-v1.0", 10)]
    state.backups["m-v2.0"] = [_backup("m-v2.0", 11)]
    state.pruned["m-v2.0"] = PruneRecord(12, "t", "m-v2.0", "memory://b", 11, ("m-v2.0.pth",))
    state.aliases.append(AliasEvent(13, "t", "m", "current", "m-v3.0", None, "promote"))
    result = plan(versions, state, lambda _m: RetentionPolicy(keep_major=1, keep_micro=0))
    assert [i.version for i in result.prune] == ["m-v1.0"]
    assert result.unbacked == ("m-v4.0",)
    assert result.protected == ("m-v3.0",)
    assert (result.kept, result.already_pruned) == (1, 1)


# --- aliases -------------------------------------------------------------------------------------


def _event(version: str, action: str, t: str) -> AliasEvent:
    return AliasEvent(0, t, "m", "current", version, None, action)


def test_alias_stack_and_holder_at() -> None:
    events = [
        _event("a", "promote", "2025-01-01T00:00:00.000000Z"),
        _event("b", "promote", "2025-01-02T00:00:00.000000Z"),
        _event("c", "promote", "2025-01-03T00:00:00.000000Z"),
        _event("b", "rollback", "2025-01-04T00:00:00.000000Z"),
    ]
    assert stack(events) == ["a", "b"]
    assert stack([*events, _event("a", "rollback", "2025-01-05T00:00:00.000000Z")]) == ["a"]
    assert holder_at(events, "2024-12-31T00:00:00.000000Z") is None
    held = holder_at(events, "2025-01-02T12:00:00.000000Z")
    assert held is not None and held.version == "b"
    now = holder_at(events, None)
    assert now is not None and now.version == "b" and now.action == "rollback"


@pytest.mark.parametrize("alias", ["", "Current", "a b", "-x", "x" * 65, "prod/eu"])
def test_bad_alias_names(alias: str) -> None:
    with pytest.raises(InputError):
        check_alias(alias)
