"""Security commands: ``ledger db roles`` prints (or applies) the least-privilege PostgreSQL role set-up."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.main import db_app, emit, settings_of


@db_app.command("roles")
def db_roles(
    ctx: typer.Context,
    owner: Annotated[str, typer.Option("--owner", help="Role that owns the ledger tables (runs migrations).")],
    app_role: Annotated[str, typer.Option("--app", help="Role the ledger commands connect as (SELECT, INSERT).")],
    schema: Annotated[str, typer.Option(help="Schema holding the ledger tables.")] = "public",
    apply: Annotated[bool, typer.Option("--apply", help="Run the SQL against --db instead of printing it.")] = False,
) -> None:
    """Print the SQL giving the app role append-only rights on PostgreSQL; with --apply, run it."""
    from ledger import roles

    settings = settings_of(ctx)
    plan = roles.RolePlan(owner=owner, app=app_role, schema=schema)
    if not apply:
        emit(settings, {"applied": False, "statements": plan.statements()}, plan.script().rstrip("\n"))
        return
    from ledger.store import Store

    statements = roles.apply(Store.open(settings.db_url).engine, plan)
    emit(
        settings,
        {"applied": True, "statements": statements},
        f"{owner} owns the ledger tables; {app_role} may only SELECT and INSERT ({len(statements)} statements)",
    )
