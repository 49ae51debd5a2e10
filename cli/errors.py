"""The one place where errors become exit codes and one-line messages."""

from __future__ import annotations

from ledger.errors import EnvironmentProblem, InputError, LedgerError, VerificationError

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

#: What a command reports when it is interrupted (Ctrl-C, or end of input at a prompt).
INTERRUPTED = "interrupted"

#: Errors a command may end with that the CLI reports in one line (anything else is a bug: a traceback).
Reported = LedgerError | OSError | KeyboardInterrupt


def exit_code(error: Reported) -> int:
    """Exit code: 2 bad input, 3 environment (including the operating system's errors), 1 verification
    failed, 130 interrupted."""
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, InputError):
        return EXIT_INPUT
    if isinstance(error, EnvironmentProblem | OSError):
        return EXIT_ENVIRONMENT
    if isinstance(error, VerificationError):
        return EXIT_FINDINGS
    return EXIT_INPUT


def message(error: Reported) -> str:
    """The one-line message for ``error``."""
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(error, OSError):
        return f"system error: {one_line(error)}"
    return one_line(error)


def one_line(error: BaseException | str) -> str:
    """The error's message folded onto one line, control characters escaped (no terminal escape injection)."""
    text = " ".join(str(error).split())
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return text or type(error).__name__
