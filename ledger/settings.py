"""Settings built once from flags and environment variables by the CLI, then passed down as a value."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_key_path() -> Path:
    """Where ``ledger keys generate`` puts the signing key when --key / LEDGER_KEY are not given."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ledger" / "signing-key.pem"


def default_state_dir() -> Path:
    """Where the trusted checkpoint state lives (outside the database, per ledger id)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ledger"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a command needs to find its ledger, files and key."""

    db_url: str
    models_dir: Path
    key_path: Path
    passphrase: bytes | None
    adapters_dir: Path
    state_dir: Path
    json: bool = False
    debug: bool = False
    witness: str | None = None
    """Where checkpoints are published and read back (directory or fsspec URL), from LEDGER_WITNESS."""

    @staticmethod
    def default_db_url(models_dir: Path) -> str:
        """The embedded default: a SQLite file inside the models directory."""
        return f"sqlite:///{models_dir / 'ledger.db'}"
