"""Crash harness: ``ledger append`` SIGKILLed at every fault point and at random times, 100+ runs in all.

Each run is the real CLI in a forked child (the parent has already imported everything, so a run costs
milliseconds, not an interpreter start). It dies either at a ``LEDGER_TEST_CRASH_AT`` point
(``ledger/faults.py``) or by SIGKILL from the parent after a random delay. Afterwards: no partial block, the
audit is clean or reports only ``unledgered`` (a leftover temporary file), and running the command again
succeeds and records the version exactly once.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import cli.main
from ledger.audit import FilesMode
from ledger.faults import CRASH_ENV, POINTS
from ledger.findings import FindingClass
from ledger.strictjson import read_object
from tests.conftest import Workspace, open_ledger

SEED = 424242
_FORK = multiprocessing.get_context("fork")


def _child(env: dict[str, str], args: list[str]) -> None:
    os.environ.clear()
    os.environ.update(env)
    os.chdir(env["LEDGER_ROOT"])
    cli.main.app(args, prog_name="ledger")  # raises SystemExit with the command's exit code


def run_cli(ws: Workspace, args: list[str], *, crash_at: str | None = None, kill_after: float | None = None) -> int:
    """Run ``ledger ARGS`` in a forked child; return its exit code (-9 when it was killed)."""
    env = ws.env(LEDGER_ROOT=str(ws.root))
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    process = _FORK.Process(target=_child, args=(env, args))
    process.start()
    if kill_after is not None:
        time.sleep(kill_after)
        if process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
    process.join(120)
    assert process.exitcode is not None, "child hung"
    return process.exitcode


def _check_after_crash(ws: Workspace, name: str, before: int) -> None:
    ledger = open_ledger(ws, signing=False)
    report = ledger.audit(files=FilesMode.FULL)
    classes = {f.kind for f in report.findings}
    assert classes <= {FindingClass.UNLEDGERED}, report.findings
    assert report.head_height in (before, before + 1)
    # what may be unledgered: a leftover temporary file, or the new weights if their block never committed
    allowed = {f"{name}.pth"} if report.head_height == before else set()
    assert all(f.path in allowed or str(f.path).endswith(".tmp") for f in report.findings), report.findings
    if report.head_height == before + 1:
        assert ledger.head().data()["name"] == name
    ledger.store.engine.dispose()


def _finished(ws: Workspace, name: str) -> bool:
    """True when the head records ``name`` and its metadata file already carries the head's reference."""
    ledger = open_ledger(ws, signing=False)
    head = ledger.head()
    ledger.store.engine.dispose()
    provenance = read_object(ws.models / f"{name}.json")["provenance"]
    reference = (provenance.get("ledger_block_id"), provenance.get("ledger_block_hash"))
    return (
        head.kind == "version"
        and head.data()["name"] == name
        and reference == (f"block-{head.height}", head.block_hash)
    )


def _check_after_rerun(ws: Workspace, name: str, before: int) -> None:
    ledger = open_ledger(ws, signing=False)
    report = ledger.audit(files=FilesMode.FULL)
    assert {f.kind for f in report.findings} <= {FindingClass.UNLEDGERED}, report.findings
    assert report.head_height == before + 1
    head = ledger.head()
    assert head.data()["name"] == name
    meta = read_object(ws.models / f"{name}.json")
    assert meta["provenance"]["ledger_block_id"] == f"block-{head.height}"
    assert meta["provenance"]["ledger_block_hash"] == head.block_hash
    ledger.store.engine.dispose()


#: Uninterrupted appends before the plan; the quickest of all but the first (which warms up) sets the delays.
CALIBRATION_RUNS = 5


@dataclass
class Kills:
    """How the runs of one harness ended: killed at a fault point, killed at a random time, or not killed."""

    at_points: int = 0
    at_random: int = 0
    random_runs: int = 0
    span: float = 0.0  # the quickest uninterrupted append so far, in seconds


