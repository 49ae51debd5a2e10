"""The one place where library errors become exit codes and one-line messages."""

from __future__ import annotations

from ledger.errors import EnvironmentProblem, InputError, LedgerError, VerificationError

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_INPUT = 2
EXIT_ENVIRONMENT = 3


def exit_code(error: LedgerError) -> int:
    """Exit code for a library error: 2 bad input, 3 environment, 1 verification failed."""
    if isinstance(error, InputError):
        return EXIT_INPUT
    if isinstance(error, EnvironmentProblem):
        return EXIT_ENVIRONMENT
    if isinstance(error, VerificationError):
        return EXIT_FINDINGS
    return EXIT_INPUT


def one_line(error: BaseException | str) -> str:
    """The error's message folded onto one line, control characters escaped (no terminal escape injection)."""
    text = " ".join(str(error).split())
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return text or type(error).__name__
