"""Crash harness, part two: ``save_version``, ``ledger backup``, ``ledger prune`` and ``ledger restore`` SIGKILLed.

Same machinery as ``test_crashes.py`` (forked children of a parent that has imported everything, so a run
costs milliseconds): each run dies at one of the command's fault points (``ledger/faults.py``) or at a random
moment inside the operation. Afterwards there is no partial block and the audit is clean or reports only
``unledgered`` files (hidden temporaries, or a killed save's files before its block): never a ledgered file
that is missing or half-written, prune included (it appends its block before it removes anything). Then the
command is run again: it must succeed and leave the audit clean.

Random kills are aimed, not hoped for: the child marks (in shared memory) when the library operation starts
and when it returns; the parent waits for the start mark, sleeps a random fraction of the operation's duration
as measured on this machine by the clean runs so far, then kills. A random run counts as a mid-operation kill
only when the child died with the start mark set and the end mark unset, and most random runs must be such.
"""

from __future__ import annotations

import importlib
import os
import random
import signal
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
from tests.integration.test_crashes import _FORK, _child

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
#: The library call each command's operation is (the CLI imports it when the command runs).
OPERATIONS = {
    "backup": "ledger.backup.backup",
    "prune": "ledger.retention.prune",
    "restore": "ledger.restore.restore",
}
#: Random kills land in the first 90 % of the measured duration, so a slower run is still inside.
LATEST_FRACTION = 0.9


@dataclass(frozen=True)
class Run:
    """How one forked run ended: exit code, and seconds from the start to the operation's start and end marks."""

    code: int
    started: float | None
    ended: float | None

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL

    @property
    def mid_operation(self) -> bool:
        """Killed after the operation started and before it returned."""
        return self.killed and self.started is not None and self.ended is None


@dataclass
class Tally:
    """Per command: the kill plan, the clean runs' operation durations, and how the random kills landed."""

    plan: list[tuple[str | None, float | None]]
    durations: list[float] = field(default_factory=list)
    random_runs: int = 0
    random_mid: int = 0

    def record(self, run: Run, point: str | None, fraction: float | None) -> None:
        if point is not None:
            assert run.killed, (point, run)
        assert run.code in (0, -signal.SIGKILL), run
        if fraction is not None:
            self.random_runs += 1
            self.random_mid += run.mid_operation

    def learn(self, run: Run) -> None:
        """A clean run: its operation's duration tunes where the next random kills land."""
        assert run.code == 0 and run.started is not None and run.ended is not None, run
        self.durations.append(run.ended - run.started)

    def delay(self, fraction: float | None) -> float | None:
        return None if fraction is None else fraction * statistics.median(self.durations)

    def check(self, name: str) -> None:
        landed = f"{name}: {self.random_mid} of {self.random_runs} random kills landed inside the operation"
        assert self.random_runs and self.random_mid * 2 >= self.random_runs, (landed, self.durations)


def _plan(rng: random.Random, points: tuple[str, ...], per_point: int, runs: int) -> list[tuple[Any, Any]]:
    """``runs`` runs: every point ``per_point`` times, the rest killed at a random fraction of the operation."""
    plan: list[tuple[str | None, float | None]] = [(p, None) for p in points for _ in range(per_point)]
    assert len(plan) < runs
    plan += [(None, rng.uniform(0.0, LATEST_FRACTION)) for _ in range(runs - len(plan))]
    rng.shuffle(plan)
    return plan


def _fork(target: Callable[..., None], args: tuple[Any, ...], *, delay: float | None) -> Run:
    """Run ``target(*args, marks)`` in a forked child; with ``delay``, SIGKILL it that long after its start mark."""
    marks = _FORK.Array("d", 2, lock=False)
    process = _FORK.Process(target=target, args=(*args, marks))
    begin = time.monotonic()
    process.start()
    if delay is not None:
        while marks[0] == 0 and process.is_alive():
            time.sleep(0.0005)
        time.sleep(delay)
        process.kill()  # SIGKILL; nothing when the child has already ended
    process.join(120)
    assert process.exitcode is not None, "child hung"
    return Run(process.exitcode, marks[0] - begin if marks[0] else None, marks[1] - begin if marks[1] else None)


