"""The core CLI contract as a user meets it: real subprocesses, exit codes, one-line errors, unchanged ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.signing import SigningKey, write_key_file
from tests.conftest import Workspace, open_ledger, seed_metadata


def head_hash(ws: Workspace) -> str:
    """The current head, to prove a refused command changed nothing."""
    return str(open_ledger(ws, signing=False).head().block_hash)


def assert_refused(result: object, code: int) -> None:
    """Exit ``code``, exactly one line on stderr, no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("ledger: error: ")
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]


def test_quickstart_flow(workspace: Workspace) -> None:
    workspace.cli("init", "--origin", "test.example/ledger", check=True)
    workspace.write_version("oneseek-7b-zero-v1.0")
    out = workspace.cli("--json", "append", str(workspace.models / "oneseek-7b-zero-v1.0.pth"), check=True)
    block = json.loads(out.stdout)
    assert block["height"] == 1 and block["kind"] == "version"
    audit = workspace.cli("--json", "audit", "--files", "full", check=True)
    report = json.loads(audit.stdout)
    assert report["clean"] is True and report["blocks_checked"] == 2
    log = workspace.cli("log", "--limit", "5", check=True)
    assert "oneseek-7b-zero-v1.0" in log.stdout and "genesis" in log.stdout
    show = workspace.cli("show", "v1.0", check=True)
    assert "oneseek-7b-zero" in show.stdout
    assert workspace.cli("db", "current", check=True).stdout.startswith("database revision 0001")
    keys = workspace.cli("--json", "keys", "show", check=True)
    assert json.loads(keys.stdout)["key_id"] == block["key_id"]


def test_audit_exit_code_on_findings(ledger_ws: Workspace) -> None:
    weights = ledger_ws.write_version("oneseek-7b-zero-v1.0")
    ledger_ws.cli("append", str(weights), check=True)
    weights.unlink()
    result = ledger_ws.cli("audit")
    assert result.returncode == 1
    assert "file-missing" in result.stdout
    assert ledger_ws.cli("audit", "--files", "none").returncode == 0


def _write_meta_bytes(ws: Workspace, data: bytes) -> list[str]:
    ws.write_version("oneseek-7b-zero-v1.0")
    (ws.models / "oneseek-7b-zero-v1.0.json").write_bytes(data)
    return ["append", str(ws.models / "oneseek-7b-zero-v1.0.pth")]


@pytest.mark.parametrize(
    "case",
    ["missing file", "directory", "empty file", "invalid json", "not an object", "duplicate keys", "outside models"],
)
def test_bad_input_exit_2_unchanged(ledger_ws: Workspace, case: str) -> None:
    before = head_hash(ledger_ws)
    weights = ledger_ws.models / "oneseek-7b-zero-v1.0.pth"
    if case == "missing file":
        args = ["append", str(weights)]
    elif case == "directory":
        weights.mkdir()
        args = ["append", str(weights)]
    elif case == "empty file":
        ledger_ws.write_version("oneseek-7b-zero-v1.0", content=b"")
        args = ["append", str(weights)]
    elif case == "invalid json":
        args = _write_meta_bytes(ledger_ws, b'{"version": "1.0",')
    elif case == "not an object":
        args = _write_meta_bytes(ledger_ws, b"[1, 2, 3]")
    elif case == "duplicate keys":
        args = _write_meta_bytes(ledger_ws, b'{"version": "1.0", "version": "1.0"}')
    else:
        outside = ledger_ws.root / "oneseek-7b-zero-v1.0.pth"
        outside.write_bytes(b"x")
        args = ["append", str(outside)]
    files_before = sorted((p.name, p.read_bytes() if p.is_file() else b"") for p in ledger_ws.models.iterdir())
    assert_refused(ledger_ws.cli(*args), 2)
    assert head_hash(ledger_ws) == before
    assert sorted((p.name, p.read_bytes() if p.is_file() else b"") for p in ledger_ws.models.iterdir()) == files_before


