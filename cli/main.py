"""Typer application: global options, one function per command, each parsing, calling the library, rendering.

Library modules are imported inside the commands so that ``ledger --help`` starts fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from cli.errors import EXIT_FINDINGS, EXIT_INPUT, EXIT_INTERRUPTED, INTERRUPTED, exit_code, message, one_line
from ledger.errors import LedgerError
from ledger.settings import Settings, default_key_path, default_state_dir

if TYPE_CHECKING:
    from ledger.api import Ledger


class LedgerGroup(TyperGroup):
    """Top-level group: turns library errors into a one-line message and the mapped exit code."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Let ``audit --remote`` stand alone as ``--remote=size`` (``--remote=full`` re-hashes), and refuse an
        argument no file name can hold (a lone surrogate: never from a real POSIX command line, whose bytes
        decode with ``surrogateescape``, but a caller passing strings can; Typer's path check would crash)."""
        from typer._click.exceptions import UsageError

        for arg in args:
            try:
                os.fsencode(arg)
            except UnicodeEncodeError:
                raise UsageError(f"argument {one_line(arg)} is not valid text for this system", ctx) from None
        if "audit" in args:
            start = args.index("audit")
            args = args[:start] + ["--remote=size" if a == "--remote" else a for a in args[start:]]
        return list(super().parse_args(ctx, args))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Run the CLI; usage errors become one line on stderr and exit 2 (not a multi-line box)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **kwargs)
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **kwargs)
        except NoArgsIsHelpError as error:
            error.show()
            raise SystemExit(error.exit_code) from None
        except ClickException as error:
            hint = ""
            if isinstance(error, UsageError) and error.ctx is not None:
                hint = f" (see '{error.ctx.command_path} --help')"
            typer.echo(f"ledger: error: {one_line(error.format_message())}{hint}", err=True)
            raise SystemExit(error.exit_code) from None
        except typer.Abort:  # end of input at a prompt, or Ctrl-C outside a command
            typer.echo(f"ledger: error: {INTERRUPTED}", err=True)
            raise SystemExit(EXIT_INTERRUPTED) from None
        raise SystemExit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        """Run the command; a reported error becomes one line and its exit code (``cli/errors.py``), unless
        ``--debug`` lets the traceback through."""
        try:
            return super().invoke(ctx)
        except (LedgerError, OSError, KeyboardInterrupt) as error:
            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            if settings is not None and settings.debug:
                raise
            fail(message(error), exit_code(error))


def fail(message: str, code: int) -> NoReturn:
    """Print ``ledger: error: message`` on stderr and exit with ``code``."""
    typer.echo(f"ledger: error: {message}", err=True)
    raise typer.Exit(code)