def _marked(marks: Any, operation: Callable[..., Any]) -> Callable[..., Any]:
    def traced(*args: Any, **kwargs: Any) -> Any:
        marks[0] = time.monotonic()
        result = operation(*args, **kwargs)
        marks[1] = time.monotonic()
        return result

    return traced


def _cli_child(env: dict[str, str], args: list[str], operation: str, marks: Any) -> None:
    module_name, _, attribute = operation.rpartition(".")
    module = importlib.import_module(module_name)
    setattr(module, attribute, _marked(marks, getattr(module, attribute)))
    _child(env, args)


def run_cli(ws: Workspace, args: list[str], *, crash_at: str | None = None, delay: float | None = None) -> Run:
    """``ledger ARGS`` in a forked child, its operation marked (``OPERATIONS``), killed as asked."""
    env = ws.env(LEDGER_ROOT=str(ws.root))
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    return _fork(_cli_child, (env, args, OPERATIONS[args[0]]), delay=delay)


def _audit(ws: Workspace) -> tuple[AuditReport, Any]:
    ledger = open_ledger(ws, signing=False)
    report = ledger.audit(files=FilesMode.FULL, workers=1)
    state = read_state(ledger)
    ledger.store.engine.dispose()
    return report, state


def _hidden(path: str | None) -> bool:
    name = os.path.basename(str(path))
    return name.startswith(".") and name.endswith(".tmp")


def _only_temporaries(report: AuditReport, *context: Any) -> None:
    assert all(f.kind is U and _hidden(f.path) for f in report.findings), (context, report.findings)


# --- save_version ---------------------------------------------------------------------------------


def _save_child(env: Mapping[str, str], state: dict[str, torch.Tensor], metadata: dict[str, Any], marks: Any) -> None:
    os.environ.clear()
    os.environ.update(env)
    ledger = Ledger.open(
        env["LEDGER_DB"],
        models_dir=Path(env["LEDGER_MODELS_DIR"]),
        key=Path(env["LEDGER_KEY"]),
        adapters_dir=Path(env["LEDGER_ADAPTERS_DIR"]),
    )
    _marked(marks, ledger.save_version)(state, metadata, kind="micro", adapter_dir=Path(env["LEDGER_TEST_ADAPTER_SRC"]))


def run_save(ws: Workspace, state: dict[str, torch.Tensor], *, crash_at: str | None, delay: float | None) -> Run:
    """``Ledger.save_version`` in a forked child (tensors made before the fork)."""
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
    return _fork(_save_child, (env, state, metadata), delay=delay)


def _tensors(run: int) -> dict[str, torch.Tensor]:
    return {"w": torch.full((8, 8), float(run)), "b": torch.arange(run + 1, dtype=torch.float32)}


def _save_harness(ws: Workspace, *, per_point: int, runs: int) -> Tally:
    rng = random.Random(SEED)
    Ledger.create(ws.db_url, models_dir=ws.models, key=ws.key, adapters_dir=ws.adapters).store.engine.dispose()
    tally = Tally(_plan(rng, SAVE_POINTS, per_point, runs))
    tally.learn(run_save(ws, _tensors(0), crash_at=None, delay=None))  # calibration: one clean save
    for index, (point, fraction) in enumerate(tally.plan, start=1):
        state = _tensors(index)
        before, _ = _audit(ws)
        ledger = open_ledger(ws, signing=False)
        upcoming = f"{MODEL}-v{ledger.next_version(MODEL, major=False)}"
        ledger.store.engine.dispose()
        tally.record(run_save(ws, state, crash_at=point, delay=tally.delay(fraction)), point, fraction)
        report, _ = _audit(ws)
        assert report.head_height in (before.head_height, before.head_height + 1), (point, fraction)
        pending = upcoming + "." if report.head_height == before.head_height else None
        for finding in report.findings:  # only temporaries, or the files of the save whose block never came
            assert finding.kind is U, (point, fraction, report.findings)
            assert _hidden(finding.path) or (pending and str(finding.path).startswith(pending)), report.findings
        tally.learn(run_save(ws, state, crash_at=None, delay=None))
        report, _ = _audit(ws)
        _only_temporaries(report, point, fraction)
        assert report.head_height in (before.head_height + 1, before.head_height + 2)
    ledger = open_ledger(ws, signing=False)
    names = [b.data()["name"] for b in ledger.blocks_of_kind("version")]
    ledger.store.engine.dispose()
    assert len(names) == len(set(names))  # each version recorded once, numbered in order
    return tally


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


