"""Database-enforced append-only guards: trigger DDL for SQLite and PostgreSQL, and what the audit reads back.

SQLite: BEFORE UPDATE / BEFORE DELETE triggers that RAISE(ABORT). PostgreSQL: a row trigger BEFORE UPDATE OR
DELETE and a statement trigger BEFORE TRUNCATE, both ENABLE ALWAYS (so replica-mode sessions hit them too).

A guard is checked by its whole definition, not its name: a same-named trigger with a ``WHEN (false)``
clause, another event list or a body that does nothing, or a trigger function rewritten to ``RETURN OLD``,
guards nothing, so the audit compares what the database holds with what the migrations created.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

PG_FUNCTION = "ledger_refuse_change"
PG_FUNCTION_BODY = (
    "BEGIN RAISE EXCEPTION 'ledger table % is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege'; END"
)

#: PostgreSQL guards: (name suffix, timing and events as ``pg_get_triggerdef`` prints them, FOR EACH level).
_PG_GUARDS = (("no_change", "BEFORE DELETE OR UPDATE", "ROW"), ("no_truncate", "BEFORE TRUNCATE", "STATEMENT"))
_SQLITE_GUARDS = (("no_update", "UPDATE"), ("no_delete", "DELETE"))


@dataclass(frozen=True, slots=True)
class TriggerState:
    """A trigger as the database holds it: its definition (whitespace normalised, schema names stripped),
    whether it fires in every session, and the language and body of the function it runs (PostgreSQL)."""

    definition: str
    fires_always: bool = True
    function: str | None = None


def normalise(sql: str) -> str:
    """SQL with runs of whitespace folded to one space, so layout alone never counts as a change."""
    return " ".join(sql.split())


def _sqlite_trigger(table: str, suffix: str, event: str) -> str:
    return (
        f"CREATE TRIGGER {table}_{suffix} BEFORE {event} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
    )


def _pg_trigger(table: str, suffix: str, events: str, level: str) -> str:
    return f"CREATE TRIGGER {table}_{suffix} {events} ON {table} FOR EACH {level} EXECUTE FUNCTION {PG_FUNCTION}()"


def create_statements(dialect: str, table: str) -> list[str]:
    """DDL that makes ``table`` append-only on ``dialect`` ('sqlite' or 'postgresql')."""
    if dialect == "sqlite":
        return [_sqlite_trigger(table, suffix, event) for suffix, event in _SQLITE_GUARDS]
    creates = [_pg_trigger(table, *guard) for guard in _PG_GUARDS]
    return [*creates, *(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_{suffix}" for suffix, *_ in _PG_GUARDS)]


def function_statement() -> str:
    """The PostgreSQL trigger function every guard calls."""
    return f"CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ {PG_FUNCTION_BODY} $$"


def expected_triggers(dialect: str, table: str) -> dict[str, TriggerState]:
    """The guard triggers ``table`` must have on ``dialect``, by name, as ``present_triggers`` reads them."""
    if dialect == "sqlite":
        return {
            f"{table}_{suffix}": TriggerState(normalise(_sqlite_trigger(table, suffix, event)))
            for suffix, event in _SQLITE_GUARDS
        }
    function = f"plpgsql: {normalise(PG_FUNCTION_BODY)}"
    return {
        f"{table}_{suffix}": TriggerState(normalise(_pg_trigger(table, suffix, events, level)), True, function)
        for suffix, events, level in _PG_GUARDS
    }


_PG_TRIGGERS = text(
    "SELECT t.tgname, pg_get_triggerdef(t.oid), t.tgenabled, quote_ident(n.nspname), l.lanname, p.prosrc "
    "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_language l ON l.oid = p.prolang "
    "WHERE c.relname = :t AND c.relnamespace = to_regnamespace(current_schema())::oid AND NOT t.tgisinternal"
)


def present_triggers(connection: Connection, table: str) -> dict[str, TriggerState]:
    """Every user trigger on ``table``, by name, as the database holds it (compared by the audit)."""
    if connection.dialect.name == "sqlite":
        rows = connection.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"), {"t": table}
        )
        return {name: TriggerState(normalise(sql or "")) for name, sql in rows}
    out = {}
    for name, definition, enabled, schema, language, body in connection.execute(_PG_TRIGGERS, {"t": table}):
        # pg_get_triggerdef qualifies the table (and a function outside the search path) with the schema
        shown = normalise(definition).replace(f" ON {schema}.", " ON ").replace(f" FUNCTION {schema}.", " FUNCTION ")
        out[name] = TriggerState(shown, enabled == "A", f"{language}: {normalise(body or '')}")
    return out
