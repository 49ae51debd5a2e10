"""Child process for the concurrency test: ``python -m tests.integration.writer_proc URL KEY MODELS WRITER COUNT``.

Appends COUNT blocks: every fourth a version of a model every writer shares, every fourth (offset by two) a
version of the writer's own model, both with real (small, generated) torch weight files, and a ``note`` event
in between. The shared model is saved with ``save_version``, which numbers the version and claims its file
names under the write lock: when another writer took that number first, the save is refused
(``VersionOrderError``) and this writer retries with the new next version. The own model goes the way a
training pipeline's files do: ``torch.save`` beside a metadata JSON, then ``append``. Prints one JSON line:
what this writer recorded, in order (version names, ``note:N`` for events), and how many races it lost.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from ledger.api import Ledger
from ledger.errors import VersionOrderError
from ledger.versions import VersionName
from tests.conftest import seed_metadata

SHARED = "shared-model"


def own_model(writer: int) -> str:
    """The slug of the model only ``writer`` appends to."""
    return f"writer-{writer}"


def _metadata(slug: str, writer: int, n: int) -> dict[str, Any]:
    meta = seed_metadata(f"{slug}-v1.0", notes=f"writer {writer}, append {n}")
    del meta["version"]  # save_version fills in the number it claims
    return meta


def main(argv: list[str]) -> int:
    """Append the versions; any unhandled error ends the process with a traceback (the test looks for one)."""
    url, key, models, writer, count = argv[0], Path(argv[1]), Path(argv[2]), int(argv[3]), int(argv[4])
    ledger = Ledger.open(url, models_dir=models, key=key)
    recorded: list[str] = []
    lost = 0
    for n in range(count):
        weights = {"w": torch.full((16,), float(writer * 1000 + n)), "b": torch.arange(4.0) * n}
        if n % 2:
            ledger.append_event("note", {"writer": writer, "n": n})
            recorded.append(f"note:{n}")
            continue
        if n % 4 == 0:
            while True:
                try:
                    block = ledger.save_version(weights, _metadata(SHARED, writer, n))
                    break
                except VersionOrderError:
                    lost += 1  # another writer took this number: try the new next one
        else:
            slug = own_model(writer)
            name = VersionName(slug, ledger.next_version(slug, major=False))
            path = models / name.weights_filename()
            torch.save(weights, path)
            meta = _metadata(slug, writer, n) | {"version": str(name.version)}
            (models / name.metadata_filename()).write_text(json.dumps(meta))
            block = ledger.append(path)
        recorded.append(str(block.data()["name"]))
    ledger.store.engine.dispose()
    print(json.dumps({"writer": writer, "recorded": recorded, "lost": lost}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
