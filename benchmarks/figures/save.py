"""Figure 3: ``Ledger.save_version`` of a state dict of at least 1 GiB vs a plain ``torch.save`` of it."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from benchmarks.harness import GIB, Context, Figure, Goal, Status, seconds
from benchmarks.workspace import MODEL, make_bench, seed_metadata

GOAL = Goal("ratio", "<=", 1.10, "≤ 1.10x")


def _state(size: int) -> dict[str, Any]:
    import torch

    generator = torch.Generator().manual_seed(0)
    per = 64 << 20
    count = max(1, size // per)
    return {f"layer{i}.weight": torch.rand(per // 4, generator=generator) for i in range(count)}


def run_figures(ctx: Context) -> list[Figure]:
    """Alternate torch.save and save_version (each a new version) over the same state dict, same disk."""
    import torch

    bench = make_bench(ctx, "save")
    state = _state(ctx.sizes.save_bytes)
    size = sum(t.numel() * t.element_size() for t in state.values())
    # Five rounds, not the three of other multi-GiB figures: on this VM a single torch.save of the same state
    # dict ranged 0.58-2.62 s within one run, and best of three still let one noisy round decide the ratio.
    n = ctx.sizes.repeats
    plain = bench.root / "plain"
    plain.mkdir()
    counter = iter(range(1000))

    def reference() -> None:
        torch.save(state, plain / f"plain-{next(counter)}.pth")

    def durable() -> None:  # what a pipeline that must not lose the file does by hand: save, then fsync
        path = plain / f"plain-{next(counter)}.pth"
        torch.save(state, path)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # Each side's file is removed after it is timed, so that both always write into page cache the kernel has
    # used before: on this VM the first touch of fresh memory costs ~2.5 s per GiB, which otherwise lands on
    # whichever side happens to write past the recycled pages (the ledger does not audit this workspace). Then
    # everything dirty goes to disk, so that our fsync does not wait behind earlier benchmarks' writes.
    def tidy() -> None:
        for path in [*plain.iterdir(), *bench.models.glob("*.pth")]:
            path.unlink()
        os.sync()

    reference()  # warm-up
    tidy()
    method = (
        f"best of {n}, alternating, {size / GIB:.2f} GiB state dict of float32 tensors, same file system, each "
        "file removed after its run (both sides write into recycled page cache); ours includes the fsync"
    )
    ledger = bench.create()
    versions = iter(range(1000))

    def ours() -> None:
        i = next(versions)
        kind = "major" if i == 0 else "micro"
        ledger.save_version(state, seed_metadata(f"{MODEL}-v1.{i}"), kind=kind)

    def raw_durable() -> None:  # the floor for any save that fsyncs: the same bytes, written plainly, then fsync
        path = plain / f"raw-{next(counter)}.bin"
        with path.open("wb", buffering=0) as out:
            for tensor in state.values():
                out.write(tensor.numpy().data)
            os.fsync(out.fileno())

    def sha256_only() -> None:  # the floor for any save that records a SHA-256: one pass over the bytes in memory
        digest = hashlib.sha256()
        for tensor in state.values():
            digest.update(tensor.numpy())

    floor = [time_of(sha256_only) for _ in range(n)]
    ours_runs: list[float] = []
    ref: list[float] = []
    synced: list[float] = []
    raw: list[float] = []
    ours()  # warm-up (and v1.0)
    tidy()
    for _ in range(n):
        ours_runs.append(time_of(ours))
        tidy()
        ref.append(time_of(reference))
        tidy()
        synced.append(time_of(durable))
        tidy()
        raw.append(time_of(raw_durable))
        tidy()
    return [
        Figure(
            "save-version",
            "save_version vs plain torch.save of the same state dict",
            Status.OK,
            seconds(ours_runs),
            seconds(ref),
            "torch.save",
            min(ours_runs) / min(ref),
            "time ours / time reference",
            GOAL,
            method,
        ),
        Figure(
            "save-version-vs-durable",
            "save_version vs torch.save followed by an fsync of the file",
            Status.OK,
            seconds(ours_runs),
            seconds(synced),
            "torch.save + fsync",
            min(ours_runs) / min(synced),
            "time ours / time reference",
            None,
            method,
        ),
        Figure(
            "save-durable-floor",
            "the state dict's bytes written plainly and fsynced vs plain torch.save (no ledger)",
            Status.OK,
            seconds(raw),
            seconds(ref),
            "torch.save",
            min(raw) / min(ref),
            "time floor / time reference",
            None,
            f"best of {n}, in the same rounds; the tensors' memory written to a file in one call each, then "
            "fsync: the least any save that must be on disk when it returns (as the issue's fsync requires) can "
            "take here, so the goal's 1.10x is out of reach when this is above it",
        ),
        Figure(
            "save-version-vs-sha256",
            "save_version vs one SHA-256 pass over the state dict's bytes in memory (no file)",
            Status.OK,
            seconds(ours_runs),
            seconds(floor),
            "hashlib.sha256 of the tensors",
            min(ours_runs) / min(floor),
            "time ours / time reference",
            None,
            f"best of {n}; the reference is the least any save recording a SHA-256 can take on one core: "
            f"the goal's 1.10x of torch.save is below it whenever torch.save is faster than this pass",
        ),
    ]


def time_of(fn: Any) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
