"""Figure 9: ``ledger backup`` to a local S3 server vs a plain fsspec ``put``; ``ledger prune --dry-run``.

The S3 server is moto's ThreadedMotoServer on 127.0.0.1, run in its own process so that neither side shares
an interpreter lock with it; both sides talk to it over HTTP through s3fs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from benchmarks.harness import GIB, Context, Figure, Goal, Measure, Status, random_file, run, seconds
from benchmarks.versions import versions_bench
from benchmarks.workspace import MODEL, make_bench

_SERVER = (
    "from moto.server import ThreadedMotoServer; import sys, time\n"
    "s = ThreadedMotoServer(ip_address='127.0.0.1', port=int(sys.argv[1])); s.start(); print('up', flush=True)\n"
    "sys.stdin.read(); s.stop()\n"
)
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "benchmark",
    "AWS_SECRET_ACCESS_KEY": "benchmark",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def s3_server() -> Iterator[str]:
    """A moto S3 server in a child process; yields its endpoint URL."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        for line in server.stdout:  # moto announces itself first
            if line.strip() == "up":
                break
        else:
            raise RuntimeError("moto server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_figures(ctx: Context) -> list[Figure]:
    """Backup throughput against fsspec put, and the prune dry run over many versions."""
    return [_backup(ctx), _prune(ctx)]


def _backup(ctx: Context) -> Figure:
    import s3fs

    title = "ledger backup to a local S3 server vs plain fsspec put"
    goal = Goal("ratio", ">=", 0.5, "≥ 0.5x")
    bench = make_bench(ctx, "backup")
    size = ctx.sizes.backup_bytes
    name = f"{MODEL}-v1.0"
    weights = random_file(bench.models / f"{name}.pth", size)
    bench.write_metadata(name)
    bench.create().append(weights)
    files = [weights, bench.models / f"{name}.json"]
    total = sum(p.stat().st_size for p in files)
    gib = total / GIB
    n = ctx.sizes.big_repeats
    with s3_server() as endpoint:
        env = bench.env(**CREDENTIALS, LEDGER_S3_ENDPOINT_URL=endpoint, AWS_ENDPOINT_URL=endpoint)
        os.environ.update(CREDENTIALS)
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, key="benchmark", secret="benchmark")
        fs.mkdir("bench-ref")
        fs.mkdir("bench-ours")
        counter = iter(range(1000))

        def reference() -> None:
            prefix = f"bench-ref/run-{next(counter)}"
            fs.put([str(p) for p in files], [f"{prefix}/{p.name}" for p in files])

        ref: list[float] = []
        ours: list[float] = []
        for i in range(n):  # alternating; each run a fresh prefix: a re-run would skip verified copies
            ref.append(_time(reference))
            ours.append(_time(lambda i=i: run(bench.cmd("backup", name, "--to", f"s3://bench-ours/run-{i}"), env=env)))
    return Figure(
        "backup-s3",
        title,
        Status.OK,
        Measure(gib / min(ours), "GiB/s", tuple(gib / s for s in ours)),
        Measure(gib / min(ref), "GiB/s", tuple(gib / s for s in ref)),
        "s3fs put of the same files",
        min(ref) / min(ours),
        "throughput ours / throughput reference",
        goal,
        f"best of {n}; {gib:.2f} GiB (weights + metadata); moto server in its own process on 127.0.0.1; "
        "ours includes the verifying re-read and the backup block",
    )


def _prune(ctx: Context) -> Figure:
    count = ctx.sizes.prune_versions
    title = f"ledger prune --dry-run over {count:,} versions"
    goal = Goal("ours", "<", 1.0, "< 1 s")
    bench = versions_bench(ctx, count)
    env = bench.env()
    n = ctx.sizes.big_repeats
    ref: list[float] = []
    ours: list[float] = []
    for _ in range(n):  # alternating
        ref.append(_time(lambda: run(bench.cmd("--json", "audit", "--files", "none"), env=env)))
        ours.append(_time(lambda: run(bench.cmd("prune", "--dry-run"), env=env)))
    return Figure(
        "prune-dry-run",
        title,
        Status.OK,
        seconds(ours),
        seconds(ref),
        "ledger audit --files none of the same ledger",
        min(ours) / min(ref),
        "time ours / time reference",
        goal,
        f"best of {n}, alternating, whole command wall time, SQLite; every version has a backup block",
    )


def _time(fn: object) -> float:
    assert callable(fn)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
