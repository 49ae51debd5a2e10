"""Concurrent writers: 8 processes x 200 appends make one linear chain, on SQLite and on PostgreSQL.

A quarter of each writer's appends race the others for the next version of one shared model (exactly one
wins each number; the losers retry with the next), a quarter are versions of the writer's own model, half
are events. Afterwards: 1,600 blocks after genesis in one linear chain, every block recorded once by the
writer that says so and in its order, each model's versions consecutive in chain order, the version index
agreeing, a clean audit with every weight file re-hashed, and no process with an error.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter

import pytest

from ledger.audit import FilesMode
from ledger.block import Block
from ledger.versions import VersionId, VersionName
from tests.conftest import REPO, Workspace, open_ledger
from tests.integration.writer_proc import SHARED, own_model

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
                str(ledger_ws.models),
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
    outcomes = [(p.wait(timeout=900), *p.communicate()) for p in procs]
    for code, _out, err in outcomes:
        assert code == 0 and "Traceback" not in err, err[-2000:]
    summaries = [json.loads(out.strip().splitlines()[-1]) for _code, out, _err in outcomes]

    ledger = open_ledger(ledger_ws, signing=False)
    report = ledger.audit(files=FilesMode.FULL)
    assert report.clean, report.findings[:5]
    assert report.head_height == WRITERS * APPENDS
    blocks = list(ledger.blocks())
    assert [b.height for b in blocks] == list(range(WRITERS * APPENDS + 1))
    assert all(b.prev_hash == a.block_hash for a, b in itertools.pairwise(blocks))
    assert Counter(b.kind for b in blocks[1:]) == {"version": WRITERS * APPENDS // 2, "note": WRITERS * APPENDS // 2}

    # every block was recorded by exactly one writer, which saw its blocks in its own order
    def label(block: Block) -> tuple[int | None, str]:
        data = block.data()
        return (data["writer"], f"note:{data['n']}") if block.kind == "note" else (None, str(data["name"]))

    labels = [label(b) for b in blocks[1:]]
    names = [name for writer, name in labels if writer is None]
    assert Counter(names).most_common(1)[0][1] == 1
    for summary in summaries:
        mine = [name for writer, name in labels if writer in (None, summary["writer"]) and name in summary["recorded"]]
        assert mine == summary["recorded"]
    assert sorted(n for s in summaries for n in s["recorded"] if not n.startswith("note:")) == sorted(names)
    assert sum(s["lost"] for s in summaries) > 0, "no writer ever lost a race: the shared model was not contended"

    # each model's versions are consecutive micro versions in chain order, and the index finds each one
    by_model: dict[str, list[VersionId]] = {}
    for name in names:
        parsed = VersionName.parse(name)
        by_model.setdefault(parsed.slug, []).append(parsed.version)
    expected = {SHARED: WRITERS * APPENDS // 4, **{own_model(w): APPENDS // 4 for w in range(WRITERS)}}
    assert {model: len(versions) for model, versions in by_model.items()} == expected
    for model, versions in by_model.items():
        assert versions == [VersionId(1, micro) for micro in range(len(versions))], model
        last = ledger.last_version(model)
        assert last is not None and last.version == versions[-1]
    for block in [b for b in blocks if b.kind == "version"][::37]:
        recorded = VersionName.parse(block.data()["name"])
        assert ledger.version_block(recorded.slug, recorded.version) == block
