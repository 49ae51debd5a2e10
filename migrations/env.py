"""Alembic environment: runs on the connection handed over in ``config.attributes`` (see ledger/migrate.py)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from ledger.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Run migrations inside the caller's connection; offline mode is not supported."""
    connection: Connection | None = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("ledger migrations run from code: use `ledger db upgrade`")
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
