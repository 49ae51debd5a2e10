"""``Ledger.save_version`` on both backends: numbering, streamed digests, placement, cleanup, racing writers."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from ledger import saving
from ledger.audit import FilesMode
from ledger.errors import AlreadyExistsError, InputError, StorageError, UnsafePathError, VersionOrderError
from tests.conftest import Workspace, open_ledger, seed_metadata


def meta() -> dict[str, Any]:
    """Seed-shaped metadata without a version (the ledger numbers the save)."""
    data = seed_metadata("oneseek-7b-zero-v1.0")
    del data["version"]
    return data


def files_of(ws: Workspace) -> dict[str, bytes]:
    """Every file under the models and adapters directories (the database excluded), by relative path."""
    out = {}
    for root in (ws.models, ws.adapters):
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.name.startswith("ledger.db"):
                out[str(path.relative_to(ws.root))] = path.read_bytes()
    return out


def adapter_source(ws: Workspace, name: str = "stage", base: str = "oneseek-7b-zero-v1.0") -> Path:
    """A LoRA-style adapter directory outside the adapters root, as a training job leaves it."""
    source = ws.root / name
    (source / "sub").mkdir(parents=True)
    (source / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "r": 4}))
    torch.save({"lora_A": torch.ones(4, 8), "lora_B": torch.zeros(8, 4)}, source / "adapter_model.bin")
    (source / "sub" / "notes.txt").write_text("rank 4\n")
    return source


def test_major_then_two_stages(ledger_ws: Workspace) -> None:
    ledger = open_ledger(ledger_ws)
    model = torch.nn.Linear(16, 4)
    first = ledger.save_version(model, meta(), kind="major")
    assert first.data()["name"] == "oneseek-7b-zero-v1.0" and first.data()["parent"] is None
    stage1 = ledger.save_version(
        model.state_dict(), meta(), stage=1, question="q7", adapter_dir=adapter_source(ledger_ws)
    )
    stage2 = ledger.save_version(model, meta(), stage=2, question="q7")
    second_major = ledger.save_version(model, meta(), kind="major")
    assert [b.data()["name"] for b in (stage1, stage2, second_major)] == [
        "oneseek-7b-zero-v1.1",
        "oneseek-7b-zero-v1.2",
        "oneseek-7b-zero-v2.0",
    ]
    assert stage2.data()["parent"] == {"version": "1.1", "height": stage1.height, "block_hash": stage1.block_hash}
    assert second_major.data()["parent"]["version"] == "1.2"

    payload = stage1.data()
    weights = ledger_ws.models / "oneseek-7b-zero-v1.1.pth"
    raw = weights.read_bytes()
    assert payload["weights"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert payload["weights"]["size"] == len(raw)
    assert payload["weights"]["tensors"] == {"tensors": 2, "parameters": 68, "bytes": 272, "dtypes": {"float32": 68}}
    assert payload["adapter"]["path"] == "oneseek-7b-zero-v1.1"
    assert payload["adapter"]["base_model"] == "oneseek-7b-zero-v1.0"
    assert [e["path"] for e in payload["adapter"]["manifest"]["files"]] == [
        "adapter_config.json",
        "adapter_model.bin",
        "sub/notes.txt",
    ]
    loaded = torch.load(weights, weights_only=True)
    assert torch.equal(loaded["weight"], model.weight.detach())

    on_disk = json.loads((ledger_ws.models / "oneseek-7b-zero-v1.1.json").read_text())
    assert on_disk["version"] == "1.1" and on_disk["model_name"] == "OneSeek-7B-Zero"
    assert on_disk["provenance"]["ledger_block_id"] == f"block-{stage1.height}"
    assert on_disk["provenance"]["ledger_block_hash"] == stage1.block_hash
    assert not [p for p in ledger_ws.models.iterdir() if p.name.startswith(".")]
    assert not [p for p in ledger_ws.adapters.iterdir() if p.name.startswith(".")]
    for mode in (FilesMode.FULL, FilesMode.QUICK):
        report = ledger.audit(files=mode)
        assert report.findings == (), report.findings


def test_save_never_reads_the_weights_back(ledger_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Digests come from the bytes as they stream out and the tensor figures from the state dict: no file read
    back. The figures are exactly what the saved file's own pickle says."""
    ledger = open_ledger(ledger_ws)
    state = {"a": torch.ones(3, 5, dtype=torch.float16), "b": [torch.zeros(7, dtype=torch.int64)]}

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("save_version read a weight file back")

    monkeypatch.setattr("ledger.recording.hash_file_ends", refuse)
    monkeypatch.setattr("ledger.recording.summarise_ends", refuse)
    monkeypatch.setattr("ledger.tensors.summarise", refuse)
    block = ledger.save_version(state, meta(), kind="major")
    monkeypatch.undo()
    from ledger.tensors import summarise

    recorded = block.data()["weights"]["tensors"]
    assert recorded == summarise(ledger_ws.models / "oneseek-7b-zero-v1.0.pth").to_json()
    assert recorded == {"tensors": 2, "parameters": 22, "bytes": 86, "dtypes": {"float16": 15, "int64": 7}}


