"""``python -m benchmarks [--smoke] [--only NAME...] [--out FILE]``: run the figures, print the table, write JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks.harness import GIB, Context, Figure, Sizes, Status, back_guest_memory
from benchmarks.report import table
from benchmarks.workspace import pg_admin_url

#: Benchmark groups in run order: name -> module under benchmarks.figures.
GROUPS = {
    "startup": "startup",
    "digest": "digest",
    "append": "append_rate",
    "file-audit": "file_audit",
    "adapter": "adapter",
    "save": "save",
    "chain": "chain",
    "export": "export",
    "lifecycle": "lifecycle",
}


def run_group(name: str, ctx: Context) -> list[Figure]:
    """Run one group; an exception becomes an ``error`` row so one broken figure cannot hide the others."""
    module = importlib.import_module(f"benchmarks.figures.{GROUPS[name]}")
    start = time.perf_counter()
    try:
        figures: list[Figure] = module.run_figures(ctx)
    except (Exception, SystemExit) as exc:  # noqa: BLE001  (the harness reports every failure as a row)
        detail = "".join(traceback.format_exception_only(exc)).strip()
        ctx.log(traceback.format_exc())
        figures = [Figure(name, f"{name} benchmarks", Status.ERROR, notes=(detail,))]
    ctx.log(f"[{name}] done in {time.perf_counter() - start:.1f} s")
    return figures


def run_isolated(name: str, args: argparse.Namespace, scratch: Path) -> list[Figure]:
    """Run one group in a fresh interpreter, so that no group measures in another's leftovers (allocator and
    thread-pool state, imported modules, page cache it filled); its figures come back through a results file."""
    out = scratch / f"{name}.json"
    cmd = [sys.executable, "-m", "benchmarks", "--only", name, "--out", str(out), "--scratch", str(scratch)]
    cmd.append("--no-memory-backing")
    if args.smoke:
        cmd.append("--smoke")
    if args.chain_db:
        cmd += ["--chain-db", *map(str, args.chain_db)]
    result = subprocess.run(cmd, stdout=sys.stderr, check=False)
    if not out.exists():
        return [
            Figure(name, f"{name} benchmarks", Status.ERROR, notes=(f"the group's process exited {result.returncode}",))
        ]
    return [Figure.from_json(item) for item in json.loads(out.read_text())["figures"]]


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the chosen groups, print the table and write the results file."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks every benchmark runs")
    parser.add_argument("--only", nargs="+", choices=sorted(GROUPS), metavar="NAME", help=f"groups: {sorted(GROUPS)}")
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"), help="JSON results file")
    parser.add_argument(
        "--chain-db",
        nargs=2,
        type=Path,
        metavar=("DB", "KEY"),
        help="reuse a prebuilt big SQLite ledger and its key for the chain figures (copied, never changed)",
    )
    parser.add_argument("--scratch", type=Path, default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument(
        "--no-memory-backing",
        action="store_true",
        help="skip writing once to the available memory first (harness.back_guest_memory; each group's own "
        "process skips it, the run did it)",
    )
    args = parser.parse_args(argv)

    sizes = Sizes.smoke() if args.smoke else Sizes.full()
    names = args.only or list(GROUPS)
    started = time.time()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    figures: list[Figure] = []

    def save() -> None:  # after every group, so a long run that dies keeps what it measured
        result = {
            "schema": "ledger-bench/v1",
            "smoke": args.smoke,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": round(time.time() - started, 1),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "sizes": {name: getattr(sizes, name) for name in sizes.__slots__},
            "figures": [figure.to_json() for figure in figures],
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    if not args.smoke and not args.no_memory_backing:
        start = time.perf_counter()
        backed = back_guest_memory()
        log(f"backed {backed / GIB:.1f} GiB of guest memory first in {time.perf_counter() - start:.1f} s")
    with tempfile.TemporaryDirectory(prefix="ledger-bench-", dir=args.scratch) as scratch:
        ctx = Context(sizes, args.smoke, Path(scratch), pg_admin_url(), log)
        ctx.chain_db = tuple(args.chain_db) if args.chain_db else None
        for name in names:
            log(f"[{name}] running")
            group = run_group(name, ctx) if len(names) == 1 else run_isolated(name, args, Path(scratch))
            log(table(group))
            figures.extend(group)
            save()
            ctx.tidy()
    print(table(figures))
    log(f"results written to {args.out}")
    return 1 if any(f.status is Status.ERROR for f in figures) else 0


if __name__ == "__main__":
    raise SystemExit(main())
