"""Lifecycle commands: backup, prune, restore, promote, current, rollback (and ``audit --remote`` helpers).

Settings are resolved here once per command, flag > environment > ``ledger.toml`` > default, and handed to
the library as frozen values; the setting a URL came from is named in its error messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.main import app, emit, open_ledger, settings_of

if TYPE_CHECKING:
    from ledger.backup import Progress
    from ledger.config import LifecycleConfig
    from ledger.remote import Location, RemoteOptions, RemoteStore
    from ledger.settings import Settings


def remote_options(config: LifecycleConfig) -> RemoteOptions:
    """Endpoint and credential sources: environment first, then ``[backup]`` in ledger.toml."""
    from ledger.errors import InputError
    from ledger.remote import RemoteOptions

    env = os.environ
    retries = env.get("LEDGER_REMOTE_RETRIES", "5")
    if not retries.isdigit() or int(retries) < 1:
        raise InputError(f"LEDGER_REMOTE_RETRIES must be a whole number >= 1, not {retries!r}")
    return RemoteOptions(
        s3_endpoint_url=env.get("LEDGER_S3_ENDPOINT_URL") or config.backup.get("s3_endpoint_url"),
        s3_region=env.get("LEDGER_S3_REGION") or config.backup.get("s3_region"),
        gcs_token=env.get("LEDGER_GCS_TOKEN")
        or config.backup.get("gcs_token")
        or env.get("GOOGLE_APPLICATION_CREDENTIALS"),
        gcs_project=env.get("LEDGER_GCS_PROJECT") or config.backup.get("gcs_project"),
        retries=int(retries),
    )


def backup_location(settings: Settings, config: LifecycleConfig, url: str | None, flag: str) -> Location | None:
    """The backup URL from the flag, LEDGER_BACKUP_URL or ledger.toml (None when none is configured)."""
    from ledger.remote import parse_location

    if url:
        return parse_location(url, setting=flag)
    if os.environ.get("LEDGER_BACKUP_URL"):
        return parse_location(os.environ["LEDGER_BACKUP_URL"], setting="LEDGER_BACKUP_URL")
    if config.backup.get("url"):
        return parse_location(config.backup["url"], setting=f"[backup] url in {settings.models_dir / 'ledger.toml'}")
    return None


def _require(location: Location | None, flag: str) -> Location:
    from ledger.errors import InputError

    if location is None:
        raise InputError(f"no backup URL: give {flag} URL, set LEDGER_BACKUP_URL, or set [backup] url in ledger.toml")
    return location


def store_opener(options: RemoteOptions) -> Callable[[Location], RemoteStore]:
    """A function opening a ``RemoteStore`` for a location with these options."""
    from ledger.remote import open_store

    def opener(location: Location) -> RemoteStore:
        return open_store(location, options)

    return opener


class _RichProgress:
    """One transient Rich bar on stderr, reset for each file."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._task: Any = None

    def start(self, label: str, total: int) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(label, total=total)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)


@contextmanager
def transfer_progress(settings: Settings) -> Iterator[Progress | None]:
    """Rich progress on stderr, or none for --json or when stderr is not a terminal."""
    from cli import render

    if not render.shows_progress(settings):
        yield None
        return
    with render.rich_bar() as progress:
        yield _RichProgress(progress)


@app.command()
def backup(
    ctx: typer.Context,
    versions: Annotated[
        list[str] | None, typer.Argument(metavar="[VERSION]...", help="Versions (default: all).")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="Backup URL: file://, s3://, gs:// or memory://.")] = None,
    model: Annotated[str | None, typer.Option(help="Model slug, for short version names.")] = None,
) -> None:
    """Upload versions to a remote store, verify the copies by re-reading them, and record backup blocks."""
    from ledger.backup import backup as run_backup
    from ledger.config import load_config
    from ledger.remote import open_store

    settings = settings_of(ctx)
    config = load_config(settings.models_dir)
    location = _require(backup_location(settings, config, to, "--to"), "--to")
    ledger = open_ledger(settings, signing=True)
    store = open_store(location, remote_options(config))
    with transfer_progress(settings) as progress:
        outcomes = run_backup(ledger, store, versions or (), model=model, progress=progress)
    lines = [
        f"{o.version}: {o.status}" + (f" (block {o.height}, {o.uploaded_bytes} bytes uploaded)" if o.height else "")
        for o in outcomes
    ]
    lines.append(f"{sum(o.height is not None for o in outcomes)} backed up to {location.url}")
    emit(settings, {"location": location.url, "versions": [o.to_json() for o in outcomes]}, "\n".join(lines))


