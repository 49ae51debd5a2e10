"""Export speed on a 10,000-version ledger: ``python -m benchmarks.export_bench [COUNT]``.

Targets (issue 6): HTML export under 10 s, JSON under 2 s. Each export runs end to end as the CLI runs it
(``ledger export`` in a fresh process: start-up, audit of the chain, checkpoint, report, render, write,
export block); the library time (the same minus process start-up) is printed beside it. First with no trusted
state (the export-time audit is a full one), then after ``ledger checkpoint`` + ``ledger audit`` established one
(the export-time audit resumes from it, as the report states).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.export_data import fill_versions
from ledger.api import Ledger
from ledger.audit import FilesMode
from ledger.export.report import Selection
from ledger.export.service import ExportRequest, produce, record
from ledger.signing import SigningKey, write_key_file

TARGETS = {"html": 10.0, "json": 2.0}


def main(count: int = 10_000) -> None:
    """Build the ledger once, then time each export."""
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "models").mkdir()
        key = root / "key.pem"
        write_key_file(key, SigningKey.generate(), None)
        url = f"sqlite:///{root / 'ledger.db'}"
        ledger = Ledger.create(url, models_dir=root / "models", key=key)
        started = time.perf_counter()
        fill_versions(ledger, count)
        print(f"filled {count} versions in {time.perf_counter() - started:.1f} s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
        state = root / "state"
        env.update(
            LEDGER_DB=url,
            LEDGER_MODELS_DIR=str(root / "models"),
            LEDGER_KEY=str(key),
            LEDGER_STATE_DIR=str(state),
            PYTHONPATH=str(repo),
        )

        def cli(*args: str) -> float:
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cli", *args], env=env, check=True, capture_output=True)
            return time.perf_counter() - started

        # 1. No trusted state yet: the export-time audit re-verifies every block from the genesis.
        _exports(ledger, root, cli, state, "full audit")
        # 2. The usual routine: a checkpoint, a full audit that trusts it, then exports resume from it.
        cli("checkpoint")
        print(f"ledger audit --files none (full, {ledger.size()} blocks): {cli('audit', '--files', 'none'):.2f} s")
        _exports(ledger, root, cli, state, "incremental audit")


def _exports(ledger: Ledger, root: Path, cli: Callable[..., float], state: Path, label: str) -> None:
    for fmt, target in TARGETS.items():
        request = ExportRequest(format=fmt, selection=Selection(), files=FilesMode.NONE, state_dir=state)
        started = time.perf_counter()
        produced = produce(ledger, request)
        record(ledger, produced, f"library.{fmt}")
        library = time.perf_counter() - started
        mode = produced.report.integrity.audit.mode
        started = time.perf_counter()  # the same audit alone (collector running): roughly the audit's share
        ledger.audit(files=FilesMode.NONE, state_dir=state, incremental=mode == "incremental", update_state=False)
        audit = time.perf_counter() - started
        out = root / f"report.{fmt}"
        elapsed = cli("export", "--format", fmt, "--out", str(out), "--audit-files", "none")
        verdict = "ok" if elapsed < target else "OVER TARGET"
        print(
            f"{fmt:5} [{label}, report says {mode}] cli {elapsed:5.2f} s (target < {target:g} s: {verdict}), "
            f"library {library:5.2f} s (the same audit alone {audit:5.2f} s), {out.stat().st_size / 1e6:.1f} MB"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