def test_data_hash_filled_from_data(ledger_ws: Workspace) -> None:
    ledger = open_ledger(ledger_ws)
    data = meta()
    del data["provenance"]["training_data_hash"]
    dataset = ledger_ws.root / "train.jsonl"
    dataset.write_text('{"x": 1}\n')
    block = ledger.save_version({"w": torch.ones(3)}, data, kind="major", data=dataset)
    expected = "sha256:" + hashlib.sha256(dataset.read_bytes()).hexdigest()
    assert block.data()["training_data"] == {"computed": True, "kind": "file", "hash": expected}
    with pytest.raises(InputError, match="training_data_hash"):
        ledger.save_version({"w": torch.ones(3)}, data, kind="micro")  # no hash and no --data


def test_metadata_version_must_agree(ledger_ws: Workspace) -> None:
    ledger = open_ledger(ledger_ws)
    wrong = {**meta(), "version": "1.3"}
    with pytest.raises(VersionOrderError, match=r"next major version of oneseek-7b-zero is 1\.0"):
        ledger.save_version({"w": torch.ones(3)}, wrong, kind="major")
    assert files_of(ledger_ws) == {}


def refused_without_files(ws: Workspace, error: type[Exception], match: str, **kwargs: Any) -> None:
    ledger = open_ledger(ws)
    before, head = files_of(ws), ledger.head()
    obj = kwargs.pop("obj", {"w": torch.ones(3)})
    with pytest.raises(error, match=match):
        ledger.save_version(obj, kwargs.pop("metadata", meta()), **kwargs)
    assert files_of(ws) == before
    assert ledger.head() == head
    assert sorted(p.name for p in ws.adapters.iterdir()) == sorted(
        p.name for p in ws.adapters.iterdir() if not p.name.startswith(".")
    )


def test_refusals_leave_nothing(ledger_ws: Workspace) -> None:
    refused_without_files(ledger_ws, VersionOrderError, "stage 2", stage=2, question="q1")
    refused_without_files(ledger_ws, VersionOrderError, "major version", kind="major", stage=1, question="q1")
    refused_without_files(ledger_ws, InputError, "kind must be", kind="minor")
    refused_without_files(ledger_ws, InputError, "metrics/bias_score", metadata={**meta(), "metrics": {"x": 1}})
    refused_without_files(ledger_ws, InputError, "state dict or an nn.Module", obj=[1, 2])
    refused_without_files(ledger_ws, InputError, "serialise", obj={"f": lambda: 1})
    link_dir = ledger_ws.root / "linked"
    link_dir.mkdir()
    (link_dir / "real.txt").write_text("x")
    (link_dir / "link.txt").symlink_to(link_dir / "real.txt")
    refused_without_files(ledger_ws, UnsafePathError, "symbolic link", adapter_dir=link_dir)


def test_existing_file_is_never_replaced(ledger_ws: Workspace) -> None:
    stray = ledger_ws.models / "oneseek-7b-zero-v1.0.pth"
    stray.write_bytes(b"someone else's weights")
    ledger = open_ledger(ledger_ws)
    with pytest.raises(AlreadyExistsError, match="not in the ledger"):
        ledger.save_version({"w": torch.ones(3)}, meta(), kind="major")
    assert stray.read_bytes() == b"someone else's weights"
    assert sorted(p.name for p in ledger_ws.models.iterdir()) == ["oneseek-7b-zero-v1.0.pth"]


