"""Crash harness, part two: ``save_version``, ``ledger backup``, ``ledger prune`` and ``ledger restore`` SIGKILLed.

Same machinery as ``test_crashes.py`` (forked children of a parent that has imported everything, so a run
costs milliseconds): each run dies at one of the command's fault points (``ledger/faults.py``) or at a random
time. Afterwards there is no partial block and the audit is clean or reports only ``unledgered`` files (hidden
temporaries, or a killed save's files before its block): never a ledgered file that is missing or
half-written, prune included (it appends its block before it removes anything). Then the command is run
again: it must succeed and leave the audit clean.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import fsspec.callbacks
import fsspec.implementations.local
import pytest
import torch

import cli.lifecycle
import ledger.backup
import ledger.restore
import ledger.retention
from ledger.api import Ledger
from ledger.audit import AuditReport, FilesMode
from ledger.faults import BACKUP_POINTS, CRASH_ENV, PRUNE_POINTS, RESTORE_POINTS, SAVE_POINTS
from ledger.findings import FindingClass
from ledger.lifecycle import read_state
from tests.conftest import Workspace, open_ledger, seed_metadata
from tests.integration.test_crashes import _FORK, run_cli

#: Imported here, before the forks, so that each child does not pay for them (the CLI imports them lazily).
PRELOADED = (
    fsspec.callbacks,
    fsspec.implementations.local,
    cli.lifecycle,
    ledger.backup,
    ledger.restore,
    ledger.retention,
)
SEED = 8675309
MODEL = "oneseek-7b-zero"
U = FindingClass.UNLEDGERED


def _audit(ws: Workspace) -> tuple[AuditReport, Any]:
    ledger = open_ledger(ws, signing=False)
    report = ledger.audit(files=FilesMode.FULL, workers=1)
    state = read_state(ledger)
    ledger.store.engine.dispose()
    return report, state


def _hidden(path: str | None) -> bool:
    name = os.path.basename(str(path))
    return name.startswith(".") and name.endswith(".tmp")


def _plan(rng: random.Random, points: tuple[str, ...], per_point: int, random_runs: int) -> list[tuple[Any, Any]]:
    plan: list[tuple[str | None, float | None]] = [(p, None) for p in points for _ in range(per_point)]
    plan += [(None, rng.uniform(0.0, 0.06)) for _ in range(random_runs)]
    rng.shuffle(plan)
    return plan


def _killed(code: int, point: str | None) -> bool:
    if point is not None:
        assert code == -signal.SIGKILL, (point, code)
    assert code in (0, -signal.SIGKILL), code
    return code == -signal.SIGKILL


# --- save_version ---------------------------------------------------------------------------------


def _save_child(env: Mapping[str, str], state: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    os.environ.clear()
    os.environ.update(env)
    ledger = Ledger.open(
        env["LEDGER_DB"],
        models_dir=Path(env["LEDGER_MODELS_DIR"]),
        key=Path(env["LEDGER_KEY"]),
        adapters_dir=Path(env["LEDGER_ADAPTERS_DIR"]),
    )
    ledger.save_version(state, metadata, kind="micro", adapter_dir=Path(env["LEDGER_TEST_ADAPTER_SRC"]))


def run_save(ws: Workspace, state: dict[str, torch.Tensor], *, crash_at: str | None, kill_after: float | None) -> int:
    """``Ledger.save_version`` in a forked child (tensors made before the fork); its exit code."""
    import contextlib
    import time

    env = ws.env()
    source = ws.root / "adapter-src"  # every save records a LoRA adapter directory too
    if not source.exists():
        source.mkdir()
        (source / "adapter_config.json").write_text('{"base_model_name_or_path": "base", "r": 8}')
        (source / "adapter_model.bin").write_bytes(os.urandom(2048))
    env["LEDGER_TEST_ADAPTER_SRC"] = str(source)
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    metadata = seed_metadata(f"{MODEL}-v1.0")
    del metadata["version"]
    process = _FORK.Process(target=_save_child, args=(env, state, metadata))
    process.start()
    if kill_after is not None:
        time.sleep(kill_after)
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid or 0, signal.SIGKILL)
    process.join(120)
    assert process.exitcode is not None, "child hung"
    return process.exitcode


def _save_harness(ws: Workspace, *, per_point: int, random_runs: int) -> int:
    rng = random.Random(SEED)
    Ledger.create(ws.db_url, models_dir=ws.models, key=ws.key, adapters_dir=ws.adapters).store.engine.dispose()
    killed = 0
    for run, (point, delay) in enumerate(_plan(rng, SAVE_POINTS, per_point, random_runs)):
        state = {"w": torch.full((8, 8), float(run)), "b": torch.arange(run + 1, dtype=torch.float32)}
        before, _ = _audit(ws)
        ledger = open_ledger(ws, signing=False)
        upcoming = f"{MODEL}-v{ledger.next_version(MODEL, major=False)}"
        ledger.store.engine.dispose()
        code = run_save(ws, state, crash_at=point, kill_after=delay)
        killed += _killed(code, point)
        report, _ = _audit(ws)
        assert report.head_height in (before.head_height, before.head_height + 1), (point, delay)
        pending = upcoming + "." if report.head_height == before.head_height else None
        for finding in report.findings:  # only temporaries, or the files of the save whose block never came
            assert finding.kind is U, (point, delay, report.findings)
            assert _hidden(finding.path) or (pending and str(finding.path).startswith(pending)), report.findings
        assert run_save(ws, state, crash_at=None, kill_after=None) == 0, (point, delay)
        report, _ = _audit(ws)
        assert all(f.kind is U and _hidden(f.path) for f in report.findings), (point, delay, report.findings)
        assert report.head_height in (before.head_height + 1, before.head_height + 2)
    ledger = open_ledger(ws, signing=False)
    names = [b.data()["name"] for b in ledger.blocks_of_kind("version")]
    ledger.store.engine.dispose()
    assert len(names) == len(set(names))  # each version recorded once, numbered in order
    return killed


# --- backup, prune, restore ------------------------------------------------------------------------


def _new_version(ws: Workspace, name: str, rng: random.Random) -> None:
    weights = ws.write_version(name, content=rng.randbytes(1500))
    folder = ws.adapters / name
    (folder / "sub").mkdir(parents=True)
    (folder / "adapter_model.bin").write_bytes(rng.randbytes(700))
    (folder / "sub" / "notes.txt").write_text(f"adapter of {name}\n")
    ledger = open_ledger(ws)
    ledger.append(weights, adapter=folder)
    ledger.store.engine.dispose()


def _lifecycle_harness(ws: Workspace, *, per_point: int, random_runs: int) -> int:
    rng = random.Random(SEED + 1)
    remote = f"file://{ws.root / 'remote'}"
    Ledger.create(ws.db_url, models_dir=ws.models, key=ws.key, adapters_dir=ws.adapters).store.engine.dispose()
    _new_version(ws, f"{MODEL}-v1.0", rng)  # the one major the policy keeps
    plans = {
        "backup": _plan(rng, BACKUP_POINTS, per_point, random_runs),
        "prune": _plan(rng, PRUNE_POINTS, per_point, random_runs),
        "restore": _plan(rng, RESTORE_POINTS, per_point, random_runs),
    }
    cycles = len(plans["backup"])
    killed = 0

    def crash_then_rerun(
        args: list[str], plan: tuple[Any, Any], after_crash: Callable[[AuditReport, Any], None]
    ) -> Any:
        nonlocal killed
        point, delay = plan
        code = run_cli(ws, args, crash_at=point, kill_after=delay)
        killed += _killed(code, point)
        after_crash(*_audit(ws))
        assert run_cli(ws, args) == 0, (args, plan)
        report, state = _audit(ws)
        assert all(f.kind is U and _hidden(f.path) for f in report.findings), (args, plan, report.findings)
        return state

    def only_temporaries(report: AuditReport, _state: Any) -> None:
        assert all(f.kind is U and _hidden(f.path) for f in report.findings), report.findings

    prune = ["prune", "--keep-major", "1", "--keep-micro", "0"]
    for cycle in range(1, cycles + 1):
        name = f"{MODEL}-v1.{cycle}"
        _new_version(ws, name, rng)
        state = crash_then_rerun(["backup", name, "--to", remote], plans["backup"][cycle - 1], only_temporaries)
        assert state.latest_backup(name) is not None
        state = crash_then_rerun(prune, plans["prune"][cycle - 1], only_temporaries)
        assert name in state.pruned and not (ws.models / f"{name}.pth").exists()
        state = crash_then_rerun(["restore", name], plans["restore"][cycle - 1], only_temporaries)
        assert name not in state.pruned and (ws.adapters / name / "sub" / "notes.txt").exists()
    report, _ = _audit(ws)
    assert all(f.kind is U for f in report.findings)
    return killed


@pytest.mark.slow
def test_save_version_crashes(workspace: Workspace) -> None:
    """SQLite: 14 runs (every save point twice, 6 random); PostgreSQL: 8."""
    sqlite = workspace.db_url.startswith("sqlite")
    killed = _save_harness(workspace, per_point=2 if sqlite else 1, random_runs=6 if sqlite else 4)
    assert killed >= (8 if sqlite else 4)


@pytest.mark.slow
def test_backup_prune_restore_crashes(workspace: Workspace) -> None:
    """SQLite: 10 cycles of backup, prune and restore, each killed (30 runs); PostgreSQL: 6 cycles (18 runs)."""
    sqlite = workspace.db_url.startswith("sqlite")
    killed = _lifecycle_harness(workspace, per_point=2 if sqlite else 1, random_runs=4 if sqlite else 3)
    assert killed >= (18 if sqlite else 9)