def test_unreadable_file(ledger_ws: Workspace) -> None:
    """A weights path that cannot be opened as a file (a FIFO stands in: root reads mode-000 files)."""
    before = head_hash(ledger_ws)
    ledger_ws.write_version("oneseek-7b-zero-v1.0")
    weights = ledger_ws.models / "oneseek-7b-zero-v1.0.pth"
    weights.unlink()
    os.mkfifo(weights)
    assert_refused(ledger_ws.cli("append", str(weights)), 2)
    assert head_hash(ledger_ws) == before


def test_malformed_database_url(workspace: Workspace) -> None:
    assert_refused(workspace.cli("--db", "not a url", "log"), 2)
    assert_refused(workspace.cli("--db", "mysql://x@localhost/db", "log"), 2)


def test_unreachable_database(workspace: Workspace) -> None:
    result = workspace.cli("--db", "postgresql://postgres@127.0.0.1:1/none", "log")
    assert_refused(result, 3)


def test_no_ledger_yet(workspace: Workspace) -> None:
    assert_refused(workspace.cli("audit"), 3)


def test_missing_key(ledger_ws: Workspace) -> None:
    before = head_hash(ledger_ws)
    ledger_ws.write_version("oneseek-7b-zero-v1.0")
    result = ledger_ws.cli(
        "append", str(ledger_ws.models / "oneseek-7b-zero-v1.0.pth"), LEDGER_KEY=str(ledger_ws.root / "nope.pem")
    )
    assert_refused(result, 3)
    assert "key file not found" in result.stderr
    assert head_hash(ledger_ws) == before


def test_group_readable_key_refused(ledger_ws: Workspace) -> None:
    ledger_ws.key.chmod(0o644)
    ledger_ws.write_version("oneseek-7b-zero-v1.0")
    result = ledger_ws.cli("append", str(ledger_ws.models / "oneseek-7b-zero-v1.0.pth"))
    assert_refused(result, 3)
    assert "chmod 600" in result.stderr


def test_encrypted_key_and_wrong_passphrase(workspace: Workspace) -> None:
    key = workspace.root / "enc.pem"
    generated = workspace.cli("keys", "generate", LEDGER_KEY=str(key), LEDGER_KEY_PASSPHRASE="correct horse")
    assert generated.returncode == 0, generated.stderr
    assert key.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED" in key.read_bytes()
    assert_refused(workspace.cli("init", LEDGER_KEY=str(key), LEDGER_KEY_PASSPHRASE="wrong"), 3)
    assert_refused(workspace.cli("init", LEDGER_KEY=str(key)), 3)
    workspace.cli("init", LEDGER_KEY=str(key), LEDGER_KEY_PASSPHRASE="correct horse", check=True)


def test_second_init_refused(ledger_ws: Workspace) -> None:
    before = head_hash(ledger_ws)
    assert_refused(ledger_ws.cli("init"), 2)
    assert head_hash(ledger_ws) == before


def test_keys_generate_refuses_overwrite(workspace: Workspace) -> None:
    before = workspace.key.read_bytes()
    assert_refused(workspace.cli("keys", "generate"), 2)
    assert workspace.key.read_bytes() == before


def test_debug_shows_traceback(workspace: Workspace) -> None:
    result = workspace.cli("--debug", "audit")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_usage_error_exit_2(workspace: Workspace) -> None:
    assert workspace.cli("audit", "--files", "sometimes").returncode == 2
    assert workspace.cli("no-such-command").returncode == 2


def test_output_is_complete_although_the_process_skips_the_interpreter_teardown(ledger_ws: Workspace) -> None:
    """The entry point ends the process with ``os._exit`` once the command is done: everything printed must still
    arrive, into a block-buffered file as through a pipe, with the command's exit code."""
    ledger = open_ledger(ledger_ws)
    for i in range(300):
        ledger.append_event("note", {"i": i, "pad": "x" * 400})
    out = ledger_ws.root / "log.json"
    with out.open("w") as sink:
        done = subprocess.run(
            [sys.executable, "-m", "cli", "--json", "log", "--limit", "1000"], env=ledger_ws.env(), stdout=sink
        )
    assert done.returncode == 0 and out.stat().st_size > 200_000
    assert [b["height"] for b in json.loads(out.read_text())] == list(range(300, -1, -1))
    piped = ledger_ws.cli("--json", "log", "--limit", "1000")
    assert piped.returncode == 0 and json.loads(piped.stdout) == json.loads(out.read_text())
    ledger_ws.models.joinpath("stray.pth").write_bytes(b"x")
    assert ledger_ws.cli("audit").returncode == 1


