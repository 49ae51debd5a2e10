"""``python -m benchmarks.scaling``: how append latency, audit time and proof time grow with the ledger.

Grows one SQLite ledger through the sizes (bulk path for the bulk, then real appends to time), and writes
``docs/img/scaling-*.png`` plus ``docs/img/scaling.json``. Append latency and proof time are medians of many
calls; the audit is one in-process ``Ledger.audit(files=none)`` per size.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import bulk
from benchmarks.figures.append_rate import PAYLOAD
from benchmarks.harness import REPO, Context, Sizes
from benchmarks.workspace import make_bench


def measure(ledger: Any, samples: int) -> dict[str, float]:
    """Median append latency and proof time (ms), and one full chain audit (s), at the ledger's size."""
    from ledger import merkle
    from ledger.api import NodesOf
    from ledger.audit import FilesMode

    appends = []
    for _ in range(samples):
        start = time.perf_counter()
        ledger.append_event("bench", PAYLOAD)
        appends.append(time.perf_counter() - start)
    size = ledger.head().height + 1
    rng = random.Random(size)
    proofs = []
    with ledger.store.reading() as connection:
        source = NodesOf(connection)
        for _ in range(samples):
            start = time.perf_counter()
            merkle.inclusion_proof(source, rng.randrange(size), size)
            merkle.root(source, size)
            proofs.append(time.perf_counter() - start)
    start = time.perf_counter()
    report = ledger.audit(files=FilesMode.NONE)
    audit = time.perf_counter() - start
    assert report.clean, report.findings[:3]
    return {
        "size": size,
        "append_ms": statistics.median(appends) * 1000,
        "proof_ms": statistics.median(proofs) * 1000,
        "audit_s": audit,
    }


def plot(rows: list[dict[str, float]], out: Path) -> list[Path]:
    """One small log-log PNG per quantity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    sizes = [r["size"] for r in rows]
    for key, label, name in (
        ("append_ms", "append latency, median (ms)", "scaling-append.png"),
        ("audit_s", "full chain audit (s)", "scaling-audit.png"),
        ("proof_ms", "root + inclusion proof, median (ms)", "scaling-proof.png"),
    ):
        fig, ax = plt.subplots(figsize=(4.2, 3.0), dpi=80)
        ax.plot(sizes, [r[key] for r in rows], marker="o")
        ax.set_xscale("log")
        if key == "audit_s":  # linear growth shows as a straight line of slope 1
            ax.set_yscale("log")
        else:  # O(log n): flat on a linear axis from zero
            ax.set_ylim(0, max(r[key] for r in rows) * 1.5)
        ax.set_xlabel("blocks in the ledger")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        path = out / name
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Grow, measure at each size, plot."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument(
        "--big",
        nargs=2,
        type=Path,
        metavar=("DB", "KEY"),
        help="a prebuilt SQLite ledger and its key for the largest point (copied; the sizes below it are grown)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    parser.add_argument("--replot", action="store_true", help="only redraw the PNGs from OUT/scaling.json")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        plot(json.loads((args.out / "scaling.json").read_text()), args.out)
        return 0

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    rows = []
    with tempfile.TemporaryDirectory(prefix="ledger-scaling-") as scratch:
        ctx = Context(Sizes.smoke(), False, Path(scratch), None, log)
        ledger = make_bench(ctx, "scaling").create()
        for size in sorted(args.sizes):
            missing = size - (ledger.head().height + 1) - args.samples
            if missing > 0:
                bulk.extend(ledger, missing, log=log)
            rows.append(measure(ledger, args.samples))
            log(json.dumps(rows[-1]))
        if args.big is not None:
            big = make_bench(ctx, "big")
            shutil.copyfile(args.big[0], big.models / "ledger.db")
            shutil.copyfile(args.big[1], big.key)
            rows.append(measure(big.open(), args.samples))
            log(json.dumps(rows[-1]))
    (args.out / "scaling.json").write_text(json.dumps(rows, indent=2) + "\n")
    for path in plot(rows, args.out):
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
