"""Child process for the concurrency test: ``python -m tests.integration.writer_proc URL KEY WRITER COUNT``.

Appends COUNT metadata-only blocks through the library, each naming its writer and sequence number.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ledger.api import Ledger


def main(argv: list[str]) -> int:
    """Append the blocks; any unhandled error ends the process with a traceback (the test looks for one)."""
    url, key, writer, count = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    ledger = Ledger.open(url, models_dir=Path(key).parent, key=key)
    for n in range(count):
        ledger.append_event("note", {"writer": writer, "n": n})
    ledger.store.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
