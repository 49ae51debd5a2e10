"""Harness values and helpers: figures, goals, measurements, timing, the per-run context.

A figure is one comparison: ours against a reference measured in the same run, a ratio, and a goal on the
ratio or on our absolute value. Timings are best-of-N with the runs of ours and the reference interleaved
(noise on a shared machine only ever adds time, so the minimum is the most repeatable estimate); the median
is kept in the JSON too.
"""

from __future__ import annotations

import enum
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[1]
GIB = 1 << 30
MIB = 1 << 20


class Status(enum.StrEnum):
    """Whether a figure produced numbers."""

    OK = "ok"
    NOT_AVAILABLE = "not available"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Goal:
    """A threshold on the ratio or on our absolute value; ``text`` is how the table shows it."""

    on: Literal["ratio", "ours"]
    op: Literal["<=", ">=", "<"]
    limit: float
    text: str

    def met(self, ours: float, ratio: float | None) -> bool | None:
        """True when the figure reaches the goal, None when the value it is about was not measured."""
        value = ratio if self.on == "ratio" else ours
        if value is None:
            return None
        if self.op == "<=":
            return value <= self.limit
        if self.op == ">=":
            return value >= self.limit
        return value < self.limit


@dataclass(frozen=True, slots=True)
class Measure:
    """One measured quantity: the number the table shows, its unit, and the samples behind it."""

    value: float
    unit: str
    samples: tuple[float, ...] = ()

    def __str__(self) -> str:
        return f"{_fmt(self.value)} {self.unit}"


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the results table."""

    name: str
    title: str
    status: Status
    ours: Measure | None = None
    reference: Measure | None = None
    reference_name: str = ""
    ratio: float | None = None
    ratio_means: str = ""
    goal: Goal | None = None
    method: str = ""
    notes: tuple[str, ...] = ()

    @property
    def met(self) -> bool | None:
        """Whether the goal is reached (None: no goal, or not measured)."""
        if self.goal is None or self.ours is None:
            return None
        return self.goal.met(self.ours.value, self.ratio)

    def to_json(self) -> dict[str, Any]:
        """The figure as a JSON object for the results file."""
        data = asdict(self)
        data["status"] = str(self.status)
        data["met"] = self.met
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figure:
        """The figure ``to_json`` wrote (a group run in its own process reports through its results file)."""

        def measure(value: dict[str, Any] | None) -> Measure | None:
            return None if value is None else Measure(value["value"], value["unit"], tuple(value["samples"]))

        goal = data["goal"]
        return cls(
            name=data["name"],
            title=data["title"],
            status=Status(data["status"]),
            ours=measure(data["ours"]),
            reference=measure(data["reference"]),
            reference_name=data["reference_name"],
            ratio=data["ratio"],
            ratio_means=data["ratio_means"],
            goal=None if goal is None else Goal(goal["on"], goal["op"], goal["limit"], goal["text"]),
            method=data["method"],
            notes=tuple(data["notes"]),
        )


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big each benchmark's workload is; ``smoke`` shrinks every one so the whole run takes seconds."""

    digest_bytes: int
    audit_files: int
    audit_file_bytes: int
    adapter_files: int
    adapter_file_bytes: int
    save_bytes: int
    append_blocks: int
    concurrent_procs: int
    concurrent_blocks: int
    chain_blocks: int
    incremental_blocks: int
    proof_samples: int
    help_runs: int
    export_versions: int
    backup_bytes: int
    prune_versions: int
    repeats: int
    big_repeats: int

    @classmethod
    def full(cls) -> Sizes:
        """The sizes the issues name."""
        return cls(
            digest_bytes=2 * GIB,
            audit_files=4,
            audit_file_bytes=GIB,
            adapter_files=5000,
            adapter_file_bytes=16 * 1024,
            save_bytes=GIB + 64 * MIB,
            append_blocks=1000,
            concurrent_procs=8,
            concurrent_blocks=150,
            chain_blocks=1_000_000,
            incremental_blocks=1000,
            proof_samples=200,
            help_runs=10,
            export_versions=10_000,
            backup_bytes=2 * GIB,
            prune_versions=10_000,
            repeats=5,
            big_repeats=3,
        )

    @classmethod
    def smoke(cls) -> Sizes:
        """Tiny sizes: every code path runs, no number means anything."""
        return cls(
            digest_bytes=16 * MIB + 123,
            audit_files=2,
            audit_file_bytes=4 * MIB,
            adapter_files=40,
            adapter_file_bytes=4096,
            save_bytes=8 * MIB,
            append_blocks=30,
            concurrent_procs=2,
            concurrent_blocks=5,
            chain_blocks=300,
            incremental_blocks=20,
            proof_samples=10,
            help_runs=2,
            export_versions=20,
            backup_bytes=4 * MIB,
            prune_versions=20,
            repeats=1,
            big_repeats=1,
        )


