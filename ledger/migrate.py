"""Schema migrations run from code: Alembic on the caller's connection, scripts shipped in ``migrations``."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine


def alembic_config(connection: Connection) -> Config:
    """An Alembic config pointing at the packaged scripts and carrying ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; returns the revision now current."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)
        return MigrationContext.configure(connection).get_current_revision()


def current(engine: Engine) -> str | None:
    """The schema revision the database is at (None for an empty database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision the installed code knows."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    return ScriptDirectory.from_config(config).get_current_head()


def check(engine: Engine) -> None:
    """Raise when the table models and the migrated schema differ (``alembic check``)."""
    with engine.begin() as connection:
        command.check(alembic_config(connection))
