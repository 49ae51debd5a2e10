"""Every command over a database whose stored payloads were damaged behind the guards (not JSON, nested past
the parser's depth, not an object, not UTF-8): the audit reports a ``payload`` finding at that height, and no
command ends in a traceback; each one succeeds, reports findings, or refuses in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from ledger.audit import FilesMode
from ledger.findings import FindingClass
from tests.conftest import Workspace, open_ledger, tamper

V10 = "oneseek-7b-zero-v1.0"
DAMAGE = {
    "not-json": b"{not json",
    "too-deep": b"[" * 200_000 + b"]" * 200_000,
    "array": b"[1,2]",
    "not-utf8": b'{"a":"\xff\xfe"}',
}


def _commands(out: Path) -> list[list[str]]:
    return [
        ["audit"],
        ["--json", "audit", "--files", "full"],
        ["log"],
        ["--json", "log"],
        ["show", "1"],
        ["--json", "show", "0"],
        ["show", V10],
        ["versions"],
        ["current"],
        ["prune", "--dry-run"],
        ["checkpoint"],
        ["prove", "1", "--out", str(out / "p.json")],
        ["export", "--format", "json", "--out", str(out / "r.json")],
        ["append", str(out / "models" / "oneseek-7b-zero-v1.1.pth")],
    ]


@pytest.mark.parametrize("height", [0, 1], ids=["genesis", "version"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_payload(ledger_ws: Workspace, damage: str, height: int) -> None:
    ledger = open_ledger(ledger_ws)
    ledger.append(ledger_ws.write_version(V10))
    ledger.append_event("note", {"after": V10})
    ledger_ws.write_version("oneseek-7b-zero-v1.1")
    tamper(ledger_ws.db_url, ("UPDATE blocks SET payload = :p WHERE height = :h", {"p": DAMAGE[damage], "h": height}))

    for workers in (1, 2):
        report = open_ledger(ledger_ws).audit(files=FilesMode.QUICK, workers=workers)
        first = next(f for f in report.findings if not f.is_warning)
        assert (first.height, first.kind) == (height, FindingClass.PAYLOAD), report.findings

    runner = CliRunner()
    for command in _commands(ledger_ws.root):
        result = runner.invoke(app, command, env=ledger_ws.env())
        assert result.exception is None or isinstance(result.exception, SystemExit), (command, result.exception)
        assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, command
        assert result.exit_code in (0, 1, 2, 3), (command, result.exit_code)
        if result.exit_code:
            assert len(result.stderr.strip().splitlines()) <= 1 or command[-1] == "audit" or "audit" in command, (
                command,
                result.stderr,
            )


HOSTILE_JSON = {"too-deep": b"[" * 200_000 + b"]" * 200_000, "not-utf8": b'{"a":"\xff"}', "truncated": b'{"a": [1,'}


@pytest.mark.parametrize("content", sorted(HOSTILE_JSON))
@pytest.mark.parametrize("command", ["verify-proof", "verify-export", "audit --checkpoint", "inspect"])
def test_hostile_json_files(ledger_ws: Workspace, command: str, content: str) -> None:
    """JSON files handed to a command (a proof, an export, a checkpoint, a safetensors header): one line, exit 2
    (or 1 for a checkpoint that fails verification), never a traceback."""
    import struct

    data = HOSTILE_JSON[content]
    if command == "inspect":
        path = ledger_ws.root / "hostile.safetensors"
        path.write_bytes(struct.pack("<Q", len(data)) + data)
    else:
        path = ledger_ws.root / "hostile.json"
        path.write_bytes(data)
    before = open_ledger(ledger_ws).head().block_hash
    result = CliRunner().invoke(app, [*command.split(), str(path)], env=ledger_ws.env())
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in ((1, 2) if command == "audit --checkpoint" else (2,)), (result.exit_code, result.stderr)
    if command != "audit --checkpoint":
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert open_ledger(ledger_ws).head().block_hash == before


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_block_data_refuses_a_damaged_payload(damage: str) -> None:
    from dataclasses import replace

    from ledger.block import GENESIS_PREV_HASH, seal
    from ledger.errors import DamagedBlockError
    from ledger.signing import SigningKey

    block = seal(
        height=3,
        prev_hash=GENESIS_PREV_HASH,
        timestamp="2025-01-01T00:00:00.000000Z",
        kind="note",
        payload={"a": 1},
        key=SigningKey.generate(),
    )
    assert block.data() == {"a": 1}
    with pytest.raises(DamagedBlockError, match="block 3: payload is not"):
        replace(block, payload=DAMAGE[damage]).data()