def _lifecycle_harness(ws: Workspace, *, per_point: int, runs: int) -> dict[str, Tally]:
    rng = random.Random(SEED + 1)
    remote = f"file://{ws.root / 'remote'}"
    Ledger.create(ws.db_url, models_dir=ws.models, key=ws.key, adapters_dir=ws.adapters).store.engine.dispose()
    _new_version(ws, f"{MODEL}-v1.0", rng)  # the one major the policy keeps
    tallies = {
        "backup": Tally(_plan(rng, BACKUP_POINTS, per_point, runs)),
        "prune": Tally(_plan(rng, PRUNE_POINTS, per_point, runs)),
        "restore": Tally(_plan(rng, RESTORE_POINTS, per_point, runs)),
    }

    def crash_then_rerun(args: list[str], kill: tuple[Any, Any] | None) -> Any:
        tally = tallies[args[0]]
        if kill is not None:
            point, fraction = kill
            tally.record(run_cli(ws, args, crash_at=point, delay=tally.delay(fraction)), point, fraction)
            _only_temporaries(_audit(ws)[0], args, kill)
        tally.learn(run_cli(ws, args))
        report, state = _audit(ws)
        _only_temporaries(report, args, kill)
        return state

    prune = ["prune", "--keep-major", "1", "--keep-micro", "0"]
    for cycle in range(runs + 1):  # cycle 0 is clean: it calibrates the random kills
        name = f"{MODEL}-v1.{cycle + 1}"
        _new_version(ws, name, rng)
        state = crash_then_rerun(["backup", name, "--to", remote], tallies["backup"].plan[cycle - 1] if cycle else None)
        assert state.latest_backup(name) is not None
        state = crash_then_rerun(prune, tallies["prune"].plan[cycle - 1] if cycle else None)
        assert name in state.pruned and not (ws.models / f"{name}.pth").exists()
        assert not (ws.adapters / name).exists()  # emptied directories go too, also after a kill
        state = crash_then_rerun(["restore", name], tallies["restore"].plan[cycle - 1] if cycle else None)
        assert name not in state.pruned and (ws.adapters / name / "sub" / "notes.txt").exists()
    report, _ = _audit(ws)
    assert all(f.kind is U for f in report.findings)
    return tallies


@pytest.mark.slow
def test_save_version_crashes(workspace: Workspace) -> None:
    """SQLite: 20 runs (every save point twice, 12 killed at random); PostgreSQL: 10 (6 at random)."""
    sqlite = workspace.db_url.startswith("sqlite")
    _save_harness(workspace, per_point=2 if sqlite else 1, runs=20 if sqlite else 10).check("save_version")


@pytest.mark.slow
def test_backup_prune_restore_crashes(workspace: Workspace) -> None:
    """SQLite: 20 killed runs each of backup, prune and restore (60); PostgreSQL: 10 each (30). Each command's
    fault points are hit once or twice; the other runs are killed at random inside the operation."""
    sqlite = workspace.db_url.startswith("sqlite")
    tallies = _lifecycle_harness(workspace, per_point=2 if sqlite else 1, runs=20 if sqlite else 10)
    for name, tally in tallies.items():
        tally.check(name)
