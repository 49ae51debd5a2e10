"""``ledger db roles`` on PostgreSQL: the app role can append and audit, and can change nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from ledger.api import Ledger
from ledger.audit import FilesMode
from ledger.errors import InputError
from ledger.roles import RolePlan
from ledger.signing import SigningKey, write_key_file
from tests.conftest import Workspace

pytestmark = pytest.mark.postgres


@pytest.fixture
def roles(pg_url: str) -> Iterator[tuple[str, str]]:
    """Unique owner/app role names; afterwards everything they own in the test database goes, then the roles."""
    tag = uuid.uuid4().hex[:10]
    owner, app = f"ledger_owner_{tag}", f"ledger_app_{tag}"
    yield owner, app
    engine = sqlalchemy.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for role in (owner, app):
            exists = connection.execute(sqlalchemy.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
            if exists.first() is not None:
                connection.exec_driver_sql(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
                connection.exec_driver_sql(f"DROP OWNED BY {role}")
                connection.exec_driver_sql(f"DROP ROLE {role}")
    engine.dispose()


def _as(url: str, role: str) -> str:
    return sqlalchemy.engine.make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def _ws(tmp_path: Path, url: str) -> Workspace:
    models, adapters = tmp_path / "models", tmp_path / "lora_adapters"
    models.mkdir()
    adapters.mkdir()
    key = tmp_path / "key.pem"
    write_key_file(key, SigningKey.generate(), None)
    return Workspace(tmp_path, models, adapters, key, url)


ATTACKS = [
    "UPDATE blocks SET kind = 'x' WHERE height = 1",
    "DELETE FROM blocks WHERE height = 1",
    "TRUNCATE blocks CASCADE",
    "UPDATE merkle_nodes SET hash = 'x'::bytea",
    "DELETE FROM version_index",
    "DELETE FROM checkpoints",
    "TRUNCATE checkpoints",
    "UPDATE alembic_version SET version_num = 'x'",
    "INSERT INTO alembic_version VALUES ('9999')",
    "DROP TABLE blocks CASCADE",
    "ALTER TABLE blocks DISABLE TRIGGER blocks_no_change",
    "ALTER TABLE blocks DISABLE TRIGGER ALL",
    "ALTER TABLE blocks DROP CONSTRAINT uq_blocks_prev_hash",
    "ALTER TABLE blocks ADD COLUMN x int",
    "ALTER TABLE blocks RENAME TO blocks_old",
    "DROP TRIGGER blocks_no_change ON blocks",
    "CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$",
    "DROP FUNCTION ledger_refuse_change() CASCADE",
    "SET session_replication_role = replica",
    "CREATE TABLE shadow (x int)",
    "SELECT setval('checkpoints_id_seq', 1)",
    "ALTER TABLE blocks OWNER TO CURRENT_USER",
]


def test_app_role_appends_audits_and_changes_nothing_else(pg_url: str, tmp_path: Path, roles: tuple[str, str]) -> None:
    owner, app = roles
    ws = _ws(tmp_path, pg_url)
    Ledger.create(pg_url, models_dir=ws.models, key=ws.key, adapters_dir=ws.adapters)
    result = ws.cli("db", "roles", "--owner", owner, "--app", app, "--apply")
    assert result.returncode == 0, result.stderr
    # idempotent: re-running after a migration is how new tables get their grants
    assert ws.cli("db", "roles", "--owner", owner, "--app", app, "--apply").returncode == 0

    app_url = _as(pg_url, app)
    ledger = Ledger.open(app_url, models_dir=ws.models, key=ws.key, adapters_dir=ws.adapters)
    for n in range(3):
        ledger.append_event("note", {"n": n})
    ledger.append(ws.write_version("oneseek-7b-zero-v1.0"))
    assert ledger.head().height == 4
    as_app = ws.cli("audit", "--files", "full", LEDGER_DB=app_url)
    assert as_app.returncode == 0, as_app.stdout + as_app.stderr
    assert ws.cli("db", "current", LEDGER_DB=app_url).returncode == 0

    engine = sqlalchemy.create_engine(app_url)
    for statement in ATTACKS:
        with pytest.raises(sqlalchemy.exc.DBAPIError) as caught, engine.begin() as connection:
            connection.exec_driver_sql(statement)
        message = str(caught.value.orig)
        assert "permission denied" in message or "must be owner" in message, (statement, message)
    engine.dispose()
    report = Ledger.open(pg_url, models_dir=ws.models).audit(files=FilesMode.FULL)
    assert report.clean and report.head_height == 4, report.findings


def test_owner_disabling_a_trigger_is_reported(pg_url: str, tmp_path: Path, roles: tuple[str, str]) -> None:
    owner, app = roles
    ws = _ws(tmp_path, pg_url)
    ledger = Ledger.create(pg_url, models_dir=ws.models, key=ws.key)
    assert ws.cli("db", "roles", "--owner", owner, "--app", app, "--apply").returncode == 0
    engine = sqlalchemy.create_engine(pg_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"SET ROLE {owner}")
        connection.exec_driver_sql("ALTER TABLE blocks DISABLE TRIGGER blocks_no_change")
    engine.dispose()
    kinds = [str(f.kind) for f in ledger.audit(files=FilesMode.NONE).findings]
    assert kinds == ["db-guard"]


def test_superuser_app_role_refused(pg_url: str, tmp_path: Path, roles: tuple[str, str]) -> None:
    owner, _app = roles
    ws = _ws(tmp_path, pg_url)
    Ledger.create(pg_url, models_dir=ws.models, key=ws.key)
    superuser = sqlalchemy.engine.make_url(pg_url).username or "postgres"
    result = ws.cli("db", "roles", "--owner", owner, "--app", superuser, "--apply")
    assert result.returncode == 2
    assert "is a superuser" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    engine = sqlalchemy.create_engine(pg_url)
    with engine.connect() as connection:  # the refusal rolled the whole set-up back
        owner_now = connection.exec_driver_sql("SELECT tableowner FROM pg_tables WHERE tablename = 'blocks'").scalar()
    engine.dispose()
    assert owner_now == superuser


@pytest.mark.parametrize(
    ("owner", "app"),
    [("Owner", "app"), ("o; DROP TABLE blocks", "app"), ("pg_owner", "app"), ("same", "same"), ("o", "a" * 64)],
)
def test_bad_role_names_refused(owner: str, app: str) -> None:
    with pytest.raises(InputError):
        RolePlan(owner=owner, app=app)


def test_roles_prints_sql_without_a_database(tmp_path: Path) -> None:
    ws = _ws(tmp_path, f"sqlite:///{tmp_path / 'none.db'}")
    result = ws.cli("db", "roles", "--owner", "led_owner", "--app", "led_app")
    assert result.returncode == 0
    assert "GRANT SELECT, INSERT ON public.blocks TO led_app;" in result.stdout
    assert "UPDATE" not in result.stdout.replace("UPDATE,", "")
    bad = ws.cli("db", "roles", "--owner", "x y", "--app", "led_app")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    sqlite = ws.cli("db", "roles", "--owner", "led_owner", "--app", "led_app", "--apply")
    assert sqlite.returncode == 2 and "only on PostgreSQL" in sqlite.stderr
