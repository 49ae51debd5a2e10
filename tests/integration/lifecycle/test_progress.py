"""Transfer progress: the library reports every byte to a progress callback; the CLI draws a bar on a terminal
stderr only (not with --json, not into a pipe). The terminal is a real pseudo-terminal around a CLI subprocess."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ledger.backup import backup
from ledger.config import RetentionPolicy
from ledger.remote import RemoteOptions, open_store
from ledger.restore import restore
from ledger.retention import prune
from tests.conftest import Workspace
from tests.integration.lifecycle.helpers import MODEL, memory_location, opener, record

V10 = f"{MODEL}-v1.0"


class Recorder:
    """A ``Progress`` that keeps what it was told: (label, total, bytes advanced) per file."""

    def __init__(self) -> None:
        self.files: list[list[object]] = []

    def start(self, label: str, total: int) -> None:
        self.files.append([label, total, 0])

    def advance(self, n: int) -> None:
        self.files[-1][2] = int(str(self.files[-1][2])) + n


def test_progress_callback_sees_every_byte_of_backup_and_restore(ledger_ws: Workspace) -> None:
    size = (3 << 20) + 17  # several read chunks
    ledger = record(ledger_ws, "1.0", adapter=True, size=size)
    sent = Recorder()
    backup(ledger, open_store(memory_location(), RemoteOptions()), progress=sent)
    weights = [f for f in sent.files if str(f[0]).endswith(f"{V10}.pth")]
    assert weights == [[f"uploading {V10}.pth", size, size], [f"verifying {V10}.pth", size, size]]
    assert len(sent.files) == 8  # 4 files, each uploaded and read back
    assert all(total == done for _label, total, done in sent.files), sent.files
    prune(ledger, lambda _m: RetentionPolicy(0, 0), open_store=opener(), dry_run=False)
    got = Recorder()
    restore(ledger, V10, open_store=opener(), progress=got)
    assert [f"restoring {V10}.pth", size, size] in got.files
    assert len(got.files) == 4 and all(total == done for _label, total, done in got.files), got.files


def _run_with_terminal(ws: Workspace, *args: str, stderr_tty: bool) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal (or a pipe); returns exit code, stdout, stderr."""
    env = ws.env(TERM="xterm-256color", COLUMNS="120")
    env.pop("NO_COLOR", None)
    if not stderr_tty:
        done = subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True)
        return done.returncode, done.stdout, done.stderr
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO once the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    with subprocess.Popen(
        [sys.executable, "-m", "cli", *args], env=env, stdout=subprocess.PIPE, stderr=slave, text=True
    ) as child:
        os.close(slave)
        out, _ = child.communicate(timeout=300)
    reader.join(30)
    os.close(master)
    return child.returncode, out, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("mode", ["terminal", "json", "pipe"])
def test_cli_draws_progress_only_on_a_terminal(sqlite_ws: Workspace, tmp_path: Path, mode: str) -> None:
    record(sqlite_ws, "1.0", size=8 << 20)
    url = f"file://{tmp_path / 'remote'}"
    args = ("--json", "backup", "--to", url) if mode == "json" else ("backup", "--to", url)
    code, out, err = _run_with_terminal(sqlite_ws, *args, stderr_tty=mode != "pipe")
    assert code == 0, err
    if mode == "json":
        assert json.loads(out)["versions"][0]["status"] == "uploaded"
    else:
        assert f"{V10}: uploaded" in out
    if mode == "terminal":  # a bar per file; the last one, drawn once more as it closes, complete
        assert f"uploading {V10}.pth" in err and "/8.4 MB" in err, err
        size = (sqlite_ws.models / f"{V10}.json").stat().st_size
        assert f"verifying {V10}.json" in err and f"{size}/{size} bytes" in err, err
    else:
        assert err == ""