def test_help_does_not_import_heavy_modules(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    code = "import sys, cli.main; cli.main.app(['--help'], standalone_mode=False); " + (
        "print(','.join(m for m in ('torch','sqlalchemy','matplotlib','fsspec','weasyprint') if m in sys.modules), "
        "file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    assert result.stderr.strip() == ""


def test_audit_does_not_import_torch(ledger_ws: Workspace) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    code = "import sys; from cli.main import app; app(['audit'], standalone_mode=False); print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], env={**ledger_ws.env(), "PYTHONPATH": str(REPO)}, capture_output=True, text=True
    )
    assert result.stdout.strip().splitlines()[-1] == "False", result.stdout + result.stderr


def test_key_generated_for_library(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    write_key_file(path, SigningKey.generate(), b"pw")
    assert path.stat().st_mode & 0o777 == 0o600


def test_identical_re_append_is_a_duplicate(ledger_ws: Workspace) -> None:
    """Once the metadata carries the block's reference, appending the same version again is refused."""
    weights = ledger_ws.write_version("oneseek-7b-zero-v1.0")
    ledger_ws.cli("append", str(weights), check=True)
    before = head_hash(ledger_ws)
    files = sorted((p.name, p.read_bytes()) for p in ledger_ws.models.iterdir())
    result = ledger_ws.cli("append", str(weights))
    assert_refused(result, 2)
    assert "oneseek-7b-zero-v1.0 already exists" in result.stderr
    assert "expected v1.1 (micro) or v2.0 (major)" in result.stderr
    assert head_hash(ledger_ws) == before
    assert sorted((p.name, p.read_bytes()) for p in ledger_ws.models.iterdir()) == files


def test_re_append_after_a_crash_before_the_write_back_finishes_it(ledger_ws: Workspace) -> None:
    """Killed between the commit and the metadata write-back: re-running records nothing new and writes the
    reference; running it once more is then a duplicate."""
    weights = ledger_ws.write_version("oneseek-7b-zero-v1.0")
    meta_path = ledger_ws.models / "oneseek-7b-zero-v1.0.json"
    original = meta_path.read_bytes()
    crashed = ledger_ws.cli("append", str(weights), LEDGER_TEST_CRASH_AT="commit:done")
    assert crashed.returncode == -9
    assert meta_path.read_bytes() == original
    head = open_ledger(ledger_ws, signing=False).head()
    assert head.height == 1
    resumed = ledger_ws.cli("append", str(weights))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "oneseek-7b-zero-v1.0 already recorded at block 1; metadata reference written"
    assert head_hash(ledger_ws) == head.block_hash
    provenance = json.loads(meta_path.read_text())["provenance"]
    assert (provenance["ledger_block_id"], provenance["ledger_block_hash"]) == ("block-1", head.block_hash)
    assert_refused(ledger_ws.cli("append", str(weights)), 2)
    assert head_hash(ledger_ws) == head.block_hash


@pytest.mark.parametrize("raised", [KeyboardInterrupt, "abort"])
def test_interrupt_exits_130_with_one_line(
    ledger_ws: Workspace, monkeypatch: pytest.MonkeyPatch, raised: type[BaseException] | str
) -> None:
    """Ctrl-C inside a command (KeyboardInterrupt) or an abort (end of input at a prompt) is not 'findings'."""
    import typer
    from typer.testing import CliRunner

    from cli.main import app
    from ledger.api import Ledger

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise typer.Abort() if raised == "abort" else KeyboardInterrupt()

    before = head_hash(ledger_ws)
    monkeypatch.setattr(Ledger, "append_version", interrupted)
    weights = ledger_ws.write_version("oneseek-7b-zero-v1.0")
    result = CliRunner().invoke(app, ["append", str(weights)], env=ledger_ws.env())
    assert result.exit_code == 130, (result.exit_code, result.stderr, result.exception)
    assert result.stderr.strip().splitlines() == ["ledger: error: interrupted"]
    assert head_hash(ledger_ws) == before


def test_operating_system_error_exits_3_with_one_line(ledger_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operating-system error no command handles itself (here a failing disk under the audit) is an
    environment problem: exit 3, one line, no traceback."""
    import errno

    from typer.testing import CliRunner

    from cli.main import app
    from ledger.api import Ledger

    def failing_disk(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Ledger, "audit", failing_disk)
    result = CliRunner().invoke(app, ["audit"], env=ledger_ws.env())
    assert result.exit_code == 3, (result.exit_code, result.stderr, result.exception)
    assert result.stderr.strip().splitlines() == ["ledger: error: system error: [Errno 5] Input/output error"]


@pytest.mark.parametrize("args", [["append", "\udd00"], ["show", "\ud800x"], ["--models-dir", "\udfff", "log"]])
def test_argument_no_file_name_can_hold_is_bad_input(ledger_ws: Workspace, args: list[str]) -> None:
    """A lone surrogate (a caller passing strings, never a real POSIX argv) is exit 2 and one line, not a
    traceback from the path check of the argument parser."""
    from typer.testing import CliRunner

    from cli.main import app

    before = head_hash(ledger_ws)
    result = CliRunner().invoke(app, args, env=ledger_ws.env())
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not valid text for this system" in lines[0], lines
    assert head_hash(ledger_ws) == before


def test_unreadable_checkpoint_file_is_bad_input(ledger_ws: Workspace) -> None:
    result = ledger_ws.cli("audit", "--checkpoint", str(ledger_ws.models))  # a directory: read_bytes fails
    assert_refused(result, 2)
    assert "cannot read checkpoint file" in result.stderr and "Is a directory" in result.stderr


def test_wrong_passphrase_on_append(workspace: Workspace) -> None:
    """An encrypted key with the wrong passphrase, on an existing ledger: exit 3, nothing changed."""
    key = str(workspace.root / "enc.pem")
    workspace.cli("keys", "generate", check=True, LEDGER_KEY=key, LEDGER_KEY_PASSPHRASE="correct horse")
    workspace.cli("init", check=True, LEDGER_KEY=key, LEDGER_KEY_PASSPHRASE="correct horse")
    weights = workspace.write_version("oneseek-7b-zero-v1.0")
    before = head_hash(workspace)
    files = sorted((p.name, p.read_bytes()) for p in workspace.models.iterdir())
    result = workspace.cli("append", str(weights), LEDGER_KEY=key, LEDGER_KEY_PASSPHRASE="battery staple")
    assert_refused(result, 3)
    assert "passphrase" in result.stderr
    assert head_hash(workspace) == before
    assert sorted((p.name, p.read_bytes()) for p in workspace.models.iterdir()) == files
    workspace.cli("append", str(weights), check=True, LEDGER_KEY=key, LEDGER_KEY_PASSPHRASE="correct horse")


def _data_dir(ws: Workspace) -> Path:
    data = ws.root / "train"
    (data / "part").mkdir(parents=True)
    (data / "a.jsonl").write_text('{"q": 1}\n')
    (data / "part" / "b.jsonl").write_text('{"q": 2}\n')
    return data


def test_data_directory_matching_training_data_hash(ledger_ws: Workspace) -> None:
    from ledger.manifest import hash_directory

    data = _data_dir(ledger_ws)
    expected = f"sha256:{hash_directory(data).root}"
    meta = seed_metadata("oneseek-7b-zero-v1.0")
    meta["provenance"]["training_data_hash"] = expected
    weights = ledger_ws.write_version("oneseek-7b-zero-v1.0", meta=meta)
    block = json.loads(ledger_ws.cli("--json", "append", str(weights), "--data", str(data), check=True).stdout)
    assert json.loads(block["payload"])["training_data"] == {"computed": True, "kind": "directory", "hash": expected}
    assert ledger_ws.cli("audit", "--files", "full").returncode == 0


def test_data_directory_mismatching_training_data_hash(ledger_ws: Workspace) -> None:
    data = _data_dir(ledger_ws)
    weights = ledger_ws.write_version("oneseek-7b-zero-v1.0")  # the seed's hash: not this directory's
    before = head_hash(ledger_ws)
    result = ledger_ws.cli("append", str(weights), "--data", str(data))
    assert_refused(result, 2)
    assert "training data hash mismatch" in result.stderr
    assert head_hash(ledger_ws) == before


def test_adapter_without_weights(ledger_ws: Workspace) -> None:
    name = "oneseek-7b-zero-v1.0"
    adapter = ledger_ws.adapters / name
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "mistral-7b"}')
    (adapter / "adapter_model.safetensors").write_bytes(os.urandom(512))
    meta = ledger_ws.models / f"{name}.json"
    meta.write_text(json.dumps(seed_metadata(name)))
    block = json.loads(ledger_ws.cli("--json", "append", "--metadata", str(meta), check=True).stdout)
    payload = json.loads(block["payload"])
    assert payload["weights"] is None and payload["name"] == name
    assert payload["adapter"]["path"] == name and payload["adapter"]["base_model"] == "mistral-7b"
    assert ledger_ws.cli("audit", "--files", "full").returncode == 0
    (adapter / "adapter_model.safetensors").write_bytes(os.urandom(512))
    audit = ledger_ws.cli("--json", "audit", "--files", "full")
    assert audit.returncode == 1
    assert [f["path"] for f in json.loads(audit.stdout)["findings"]] == [f"{name}/adapter_model.safetensors"]


def test_append_safetensors(ledger_ws: Workspace) -> None:
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    weights = ledger_ws.write_version(
        "oneseek-7b-zero-v1.0", content=struct.pack("<Q", len(header)) + header + bytes(16), suffix=".safetensors"
    )
    block = json.loads(ledger_ws.cli("--json", "append", str(weights), check=True).stdout)
    record = json.loads(block["payload"])["weights"]
    assert (record["path"], record["format"]) == ("oneseek-7b-zero-v1.0.safetensors", "safetensors")
    assert (record["tensors"]["tensors"], record["tensors"]["parameters"]) == (1, 4)
    assert ledger_ws.cli("audit", "--files", "full").returncode == 0
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
    assert ledger_ws.cli("audit", "--files", "full").returncode == 1


@pytest.mark.slow
def test_wheel_ships_migrations_and_schemas_and_its_ledger_inits(tmp_path: Path) -> None:
    """The built wheel carries the Alembic scripts and JSON schemas, and an install of it (not this checkout)
    can run ``ledger init``: the migrations are found through the package, not the source tree."""
    import subprocess
    import sys
    import zipfile

    from tests.conftest import REPO

    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(REPO), "--no-deps", "-w", str(tmp_path / "dist")], check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("ledger-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("migrations/env.py", "migrations/script.py.mako", "migrations/versions/0001_initial.py"):
        assert required in names
    assert {"ledger/schemas/metadata.schema.json", "ledger/schemas/export-report.schema.json"} <= names
    assert "cli/main.py" in names and not [n for n in names if n.startswith("tests/")]

    target = tmp_path / "installed"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")} | {
        "PYTHONPATH": str(target),  # ahead of the editable install of this checkout
        "LEDGER_DB": f"sqlite:///{work / 'ledger.db'}",
        "LEDGER_MODELS_DIR": str(work / "models"),
        "LEDGER_KEY": str(work / "key.pem"),
    }
    where = subprocess.run(
        [sys.executable, "-c", "import ledger, migrations; print(ledger.__file__); print(migrations.__file__)"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(line.startswith(str(target)) for line in where.stdout.splitlines()), where.stdout
    script = target / "bin" / "ledger"
    out = {}
    for args in (["keys", "generate"], ["init"], ["db", "current"], ["audit"]):
        result = subprocess.run([str(script), *args], env=env, cwd=work, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (args, result.stderr)
        out[args[-1]] = result.stdout
    assert out["current"].startswith("database revision 0001") and "audit clean" in out["audit"]