def _harness(ws: Workspace, *, per_point: int, random_runs: int) -> Kills:
    rng = random.Random(SEED)
    ledger = open_ledger(ws)
    ledger.append(ws.write_version("oneseek-7b-zero-v1.0"))
    ledger.store.engine.dispose()
    # time a few uninterrupted appends here, so the random kills land inside an append on this machine now
    durations = []
    for micro in range(1, CALIBRATION_RUNS + 1):
        weights = ws.write_version(f"oneseek-7b-zero-v1.{micro}", content=rng.randbytes(2048 + micro))
        started = time.perf_counter()
        assert run_cli(ws, ["append", str(weights)]) == 0
        durations.append(time.perf_counter() - started)
    kills = Kills(random_runs=random_runs, span=min(durations[1:]))
    # a random run is killed at a fraction of the span, which every completed re-run below may shorten: a
    # calibration slowed by a busy machine must not leave every later kill landing after the append is done
    plan: list[tuple[str | None, float | None]] = [(p, None) for p in POINTS for _ in range(per_point)]
    plan += [(None, rng.uniform(0.1, 0.9)) for _ in range(random_runs)]
    rng.shuffle(plan)
    for micro, (point, fraction) in enumerate(plan, start=CALIBRATION_RUNS + 1):
        name = f"oneseek-7b-zero-v1.{micro}"
        weights = ws.write_version(name, content=rng.randbytes(2048 + micro))
        before = micro  # genesis + v1.0 .. v1.(micro-1)
        args = ["append", str(weights)]
        delay = None if fraction is None else fraction * kills.span
        code = run_cli(ws, args, crash_at=point, kill_after=delay)
        assert code in (0, -signal.SIGKILL), (point, delay, code)
        if point is not None:
            assert code == -signal.SIGKILL, (point, code)
            kills.at_points += 1
        else:
            kills.at_random += code == -signal.SIGKILL
        _check_after_crash(ws, name, before)
        # killed after the metadata's block reference was written, the append had finished: a re-run is a
        # duplicate (exit 2); otherwise the re-run completes it
        expected = 2 if _finished(ws, name) else 0
        started = time.perf_counter()
        assert run_cli(ws, args) == expected, (point, delay)
        if expected == 0:
            kills.span = min(kills.span, time.perf_counter() - started)
        _check_after_rerun(ws, name, before)
        if micro % 5 == 0:  # and again, now and then: an identical re-append is refused as a duplicate
            assert run_cli(ws, args) == 2
            assert open_ledger(ws, signing=False).head().height == before + 1
    return kills


@pytest.mark.slow
def test_crash_harness(workspace: Workspace) -> None:
    """70 runs on SQLite, 35 on PostgreSQL: every fault point several times, the rest killed at random.

    The random delays fall between 10% and 90% of the quickest uninterrupted append so far; at least half
    of those runs must really be killed mid-append (not finish first), or the random part proves nothing.
    """
    sqlite = workspace.db_url.startswith("sqlite")
    per_point, random_runs = (8, 30) if sqlite else (4, 15)
    kills = _ledger_and_run(workspace, per_point=per_point, random_runs=random_runs)
    assert kills.at_points == per_point * len(POINTS)
    assert kills.at_random >= random_runs // 2, kills


def _ledger_and_run(ws: Workspace, *, per_point: int, random_runs: int) -> Kills:
    from ledger.api import Ledger

    Ledger.create(ws.db_url, models_dir=ws.models, key=ws.key, adapters_dir=ws.adapters).store.engine.dispose()
    return _harness(ws, per_point=per_point, random_runs=random_runs)


def test_different_file_after_crash_is_refused(ledger_ws: Workspace) -> None:
    """Idempotence is for the identical version only: changed weights under a recorded name stay refused."""
    weights = ledger_ws.write_version("oneseek-7b-zero-v1.0")
    assert run_cli(ledger_ws, ["append", str(weights)], crash_at="commit:done") == -signal.SIGKILL
    weights.write_bytes(os.urandom(4096))
    assert run_cli(ledger_ws, ["append", str(weights)]) == 2
    assert open_ledger(ledger_ws, signing=False).head().height == 1


def test_fault_points_are_inert_by_default(ledger_ws: Workspace) -> None:
    assert CRASH_ENV not in os.environ
    weights = ledger_ws.write_version("oneseek-7b-zero-v1.0")
    assert run_cli(ledger_ws, ["append", str(weights)], crash_at="no-such-point") == 0
    assert Path(ledger_ws.models / "oneseek-7b-zero-v1.0.json").exists()
