"""Helpers for the lifecycle tests: versions with adapters on disk, stores, and store openers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

from ledger.api import Ledger
from ledger.remote import Location, RemoteOptions, RemoteStore, open_store, parse_location
from tests.conftest import Workspace, open_ledger

MODEL = "oneseek-7b-zero"


def record(ws: Workspace, *versions: str, adapter: bool = False, size: int = 4096) -> Ledger:
    """Write and append ``versions`` (e.g. "1.0", "1.1"); with ``adapter`` each gets a small LoRA directory."""
    ledger: Ledger = open_ledger(ws)
    for version in versions:
        name = f"{MODEL}-v{version}"
        weights = ws.write_version(name, content=os.urandom(size))
        if adapter:
            folder = ws.adapters / name
            (folder / "sub").mkdir(parents=True)
            (folder / "adapter_model.bin").write_bytes(os.urandom(1000))
            (folder / "sub" / "notes.txt").write_text(f"adapter of {name}\n")
        ledger.append(weights)
    return ledger


def memory_location() -> Location:
    """A fresh memory:// location (process-global store)."""
    return parse_location(f"memory://ledger-test-{uuid.uuid4().hex[:10]}/backups")


def opener(options: RemoteOptions | None = None) -> Callable[[Location], RemoteStore]:
    """A store opener with ``options`` (defaults)."""
    chosen = options if options is not None else RemoteOptions()

    def open_(location: Location) -> RemoteStore:
        return open_store(location, chosen)

    return open_


def kinds(ledger: Ledger) -> list[str]:
    """Block kinds in height order."""
    return [block.kind for block in ledger.blocks()]


def payloads(ledger: Ledger, kind: str) -> list[Any]:
    """Decoded payloads of every block of ``kind``."""
    return [block.data() for block in ledger.blocks_of_kind(kind)]


def temp_leftovers(*folders: Any) -> list[str]:
    """Hidden temporary files left in ``folders`` (recursively)."""
    out = []
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            out += [os.path.join(root, n) for n in files + dirs if n.endswith(".tmp")]
    return out


def prune_block(ledger: Ledger, version: str, files: list[str]) -> None:
    """Append a ``prune`` block releasing only ``files`` of ``version`` (what an interrupted prune of an earlier
    release left behind), relying on its newest backup; the caller removes the files it means to be gone."""
    backup = [b for b in ledger.blocks_of_kind("backup") if b.data()["version"] == version][-1]
    ledger.append_event(
        "prune",
        {
            "version": version,
            "files": files,
            "backup_height": backup.height,
            "location": backup.data()["location"],
            "policy": {"keep_major": 0, "keep_micro": 0},
        },
    )


def damage(store: RemoteStore, relative: str, how: str) -> None:
    """Break one backup object: ``delete`` it, or ``resize`` it (other bytes of another size)."""
    if how == "delete":
        store.remove(relative)
    else:
        store.fs.pipe_file(store.location.path(relative), b"short")
