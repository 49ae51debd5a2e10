"""Figure 2: ``ledger audit --files full`` of a model directory vs model_signing, BLAKE3 and sha256sum.

The model directory holds several large weight files, their metadata and a LoRA adapter directory of small
files. model_signing (``python -m model_signing verify key``) verifies a signature made over the same bytes
(hard links, so one page cache serves every tool); it signs with an ECDSA P-256 key because its key signer
does not accept Ed25519 keys. The BLAKE3 reference is the machine's limit: the ``blake3`` package with all
threads over memory-mapped files, in this process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from benchmarks.harness import (
    GIB,
    Context,
    Figure,
    Goal,
    Measure,
    Status,
    interleaved,
    random_file,
    run,
    seconds,
)
from benchmarks.workspace import MODEL, Bench, make_bench


def _populate(ctx: Context, bench: Bench) -> list[Path]:
    """Append the versions; returns every file of the model directory (weights, metadata, adapter files)."""
    ledger = bench.create()
    count = ctx.sizes.audit_files
    files: list[Path] = []
    for i in range(count):
        name = f"{MODEL}-v1.{i}"
        weights = random_file(bench.models / f"{name}.pth", ctx.sizes.audit_file_bytes, seed=i)
        if i == count - 1:
            adapter = bench.adapters / name
            adapter.mkdir()
            for j in range(ctx.sizes.adapter_files):
                random_file(adapter / f"shard-{j:05d}.bin", ctx.sizes.adapter_file_bytes, seed=1000 + j)
            (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "benchmodel-v1.0"}')
            files.extend(sorted(adapter.iterdir()))
        files.extend([weights, bench.write_metadata(name)])
        ledger.append(weights)
    return files


def _model_dir(bench: Bench, files: list[Path]) -> Path:
    """The same files as a plain model directory for model_signing (hard links: no extra bytes)."""
    model = bench.root / "model"
    (model / "adapter").mkdir(parents=True)
    for path in files:
        target = model / "adapter" / path.name if path.parent.parent == bench.adapters else model / path.name
        os.link(path, target)
    return model


def _sign(bench: Bench, model: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = bench.root / "ms-key.pem"
    public = bench.root / "ms-key.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signature = bench.root / "model.sig"
    run(
        [
            sys.executable,
            "-m",
            "model_signing",
            "sign",
            "key",
            model,
            "--private_key",
            private,
            "--signature",
            signature,
        ]
    )
    return signature, public


def _blake3_all(files: list[Path]) -> None:
    import mmap

    import blake3

    for path in files:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
            if size:
                with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                    hasher.update(mapped)
            hasher.hexdigest()


def run_figures(ctx: Context) -> list[Figure]:
    """Three comparisons over one populated model directory."""
    bench = make_bench(ctx, "file-audit")
    files = _populate(ctx, bench)
    model = _model_dir(bench, files)
    signature, public = _sign(bench, model)
    total = sum(p.stat().st_size for p in files)
    n = ctx.sizes.big_repeats
    env = bench.env()
    audit = bench.cmd("--json", "audit", "--files", "full")
    verify: list[str | Path] = [sys.executable, "-m", "model_signing", "verify", "key", model]
    verify += ["--signature", signature, "--public_key", public]

    def ours() -> None:
        run(audit, env=env)

    shape = (
        f"{ctx.sizes.audit_files} x {ctx.sizes.audit_file_bytes / GIB:.2f} GiB weights + metadata + adapter of "
        f"{ctx.sizes.adapter_files} files, {total / GIB:.2f} GiB in all"
    )
    method = f"best of {n}, interleaved, warm page cache, wall time of the whole command; {shape}"
    a, ms = interleaved(n, ours, lambda: run(verify))
    figures = [
        Figure(
            "audit-vs-model-signing",
            "ledger audit --files full vs model_signing verify key",
            Status.OK,
            seconds(a),
            seconds(ms),
            "model_signing verify key",
            min(ms) / min(a),
            "speed-up: time reference / time ours",
            Goal("ratio", ">=", 2.5, "≥ 2.5x faster"),
            method,
        )
    ]
    b, b3 = interleaved(n, ours, lambda: _blake3_all(files))
    gib = total / GIB
    figures.append(
        Figure(
            "audit-vs-blake3",
            "ledger audit --files full vs the machine's multithreaded BLAKE3 rate",
            Status.OK,
            Measure(gib / min(b), "GiB/s", tuple(gib / s for s in b)),
            Measure(gib / min(b3), "GiB/s", tuple(gib / s for s in b3)),
            "blake3 all threads, mmap, in-process",
            min(b3) / min(b),
            "rate ours / rate reference",
            Goal("ratio", ">=", 0.8, "≥ 0.8x"),
            method,
        )
    )
    ledger = bench.open()

    def in_process() -> None:
        from ledger.audit import FilesMode

        report = ledger.audit(files=FilesMode.FULL, state_dir=bench.root / "state")
        assert report.clean, report.findings

    d, b3_again = interleaved(n, in_process, lambda: _blake3_all(files))
    figures.append(
        Figure(
            "audit-files-in-process",
            "Ledger.audit(files=full) in-process vs the machine's multithreaded BLAKE3 rate (no start-up)",
            Status.OK,
            Measure(gib / min(d), "GiB/s", tuple(gib / s for s in d)),
            Measure(gib / min(b3_again), "GiB/s", tuple(gib / s for s in b3_again)),
            "blake3 all threads, mmap, in-process",
            min(b3_again) / min(d),
            "rate ours / rate reference",
            None,
            f"best of {n}, interleaved, warm page cache, library call (chain, guards and files; no interpreter "
            f"start-up or imports); {shape}",
        )
    )
    c, sha = interleaved(n, ours, lambda: run(["sha256sum", *files]), warmup=False)
    figures.append(
        Figure(
            "audit-vs-sha256sum",
            "ledger audit --files full vs sha256sum over the same files",
            Status.OK,
            seconds(c),
            seconds(sha),
            "sha256sum",
            min(sha) / min(c),
            "speed-up: time reference / time ours",
            None,
            method,
        )
    )
    return figures
