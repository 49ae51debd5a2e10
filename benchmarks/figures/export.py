"""Figure 8: ``ledger export`` of a ledger of many versions, HTML and JSON (absolute goals)."""

from __future__ import annotations

import subprocess

from benchmarks.harness import Context, Figure, Goal, Status, not_available, run, seconds
from benchmarks.versions import versions_bench

GOALS = {"html": Goal("ours", "<", 10.0, "< 10 s"), "json": Goal("ours", "<", 2.0, "< 2 s")}


def run_figures(ctx: Context) -> list[Figure]:
    """Each format exported a few times from the same ledger; the reference is ``ledger log --json``."""
    count = ctx.sizes.export_versions
    bench = versions_bench(ctx, count)
    env = bench.env()
    probe = subprocess.run(bench.cmd("export", "--help"), env=env, capture_output=True, check=False)
    if probe.returncode != 0:
        return [
            not_available(
                f"export-{fmt}",
                f"export of {count:,} versions as {fmt}",
                "ledger export (issue 6) is not on main yet",
                goal=goal,
            )
            for fmt, goal in GOALS.items()
        ]
    figures = []
    n = ctx.sizes.big_repeats
    ref = [_time(bench.cmd("--json", "log", "--limit", str(2 * count + 1)), env) for _ in range(n)]
    for fmt, goal in GOALS.items():
        out = bench.root / f"report.{fmt}"
        ours = [_time(bench.cmd("export", "--format", fmt, "--out", out), env) for _ in range(n)]
        figures.append(
            Figure(
                f"export-{fmt}",
                f"ledger export --format {fmt} of {count:,} versions",
                Status.OK,
                seconds(ours),
                seconds(ref),
                "ledger --json log of the same blocks",
                min(ours) / min(ref),
                "time ours / time reference",
                goal,
                f"best of {n}, whole command wall time, SQLite; {count:,} versions + {count:,} backup blocks",
            )
        )
    return figures


def _time(cmd: list[str], env: dict[str, str]) -> float:
    import time

    start = time.perf_counter()
    run(cmd, env=env)
    return time.perf_counter() - start