@app.command()
def prune(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be pruned.")] = False,
    keep_major: Annotated[int | None, typer.Option(min=0, help="Major versions kept (default 3).")] = None,
    keep_micro: Annotated[int | None, typer.Option(min=0, help="Micro versions kept (default 50).")] = None,
) -> None:
    """Remove local files of versions outside the retention policy whose verified backup is still intact."""
    from ledger.config import RetentionPolicy, load_config
    from ledger.retention import prune as run_prune

    settings = settings_of(ctx)
    config = load_config(settings.models_dir)

    def policy_for(model: str) -> RetentionPolicy:
        base = config.policy_for(model)
        return RetentionPolicy(
            keep_major=base.keep_major if keep_major is None else keep_major,
            keep_micro=base.keep_micro if keep_micro is None else keep_micro,
        )

    ledger = open_ledger(settings, signing=not dry_run)
    result = run_prune(ledger, policy_for, open_store=store_opener(remote_options(config)), dry_run=dry_run)
    plan = result.plan
    lines = []
    if dry_run:
        for item in plan.prune:
            verb = "would finish pruning" if item.released else "would prune"
            lines.append(f"{verb} {item.version} ({len(item.files)} file(s), backup at {item.backup.location})")
    else:
        for done in result.pruned:
            verb = "pruned" if done.released else "finished pruning"
            lines.append(f"{verb} {done.version} (block {done.height}, {len(done.removed)} file(s) removed)")
    lines += [f"no backup, left alone: {name}" for name in plan.unbacked]
    lines += [f"not pruned, {name}: {reason}" for name, reason in result.not_pruned]
    lines += [f"held by an alias, kept: {name}" for name in plan.protected]
    count = len(plan.prune) if dry_run else sum(bool(p.released) for p in result.pruned)
    checked = "" if dry_run else f"{len(result.not_pruned)} left alone by the checks, "
    lines.append(
        f"{'would prune' if dry_run else 'pruned'} {count} version(s); {plan.kept} kept by policy, "
        f"{len(plan.unbacked)} without backup, {checked}{plan.already_pruned} already pruned"
    )
    if dry_run:
        lines.append("dry run: local files and the remote copies are checked when prune runs, not now")
    emit(settings, result.to_json(), "\n".join(lines))


@app.command()
def restore(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(metavar="VERSION", help="Version to restore.")],
    from_url: Annotated[str | None, typer.Option("--from", help="Backup URL (default: the newest backup).")] = None,
    model: Annotated[str | None, typer.Option(help="Model slug, for short version names.")] = None,
) -> None:
    """Download a version's backup, verify SHA-256 and BLAKE3 against the chain, place it, record a block."""
    from ledger.config import load_config
    from ledger.restore import restore as run_restore

    settings = settings_of(ctx)
    config = load_config(settings.models_dir)
    location = backup_location(settings, config, from_url, "--from") if from_url else None
    ledger = open_ledger(settings, signing=True)
    with transfer_progress(settings) as progress:
        outcome = run_restore(
            ledger,
            version,
            open_store=store_opener(remote_options(config)),
            location=location,
            model=model,
            progress=progress,
        )
    emit(
        settings,
        outcome.to_json(),
        f"restored {outcome.version} from {outcome.location} ({len(outcome.files)} file(s), block {outcome.height})",
    )


@app.command()
def promote(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(metavar="VERSION", help="Version to promote.")],
    alias: Annotated[str, typer.Option(help="Alias name.")] = "current",
    model: Annotated[str | None, typer.Option(help="Model slug, for short version names.")] = None,
) -> None:
    """Point an alias (default ``current``) at a version by appending an alias block."""
    from cli import render
    from ledger.aliases import promote as run_promote

    settings = settings_of(ctx)
    block = run_promote(open_ledger(settings, signing=True), version, alias=alias, model=model)
    data = block.data()
    emit(
        settings,
        block.to_json(),
        f"{data['alias']} of {data['model']} -> {data['version']} (was {data['previous']}); {render.block_line(block)}",
    )


@app.command()
def current(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="Model slug (needed when the ledger holds several).")] = None,
    at: Annotated[str | None, typer.Option(help="Moment to ask about (ISO 8601; default now).")] = None,
    alias: Annotated[str, typer.Option(help="Alias name.")] = "current",
) -> None:
    """Which version holds (or held, with --at) an alias."""
    from ledger.aliases import current as holder
    from ledger.timeutil import parse_user_time

    settings = settings_of(ctx)
    moment = parse_user_time(at) if at is not None else None
    event = holder(open_ledger(settings), model=model, alias=alias, at=moment)
    data = {
        "model": event.model,
        "alias": event.alias,
        "version": event.version,
        "since": event.timestamp,
        "height": event.height,
        "action": event.action,
        "at": moment,
    }
    emit(settings, data, f"{event.version} (since {event.timestamp}, block {event.height}, {event.action})")


@app.command()
def rollback(
    ctx: typer.Context,
    to: Annotated[
        str | None, typer.Option("--to", help="Version to go back to (default: the previous holder).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model slug (needed when the ledger holds several).")] = None,
    alias: Annotated[str, typer.Option(help="Alias name.")] = "current",
) -> None:
    """Move an alias back to an earlier holder by appending a new alias block."""
    from cli import render
    from ledger.aliases import rollback as run_rollback

    settings = settings_of(ctx)
    block = run_rollback(open_ledger(settings, signing=True), model=model, alias=alias, to=to)
    data = block.data()
    emit(
        settings,
        block.to_json(),
        f"{data['alias']} of {data['model']} rolled back to {data['version']} (was {data['previous']}); "
        f"{render.block_line(block)}",
    )


def audit_remote(settings: Settings, ledger: Any, report: Any, remote: str) -> Any:
    """Add ``remote`` findings for every recorded backup to an audit report (size check, or full re-hash)."""
    import dataclasses

    from cli.errors import EXIT_INPUT
    from cli.main import fail
    from ledger.audit import sorted_findings
    from ledger.backup import RemoteCheck, audit_backups
    from ledger.config import load_config

    try:
        mode = RemoteCheck(remote)
    except ValueError:
        fail(f"--remote takes no value (size check) or =full, not {remote!r}", EXIT_INPUT)
    opener = store_opener(remote_options(load_config(settings.models_dir)))
    findings, checked = audit_backups(ledger, mode=mode, open_store=opener)
    return dataclasses.replace(
        report,
        findings=sorted_findings([*report.findings, *findings]),
        notes=(*report.notes, f"remote check ({mode}) looked at {checked} backup object(s)"),
    )
