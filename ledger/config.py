"""The lifecycle configuration file, ``ledger.toml`` in the models directory: backup target, retention and the
export's thresholds.

Example::

    [backup]
    url = "s3://models-backup/oneseek"        # default for backup / restore / audit --remote
    s3_endpoint_url = "http://127.0.0.1:9000"  # S3-compatible servers (MinIO, moto, Ceph)
    gcs_project = "my-firebase-project"
    gcs_token = "/etc/ledger/gcs-service-account.json"

    [retention]            # defaults: keep 3 major, 50 micro
    keep_major = 3
    keep_micro = 50

    [retention.models."oneseek-7b-zero"]
    keep_micro = 100

    [export.thresholds]    # pass lines of the report's evaluation; --threshold overrides one metric
    validation_accuracy = 0.85   # a number: a minimum, a maximum for bias/loss/error/perplexity metrics
    bias_score = "<= 0.2"        # or the direction spelled out

Unknown keys are refused (a typo must not silently fall back to a default). Credentials do not belong
here: the file only names where they are.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import InputError
from ledger.fsutil import display_path

FILENAME = "ledger.toml"
DEFAULT_KEEP_MAJOR = 3
DEFAULT_KEEP_MICRO = 50

_BACKUP_KEYS = frozenset({"url", "s3_endpoint_url", "s3_region", "gcs_project", "gcs_token"})
_POLICY_KEYS = frozenset({"keep_major", "keep_micro"})


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How many of a model's newest major and micro versions stay on local disk."""

    keep_major: int = DEFAULT_KEEP_MAJOR
    keep_micro: int = DEFAULT_KEEP_MICRO

    def __post_init__(self) -> None:
        for name in ("keep_major", "keep_micro"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise InputError(f"retention {name} must be a whole number >= 0, got {value!r}")

    def to_json(self) -> dict[str, int]:
        """The policy as recorded in prune blocks."""
        return {"keep_major": self.keep_major, "keep_micro": self.keep_micro}


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    """What ``ledger.toml`` says (every field optional; flags and environment variables take precedence)."""

    backup: dict[str, str] = field(default_factory=dict)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    per_model: dict[str, RetentionPolicy] = field(default_factory=dict)
    thresholds: dict[str, str] = field(default_factory=dict)
    """``[export.thresholds]`` as threshold texts (``metric=0.85``, ``metric<=0.2``) that the export parses."""

    def policy_for(self, model: str) -> RetentionPolicy:
        """The retention policy of one model: its own section, else the file's default."""
        return self.per_model.get(model, self.retention)


def load_config(models_dir: Path) -> LifecycleConfig:
    """Read ``ledger.toml`` from the models directory; no file means all defaults."""
    path = models_dir / FILENAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LifecycleConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {display_path(path)}: {exc}") from None
    return parse_config(text, source=display_path(path))


def parse_config(text: str, *, source: str = FILENAME) -> LifecycleConfig:
    """Parse the TOML text of a lifecycle configuration."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: {exc}") from None
    unknown = set(data) - {"backup", "retention", "export"}
    if unknown:
        raise InputError(f"{source}: unknown section(s) {', '.join(sorted(unknown))}")
    backup = _table(data.get("backup", {}), f"{source} [backup]")
    _only(backup, _BACKUP_KEYS, f"{source} [backup]")
    for key, value in backup.items():
        if not isinstance(value, str):
            raise InputError(f"{source} [backup] {key} must be a string")
    retention = _table(data.get("retention", {}), f"{source} [retention]")
    models = _table(retention.pop("models", {}), f"{source} [retention.models]")
    default = _policy(retention, RetentionPolicy(), f"{source} [retention]")
    per_model = {
        slug: _policy(_table(section, f"{source} [retention.models.{slug}]"), default, f"{source} [{slug}]")
        for slug, section in models.items()
    }
    thresholds = _thresholds(_table(data.get("export", {}), f"{source} [export]"), source)
    return LifecycleConfig(backup=dict(backup), retention=default, per_model=per_model, thresholds=thresholds)


def _thresholds(export: dict[str, Any], source: str) -> dict[str, str]:
    """``[export.thresholds]``: metric = number (direction from the name) or metric = "<= number"/">= number"."""
    _only(export, frozenset({"thresholds"}), f"{source} [export]")
    table = _table(export.get("thresholds", {}), f"{source} [export.thresholds]")
    out = {}
    for metric, value in table.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[metric] = f"{metric}={value!r}"
        elif isinstance(value, str) and value.lstrip()[:2] in (">=", "<="):
            out[metric] = f"{metric}{value.strip()}"
        else:
            raise InputError(
                f'{source} [export.thresholds] {metric}: give a number or a string "<= number" / ">= number", '
                f"not {value!r}"
            )
    return out


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a table")
    return dict(value)


def _only(table: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")


def _policy(table: dict[str, Any], base: RetentionPolicy, where: str) -> RetentionPolicy:
    _only(table, _POLICY_KEYS, where)
    try:
        return RetentionPolicy(
            keep_major=table.get("keep_major", base.keep_major), keep_micro=table.get("keep_micro", base.keep_micro)
        )
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
