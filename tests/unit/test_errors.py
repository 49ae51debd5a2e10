"""The error hierarchy: every class maps to its family's exit code, and every concrete class has a negative test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli.errors import EXIT_ENVIRONMENT, EXIT_FINDINGS, EXIT_INPUT, exit_code
from ledger import errors

FAMILIES = {
    errors.InputError: EXIT_INPUT,
    errors.EnvironmentProblem: EXIT_ENVIRONMENT,
    errors.VerificationError: EXIT_FINDINGS,
}
ABSTRACT = {errors.LedgerError, *FAMILIES}


def all_classes() -> list[type[errors.LedgerError]]:
    """Every error class of the package (all modules imported first, so the answer does not depend on test order)."""
    import importlib
    import pkgutil

    import ledger

    for module in pkgutil.walk_packages(ledger.__path__, "ledger."):
        importlib.import_module(module.name)
    found: list[type[errors.LedgerError]] = []
    pending: list[type[errors.LedgerError]] = [errors.LedgerError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted({c for c in found if c.__module__.startswith("ledger")}, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", [c for c in all_classes() if c is not errors.LedgerError], ids=lambda c: c.__name__)
def test_exit_code_follows_family(cls: type[errors.LedgerError]) -> None:
    family = next(f for f in FAMILIES if issubclass(cls, f))
    instance = cls.__new__(cls)
    assert exit_code(instance) == FAMILIES[family]


def test_every_concrete_error_class_has_a_negative_test() -> None:
    sources = "\n".join(p.read_text(encoding="utf-8") for p in Path(__file__).parents[1].rglob("test_*.py"))
    missing = [
        cls.__name__
        for cls in all_classes()
        if cls not in ABSTRACT and not re.search(rf"raises\(\s*(\w+\.)?{cls.__name__}\b", sources)
    ]
    assert missing == []


def test_operating_system_errors_and_interrupts_are_mapped_here() -> None:
    """OSError and Ctrl-C have their exit codes and messages in cli/errors.py, beside the library's."""
    from cli.errors import EXIT_INTERRUPTED, message

    disk_full = OSError(28, "No space left on device")
    assert (exit_code(disk_full), message(disk_full)) == (
        EXIT_ENVIRONMENT,
        "system error: [Errno 28] No space left on device",
    )
    assert (exit_code(KeyboardInterrupt()), message(KeyboardInterrupt())) == (EXIT_INTERRUPTED, "interrupted")
    assert EXIT_INTERRUPTED == 130 and EXIT_INTERRUPTED not in (EXIT_FINDINGS, EXIT_INPUT, EXIT_ENVIRONMENT)
    assert message(errors.StorageError("database\nlocked")) == "database locked"
