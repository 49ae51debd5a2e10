"""PostgreSQL least-privilege roles: an owner role that holds the ledger tables, an app role that may only append.

The app role gets SELECT and INSERT on the append-only tables and nothing else: no UPDATE, DELETE, TRUNCATE,
no DDL (so it can neither drop nor disable the guard triggers, which needs table ownership) and no CREATE in
the schema. Migrations run as the owner; day-to-day ``ledger`` commands connect as the app role.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from ledger import guards
from ledger.errors import InputError, StorageError
from ledger.tables import APPEND_ONLY_TABLES

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: Alembic's bookkeeping table: readable by the app (``ledger db current``), never writable.
ALEMBIC_TABLE = "alembic_version"


def check_identifier(name: str, what: str) -> str:
    """Refuse anything but a plain lower-case SQL identifier, so role names never need quoting or escaping."""
    if not _IDENTIFIER.fullmatch(name) or name.startswith("pg_"):
        raise InputError(
            f"{what} role name {name!r} is invalid: use lower-case letters, digits and '_', at most 63, "
            "not starting with a digit or 'pg_'"
        )
    return name


@dataclass(frozen=True, slots=True)
class RolePlan:
    """Who owns the ledger tables, who appends to them, and in which schema."""

    owner: str
    app: str
    schema: str = "public"

    def __post_init__(self) -> None:
        check_identifier(self.owner, "owner")
        check_identifier(self.app, "app")
        check_identifier(self.schema, "schema")
        if self.owner == self.app:
            raise InputError("the owner and the app role must be different roles")

    def statements(self) -> list[str]:
        """The SQL that sets the roles up; idempotent, so it can be re-run after every migration."""
        owner, app, schema = self.owner, self.app, self.schema
        tables = [*APPEND_ONLY_TABLES, ALEMBIC_TABLE]
        out = [
            _create_role(owner, login=False),
            _create_role(app, login=True),
            f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC",
            f"REVOKE ALL ON SCHEMA {schema} FROM {app}",
            f"GRANT USAGE ON SCHEMA {schema} TO {app}",
        ]
        for table in tables:
            out.append(f"ALTER TABLE {schema}.{table} OWNER TO {owner}")
            out.append(f"REVOKE ALL ON {schema}.{table} FROM PUBLIC, {app}")
        out.append(f"ALTER FUNCTION {schema}.{guards.PG_FUNCTION}() OWNER TO {owner}")
        for table in APPEND_ONLY_TABLES:
            out.append(f"GRANT SELECT, INSERT ON {schema}.{table} TO {app}")
        out.append(f"GRANT SELECT ON {schema}.{ALEMBIC_TABLE} TO {app}")
        # Serial columns (checkpoints.id) need USAGE on their sequence to insert; USAGE does not allow setval.
        out.append(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM PUBLIC, {app}")
        out.append(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {app}")
        return out

    def script(self) -> str:
        """The statements as one SQL script (``ledger db roles`` without ``--apply`` prints this)."""
        header = (
            f"-- ledger: {self.owner} owns the ledger tables, {self.app} may only SELECT and INSERT.\n"
            f"-- Run as a superuser (or the current table owner) in the ledger database, after `ledger db upgrade`.\n"
            f"-- Set passwords yourself, e.g. \\password {self.app}; connect `ledger` as {self.app}.\n"
        )
        return header + "BEGIN;\n" + "".join(f"{s};\n" for s in self.statements()) + "COMMIT;\n"


def _create_role(name: str, *, login: bool) -> str:
    option = "LOGIN" if login else "NOLOGIN"
    return (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{name}') "
        f"THEN CREATE ROLE {name} {option}; END IF; END $$"
    )


def apply(engine: Engine, plan: RolePlan) -> list[str]:
    """Run the plan in one transaction, then refuse an app role that could bypass it anyway.

    Returns the statements that ran. The check after the grants catches an app role that is a superuser,
    may bypass row security, can create roles, or is a member of the owner role: each of those could
    disable the guards or rewrite the tables, so the set-up would be a false comfort.
    """
    if engine.dialect.name != "postgresql":
        raise InputError("database roles exist only on PostgreSQL; SQLite relies on file permissions")
    statements = plan.statements()
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
            row = connection.execute(
                text(
                    "SELECT rolsuper, rolbypassrls, rolcreaterole, pg_has_role(:app, :owner, 'MEMBER') "
                    "FROM pg_catalog.pg_roles WHERE rolname = :app"
                ),
                {"app": plan.app, "owner": plan.owner},
            ).one()
            problems = [
                label
                for label, flag in zip(
                    ("is a superuser", "bypasses row security", "can create roles", f"is a member of {plan.owner}"),
                    row,
                    strict=True,
                )
                if flag
            ]
            if problems:
                raise InputError(
                    f"app role {plan.app} {', '.join(problems)}: it could still change the ledger; nothing was changed"
                )
    except DBAPIError as exc:
        from ledger.store import describe

        raise StorageError(f"cannot set up roles: {describe(exc)}") from exc
    return statements
