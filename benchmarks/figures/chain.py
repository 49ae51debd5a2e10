"""Figures 5 and 6: full chain audit vs the raw Ed25519 verify rate x cores; proofs and incremental audit.

The big ledger is built by ``benchmarks.bulk`` (real signed blocks in batched transactions), on SQLite. Every
``VERSION_EVERY``-th block is a real version block (with its index row), so the incremental audit pays for the
old version blocks its file checks need, as it would on a ledger that records models.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import time
from typing import Any

from benchmarks import bulk
from benchmarks.harness import Context, Figure, Goal, Measure, Status, run, seconds
from benchmarks.workspace import Bench, make_bench


def raw_verify_rate(samples: int = 3000) -> float:
    """Ed25519 verifications per second on one core (``cryptography``, key loaded once, 32-byte messages)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    messages = [os.urandom(32) for _ in range(samples)]
    signed = [(key.sign(m), m) for m in messages]
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for signature, message in signed:
            public.verify(signature, message)
        best = max(best, samples / (time.perf_counter() - start))
    return best


#: One block in a hundred records a model version (1% of 1,000,000 = 10,000 versions).
VERSION_EVERY = 100


def mixed_blocks() -> bulk.Make:
    """A ``bulk.Make``: a version block every ``VERSION_EVERY`` heights (v1.0, v1.1, ..., each naming its parent),
    small blocks between."""
    from benchmarks.export_data import MICROS_PER_MAJOR, MODEL, version_payload

    lineage = bulk.Lineage()

    def make(height: int, prev_hash: str) -> tuple[str, dict[str, Any], tuple[str, int, int] | None]:
        lineage.see(height, prev_hash)
        if height % VERSION_EVERY:
            return bulk.note_block(height, prev_hash)
        n = height // VERSION_EVERY - 1
        payload = version_payload(n, lineage.parent())
        lineage.record(payload["version"], height)
        return "version", payload, (MODEL, 1 + n // MICROS_PER_MAJOR, n % MICROS_PER_MAJOR)

    return make


def _worst_ms(values: list[float]) -> Measure:
    return Measure(max(values) * 1000, "ms", tuple(v * 1000 for v in values))


def run_figures(ctx: Context) -> list[Figure]:
    """Build the big ledger once, then audit it and prove inclusions in it."""
    from ledger import merkle
    from ledger.api import NodesOf
    from ledger.store import Store

    bench = make_bench(ctx, "chain")
    if ctx.chain_db is not None:
        db, key = ctx.chain_db
        shutil.copyfile(db, bench.models / "ledger.db")
        shutil.copyfile(key, bench.key)
        ledger = bench.open()
    else:
        ledger = bench.create()
        count = ctx.sizes.chain_blocks
        start = time.perf_counter()
        bulk.extend(ledger, count - 1, mixed_blocks(), log=ctx.log)
        ctx.log(f"  bulk build of {count:,} blocks took {time.perf_counter() - start:.0f} s")
    size = ledger.head().height + 1

    cores = os.cpu_count() or 1
    one_core = raw_verify_rate()
    audit = bench.cmd("audit", "--files", "none")
    repeats = 1 if size >= 100_000 else ctx.sizes.big_repeats  # a 1M-block audit takes minutes on 2 cores
    runs = [_timed_run(audit, bench.env()) for _ in range(repeats)]
    limit = one_core * cores
    figures = [
        Figure(
            "chain-audit",
            f"ledger audit --files none of {size:,} blocks vs raw Ed25519 verify rate x {cores} cores",
            Status.OK,
            Measure(size / min(runs), "blocks/s", tuple(size / r for r in runs)),
            Measure(limit, "verifies/s"),
            f"{one_core:,.0f}/s on one core x {cores}",
            size / min(runs) / limit,
            "rate ours / rate reference",
            Goal("ratio", ">=", 0.8, "≥ 0.8x"),
            f"best of {len(runs)}, whole command wall time, SQLite, warm cache; {size:,} blocks",
        )
    ]

    rng = random.Random(7)
    proof_times: list[float] = []
    lookup_times: list[float] = []
    leaves = [0, size - 1, *(rng.randrange(size) for _ in range(ctx.sizes.proof_samples))]  # the ends, and random
    with ledger.store.reading() as connection:
        source = NodesOf(connection)
        root = merkle.root(source, size)
        for index in leaves:
            t0 = time.perf_counter()
            path = merkle.inclusion_proof(source, index, size)
            root_now = merkle.root(source, size)
            proof_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            block = Store.block_at(connection, index)
            lookup_times.append(time.perf_counter() - t0)
            assert block is not None and root_now == root
            leaf = merkle.leaf_hash(bytes.fromhex(block.block_hash))
            merkle.verify_inclusion(leaf=leaf, index=index, size=size, path=path, root=root)
    proof = _worst_ms(proof_times)
    lookup = _worst_ms(lookup_times)
    worst = leaves[proof_times.index(max(proof_times))]
    figures.append(
        Figure(
            "inclusion-proof",
            f"root + inclusion proof, worst of {len(leaves)} leaves of {size:,} blocks",
            Status.OK,
            proof,
            lookup,
            "one block lookup by height (worst)",
            proof.value / lookup.value,
            "time ours / time reference",
            Goal("ours", "<", 50, "< 50 ms each"),
            f"worst {proof.value:.1f} ms (leaf {worst:,}), median {statistics.median(proof_times) * 1000:.1f} ms, "
            f"over leaves 0, {size - 1:,} and {len(leaves) - 2} random ones; library call on an open SQLite "
            "connection; every proof verified",
        )
    )
    figures.append(_incremental(ctx, bench, ledger, min(runs)))
    return figures


def _timed_run(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    run(cmd, env=env)
    return time.perf_counter() - start


def _incremental(ctx: Context, bench: Bench, ledger: Any, full_audit: float) -> Figure:
    """``ledger checkpoint``, then 1,000 new blocks, then ``ledger audit --incremental`` (issue 4's commands).

    The checkpoint covers the ledger's version blocks, which the incremental audit proves against it.
    """
    title = f"incremental audit of {ctx.sizes.incremental_blocks:,} new blocks from a trusted checkpoint"
    goal = Goal("ours", "<", 2.0, "< 2 s")
    env = bench.env()
    runs = []
    for _ in range(ctx.sizes.big_repeats):
        run(bench.cmd("checkpoint"), env=env)  # the trusted state: the head as it is now
        bulk.extend(ledger, ctx.sizes.incremental_blocks)
        runs.append(_timed_run(bench.cmd("audit", "--files", "none", "--incremental"), env))
    size = ledger.head().height + 1
    versions = len(ledger.blocks_of_kind("version"))
    return Figure(
        "incremental-audit",
        title,
        Status.OK,
        seconds(runs),
        Measure(full_audit, "s"),
        "full ledger audit --files none (above)",
        min(runs) / full_audit,
        "time ours / time reference",
        goal,
        f"best of {len(runs)}, whole command wall time; each run: checkpoint, {ctx.sizes.incremental_blocks:,} new "
        f"blocks, audit --incremental; ~{size:,} blocks, {versions:,} of them version blocks below the checkpoint "
        "(proven against it for the file checks)",
    )