app = typer.Typer(
    cls=LedgerGroup,
    help="Append-only, signed provenance ledger for model weights.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
keys_app = typer.Typer(help="Signing key commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")


@app.callback()
def main(
    ctx: typer.Context,
    db: Annotated[str | None, typer.Option("--db", envvar="LEDGER_DB", help="Database URL.")] = None,
    models_dir: Annotated[
        Path, typer.Option("--models-dir", envvar="LEDGER_MODELS_DIR", help="Weights directory.")
    ] = Path("models"),
    key: Annotated[Path | None, typer.Option("--key", envvar="LEDGER_KEY", help="Ed25519 private key (PEM).")] = None,
    adapters_dir: Annotated[
        Path | None,
        typer.Option("--adapters-dir", envvar="LEDGER_ADAPTERS_DIR", help="LoRA adapters (default ../lora_adapters)."),
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", envvar="LEDGER_STATE_DIR", help="Trusted checkpoint state.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    witness: Annotated[
        str | None, typer.Option("--witness", envvar="LEDGER_WITNESS", help="Checkpoint witness (dir or fsspec URL).")
    ] = None,
) -> None:
    """Build the settings every command receives."""
    models = models_dir.absolute()
    passphrase = os.environ.get("LEDGER_KEY_PASSPHRASE")
    ctx.obj = Settings(
        db_url=db or Settings.default_db_url(models),
        models_dir=models,
        key_path=key if key is not None else default_key_path(),
        passphrase=passphrase.encode() if passphrase else None,
        adapters_dir=(adapters_dir or models.parent / "lora_adapters").absolute(),
        state_dir=state_dir or default_state_dir(),
        json=json_output,
        debug=debug,
        witness=witness,
    )


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the callback built."""
    assert isinstance(ctx.obj, Settings)
    return ctx.obj


def open_ledger(settings: Settings, *, signing: bool = False) -> Ledger:
    """Open the configured ledger, loading the key only for commands that sign."""
    from ledger.api import Ledger

    return Ledger.open(
        settings.db_url,
        models_dir=settings.models_dir,
        key=settings.key_path if signing else None,
        adapters_dir=settings.adapters_dir,
        passphrase=settings.passphrase,
    )


def emit(settings: Settings, data: Any, text: str) -> None:
    """Print ``data`` as JSON with --json, else ``text``."""
    from cli import render

    typer.echo(render.to_json(data) if settings.json else text)


# --- commands ---------------------------------------------------------------------------------


@app.command()
def init(
    ctx: typer.Context,
    origin: Annotated[str | None, typer.Option(help="Origin name for checkpoints (default ledger/<uuid>).")] = None,
) -> None:
    """Create the ledger: migrate the database and write the signed genesis block."""
    from ledger.api import Ledger

    settings = settings_of(ctx)
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.create(
        settings.db_url,
        models_dir=settings.models_dir,
        key=settings.key_path,
        origin=origin,
        adapters_dir=settings.adapters_dir,
        passphrase=settings.passphrase,
    )
    genesis = ledger.genesis
    emit(
        settings,
        {"ledger_id": ledger.ledger_id, "origin": ledger.origin, "genesis": genesis.to_json()},
        f"initialised ledger {ledger.ledger_id} (origin {ledger.origin}); genesis {genesis.block_hash}",
    )


@app.command()
def append(
    ctx: typer.Context,
    weights: Annotated[Path | None, typer.Argument(help="Weight file (.pth or .safetensors).")] = None,
    metadata: Annotated[Path | None, typer.Option(help="Metadata JSON (default: beside the weights).")] = None,
    stage: Annotated[int | None, typer.Option(help="Micro-training stage: 1 (raw) or 2 (analysed).")] = None,
    question: Annotated[str | None, typer.Option(help="Question id of the micro-training stage.")] = None,
    adapter: Annotated[Path | None, typer.Option(help="LoRA adapter directory.")] = None,
    data: Annotated[Path | None, typer.Option(help="Training data file or directory to hash.")] = None,
) -> None:
    """Record a saved model version as a signed block."""
    from cli import render

    settings = settings_of(ctx)
    ledger = open_ledger(settings, signing=True)
    with render.progress_bar(settings) as start:
        appended = ledger.append_version(
            weights,
            metadata=metadata,
            stage=stage,
            question=question,
            adapter=adapter,
            data=data,
            progress=start(render.size_of(weights, data)),
        )
    block = appended.block
    text = render.resumed_line(block) if appended.resumed else render.block_line(block)
    emit(settings, block.to_json(), text)


@app.command()
def audit(
    ctx: typer.Context,
    files: Annotated[str, typer.Option(help="File check: full (re-hash), quick (size+mtime) or none.")] = "quick",
    remote: Annotated[
        str | None,
        typer.Option("--remote", metavar="[=full]", help="Check recorded backups: --remote (size), --remote=full."),
    ] = None,
    checkpoint: Annotated[
        list[Path] | None, typer.Option("--checkpoint", help="A signed checkpoint to check against (repeatable).")
    ] = None,
    witness: Annotated[str | None, typer.Option("--witness", help="Witness location (default LEDGER_WITNESS).")] = None,
    incremental: Annotated[
        bool, typer.Option("--incremental", help="Only blocks after the trusted checkpoint, plus a consistency proof.")
    ] = False,
    workers: Annotated[int | None, typer.Option(min=1, help="Verifier processes (default: one per CPU).")] = None,
) -> None:
    """Verify every block, the Merkle tree, checkpoints, the database guards and the files; exit 1 on findings."""
    from cli import render
    from ledger.audit import FilesMode

    settings = settings_of(ctx)
    try:
        mode = FilesMode(files)
    except ValueError:
        fail(f"--files must be full, quick or none, not {files!r}", EXIT_INPUT)
    checkpoint_files = []
    for path in checkpoint or ():
        try:
            checkpoint_files.append((str(path), path.read_bytes()))
        except OSError as exc:
            fail(f"cannot read checkpoint file {path}: {exc.strerror}", EXIT_INPUT)
    ledger = open_ledger(settings)
    with render.progress_bar(settings) as start:
        report = ledger.audit(
            files=mode,
            witness=witness or settings.witness,
            checkpoint_files=tuple(checkpoint_files),
            state_dir=settings.state_dir,
            workers=workers,
            incremental=incremental,
            progress=start,
        )
    if remote is not None:
        from cli.lifecycle import audit_remote

        report = audit_remote(settings, ledger, report, remote)
    emit(settings, report.to_json(), render.audit_text(report))
    if not report.clean:
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
def log(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="How many blocks, newest first.")] = 20,
) -> None:
    """List the newest blocks."""
    from cli import render

    settings = settings_of(ctx)
    ledger = open_ledger(settings)
    head = ledger.head()
    blocks = list(ledger.blocks(max(0, head.height - limit + 1)))[::-1]
    emit(settings, [b.to_json() for b in blocks], render.log_text(blocks))


@app.command()
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="HEIGHT|VERSION", help="Block height or version name.")],
    model: Annotated[str | None, typer.Option(help="Model slug, for short version names.")] = None,
) -> None:
    """Show one block with its decoded payload."""
    from cli import render

    settings = settings_of(ctx)
    block = open_ledger(settings).find(ref, model=model)
    emit(settings, block.to_json(), render.block_text(block))


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply pending schema migrations."""
    from ledger import migrate
    from ledger.store import Store

    settings = settings_of(ctx)
    revision = migrate.upgrade(Store.open(settings.db_url).engine)
    emit(settings, {"revision": revision}, f"database at revision {revision}")


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the schema revision of the database and of the installed code."""
    from ledger import migrate
    from ledger.store import Store

    settings = settings_of(ctx)
    current = migrate.current(Store.open(settings.db_url).engine)
    head = migrate.head_revision()
    emit(settings, {"current": current, "head": head}, f"database revision {current} (code head {head})")


@keys_app.command("generate")
def keys_generate(ctx: typer.Context) -> None:
    """Write a new Ed25519 private key (mode 0600; encrypted when LEDGER_KEY_PASSPHRASE is set)."""
    from ledger.signing import SigningKey, write_key_file

    settings = settings_of(ctx)
    key = SigningKey.generate()
    settings.key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_key_file(settings.key_path, key, settings.passphrase)
    emit(
        settings,
        {"path": str(settings.key_path), "key_id": key.key_id, "public_key": key.public.hex()},
        f"wrote {settings.key_path} (key id {key.key_id})",
    )


@keys_app.command("show")
def keys_show(ctx: typer.Context) -> None:
    """Print the public key, its key id and (with a ledger) its signed-note verifier key."""
    from ledger.errors import StorageError
    from ledger.note import verifier_key
    from ledger.signing import load_key_file

    settings = settings_of(ctx)
    key = load_key_file(settings.key_path, settings.passphrase)
    try:
        vkey: str | None = verifier_key(open_ledger(settings).origin, key.public)
    except StorageError:
        vkey = None  # no ledger yet: the verifier key is named after the ledger's origin
    emit(
        settings,
        {"key_id": key.key_id, "public_key": key.public.hex(), "verifier_key": vkey},
        f"key id       {key.key_id}\npublic key   {key.public.hex()}\nverifier key {vkey or '(no ledger yet)'}",
    )


def run() -> NoReturn:
    """Console-script entry point (Typer's standalone mode: usage errors exit 2).

    Once the command has finished and its output is flushed, the process ends at once: the interpreter's
    teardown (module clean-up and freeing every object one by one) took ~0.1 s after an export of 10,000
    versions, for nothing, since every file the ledger writes is already closed and synced by then. A
    traceback (``--debug``) still goes the usual way.
    """
    try:
        app()
        status = 0
    except SystemExit as done:  # every exit of the application (LedgerGroup.main) carries an int or None
        status = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`ledger log | head`): as the interpreter, status 120
            status = status or 120
    os._exit(status)


from cli import export as _export  # noqa: E402,F401  (registers commands)
from cli import lifecycle as _lifecycle  # noqa: E402,F401  (registers commands)
from cli import security as _security  # noqa: E402,F401  (registers commands)
from cli import transparency as _transparency  # noqa: E402,F401  (registers commands)
from cli import versions as _versions  # noqa: E402,F401  (registers commands)
