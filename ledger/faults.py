"""Fault injection for the crash tests: with ``LEDGER_TEST_CRASH_AT=<point>`` the process SIGKILLs itself there.

Inert unless that variable is set (one dictionary lookup per point). It is the one place the core reads the
environment outside the CLI's settings, on purpose: crash tests run the real ``ledger`` command as a child
process and need it to die at an exact point (between the file write and the block commit, inside the
write transaction, ...), which no setting passed down could reach without threading it through every call.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "LEDGER_TEST_CRASH_AT"

#: Every point the library can crash at, in the order an append passes them.
POINTS = (
    "append:hashed",  # files hashed, nothing written yet
    "commit:inserted",  # block and Merkle nodes inserted, not committed (PostgreSQL's guarded append: committed)
    "commit:done",  # block committed, metadata file not yet updated
    "atomic:written",  # temporary file written and synced, not yet renamed over the target
    "atomic:renamed",  # renamed, directory not yet synced
)

#: ``save_version``: its own points, then the shared commit points it passes.
SAVE_POINTS = (
    "save:written",  # weights and metadata written and synced under hidden temporary names
    "save:placed",  # hard-linked under their ledgered names (write lock held), block not inserted
    "commit:inserted",
    "save:committed",  # block committed, temporary names not yet removed, JSON without its block reference
)

#: ``ledger backup``: after an object is uploaded and verified, and after all, before the block.
BACKUP_POINTS = ("backup:transferred", "backup:uploaded", "commit:inserted")

#: ``ledger prune`` (write-ahead): checks done, block not written; block inserted, not committed; between two
#: file removals after the block; after the removals, before empty adapter directories are removed.
PRUNE_POINTS = ("prune:checked", "commit:inserted", "prune:unlinked", "prune:removed")

#: ``ledger restore``: downloads verified but not placed, placed but not recorded.
RESTORE_POINTS = ("restore:downloaded", "restore:renamed", "commit:inserted")


def crash_point(name: str) -> None:
    """Die with SIGKILL (no cleanup, like a power cut or the OOM killer) when ``name`` is the chosen point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