def test_failure_after_placing_removes_everything(ledger_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The block insert fails after the files got their ledgered names: they must all disappear again."""
    import ledger.api as api

    ledger = open_ledger(ledger_ws)
    ledger.save_version({"w": torch.ones(3)}, meta(), kind="major")
    before, head = files_of(ledger_ws), ledger.head()

    def broken(*_args: Any, **_kw: Any) -> None:
        assert (ledger_ws.models / "oneseek-7b-zero-v1.1.pth").exists()  # placed under the lock already
        assert (ledger_ws.adapters / "oneseek-7b-zero-v1.1").is_dir()
        raise StorageError("disk on fire")

    monkeypatch.setattr(api, "_store_block", broken)
    with pytest.raises(StorageError, match="disk on fire"):
        ledger.save_version({"w": torch.ones(3)}, meta(), adapter_dir=adapter_source(ledger_ws))
    assert files_of(ledger_ws) == before
    assert sorted(p.name for p in ledger_ws.adapters.iterdir()) == []
    assert ledger.head() == head


def test_interrupted_write_removes_temp(ledger_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = open_ledger(ledger_ws)

    def interrupted(self: saving._Files, state: Any) -> Any:
        self.weights_tmp.write_bytes(b"half")
        self.created.append(self.weights_tmp)
        raise KeyboardInterrupt

    monkeypatch.setattr(saving._Files, "write_weights", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ledger.save_version({"w": torch.ones(3)}, meta(), kind="major", adapter_dir=adapter_source(ledger_ws))
    assert files_of(ledger_ws) == {}
    assert list(ledger_ws.adapters.iterdir()) == []


@pytest.mark.parametrize("shared", [False, True], ids=["two-objects", "one-object"])
def test_two_writers_same_version(ledger_ws: Workspace, monkeypatch: pytest.MonkeyPatch, shared: bool) -> None:
    """Both writers number v1.1 before either commits: exactly one wins, the other is told what is next. Sharing one
    ledger object, both trust the head its first save left (the guarded append); moving files into their ledgered
    names must still wait for the write lock, or the loser's weights would replace the winner's."""
    first = open_ledger(ledger_ws)
    first.save_version({"w": torch.ones(3)}, meta(), kind="major")
    barrier = threading.Barrier(2, timeout=60)
    original = saving._Files.write_metadata

    def wait_for_other(self: saving._Files, committed: dict[str, Any]) -> None:
        original(self, committed)
        barrier.wait()  # both have their weights written under temporary names, both numbered v1.1

    monkeypatch.setattr(saving._Files, "write_metadata", wait_for_other)
    results: dict[int, Any] = {}

    def run(index: int) -> None:
        ledger = first if shared else open_ledger(ledger_ws)
        try:
            results[index] = ledger.save_version({"w": torch.full((64,), float(index))}, meta())
        except VersionOrderError as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    errors = [r for r in results.values() if isinstance(r, VersionOrderError)]
    blocks = [r for r in results.values() if not isinstance(r, Exception)]
    assert len(blocks) == 1 and len(errors) == 1, results
    assert "expected v1.2 (micro) or v2.0 (major)" in str(errors[0])
    winner = blocks[0].data()
    path = ledger_ws.models / "oneseek-7b-zero-v1.1.pth"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == winner["weights"]["sha256"]
    assert not [p for p in ledger_ws.models.iterdir() if p.name.startswith(".")]
    assert open_ledger(ledger_ws).audit(files=FilesMode.FULL).findings == ()


def test_block_reference_failure_keeps_committed_files(ledger_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the block commits its files are ledgered: a failing JSON rewrite afterwards must not remove them."""
    import ledger.api as api

    def full_disk(*_args: Any, **_kwargs: Any) -> None:
        raise StorageError("no space left on device")

    monkeypatch.setattr(api, "write_atomic", full_disk)
    ledger = open_ledger(ledger_ws)
    with pytest.raises(StorageError):
        ledger.save_version({"w": torch.ones(3)}, meta(), kind="major")
    assert ledger.head().height == 1
    names = sorted(p.name for p in ledger_ws.models.iterdir())
    assert names == ["oneseek-7b-zero-v1.0.json", "oneseek-7b-zero-v1.0.pth"]
    assert ledger.audit(files=FilesMode.FULL).findings == ()  # the JSON equals the committed metadata


CRASHING_SAVE = """
import os, signal, sys, json
from pathlib import Path
import torch
from ledger import saving
from ledger.api import Ledger

original = saving.HashingWriter.write
calls = [0]

def dying(self, data):
    calls[0] += 1
    if calls[0] == 3:  # in the middle of torch.save: the process is killed, no cleanup runs
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, data)

saving.HashingWriter.write = dying
url, models, adapters, key, source, meta = sys.argv[1:]
ledger = Ledger.open(url, models_dir=Path(models), key=Path(key), adapters_dir=Path(adapters))
state = {f"t{i}": torch.ones(1 << 16) for i in range(4)}
ledger.save_version(state, json.loads(meta), kind="major", adapter_dir=Path(source))
"""


def test_killed_save_leaves_no_ledgered_name(ledger_ws: Workspace) -> None:
    """SIGKILL while torch.save streams: only hidden temporaries remain, the audit names them, a retry works."""
    import subprocess
    import sys

    from ledger.findings import FindingClass
    from tests.conftest import REPO

    source = adapter_source(ledger_ws)
    args = [ledger_ws.db_url, ledger_ws.models, ledger_ws.adapters, ledger_ws.key, source, json.dumps(meta())]
    result = subprocess.run(
        [sys.executable, "-c", CRASHING_SAVE, *map(str, args)],
        env={**ledger_ws.env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == -9, result.stderr
    ledger = open_ledger(ledger_ws)
    assert ledger.head().height == 0
    visible = [p.name for root in (ledger_ws.models, ledger_ws.adapters) for p in root.iterdir()]
    assert [name for name in visible if not name.startswith(".")] == []
    leftovers = sorted(name for name in visible if name.startswith("."))
    assert len(leftovers) == 2 and all(name.endswith(".tmp") for name in leftovers), leftovers
    report = ledger.audit(files=FilesMode.QUICK)
    assert sorted(f.path or "" for f in report.findings) == leftovers
    assert {f.kind for f in report.findings} == {FindingClass.UNLEDGERED}

    block = ledger.save_version({"w": torch.ones(3)}, meta(), kind="major", adapter_dir=source)
    assert block.data()["name"] == "oneseek-7b-zero-v1.0"
