"""Hostile input: fuzzed JSON, names, paths and CLI arguments; pickles, symlinks, huge files, full disks,
read-only databases and dropped connections. Never a traceback; bad input exits 2 with one line, the
environment exits 3, and the ledger is unchanged (or, after a commit, complete and resumable).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import pickle
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
import typer.main
import typer.testing
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
from ledger.strictjson import load_object, read_object
from ledger.tensors import UnsafePickleError, summarise_pth
from ledger.versions import VersionId, VersionName, check_slug
from tests.conftest import Workspace, open_ledger, seed_metadata

NAME = "oneseek-7b-zero-v1.0"

#: Examples per property test. Most go through the CLI (``ledger append``, ``show``, ...) and assert what a user
#: meets: no traceback, exit 2 with one line on stderr, the ledger's head and the files unchanged. The library
#: tests below them are the cheap, wide net. Each test fails unless its share really ran.
EXAMPLES = {
    "cli-metadata-bytes": 1000,
    "cli-metadata-text": 700,
    "cli-metadata-fields": 1000,
    "cli-file-names": 600,
    "cli-version-refs": 600,
    "cli-arguments": 700,
    "json-bytes": 300,
    "json-text": 200,
    "metadata-fields": 200,
    "names": 300,
    "paths": 300,
}


def test_enough_examples_and_most_through_the_cli() -> None:
    cli = sum(n for name, n in EXAMPLES.items() if name.startswith("cli-"))
    assert sum(EXAMPLES.values()) >= 5000
    assert cli >= 0.75 * sum(EXAMPLES.values())


def run_examples(name: str, strategy: st.SearchStrategy[Any], check: Callable[[Any], object]) -> None:
    """Run ``check`` on ``EXAMPLES[name]`` generated values (no deadline: 2 busy cores) and count them."""
    ran = 0

    @settings(max_examples=EXAMPLES[name], deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(strategy)
    def property_holds(value: Any) -> None:
        nonlocal ran
        ran += 1
        check(value)

    property_holds()
    assert ran >= EXAMPLES[name], f"{name}: only {ran} examples ran"


def _one_printable_line(exc: InputError) -> None:
    """What the CLI prints for ``exc``: one line, nothing a terminal would interpret."""
    shown = one_line(exc)
    assert shown and shown.isprintable(), shown


JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
JUNK = st.text(alphabet='{}[]:,"\\ \x00\ud800eE+-.0123', max_size=4)
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
#: Arguments come from argv: never a NUL, and only the lone surrogates that undecodable bytes become.
ARGV_TEXT = st.text(st.characters(exclude_characters="\x00"), max_size=40)
ARGV_PIECE = st.sampled_from(["..", ".", "/", "\udcff", "\u202e", "\x1b[31m", "-", "--", "v1.0", "-v1.0", ".pth"])
ARGV = st.lists(ARGV_PIECE | ARGV_TEXT, min_size=1, max_size=4).map("".join)


def _mutated_json_text(value: Any, where: int, junk: str) -> bytes:
    text = json.dumps(value)
    where = min(where, len(text))
    return (text[:where] + junk + text[where:]).encode("utf-8", "surrogatepass")


def _mutated_metadata(field: tuple[str, ...], value: Any, delete: bool) -> Any:
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
    return meta


# --- through the CLI: exit 2, one line, nothing changed ----------------------------------------------


@dataclass
class Probe:
    """A SQLite ledger holding ``NAME`` (so a valid append of it is refused as a duplicate), driven in-process."""

    ws: Workspace
    ledger: Ledger
    env: dict[str, str]

    def snapshot(self) -> list[tuple[str, bytes]]:
        """Every file under the models and adapters directories, with its bytes."""
        roots = (self.ws.models, self.ws.adapters)
        return sorted((str(p), p.read_bytes()) for root in roots for p in root.rglob("*") if p.is_file())

    def run(self, args: list[str], *, ok: bool | None = False) -> str:
        """Run ``ledger ARGS``: exit 0 when ``ok``, exit 2 with one printable line when not (either when None);
        no traceback, and the head and the files are unchanged. Returns the error line ("" on success)."""
        head, files = self.ledger.head(), self.snapshot()
        result = CliRunner().invoke(app, args, env=self.env)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
        assert "Traceback" not in result.output + result.stderr
        allowed = (0, 2) if ok is None else (0,) if ok else (2,)
        assert result.exit_code in allowed, (args, result.exit_code, result.stderr)
        line = ""
        if result.exit_code == 2 and not ("Usage" in result.output and not result.stderr.strip()):  # bare group help
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("ledger: error: "), (args, result.stderr)
            line = lines[0]
            assert line.isprintable(), line
        assert self.ledger.head() == head
        assert self.snapshot() == files
        return line

    def other_weights(self) -> None:
        """Put other bytes under ``NAME``'s weight file: from now on no append of ``NAME`` is the identical
        version, so even valid metadata is refused (as a duplicate) and nothing may change."""
        (self.ws.models / f"{NAME}.pth").write_bytes(b"w" * 64)

    def append_with_metadata(self, data: bytes) -> str:
        """``ledger append`` of ``NAME`` whose metadata file holds ``data``."""
        (self.ws.models / f"{NAME}.json").write_bytes(data)
        return self.run(["append", str(self.ws.models / f"{NAME}.pth")])


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    from ledger.signing import SigningKey, write_key_file

    # building the click command from the Typer app is most of an in-process run: build it once
    monkeypatch.setattr(typer.testing, "_get_command", functools.cache(typer.main.get_command))
    models, adapters = tmp_path / "models", tmp_path / "lora_adapters"
    models.mkdir()
    adapters.mkdir()
    write_key_file(tmp_path / "key.pem", SigningKey.generate(), None)
    ws = Workspace(tmp_path, models, adapters, tmp_path / "key.pem", f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger.create(ws.db_url, models_dir=models, key=ws.key, adapters_dir=adapters)
    ledger.append(ws.write_version(NAME))
    yield Probe(ws, ledger, ws.env())
    ledger.store.engine.dispose()


def test_cli_metadata_bytes(probe: Probe) -> None:
    probe.other_weights()
    run_examples("cli-metadata-bytes", st.binary(max_size=300), probe.append_with_metadata)


def test_cli_metadata_text_mutations(probe: Probe) -> None:
    probe.other_weights()

    def check(case: tuple[Any, int, str]) -> None:
        probe.append_with_metadata(_mutated_json_text(*case))

    run_examples("cli-metadata-text", st.tuples(JSON, st.integers(0, 40), JUNK), check)


def test_cli_metadata_fields(probe: Probe) -> None:
    """Valid or not, metadata for ``NAME`` is refused: by the validator (its message), else as a duplicate."""
    probe.other_weights()

    def check(case: tuple[tuple[str, ...], Any, bool]) -> None:
        line = probe.append_with_metadata(json.dumps(_mutated_metadata(*case)).encode())
        try:  # the library's verdict on the same file
            validate(read_object(probe.ws.models / f"{NAME}.json"), expected=VersionName.parse(NAME))
        except InputError as exc:
            assert one_line(exc) in line, (line, one_line(exc))
            return
        assert "already exists; expected v1.1 (micro) or v2.0 (major)" in line or "training_data_hash" in line, line

    run_examples("cli-metadata-fields", st.tuples(st.sampled_from(FIELDS), JSON, st.booleans()), check)


FILE_NAMES = ARGV | st.from_regex(
    r"[a-z0-9._-]{0,12}-v[0-9]{1,10}\.[0-9]{1,10}(\.pth|\.safetensors|\.json|\.bin)?", fullmatch=True
)


def test_cli_file_names(probe: Probe) -> None:
    """Weight, metadata and adapter names: created where the file system allows (never over an existing file)."""
    probe.other_weights()
    where = st.sampled_from([[], ["--metadata"], ["--adapter"]])

    def check(case: tuple[list[str], str]) -> None:
        option, name = case
        path = probe.ws.models / name
        with contextlib.suppress(OSError, ValueError):
            if "/" not in name and not path.exists():
                path.write_bytes(b"w" * 16)
        weights = [str(probe.ws.models / f"{NAME}.pth")] if option else []
        probe.run(["append", *weights, *option, str(path)] if option else ["append", str(path)])
        with contextlib.suppress(OSError, ValueError):
            if path.is_file() and path.read_bytes() == b"w" * 16:
                path.unlink()

    run_examples("cli-file-names", st.tuples(where, FILE_NAMES), check)


VERSION_REFS = ARGV | st.sampled_from(["0", "1", "2", "v1.0", "1.0", "v01.0", "v1.-1", "v１.0", NAME, "x-v1.0", "v1.1"])


def test_cli_version_refs(probe: Probe) -> None:
    """``show REF`` and ``show --model M REF``: shown when the library finds it, else refused (exit 2)."""

    def check(case: tuple[str, str | None]) -> None:
        ref, model = case
        try:
            probe.ledger.find(ref, model=model)
            found = True
        except InputError:
            found = False
        probe.run(["show", "--", ref] if model is None else ["show", f"--model={model}", "--", ref], ok=found)

    models = st.none() | st.just("oneseek-7b-zero") | st.just("OneSeek-7B-Zero") | VERSION_REFS
    run_examples("cli-version-refs", st.tuples(VERSION_REFS, models), check)


COMMANDS = [
    ["append"],
    ["show"],
    ["log"],
    ["audit"],
    ["versions"],
    ["keys", "show"],
    ["db", "current"],
    ["db", "roles"],
]
OPTIONS = st.sampled_from(
    ["--limit", "--files", "--metadata", "--stage", "--question", "--adapter", "--data", "--model", "--owner", "--app"]
)


def test_cli_arguments(probe: Probe) -> None:
    """Any command with hostile options and values: accepted (``log --limit 3``, ``audit``) or refused with one
    line; never a traceback, never a change (the ledger is clean, so even ``audit`` exits 0)."""

    def check(case: tuple[list[str], list[str]]) -> None:
        command, args = case
        probe.run([*command, *args], ok=None)

    run_examples("cli-arguments", st.tuples(st.sampled_from(COMMANDS), st.lists(OPTIONS | ARGV, max_size=4)), check)


# --- library level: only typed input errors, whatever the bytes -----------------------------------


def test_json_bytes_only_input_errors() -> None:
    def check(data: bytes) -> None:
        try:
            assert isinstance(load_object(data, what="x.json"), dict)
        except InputError as exc:
            _one_printable_line(exc)

    run_examples("json-bytes", st.binary(max_size=300), check)


def test_json_text_mutations_only_input_errors() -> None:
    def check(case: tuple[Any, int, str]) -> None:
        try:
            load_object(_mutated_json_text(*case), what="x.json")
        except InputError as exc:
            _one_printable_line(exc)

    run_examples("json-text", st.tuples(JSON, st.integers(0, 40), JUNK), check)


def test_metadata_fields_only_input_errors() -> None:
    def check(case: tuple[tuple[str, ...], Any, bool]) -> None:
        try:
            validate(_mutated_metadata(*case), expected=VersionName.parse(NAME))
        except InputError as exc:
            _one_printable_line(exc)

    run_examples("metadata-fields", st.tuples(st.sampled_from(FIELDS), JSON, st.booleans()), check)


def test_names_and_versions_only_naming_errors() -> None:
    def check(text: str) -> None:
        for parse in (VersionId.parse, VersionName.from_filename, check_slug):
            try:
                parse(text)
            except InputError as exc:
                _one_printable_line(exc)

    extra = st.sampled_from(["v1.0", "1.0", "v01.0", "v1.-1", "v１.0", "a-v1.0.pth", "-v1.0.json"])
    run_examples("names", st.text(max_size=60) | extra, check)


PATH_PARTS = st.lists(
    st.sampled_from(["..", ".", "", "a", "models", "x.pth", "\x00", "é", "\udcff", "/", "//", "link"])
    | st.text(max_size=6),
    min_size=1,
    max_size=5,
)


def test_paths_only_input_errors(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "a").mkdir(parents=True)
    (models / "link").symlink_to(tmp_path)

    def check(parts: list[str]) -> None:
        path = Path(models, *parts)
        try:
            relative = relative_inside(models, path)
        except InputError as exc:
            _one_printable_line(exc)
            return
        assert ".." not in relative.split("/") and not relative.startswith("/")
        assert (models / relative).resolve().is_relative_to(models.resolve())

    run_examples("paths", PATH_PARTS, check)


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
    real_insert = Store.insert_appended
    killed: list[int] = []

    def lose_connection_then_insert(connection: Any, block: Any, nodes: Any, version: Any = None, **kw: Any) -> bool:
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
        return real_insert(connection, block, nodes, version, **kw)  # fails on the first attempt: connection gone

    monkeypatch.setattr(Store, "insert_appended", staticmethod(lose_connection_then_insert))
    block = ledger.append_event("note", {"survives": True})
    assert killed and block.height == 1
    monkeypatch.setattr(Store, "insert_appended", staticmethod(real_insert))
    assert [b.height for b in ledger.blocks()] == [0, 1]  # rolled back once, committed once
    assert ledger.append_event("note", {"after": True}).height == 2  # the lock was released
    report = ledger.audit(files=FilesMode.NONE)
    assert report.clean and report.head_height == 2
    admin.dispose()


@pytest.mark.postgres
def test_postgres_write_connection_dropped_between_appends(pg_url: str, tmp_path: Path) -> None:
    """The connection a ledger keeps for writing is killed while idle (a server restart, an idle timeout): the next
    append (the guarded one, which trusts its last head) finds it gone, retries on a new connection, and lands."""
    from ledger.signing import SigningKey

    ledger = Ledger.create(pg_url, models_dir=tmp_path, key=SigningKey.generate())
    ledger.append_event("note", {"i": 1})
    writer = ledger.store._writer()
    pid = writer.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    writer.rollback()
    admin = sqlalchemy.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as other:
        assert other.execute(sqlalchemy.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    admin.dispose()
    assert ledger.append_event("note", {"i": 2}).height == 2
    assert ledger.store._writer() is not writer
    assert [b.height for b in ledger.blocks()] == [0, 1, 2]
    assert ledger.audit(files=FilesMode.NONE).clean


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
