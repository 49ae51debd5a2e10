"""One concurrent appender for the append-rate benchmark: opens the ledger, says ``ready``, waits for ``go``."""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Append ``count`` metadata-only blocks once released on stdin."""
    from benchmarks.figures.append_rate import PAYLOAD
    from ledger.api import Ledger

    db_url, key, models, count = argv
    ledger = Ledger.open(db_url, models_dir=Path(models), key=Path(key))
    ledger.head()  # connect before the start line
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(int(count)):
        ledger.append_event("bench", PAYLOAD)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
