"""Hostile input: fuzzed JSON, names, paths and CLI arguments; pickles, symlinks, huge files, full disks,
read-only databases and dropped connections. Never a traceback; bad input exits 2 with one line, the
environment exits 3, and the ledger is unchanged (or, after a commit, complete and resumable).
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import string
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.errors import one_line
from cli.main import app
from ledger.api import Ledger
from ledger.audit import FilesMode
from ledger.errors import InputError, StorageError
from ledger.fsutil import relative_inside
from ledger.metadata import validate
from ledger.strictjson import load_object
from ledger.tensors import UnsafePickleError, summarise_pth
from ledger.versions import VersionId, VersionName, check_slug
from tests.conftest import Workspace, open_ledger, seed_metadata

NAME = "oneseek-7b-zero-v1.0"


def _one_printable_line(exc: InputError) -> None:
    """What the CLI prints for ``exc``: one line, nothing a terminal would interpret."""
    shown = one_line(exc)
    assert shown and shown.isprintable(), shown


def examples(n: int) -> settings:
    """Hypothesis settings: ``n`` examples, no deadline (2 busy cores), fixtures reused across examples."""
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


# --- library level: only typed input errors, whatever the bytes -----------------------------------


@examples(1500)
@given(st.binary(max_size=300))
def test_json_bytes_only_input_errors(data: bytes) -> None:
    try:
        assert isinstance(load_object(data, what="x.json"), dict)
    except InputError as exc:
        _one_printable_line(exc)


@examples(800)
@given(JSON, st.integers(0, 40), st.text(alphabet='{}[]:,"\\ \x00\ud800eE+-.0123', max_size=4))
def test_json_text_mutations_only_input_errors(value: Any, where: int, junk: str) -> None:
    text = json.dumps(value)
    where = min(where, len(text))
    data = (text[:where] + junk + text[where:]).encode("utf-8", "surrogatepass")
    try:
        load_object(data, what="x.json")
    except InputError as exc:
        _one_printable_line(exc)


FIELDS = [
    (),
    ("version",),
    ("model_name",),
    ("timestamp",),
    ("base_models",),
    ("training_config",),
    ("training_config", "epochs"),
    ("metrics",),
    ("metrics", "bias_score"),
    ("provenance",),
    ("provenance", "training_data_hash"),
    ("provenance", "ledger_block_id"),
]


@examples(1000)
@given(st.sampled_from(FIELDS), JSON, st.booleans())
def test_metadata_fields_only_input_errors(field: tuple[str, ...], value: Any, delete: bool) -> None:
    meta: Any = seed_metadata(NAME)
    if field:
        parent = meta
        for key in field[:-1]:
            parent = parent[key]
        if delete:
            del parent[field[-1]]
        else:
            parent[field[-1]] = value
    elif isinstance(value, dict):
        meta.update(value)
    try:
        validate(meta, expected=VersionName.from_filename(f"{NAME}.json")[0])
    except InputError as exc:
        _one_printable_line(exc)


@examples(1000)
@given(st.text(max_size=60) | st.sampled_from(["v1.0", "1.0", "v01.0", "v1.-1", "v１.0", "a-v1.0.pth", "-v1.0.json"]))
def test_names_and_versions_only_naming_errors(text: str) -> None:
    for parse in (VersionId.parse, VersionName.from_filename, check_slug):
        try:
            parse(text)
        except InputError as exc:
            _one_printable_line(exc)


PATH_PARTS = st.lists(
    st.sampled_from(["..", ".", "", "a", "models", "x.pth", "\x00", "é", "\udcff", "/", "//", "link"])
    | st.text(max_size=6),
    min_size=1,
    max_size=5,
)


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("paths")
    (root / "models").mkdir()
    (root / "models" / "a").mkdir()
    (root / "models" / "link").symlink_to(root)
    return root


@examples(500)
@given(PATH_PARTS)
def test_paths_only_input_errors(fuzz_root: Path, parts: list[str]) -> None:
    models = fuzz_root / "models"
    path = Path(models, *parts)
    try:
        relative = relative_inside(models, path)
    except InputError as exc:
        _one_printable_line(exc)
        return
    assert ".." not in relative.split("/") and not relative.startswith("/")
    assert (models / relative).resolve().is_relative_to(models.resolve())


# --- ledger level: a failed append leaves the ledger exactly as it was -----------------------------


@pytest.fixture
def sqlite_ws(tmp_path: Path) -> Workspace:
    from ledger.signing import SigningKey, write_key_file

    models, adapters = tmp_path / "models", tmp_path / "lora_adapters"
    models.mkdir()
    adapters.mkdir()
    write_key_file(tmp_path / "key.pem", SigningKey.generate(), None)
    ws = Workspace(tmp_path, models, adapters, tmp_path / "key.pem", f"sqlite:///{tmp_path / 'ledger.db'}")
    Ledger.create(ws.db_url, models_dir=models, key=ws.key, adapters_dir=adapters)
    return ws


@examples(200)
@given(st.sampled_from(FIELDS[1:]), JSON)
def test_hostile_metadata_append_leaves_ledger_unchanged(
    sqlite_ws: Workspace, field: tuple[str, ...], value: Any
) -> None:
    ledger = open_ledger(sqlite_ws)
    head = ledger.head()
    meta: Any = seed_metadata("oneseek-7b-zero-v1.0")
    parent = meta
    for key in field[:-1]:
        parent = parent[key]
    parent[field[-1]] = value
    weights = sqlite_ws.write_version("oneseek-7b-zero-v1.0", meta=meta, content=b"w" * 64)
    try:
        ledger.append(weights)
    except InputError:
        assert ledger.head() == head
    ledger.store.engine.dispose()


COMMANDS = [["append"], ["show"], ["log"], ["audit"], ["keys", "show"], ["db", "current"], ["db", "roles"], []]
ARG = st.sampled_from(
    ["--limit", "--files", "--metadata", "--stage", "--question", "--adapter", "--owner", "--app"]
) | st.text(alphabet=string.printable + "é\u202e", max_size=12)


@examples(150)
@given(st.sampled_from(COMMANDS), st.lists(ARG, max_size=4))
def test_cli_arguments_never_traceback(sqlite_ws: Workspace, command: list[str], args: list[str]) -> None:
    env = sqlite_ws.env()
    before = open_ledger(sqlite_ws, signing=False).head()
    result = CliRunner().invoke(app, [*command, *args], env=env, catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output + result.stderr
    assert result.exit_code in (0, 2), (command, args, result.exit_code, result.stderr)
    shown_help = "Usage" in result.output and not result.stderr.strip()  # a group called without a command
    if result.exit_code == 2 and not shown_help:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ledger: error: "), result.stderr
    assert open_ledger(sqlite_ws, signing=False).head() == before


# --- real subprocess runs: the named attacks ---------------------------------------------------------


def _refused(ws: Workspace, *args: str, code: int = 2, text: str = "", real: bool = False) -> None:
    """Run the CLI (in-process, or as a real subprocess) and check the refusal and the unchanged head."""
    head = open_ledger(ws, signing=False).head()
    if real:
        completed = ws.cli(*args)
        returncode, stderr = completed.returncode, completed.stderr
    else:
        result = CliRunner().invoke(app, list(args), env=ws.env())
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        returncode, stderr = result.exit_code, result.stderr
    assert returncode == code, (returncode, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ledger: error: ") and "Traceback" not in stderr, lines
    assert text in lines[0], lines[0]
    assert open_ledger(ws, signing=False).head() == head


class Boom:
    """A pickle that would create a marker file if anything ever unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _evil_pth(path: Path, marker: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": Boom(marker)}))
        archive.writestr("archive/version", "3\n")


def test_pickle_that_would_run_code_is_never_executed(sqlite_ws: Workspace) -> None:
    marker = sqlite_ws.root / "pwned"
    weights = sqlite_ws.write_version(NAME)
    _evil_pth(weights, marker)
    raw = sqlite_ws.write_version("oneseek-7b-zero-v1.1")
    raw.write_bytes(pickle.dumps(Boom(marker)))  # a legacy (non-zip) pickle file
    for path in (weights, raw):
        assert sqlite_ws.cli("append", str(path)).returncode == 0
    ledger = open_ledger(sqlite_ws, signing=False)
    for height in (1, 2):
        recorded = ledger.block(height).data()["weights"]
        assert recorded["tensors"] is None and recorded["not_inspected"]
    assert sqlite_ws.cli("audit", "--files", "full").returncode == 0
    with pytest.raises(UnsafePickleError, match="would import"):
        summarise_pth(weights)
    assert not marker.exists()


def test_paths_escaping_or_through_symlinks_refused(sqlite_ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    real = outside / f"{NAME}.pth"
    real.write_bytes(os.urandom(256))
    (outside / f"{NAME}.json").write_text(json.dumps(seed_metadata(NAME)))
    (sqlite_ws.models / f"{NAME}.pth").symlink_to(real)
    (sqlite_ws.models / f"{NAME}.json").write_text(json.dumps(seed_metadata(NAME)))
    _refused(sqlite_ws, "append", str(sqlite_ws.models / f"{NAME}.pth"), text="symbolic link", real=True)
    _refused(sqlite_ws, "append", str(sqlite_ws.models / ".." / "outside" / f"{NAME}.pth"), text="'..'")
    _refused(sqlite_ws, "append", str(real), text="outside")
    sub = sqlite_ws.models / "sub"
    sub.symlink_to(outside)
    _refused(sqlite_ws, "append", str(sub / f"{NAME}.pth"), text="symbolic link")


def test_adapter_symlinks_refused(sqlite_ws: Workspace, tmp_path: Path) -> None:
    sqlite_ws.write_version(NAME)
    target = tmp_path / "adapter-elsewhere"
    target.mkdir()
    (target / "adapter_model.bin").write_bytes(b"a" * 100)
    (sqlite_ws.adapters / NAME).symlink_to(target)
    _refused(sqlite_ws, "append", str(sqlite_ws.models / f"{NAME}.pth"), text="symbolic link")
    (sqlite_ws.adapters / NAME).unlink()
    inside = sqlite_ws.adapters / NAME
    inside.mkdir()
    (inside / "adapter_model.bin").symlink_to(Path("/etc/passwd"))
    _refused(sqlite_ws, "append", str(sqlite_ws.models / f"{NAME}.pth"), text="symbolic link")
    (inside / "adapter_model.bin").unlink()
    _refused(
        sqlite_ws, "append", str(sqlite_ws.models / f"{NAME}.pth"), "--adapter", str(sqlite_ws.adapters / ".." / "x")
    )


def test_oversized_and_ambiguous_json_refused(sqlite_ws: Workspace) -> None:
    weights = sqlite_ws.write_version(NAME)
    meta = seed_metadata(NAME, notes="x" * (2 << 20))
    (sqlite_ws.models / f"{NAME}.json").write_text(json.dumps(meta))
    _refused(sqlite_ws, "append", str(weights), text="larger than the limit", real=True)
    (sqlite_ws.models / f"{NAME}.json").write_text('{"version": "1.0", "version": "1.0"}')
    _refused(sqlite_ws, "append", str(weights), text="duplicate key")
    (sqlite_ws.models / f"{NAME}.json").write_text("[" * 100_000)
    _refused(sqlite_ws, "append", str(weights))


def test_non_utf8_file_names(sqlite_ws: Workspace) -> None:
    raw_name = os.fsencode(sqlite_ws.models) + b"/oneseek-7b-zero-v1.0\xff.pth"
    with open(raw_name, "wb") as handle:
        handle.write(b"w" * 100)
    _refused(sqlite_ws, "append", os.fsdecode(raw_name), real=True)
    # the audit names it (escaped) instead of crashing
    result = sqlite_ws.cli("--json", "audit")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert [f["class"] for f in findings] == ["unledgered"] and "\\udcff" in findings[0]["path"]


# --- the environment: full disk, read-only database, dropped connection ----------------------------


def test_full_disk_during_metadata_write_back_then_resume(
    sqlite_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = sqlite_ws.write_version(NAME)
    meta_path = sqlite_ws.models / f"{NAME}.json"
    original = meta_path.read_bytes()
    real_write = os.write

    def full(fd: int, data: Any) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    result = CliRunner().invoke(app, ["append", str(weights)], env=sqlite_ws.env())
    monkeypatch.setattr(os, "write", real_write)
    assert result.exit_code == 3 and result.stderr.strip().count("\n") == 0
    assert "no space left on device" in result.stderr
    assert meta_path.read_bytes() == original  # untouched, and no temporary file left behind
    assert not [p for p in sqlite_ws.models.iterdir() if p.name.endswith(".tmp")]
    ledger = open_ledger(sqlite_ws, signing=False)
    assert ledger.audit(files=FilesMode.FULL).clean  # the block is complete; only the reference is missing
    rerun = CliRunner().invoke(app, ["append", str(weights)], env=sqlite_ws.env())
    assert rerun.exit_code == 0, rerun.stderr
    assert json.loads(meta_path.read_text())["provenance"]["ledger_block_id"] == "block-1"
    assert ledger.head().height == 1


@pytest.fixture
def sqlite_full() -> Iterator[None]:
    """Every new SQLite connection may not grow its database: SQLITE_FULL, as on a full disk."""

    def cap(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        pages = cursor.execute("PRAGMA page_count").fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {pages}")
        cursor.close()

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", cap)
    yield
    sqlalchemy.event.remove(sqlalchemy.engine.Engine, "connect", cap)


def test_full_sqlite_database(sqlite_ws: Workspace, sqlite_full: None) -> None:
    ledger = open_ledger(sqlite_ws)
    head = ledger.head()
    # the metadata needs overflow pages, which the capped database cannot add
    weights = sqlite_ws.write_version(NAME, content=os.urandom(256), meta=seed_metadata(NAME, notes="n" * 30_000))
    result = CliRunner().invoke(app, ["append", str(weights)], env=sqlite_ws.env())
    assert result.exit_code == 3, (result.exit_code, result.stderr, result.exception)
    assert "full" in result.stderr and result.stderr.strip().count("\n") == 0
    assert ledger.head() == head
    with pytest.raises(StorageError):
        for n in range(50):  # metadata-only blocks too, until the page cap bites
            ledger.append_event("note", {"n": n, "pad": "x" * 2000})
    assert ledger.audit(files=FilesMode.NONE).clean


def test_read_only_databases(sqlite_ws: Workspace) -> None:
    path = sqlite_ws.db_url.removeprefix("sqlite:///")
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    assert sqlite_ws.cli("--db", read_only, "audit").returncode == 0  # reading still works
    weights = sqlite_ws.write_version(NAME)
    _refused(sqlite_ws, "--db", read_only, "append", str(weights), code=3, text="readonly", real=True)


@pytest.mark.postgres
def test_read_only_postgres(pg_url: str, tmp_path: Path) -> None:
    from ledger.signing import SigningKey, write_key_file

    models = tmp_path / "models"
    models.mkdir()
    write_key_file(tmp_path / "key.pem", SigningKey.generate(), None)
    ws = Workspace(tmp_path, models, tmp_path / "lora_adapters", tmp_path / "key.pem", pg_url)
    Ledger.create(pg_url, models_dir=models, key=ws.key)
    weights = ws.write_version(NAME)
    read_only = f"{pg_url}?options=-c%20default_transaction_read_only%3Don"
    _refused(ws, "--db", read_only, "append", str(weights), code=3, text="read-only")


@pytest.mark.postgres
def test_postgres_connection_dropped_mid_append(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger.signing import SigningKey
    from ledger.store import Store

    ledger = Ledger.create(pg_url, models_dir=tmp_path, key=SigningKey.generate())
    admin = sqlalchemy.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    real_insert = Store.insert_block
    killed: list[int] = []

    def insert_then_lose_connection(connection: Any, block: Any) -> None:
        real_insert(connection, block)
        if not killed:  # first attempt: the server kills this backend while it holds the advisory lock
            pid = connection.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar_one()
            with admin.connect() as other:
                held = other.execute(
                    sqlalchemy.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = :p"),
                    {"p": pid},
                ).scalar_one()
                assert held == 1
                other.execute(sqlalchemy.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            killed.append(pid)

    monkeypatch.setattr(Store, "insert_block", staticmethod(insert_then_lose_connection))
    block = ledger.append_event("note", {"survives": True})
    assert killed and block.height == 1
    monkeypatch.setattr(Store, "insert_block", staticmethod(real_insert))
    assert [b.height for b in ledger.blocks()] == [0, 1]  # rolled back once, committed once
    assert ledger.append_event("note", {"after": True}).height == 2  # the lock was released
    report = ledger.audit(files=FilesMode.NONE)
    assert report.clean and report.head_height == 2
    admin.dispose()


def test_every_error_is_one_line_for_unreachable_or_malformed_databases(sqlite_ws: Workspace) -> None:
    for url, code in (
        ("postgresql://nobody@127.0.0.1:1/x", 3),
        ("mysql://x/y", 2),
        ("not a url", 2),
        ("sqlite://", 2),
    ):
        result = CliRunner().invoke(app, ["--db", url, "log"], env=sqlite_ws.env())
        assert result.exit_code == code, (url, result.stderr, result.exception)
        assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
