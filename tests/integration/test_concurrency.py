"""Concurrent writers: 8 processes x 200 appends make one linear chain, on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter

import pytest

from ledger.audit import FilesMode
from tests.conftest import REPO, Workspace, open_ledger

WRITERS = 8
APPENDS = 200


@pytest.mark.slow
def test_eight_writers_one_linear_chain(ledger_ws: Workspace) -> None:
    env = ledger_ws.env()
    env["PYTHONPATH"] = str(REPO)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.writer_proc",
                ledger_ws.db_url,
                str(ledger_ws.key),
                str(w),
                str(APPENDS),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WRITERS)
    ]
    outcomes = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    for code, _out, err in outcomes:
        assert code == 0 and "Traceback" not in err, err[-2000:]

    ledger = open_ledger(ledger_ws, signing=False)
    report = ledger.audit(files=FilesMode.NONE)
    assert report.clean, report.findings[:5]
    assert report.head_height == WRITERS * APPENDS
    blocks = list(ledger.blocks())
    assert [b.height for b in blocks] == list(range(WRITERS * APPENDS + 1))
    assert all(b.prev_hash == a.block_hash for a, b in itertools.pairwise(blocks))
    seen = Counter((b.data()["writer"], b.data()["n"]) for b in blocks[1:])
    assert set(seen.values()) == {1} and len(seen) == WRITERS * APPENDS
    # each writer's own blocks are in its own order: no block was committed out of sequence
    for w in range(WRITERS):
        mine = [b.data()["n"] for b in blocks[1:] if b.data()["writer"] == w]
        assert mine == list(range(APPENDS))
