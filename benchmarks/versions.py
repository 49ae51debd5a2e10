"""A ledger of many real-looking versions (and their backups) for the export and prune benchmarks.

Built once per run through ``benchmarks.bulk``: each version block carries the payload ``ledger append``
records (weights record with real digests of a small local file, committed metadata, parent link), indexed
like an append; each version is followed by a ``backup`` block per the lifecycle payload convention.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import blake3

from benchmarks import bulk
from benchmarks.harness import Context
from benchmarks.workspace import MODEL, Bench, make_bench, seed_metadata

PER_MAJOR = 50


def version_tag(i: int) -> tuple[int, int]:
    """The i-th version's (major, micro): a major every PER_MAJOR versions."""
    return 1 + i // PER_MAJOR, i % PER_MAJOR


def versions_bench(ctx: Context, count: int) -> Bench:
    """The workspace holding ``count`` versions, each with a backup block; cached for the run."""
    cached = ctx.cache.get(f"versions-{count}")
    if cached is not None:
        assert isinstance(cached, Bench)
        return cached
    bench = make_bench(ctx, f"versions-{count}")
    ledger = bench.create()
    content = b"w" * 64
    state: dict[str, Any] = {}
    lineage = bulk.Lineage()

    def make(height: int, prev_hash: str) -> tuple[str, dict[str, Any], tuple[str, int, int] | None]:
        lineage.see(height, prev_hash)
        i = (height - 1) // 2
        major, micro = version_tag(i)
        name = f"{MODEL}-v{major}.{micro}"
        weights = f"{name}.pth"
        if height % 2 == 0:  # the backup of the version just recorded
            files = [
                {"role": "weights", "path": weights, "remote": f"memory://bench/{weights}", "size": len(content)}
                | state["digests"]
            ]
            return "backup", {"version": name, "location": "memory://bench", "files": files, "verified": True}, None
        data = content + str(i).encode()
        path = bench.models / weights
        path.write_bytes(data)
        digests = {"sha256": hashlib.sha256(data).hexdigest(), "blake3": blake3.blake3(data).hexdigest()}
        state["digests"] = digests
        meta = seed_metadata(name)
        meta["metrics"]["validation_accuracy"] = 0.7 + (i % 100) / 1000
        (bench.models / f"{name}.json").write_text(__import__("json").dumps(meta))
        payload = {
            "model": MODEL,
            "version": f"{major}.{micro}",
            "name": name,
            "release": "major" if micro == 0 else "micro",
            "stage": None,
            "question": None,
            "weights": {
                "path": weights,
                "format": "pth",
                "size": len(data),
                **digests,
                "mtime_ns": str(os.stat(path).st_mtime_ns),
                "tensors": None,
            },
            "metadata": {"path": f"{name}.json", "content": meta},
            "training_data": {"computed": False, "hash": meta["provenance"]["training_data_hash"]},
            "adapter": None,
            "parent": lineage.parent(),
        }
        lineage.record(f"{major}.{micro}", height)
        return "version", payload, (MODEL, major, micro)

    bulk.extend(ledger, 2 * count, make, log=ctx.log)
    ctx.cache[f"versions-{count}"] = bench
    return bench
