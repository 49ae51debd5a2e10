"""Adapter-directory hashing (issue 3): many small files, files/s and GiB/s next to ``sha256sum``."""

from __future__ import annotations

from benchmarks.harness import GIB, Context, Figure, Measure, Status, interleaved, random_file, run


def run_figures(ctx: Context) -> list[Figure]:
    """hash_directory (SHA-256 + BLAKE3 per file, files in parallel) vs one sha256sum over the same files."""
    from ledger.manifest import hash_directory

    root = ctx.dir("adapter") / "adapter"
    root.mkdir()
    count = ctx.sizes.adapter_files
    for i in range(count):
        sub = root / f"layer-{i % 16:02d}"
        sub.mkdir(exist_ok=True)
        random_file(sub / f"shard-{i:05d}.bin", ctx.sizes.adapter_file_bytes, seed=i)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    total = count * ctx.sizes.adapter_file_bytes
    n = ctx.sizes.repeats
    ours, ref = interleaved(n, lambda: hash_directory(root), lambda: run(["sha256sum", *files]))
    method = (
        f"best of {n}, interleaved, warm page cache; {count} files x {ctx.sizes.adapter_file_bytes} bytes; "
        f"ours {total / GIB / min(ours):.3f} GiB/s, sha256sum {total / GIB / min(ref):.3f} GiB/s"
    )
    return [
        Figure(
            "adapter-hashing",
            "hash_directory of many small files vs sha256sum",
            Status.OK,
            Measure(count / min(ours), "files/s", tuple(count / s for s in ours)),
            Measure(count / min(ref), "files/s", tuple(count / s for s in ref)),
            "sha256sum (SHA-256 only, one process)",
            min(ref) / min(ours),
            "rate ours / rate reference",
            None,
            method,
        )
    ]
