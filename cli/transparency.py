"""Transparency commands: ``checkpoint``, ``prove``, ``verify-proof`` and ``keys rotate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.errors import EXIT_INPUT
from cli.main import app, emit, fail, keys_app, open_ledger, settings_of


@app.command()
def checkpoint(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the signed note to FILE.")] = None,
    witness: Annotated[str | None, typer.Option("--witness", help="Witness location (default LEDGER_WITNESS).")] = None,
) -> None:
    """Sign a checkpoint of the ledger, store it, publish it to the witness and trust it locally."""
    from ledger.checkpoints import issue
    from ledger.fsutil import write_atomic
    from ledger.witness import Witness

    settings = settings_of(ctx)
    ledger = open_ledger(settings, signing=True)
    location = witness or settings.witness
    issued = issue(ledger, witness=Witness(location) if location else None, state_dir=settings.state_dir)
    if out is not None:
        write_atomic(out, issued.signed.note)
    cp = issued.signed.checkpoint
    lines = [f"checkpoint size {cp.size} root {cp.root.hex()}"]
    lines.append(f"witness: {issued.witness}" if issued.witness else "witness: none configured (--witness)")
    if out is not None:
        lines.append(f"wrote {out}")
    emit(
        settings,
        {
            "origin": cp.origin,
            "size": cp.size,
            "root": cp.root.hex(),
            "note": issued.signed.note.decode("utf-8"),
            "witness": issued.witness,
            "trusted_state_updated": issued.trusted,
        },
        "\n".join(lines) + ("" if settings.json else "\n\n" + issued.signed.note.decode("utf-8").rstrip("\n")),
    )


@app.command()
def prove(
    ctx: typer.Context,
    ref: Annotated[str | None, typer.Argument(metavar="VERSION|HEIGHT", help="Block to prove.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the bundle here (default stdout).")] = None,
    since: Annotated[
        Path | None, typer.Option("--since", help="Prove consistency from this older checkpoint instead.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model slug, for short version names.")] = None,
) -> None:
    """Write a self-contained inclusion (or, with --since, consistency) proof bundle.

    When no stored checkpoint reaches the block (or, with --since, the head) and the signing key is at hand,
    a checkpoint of the head is signed, stored and published first, as `ledger checkpoint` does.
    """
    from cli import render
    from cli.errors import one_line
    from ledger.errors import KeyFileError
    from ledger.fsutil import write_atomic
    from ledger.proving import Signing, prove_consistency, prove_inclusion
    from ledger.signing import load_key_file
    from ledger.witness import Witness

    settings = settings_of(ctx)
    if (ref is None) == (since is None):
        fail("give exactly one of VERSION|HEIGHT or --since CHECKPOINT_FILE", EXIT_INPUT)
    old = None
    if since is not None:
        try:
            old = since.read_bytes()
        except OSError as exc:
            fail(f"cannot read {since}: {exc.strerror}", EXIT_INPUT)
    ledger = open_ledger(settings)
    signing = None
    if settings.key_path.is_file():  # optional here: only a proof past the newest checkpoint needs it
        try:
            ledger.use_key(load_key_file(settings.key_path, settings.passphrase))
        except KeyFileError as exc:
            typer.echo(f"note: not signing a new checkpoint ({one_line(exc)})", err=True)
        else:
            witness = Witness(settings.witness) if settings.witness else None
            signing = Signing(witness=witness, state_dir=settings.state_dir)
    if old is not None:
        proved = prove_consistency(ledger, old, signing=signing)
    else:
        assert ref is not None
        proved = prove_inclusion(ledger, ledger.find(ref, model=model), signing=signing)
    bundle = proved.bundle
    to_stderr = out is None or settings.json
    if proved.issued is not None:
        where = proved.issued.witness or "no witness configured"
        size = proved.issued.signed.checkpoint.size
        typer.echo(f"signed checkpoint size {size} for this proof (stored; witness: {where})", err=to_stderr)
    if proved.behind_head is not None:
        typer.echo(
            f"note: proved to the newest stored checkpoint (size {proved.size}), but the head is at size "
            f"{proved.behind_head}: with the signing key (--key) the proof would reach the head",
            err=to_stderr,
        )
    text = render.to_json(bundle) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    write_atomic(out, text.encode("utf-8"))
    typer.echo(f"wrote {bundle['type']} proof to {out}", err=settings.json)


@app.command("verify-proof")
def verify_proof(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Argument(help="Proof bundle (JSON) from `ledger prove`.")],
    file: Annotated[Path | None, typer.Option("--file", help="Weight file to re-hash against the block.")] = None,
    vkey: Annotated[
        str | None, typer.Option("--vkey", envvar="LEDGER_VKEY", help="Pinned checkpoint verifier key.")
    ] = None,
) -> None:
    """Verify a proof bundle without any database: exit 0 valid, 1 invalid, 2 malformed."""
    from ledger.errors import InputError
    from ledger.hashing import hash_file
    from ledger.proof import check_weights, verify_bundle

    settings = settings_of(ctx)
    try:
        data = bundle.read_bytes()
    except OSError as exc:
        fail(f"cannot read {bundle}: {exc.strerror}", EXIT_INPUT)
    result = verify_bundle(data, vkey=vkey)
    hashed = None
    if file is not None:
        if result.block is None:
            raise InputError("--file needs an inclusion bundle (a block with a weights record)")
        hashed = hash_file(file)
        check_weights(result.block, size=hashed.size, sha256=hashed.sha256, blake3=hashed.blake3)
    lines = []
    if result.block is not None:
        lines.append(
            f"valid: block {result.block.height} ({result.block.kind}) {result.block.block_hash} is in "
            f"{result.origin} at tree size {result.size}"
        )
    else:
        lines.append(f"valid: {result.origin} size {result.size} extends size {result.old_size}")
    if hashed is not None:
        lines.append(f"weight file {file} matches the block (sha256 {hashed.sha256})")
    if not result.pinned:
        lines.append("warning: checkpoint key taken from the bundle itself; pin it with --vkey")
    emit(
        settings,
        {
            "valid": True,
            "type": result.type,
            "origin": result.origin,
            "size": result.size,
            "root": result.root.hex(),
            "height": result.block.height if result.block else None,
            "old_size": result.old_size,
            "file_checked": hashed is not None,
            "key_pinned": result.pinned,
        },
        "\n".join(lines),
    )


@keys_app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    new_key: Annotated[
        Path | None,
        typer.Option("--new-key", help="New key file (loaded, or generated there); default: replace --key in place."),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why the key is rotated (recorded in the key block).")] = "rotation",
) -> None:
    """Introduce a new signing key with a `key` block signed by the current one."""
    from cli import render
    from ledger.rotation import rotate_files

    settings = settings_of(ctx)
    ledger = open_ledger(settings, signing=True)
    rotated = rotate_files(
        ledger, key_path=settings.key_path, new_path=new_key, passphrase=settings.passphrase, reason=reason
    )
    lines = [render.block_line(rotated.block), f"new key id {rotated.new_key.key_id} in {rotated.new_path}"]
    if rotated.retired_path is not None:
        lines.append(f"retired key kept in {rotated.retired_path}")
    else:
        lines.append(f"point --key / LEDGER_KEY at {rotated.new_path}")
    emit(
        settings,
        {
            "block": rotated.block.to_json(),
            "key_id": rotated.new_key.key_id,
            "key_path": str(rotated.new_path),
            "retired_path": str(rotated.retired_path) if rotated.retired_path else None,
        },
        "\n".join(lines),
    )
