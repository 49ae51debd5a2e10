"""Figure 7: ``ledger --help`` wall time vs ``python -c pass`` (nothing heavy may be imported at start)."""

from __future__ import annotations

import sys

from benchmarks.harness import Context, Figure, Goal, Status, cli_env, interleaved, ledger_cmd, run, seconds


def run_figures(ctx: Context) -> list[Figure]:
    """Start-up cost of the CLI, absolute and as a ratio to a bare interpreter."""
    env = cli_env()
    n = ctx.sizes.help_runs
    ours, ref = interleaved(
        n, lambda: run(ledger_cmd("--help"), env=env), lambda: run([sys.executable, "-c", "pass"], env=env)
    )
    return [
        Figure(
            "help",
            "ledger --help wall time vs python -c pass",
            Status.OK,
            seconds(ours),
            seconds(ref),
            "python -c pass",
            min(ours) / min(ref),
            "time ours / time reference",
            Goal("ours", "<", 0.3, "< 0.3 s"),
            f"best of {n}, interleaved, subprocess wall time (python -m cli from the checkout)",
        )
    ]
