"""Database-enforced append-only guards: trigger DDL for SQLite and PostgreSQL, and the check the audit runs.

SQLite: BEFORE UPDATE / BEFORE DELETE triggers that RAISE(ABORT). PostgreSQL: a row trigger BEFORE UPDATE OR
DELETE and a statement trigger BEFORE TRUNCATE, both ENABLE ALWAYS (so replica-mode sessions hit them too).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

PG_FUNCTION = "ledger_refuse_change"


def create_statements(dialect: str, table: str) -> list[str]:
    """DDL that makes ``table`` append-only on ``dialect`` ('sqlite' or 'postgresql')."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END",
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END",
        ]
    return [
        f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()",
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_change",
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate",
    ]


def function_statement() -> str:
    """The PostgreSQL trigger function every guard calls."""
    return (
        f"CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'ledger table % is append-only', TG_TABLE_NAME "
        "USING ERRCODE = 'insufficient_privilege'; END $$"
    )


def expected_triggers(dialect: str, table: str) -> set[str]:
    """Names of the triggers that must exist (and, on PostgreSQL, be enabled always) on ``table``."""
    if dialect == "sqlite":
        return {f"{table}_no_update", f"{table}_no_delete"}
    return {f"{table}_no_change", f"{table}_no_truncate"}


def present_triggers(connection: Connection, table: str) -> set[str]:
    """Names of the guard triggers actually in force on ``table``."""
    if connection.dialect.name == "sqlite":
        rows = connection.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"), {"t": table}
        )
        return {row[0] for row in rows}
    rows = connection.execute(
        text(
            "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.relname = :t AND c.relnamespace = to_regnamespace(current_schema())::oid "
            "AND NOT t.tgisinternal AND t.tgenabled = 'A'"
        ),
        {"t": table},
    )
    return {row[0] for row in rows}
