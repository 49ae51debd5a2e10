"""Transparency benchmark: 1M-block signed ledger on SQLite, full parallel audit vs raw Ed25519, incremental audit,
root and inclusion proof latency. Run: ``python -m benchmarks.transparency [--blocks N]``."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def raw_verify_rate(seconds: float = 2.0) -> float:
    """Ed25519 verifications per second on one core (cryptography/OpenSSL, key object reused)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    message = os.urandom(58)
    signature = key.sign(message)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(500):
            public.verify(signature, message)
        count += 500
    return count / (time.perf_counter() - start)


def main() -> None:
    """Build (or reuse) the ledger and print every measurement side by side."""
    from ledger import bulk, merkle
    from ledger.audit import FilesMode
    from ledger.checkpoints import issue
    from ledger.signing import SigningKey

    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{root / 'bench.db'}"
    key = SigningKey.generate()
    cores = os.cpu_count() or 1
    t = time.perf_counter()
    ledger = bulk.build(url, args.blocks - 1, key=key, models_dir=root)
    print(f"build {args.blocks} blocks: {time.perf_counter() - t:.1f} s")
    size = ledger.size()
    t = time.perf_counter()
    root_hash = ledger.root(size)
    print(f"root at {size}: {(time.perf_counter() - t) * 1000:.1f} ms")
    worst = 0.0
    for index in (0, size // 3, size - 1, 777_777 % size):
        t = time.perf_counter()
        path = ledger.inclusion_proof(index, size)
        worst = max(worst, time.perf_counter() - t)
        leaf = merkle.leaf_hash(bytes.fromhex(ledger.block(index).block_hash))
        merkle.verify_inclusion(leaf=leaf, index=index, size=size, path=path, root=root_hash)
    print(f"inclusion proof (worst of 4): {worst * 1000:.1f} ms")
    rate = raw_verify_rate()
    print(f"raw Ed25519 verify: {rate:.0f}/s per core x {cores} cores = {rate * cores:.0f}/s")
    state = root / "state"
    t = time.perf_counter()
    report = ledger.audit(files=FilesMode.NONE, state_dir=state)
    elapsed = time.perf_counter() - t
    audit_rate = report.blocks_checked / elapsed
    print(
        f"full audit: {report.blocks_checked} blocks in {elapsed:.1f} s = {audit_rate:.0f}/s "
        f"= {audit_rate / (rate * cores):.2f} x (raw x cores); clean={report.clean}"
    )
    issue(ledger, witness=None, state_dir=state)
    bulk.extend(ledger, 1000)
    t = time.perf_counter()
    report = ledger.audit(files=FilesMode.NONE, state_dir=state, incremental=True)
    print(
        f"incremental audit of {report.blocks_checked} new blocks: {time.perf_counter() - t:.2f} s; "
        f"clean={report.clean}"
    )


if __name__ == "__main__":
    main()
