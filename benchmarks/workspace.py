"""A throwaway ledger set-up for one benchmark: models and adapters directories, a key, a database."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import Context, cli_env, ledger_cmd

HASH = "sha256:" + "ab" * 32
MODEL = "benchmodel"


@dataclass(frozen=True, slots=True)
class Bench:
    """Everything a ledger needs, in a scratch directory."""

    root: Path
    models: Path
    adapters: Path
    key: Path
    db_url: str

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for the CLI against this workspace."""
        return cli_env(
            LEDGER_DB=self.db_url,
            LEDGER_MODELS_DIR=str(self.models),
            LEDGER_KEY=str(self.key),
            LEDGER_ADAPTERS_DIR=str(self.adapters),
            LEDGER_STATE_DIR=str(self.root / "state"),
            **extra,
        )

    def cmd(self, *args: str | Path) -> list[str]:
        """``ledger ARGS``."""
        return ledger_cmd(*args)

    def create(self) -> Any:
        """Create the ledger (genesis block) and return it open for writing."""
        from ledger.api import Ledger

        return Ledger.create(self.db_url, models_dir=self.models, key=self.key, adapters_dir=self.adapters)

    def open(self) -> Any:
        """Open the ledger for writing."""
        from ledger.api import Ledger

        return Ledger.open(self.db_url, models_dir=self.models, key=self.key, adapters_dir=self.adapters)

    def write_metadata(self, name: str, **overrides: Any) -> Path:
        """Seed-shaped metadata for version ``name`` (``slug-vM.m``) beside its weights."""
        path = self.models / f"{name}.json"
        path.write_text(json.dumps(seed_metadata(name, **overrides)))
        return path


def seed_metadata(name: str, **overrides: Any) -> dict[str, Any]:
    """Metadata shaped like the seed document's example."""
    slug, _, version = name.rpartition("-v")
    meta: dict[str, Any] = {
        "version": version,
        "model_name": slug,
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
        "provenance": {"training_data_hash": HASH, "trainer": "bench-pipeline"},
    }
    meta.update(overrides)
    return meta


def make_bench(ctx: Context, name: str, *, db_url: str | None = None) -> Bench:
    """A fresh workspace under the scratch directory (SQLite unless ``db_url`` is given)."""
    from ledger.signing import SigningKey, write_key_file

    root = ctx.dir(name)
    models = root / "models"
    adapters = root / "lora_adapters"
    models.mkdir()
    adapters.mkdir()
    key = root / "key.pem"
    write_key_file(key, SigningKey.generate(), None)
    return Bench(root, models, adapters, key, db_url or f"sqlite:///{models / 'ledger.db'}")


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A throwaway PostgreSQL database, dropped afterwards."""
    import sqlalchemy

    name = f"ledger_bench_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sqlalchemy.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def pg_admin_url() -> str | None:
    """The PostgreSQL admin URL the tests use, when the server answers."""
    import os

    import sqlalchemy

    url = os.environ.get("LEDGER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except sqlalchemy.exc.OperationalError:
        return None
    return url
