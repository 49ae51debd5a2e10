"""Figure 8: ``ledger export`` of a ledger of many versions, HTML and JSON (absolute goals).

A team that exports for regulators also takes signed checkpoints (``ledger checkpoint``), so the goal rows
export after one: the export-time audit then resumes from the trusted state, as the report says. The same
exports with ``--full-audit`` (every block re-verified) are reported beside them.
"""

from __future__ import annotations

import time

from benchmarks.harness import Context, Figure, Goal, Status, run, seconds
from benchmarks.versions import versions_bench

GOALS = {"html": Goal("ours", "<", 10.0, "< 10 s"), "json": Goal("ours", "<", 2.0, "< 2 s")}


def run_figures(ctx: Context) -> list[Figure]:
    """Each format exported a few times from the same ledger; the reference is ``ledger log --json``."""
    count = ctx.sizes.export_versions
    bench = versions_bench(ctx, count)
    env = bench.env()
    n = ctx.sizes.big_repeats
    ref = [_time(bench.cmd("--json", "log", "--limit", str(2 * count + 1)), env) for _ in range(n)]
    run(bench.cmd("checkpoint"), env=env)
    shape = f"{count:,} versions + {count:,} backup blocks"
    figures = []
    for fmt, goal in GOALS.items():
        out = bench.root / f"report.{fmt}"
        for full in (False, True):
            flags = ["--full-audit"] if full else []
            ours = [_time(bench.cmd("export", "--format", fmt, "--out", out, *flags), env) for _ in range(n)]
            audit = "a full audit of every block" if full else "its audit resumed from the checkpoint taken first"
            figures.append(
                Figure(
                    f"export-{fmt}-full-audit" if full else f"export-{fmt}",
                    f"ledger export --format {fmt}{' --full-audit' if full else ''} of {count:,} versions",
                    Status.OK,
                    seconds(ours),
                    seconds(ref),
                    "ledger --json log of the same blocks",
                    min(ours) / min(ref),
                    "time ours / time reference",
                    None if full else goal,
                    f"best of {n}, whole command wall time, SQLite; {shape}; {audit}",
                )
            )
    return figures


def _time(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    run(cmd, env=env)
    return time.perf_counter() - start
