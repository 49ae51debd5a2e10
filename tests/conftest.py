"""Shared fixtures: one parametrised database fixture so every behavioural test runs on SQLite and PostgreSQL.

PostgreSQL comes from ``LEDGER_TEST_PG_URL`` (default: the local server); each test gets a throwaway database
that is dropped afterwards. With ``CI=true`` an unreachable server fails the run instead of skipping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("LEDGER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
HASH = "sha256:" + "ab" * 32


def _pg_available() -> str | None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except sqlalchemy.exc.OperationalError as exc:
        return str(exc).splitlines()[0]
    return None


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The admin URL, or skip (fail under CI=true) when the server is unreachable."""
    problem = _pg_available()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    return PG_URL


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    import sqlalchemy

    name = f"ledger_test_{uuid.uuid4().hex[:16]}"
    admin = sqlalchemy.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sqlalchemy.engine.make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@dataclass
class Workspace:
    """A models directory, an adapters directory, a key and a database: everything a ledger needs."""

    root: Path
    models: Path
    adapters: Path
    key: Path
    db_url: str

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for running the CLI as a subprocess against this workspace."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
        env.update(
            LEDGER_DB=self.db_url,
            LEDGER_MODELS_DIR=str(self.models),
            LEDGER_KEY=str(self.key),
            LEDGER_ADAPTERS_DIR=str(self.adapters),
            LEDGER_STATE_DIR=str(self.root / "state"),
            PYTHONPATH=str(REPO),
        )
        env.update(extra)
        return env

    def cli(self, *args: str, check: bool = False, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run ``ledger ARGS`` as a real subprocess."""
        result = subprocess.run(
            [sys.executable, "-m", "cli", *args],
            env=self.env(**extra),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"ledger {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def write_version(
        self,
        name: str,
        *,
        content: bytes | None = None,
        meta: dict[str, Any] | None = None,
        suffix: str = ".pth",
    ) -> Path:
        """Write a small weight file and seed-shaped metadata for ``name`` (e.g. oneseek-7b-zero-v1.0)."""
        weights = self.models / f"{name}{suffix}"
        weights.write_bytes(content if content is not None else os.urandom(4096))
        (self.models / f"{name}.json").write_text(json.dumps(meta if meta is not None else seed_metadata(name)))
        return weights


def seed_metadata(name: str, **overrides: Any) -> dict[str, Any]:
    """Metadata shaped like the seed document's example, for the version ``name``."""
    slug, _, version = name.rpartition("-v")
    meta: dict[str, Any] = {
        "version": version,
        "model_name": "OneSeek-7B-Zero" if slug == "oneseek-7b-zero" else slug,
        "timestamp": "2025-11-21T08:00:00Z",
        "base_models": ["Mistral-7B", "LLaMA-2"],
        "training_config": {
            "dataset_size": 1000,
            "epochs": 3,
            "batch_size": 32,
            "learning_rate": 2e-5,
            "use_lora": True,
            "lora_rank": 8,
            "lora_alpha": 32,
        },
        "metrics": {"validation_accuracy": 0.876, "fairness_score": 0.912, "bias_score": 0.123},
        "provenance": {
            "training_data_hash": HASH,
            "ledger_block_id": "block-123",
            "trainer": "OneSeek-Training-Pipeline",
        },
    }
    meta.update(overrides)
    return meta


@pytest.fixture
def workspace(tmp_path: Path, db_url: str) -> Workspace:
    """A workspace with a generated key (no ledger yet), on each backend."""
    from ledger.signing import SigningKey, write_key_file

    models = tmp_path / "models"
    adapters = tmp_path / "lora_adapters"
    models.mkdir()
    adapters.mkdir()
    key = tmp_path / "key.pem"
    write_key_file(key, SigningKey.generate(), None)
    return Workspace(tmp_path, models, adapters, key, db_url)


@pytest.fixture
def ledger_ws(workspace: Workspace) -> Workspace:
    """A workspace whose ledger is initialised."""
    from ledger.api import Ledger

    Ledger.create(workspace.db_url, models_dir=workspace.models, key=workspace.key, adapters_dir=workspace.adapters)
    return workspace


def open_ledger(ws: Workspace, *, signing: bool = True) -> Any:
    """Open the workspace's ledger through the library."""
    from ledger.api import Ledger

    return Ledger.open(ws.db_url, models_dir=ws.models, key=ws.key if signing else None, adapters_dir=ws.adapters)


def tamper(db_url: str, *statements: tuple[str, dict[str, Any]] | str) -> None:
    """Change the database the way an attacker with file or superuser access would: around the triggers."""
    import sqlalchemy

    from ledger import guards
    from ledger.tables import APPEND_ONLY_TABLES

    engine = sqlalchemy.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        sqlite = connection.dialect.name == "sqlite"
        saved: list[str] = []
        if sqlite:
            saved = [
                row[0] for row in connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'trigger'")
            ]
            for (name,) in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").all():
                connection.exec_driver_sql(f"DROP TRIGGER {name}")
        else:
            for table in APPEND_ONLY_TABLES:
                connection.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for statement in statements:
            sql, params = (statement, {}) if isinstance(statement, str) else statement
            connection.execute(sqlalchemy.text(sql), params)
        if sqlite:
            for sql in saved:
                connection.exec_driver_sql(sql)
        else:
            for table in APPEND_ONLY_TABLES:
                for trigger in sorted(guards.expected_triggers("postgresql", table)):
                    connection.exec_driver_sql(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")
    engine.dispose()


@pytest.fixture
def forking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let ``ledger.background`` fork in this test whatever the core count and the worker's idle threads: the
    session's fixtures leave some (the S3 server, fsspec's IO loop) that a forked audit never touches, and
    without this the fork path would silently be the inline one."""
    from ledger import background

    assert hasattr(os, "fork")
    monkeypatch.setattr(background, "can_fork", lambda: True)