@dataclass
class Context:
    """What every benchmark gets: sizes, a private scratch directory, the databases to use."""

    sizes: Sizes
    smoke: bool
    scratch: Path
    pg_admin_url: str | None
    log: Callable[[str], None] = field(default=lambda _m: None)
    cache: dict[str, Any] = field(default_factory=dict)
    chain_db: tuple[Path, Path] | None = None
    """A prebuilt big ledger (SQLite file, its key) to reuse instead of building one: it is copied first."""

    def dir(self, name: str) -> Path:
        """A fresh empty directory under the scratch directory."""
        path = self.scratch / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def tidy(self) -> None:
        """Remove a finished group's directories (the cached workspaces stay for later groups), so that no group
        measures in a page cache still full of an earlier group's gigabytes."""
        kept = {bench.root for bench in self.cache.values() if hasattr(bench, "root")}
        for path in self.scratch.iterdir():
            if path.is_dir() and path not in kept:
                shutil.rmtree(path)
        os.sync()


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    runs: int, ours: Callable[[], object], reference: Callable[[], object], *, warmup: bool = True
) -> tuple[list[float], list[float]]:
    """Time ``ours`` and ``reference`` alternately ``runs`` times each (after one warm-up of each)."""
    if warmup:
        reference()
        ours()
    a: list[float] = []
    b: list[float] = []
    for _ in range(runs):
        a.append(timed(ours))
        b.append(timed(reference))
    return a, b


def seconds(samples: Sequence[float]) -> Measure:
    """Best-of-N seconds."""
    return Measure(min(samples), "s", tuple(samples))


def rate(count: float, samples: Sequence[float], unit: str) -> Measure:
    """Best-of-N rate (``count`` per fastest sample)."""
    return Measure(count / min(samples), unit, tuple(count / s for s in samples))


def median(samples: Sequence[float]) -> float:
    """Median of the samples."""
    return statistics.median(samples)


def run(cmd: Sequence[str | Path], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a command, failing loudly with its stderr when it does not exit 0; returns stdout."""
    result = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.stdout


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for running ``python -m cli`` from this checkout, without the caller's LEDGER_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def ledger_cmd(*args: str | Path) -> list[str]:
    """The command line for ``ledger ARGS`` run from this checkout."""
    return [sys.executable, "-m", "cli", *map(str, args)]


def random_file(path: Path, size: int, *, seed: int = 0) -> Path:
    """Write ``size`` pseudo-random bytes (incompressible, cheap to make) to ``path``."""
    import random

    rng = random.Random(seed)
    block = rng.randbytes(min(size, 64 * MIB))
    with path.open("wb") as out:
        left = size
        counter = 0
        while left:
            step = min(left, len(block))
            # vary each block so no two chunks hash alike
            out.write(counter.to_bytes(8, "little") + block[8:step] if step > 8 else block[:step])
            left -= step
            counter += 1
    return path


@contextmanager
def chdir(path: Path) -> Iterator[None]:
    """Temporarily change the working directory."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def not_available(name: str, title: str, why: str, **kwargs: Any) -> Figure:
    """A figure whose feature is not in this checkout yet."""
    return Figure(name, title, Status.NOT_AVAILABLE, notes=(why,), **kwargs)


def back_guest_memory(keep: int = 2 * GIB) -> int:
    """Write once to all but ``keep`` bytes of the memory the kernel reports available, then release it.

    On a VM whose hypervisor backs guest memory lazily, the first write to a page the guest has never touched
    costs ~10x a write to a recycled page (about 2.5 s per GiB against 0.25 s here). A freshly booted guest
    hands such pages to whichever process allocates next, so a benchmark would measure the hypervisor on one
    run and not on the next (a 10,000-version export varied from 1.9 s to 2.8 s between runs of the same
    code). Backing it all once first makes every later figure run on recycled memory. Returns the bytes
    written (0 where /proc/meminfo is missing or too little is available).
    """
    import mmap

    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            fields = dict(line.split(":", 1) for line in info)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 0
    size = (available - keep) // mmap.PAGESIZE * mmap.PAGESIZE
    if size <= 0:
        return 0
    with mmap.mmap(-1, size) as memory:
        memory[:: mmap.PAGESIZE] = b"\1" * (size // mmap.PAGESIZE)  # one byte per page backs the page
    return size
