"""Issue 3 through the real CLI (subprocesses) on both backends: bad input, inspect, versions, racing appends,
and the adapter checks of the audit."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from ledger.audit import FilesMode
from ledger.findings import FindingClass
from tests.conftest import Workspace, open_ledger, seed_metadata

V10, V11, V12, V20 = (f"oneseek-7b-zero-v{v}" for v in ("1.0", "1.1", "1.2", "2.0"))


def snapshot(ws: Workspace) -> dict[str, tuple[bytes, int] | str]:
    """Bytes and mtime of every file, and every directory and link, under models and adapters (db excluded)."""
    out: dict[str, tuple[bytes, int] | str] = {}
    for root in (ws.models, ws.adapters):
        for path in sorted(root.rglob("*")):
            key = str(path.relative_to(ws.root))
            if path.name.startswith("ledger.db"):
                continue
            if path.is_symlink():
                out[key] = "link -> " + os.readlink(path)
            elif path.is_dir():
                out[key] = "dir"
            else:
                out[key] = (path.read_bytes(), path.stat().st_mtime_ns)
    return out


def write_meta_text(ws: Workspace, name: str, text: str | bytes) -> None:
    """Weights plus a metadata file with exactly these bytes."""
    ws.write_version(name)
    path = ws.models / f"{name}.json"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)


def meta_with(name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = seed_metadata(name)
    change(data)
    return data


def case_bad_name(ws: Workspace) -> list[str]:
    ws.write_version("OneSeek-7B-Zero-v1.1")
    return ["append", str(ws.models / "OneSeek-7B-Zero-v1.1.pth")]


def case_leading_zero(ws: Workspace) -> list[str]:
    ws.write_version("oneseek-7b-zero-v1.01", meta=seed_metadata(V11))
    return ["append", str(ws.models / "oneseek-7b-zero-v1.01.pth")]


def case_wrong_extension(ws: Workspace) -> list[str]:
    path = ws.models / f"{V11}.bin"
    path.write_bytes(b"x" * 64)
    return ["append", str(path)]


def case_version_mismatch(ws: Workspace) -> list[str]:
    ws.write_version(V11, meta=seed_metadata(V11, version="1.2"))
    return ["append", str(ws.models / f"{V11}.pth")]


def case_model_mismatch(ws: Workspace) -> list[str]:
    ws.write_version(V11, meta=seed_metadata(V11, model_name="Other-Model"))
    return ["append", str(ws.models / f"{V11}.pth")]


def case_bad_data_hash(ws: Workspace) -> list[str]:
    ws.write_version(V11, meta=meta_with(V11, lambda m: m["provenance"].update(training_data_hash="sha256:XYZ")))
    return ["append", str(ws.models / f"{V11}.pth")]


def case_md5_data_hash(ws: Workspace) -> list[str]:
    change = {"training_data_hash": "md5:" + "0" * 32}
    ws.write_version(V11, meta=meta_with(V11, lambda m: m["provenance"].update(change)))
    return ["append", str(ws.models / f"{V11}.pth")]


def case_bad_block_hash(ws: Workspace) -> list[str]:
    ws.write_version(V11, meta=meta_with(V11, lambda m: m["provenance"].update(ledger_block_hash="not-hex")))
    return ["append", str(ws.models / f"{V11}.pth")]


def case_nan_metric(ws: Workspace) -> list[str]:
    text = json.dumps(seed_metadata(V11)).replace('"bias_score": 0.123', '"bias_score": NaN')
    assert "NaN" in text
    write_meta_text(ws, V11, text)
    return ["append", str(ws.models / f"{V11}.pth")]


def case_metric_above_one(ws: Workspace) -> list[str]:
    ws.write_version(V11, meta=meta_with(V11, lambda m: m["metrics"].update(bias_score=1.5)))
    return ["append", str(ws.models / f"{V11}.pth")]


def case_metric_negative(ws: Workspace) -> list[str]:
    ws.write_version(V11, meta=meta_with(V11, lambda m: m["metrics"].update(fairness_score=-0.01)))
    return ["append", str(ws.models / f"{V11}.pth")]


def case_metric_string(ws: Workspace) -> list[str]:
    ws.write_version(V11, meta=meta_with(V11, lambda m: m["metrics"].update(validation_accuracy="0.9")))
    return ["append", str(ws.models / f"{V11}.pth")]


def case_missing_metrics(ws: Workspace) -> list[str]:
    ws.write_version(V11, meta=meta_with(V11, lambda m: m.pop("metrics")))
    return ["append", str(ws.models / f"{V11}.pth")]


def case_missing_nested(ws: Workspace) -> list[str]:
    ws.write_version(V11, meta=meta_with(V11, lambda m: m["training_config"].pop("epochs")))
    return ["append", str(ws.models / f"{V11}.pth")]


def case_non_utf8(ws: Workspace) -> list[str]:
    write_meta_text(
        ws, V11, json.dumps(seed_metadata(V11)).replace("Mistral", "Mistr\udcff").encode("utf-8", "surrogateescape")
    )
    return ["append", str(ws.models / f"{V11}.pth")]


def case_too_large(ws: Workspace) -> list[str]:
    ws.write_version(V11, meta=seed_metadata(V11, padding="x" * (1 << 20)))
    return ["append", str(ws.models / f"{V11}.pth")]


def case_duplicate_key(ws: Workspace) -> list[str]:
    text = json.dumps(seed_metadata(V11))[:-1] + ', "version": "1.1"}'
    write_meta_text(ws, V11, text)
    return ["append", str(ws.models / f"{V11}.pth")]


def case_adapter_symlink(ws: Workspace) -> list[str]:
    ws.write_version(V11)
    adapter = ws.adapters / V11
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").symlink_to(ws.root / "elsewhere.bin")
    (ws.root / "elsewhere.bin").write_bytes(b"weights outside the adapter directory")
    return ["append", str(ws.models / f"{V11}.pth")]


def case_stage2_without_stage1(ws: Workspace) -> list[str]:
    ws.write_version(V11)
    return ["append", str(ws.models / f"{V11}.pth"), "--stage", "2", "--question", "q1"]


def case_stage2_of_other_question(ws: Workspace) -> list[str]:
    open_ledger(ws).append(ws.write_version(V11), stage=1, question="q1")
    ws.write_version(V12)
    return ["append", str(ws.models / f"{V12}.pth"), "--stage", "2", "--question", "q2"]


def case_stage_without_question(ws: Workspace) -> list[str]:
    ws.write_version(V11)
    return ["append", str(ws.models / f"{V11}.pth"), "--stage", "1"]


def case_duplicate_version(ws: Workspace) -> list[str]:
    """Different weights under a recorded name (re-appending the identical version only finishes its write-back)."""
    ws.write_version(V10)
    return ["append", str(ws.models / f"{V10}.pth")]


def case_gap(ws: Workspace) -> list[str]:
    ws.write_version(V12)
    return ["append", str(ws.models / f"{V12}.pth")]


def case_regression(ws: Workspace) -> list[str]:
    open_ledger(ws).append(ws.write_version(V20))
    ws.write_version(V11)
    return ["append", str(ws.models / f"{V11}.pth")]


def case_data_mismatch(ws: Workspace) -> list[str]:
    ws.write_version(V11)
    data = ws.root / "train.jsonl"
    data.write_text("other data\n")
    return ["append", str(ws.models / f"{V11}.pth"), "--data", str(data)]


def case_bad_version_ref(ws: Workspace) -> list[str]:
    return ["show", "v1.x"]


BAD_INPUT: dict[str, tuple[Callable[[Workspace], list[str]], str]] = {
    "name-convention": (case_bad_name, "does not follow the convention"),
    "leading-zero": (case_leading_zero, "does not follow the convention"),
    "wrong-extension": (case_wrong_extension, "does not follow the convention"),
    "json-version-mismatch": (case_version_mismatch, "/version"),
    "json-model-mismatch": (case_model_mismatch, "/model_name"),
    "malformed-data-hash": (case_bad_data_hash, "/provenance/training_data_hash"),
    "md5-data-hash": (case_md5_data_hash, "/provenance/training_data_hash"),
    "malformed-block-hash": (case_bad_block_hash, "/provenance/ledger_block_hash"),
    "nan-metric": (case_nan_metric, "NaN"),
    "metric-above-one": (case_metric_above_one, "/metrics/bias_score"),
    "metric-negative": (case_metric_negative, "/metrics/fairness_score"),
    "metric-string": (case_metric_string, "/metrics/validation_accuracy"),
    "missing-metrics": (case_missing_metrics, "/metrics"),
    "missing-nested-field": (case_missing_nested, "/training_config/epochs"),
    "non-utf8-json": (case_non_utf8, "UTF-8"),
    "json-over-1mib": (case_too_large, "larger than the limit of 1048576 bytes"),
    "duplicate-json-key": (case_duplicate_key, "duplicate key"),
    "adapter-symlink": (case_adapter_symlink, "symbolic link"),
    "stage2-without-stage1": (case_stage2_without_stage1, "must directly follow its stage 1"),
    "stage2-other-question": (case_stage2_of_other_question, "must directly follow its stage 1"),
    "stage-without-question": (case_stage_without_question, "needs a question id"),
    "duplicate-version": (case_duplicate_version, "already exists; expected v1.1 (micro) or v2.0 (major)"),
    "gap": (case_gap, "expected v1.1 (micro) or v2.0 (major)"),
    "regression": (case_regression, "expected v2.1 (micro) or v3.0 (major)"),
    "training-data-mismatch": (case_data_mismatch, "training data hash mismatch"),
    "bad-version-ref": (case_bad_version_ref, "not a version"),
}


#: Cases whose outcome depends on what the database holds; they run on both backends, the rest (refused before
#: the database is asked anything) on SQLite only, to keep the suite fast.
ORDER_CASES = {
    "duplicate-version",
    "gap",
    "regression",
    "stage2-without-stage1",
    "stage2-other-question",
    "adapter-symlink",
    "json-version-mismatch",
}


BAD_INPUT_PARAMS = [pytest.param("sqlite", case, id=f"sqlite-{case}") for case in sorted(BAD_INPUT)] + [
    pytest.param("postgres", case, id=f"postgres-{case}", marks=pytest.mark.postgres) for case in sorted(ORDER_CASES)
]


@pytest.mark.parametrize(("db_url", "case"), BAD_INPUT_PARAMS, indirect=["db_url"])
def test_bad_input_exit_2_nothing_changed(ledger_ws: Workspace, case: str) -> None:
    setup, expected = BAD_INPUT[case]
    open_ledger(ledger_ws).append(ledger_ws.write_version(V10))
    args = setup(ledger_ws)
    head = open_ledger(ledger_ws).head()
    before = snapshot(ledger_ws)
    result = ledger_ws.cli(*args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ledger: error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert expected in lines[0], lines[0]
    assert result.stdout == ""
    assert open_ledger(ledger_ws).head() == head
    assert snapshot(ledger_ws) == before


# --- ledger inspect ----------------------------------------------------------------------------


class Evil:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def evil_files(root: Path, marker: Path) -> list[Path]:
    """A legacy pickle and a torch zip archive whose data.pkl would run ``touch marker``."""
    legacy = root / "legacy-evil.pth"
    legacy.write_bytes(pickle.dumps({"w": Evil(marker)}, protocol=2))
    honest = root / "honest.pth"
    torch.save({"w": torch.ones(4)}, honest)
    archive = root / "archive-evil.pth"
    with zipfile.ZipFile(honest) as source, zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                data = pickle.dumps({"w": Evil(marker)}, protocol=2)
            target.writestr(info, data)
    # Prove the crafted files really are dangerous: plain pickle runs the command.
    probe = root / "probe-marker"
    pickle.loads(pickle.dumps(Evil(probe)))
    assert probe.exists()
    probe.unlink()
    return [legacy, archive]


def cli_alone(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI for a command that needs no ledger (``inspect``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, cwd=root, capture_output=True, text=True)


def test_inspect_refuses_code_running_pickles(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for path in evil_files(tmp_path, marker):
        for args in (["inspect", str(path)], ["--json", "inspect", str(path)]):
            result = cli_alone(tmp_path, *args)
            assert result.returncode == 2, result.stderr
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("ledger: error: "), result.stderr
            assert "Traceback" not in result.stderr
        assert not marker.exists()


def test_inspect_with_torch_refuses_too(tmp_path: Path) -> None:
    from ledger.errors import InputError
    from ledger.tensors import inspect_with_torch

    marker = tmp_path / "pwned"
    for path in evil_files(tmp_path, marker):
        with pytest.raises(InputError):
            inspect_with_torch(path)
    assert not marker.exists()


def test_append_records_code_running_pickle_by_bytes_only(ledger_ws: Workspace) -> None:
    marker = ledger_ws.root / "pwned"
    [_, archive] = evil_files(ledger_ws.root, marker)
    target = ledger_ws.models / f"{V10}.pth"
    shutil.copy(archive, target)
    (ledger_ws.models / f"{V10}.json").write_text(json.dumps(seed_metadata(V10)))
    ledger_ws.cli("append", str(target), check=True)
    block = open_ledger(ledger_ws).find(V10)
    recorded = block.data()["weights"]
    assert recorded["tensors"] is None and "posix.system" in recorded["not_inspected"]
    assert recorded["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert not marker.exists()


def test_inspect_figures(tmp_path: Path) -> None:
    path = tmp_path / "m.pth"
    torch.save(
        {"a": torch.zeros(3, 4), "b": torch.zeros(5, dtype=torch.float16), "c": torch.zeros(2, dtype=torch.int64)}, path
    )
    result = cli_alone(tmp_path, "--json", "inspect", str(path))
    data = json.loads(result.stdout)
    assert data["tensors"] == 3 and data["parameters"] == 19
    assert data["bytes"] == 12 * 4 + 5 * 2 + 2 * 8
    assert data["dtypes"] == {"float16": 5, "float32": 12, "int64": 2}
    text = cli_alone(tmp_path, "inspect", str(path)).stdout
    assert "parameters  19" in text and "float16 5" in text


# --- ledger versions, short references ---------------------------------------------------------


def test_versions_listing_and_states(ledger_ws: Workspace) -> None:
    ledger = open_ledger(ledger_ws)
    ledger.save_version({"w": torch.ones(8)}, {**seed_metadata(V10)}, kind="major")
    ledger.save_version({"w": torch.ones(8)}, seed_metadata(V11), stage=1, question="q1")
    ledger.save_version({"w": torch.ones(8)}, seed_metadata(V12), stage=2, question="q1")
    ledger.save_version({"w": torch.ones(8)}, seed_metadata("other-model-v1.0", model_name="Other-Model"), kind="major")
    (ledger_ws.models / f"{V11}.pth").unlink()
    meta_path = ledger_ws.models / f"{V12}.json"
    meta = json.loads(meta_path.read_text())
    meta["metrics"]["bias_score"] = 0.5
    meta_path.write_text(json.dumps(meta))

    rows = json.loads(ledger_ws.cli("--json", "versions", check=True).stdout)
    assert [(r["name"], r["state"]) for r in rows] == [
        (V10, "present"),
        (V11, "missing"),
        (V12, "mismatch"),
        ("other-model-v1.0", "present"),
    ]
    assert rows[1]["stage"] == 1 and rows[1]["question"] == "q1" and rows[0]["release"] == "major"
    assert rows[0]["metrics"] == {"validation_accuracy": 0.876, "fairness_score": 0.912, "bias_score": 0.123}
    assert rows[0]["sha256"] == hashlib.sha256((ledger_ws.models / f"{V10}.pth").read_bytes()).hexdigest()

    only = json.loads(ledger_ws.cli("--json", "versions", "--model", "OneSeek-7B-Zero", check=True).stdout)
    assert [r["name"] for r in only] == [V10, V11, V12]
    text = ledger_ws.cli("versions", "--model", "oneseek-7b-zero", check=True).stdout
    header, *body = text.splitlines()
    assert header.split() == [
        "VERSION",
        "KIND",
        "STAGE/QUESTION",
        "HEIGHT",
        "SHA256",
        "SIZE",
        "ACC",
        "FAIR",
        "BIAS",
        "STATE",
    ]
    assert body[1].split()[:4] == [V11, "micro", "1/q1", "2"] and body[1].split()[-1] == "missing"
    assert any("/metrics/bias_score" in line for line in body)

    # VERSION arguments: full names, and short forms once --model (or a single model) makes them unambiguous.
    ambiguous = ledger_ws.cli("show", "v1.1")
    assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr
    for args in (
        ["show", V11],
        ["show", "v1.1", "--model", "OneSeek-7B-Zero"],
        ["show", "1.1", "--model", "oneseek-7b-zero"],
    ):
        shown = json.loads(ledger_ws.cli("--json", *args, check=True).stdout)
        assert shown["height"] == 2


# --- racing pipelines --------------------------------------------------------------------------


def test_two_cli_appends_same_version(ledger_ws: Workspace) -> None:
    """Two pipelines (own models directories, one ledger) append v1.0 at once: one wins, one is told."""
    procs = []
    for side in ("a", "b"):
        models = ledger_ws.root / f"models-{side}"
        models.mkdir()
        (models / f"{V10}.pth").write_bytes(os.urandom(1 << 20))
        (models / f"{V10}.json").write_text(json.dumps(seed_metadata(V10)))
        env = ledger_ws.env(LEDGER_MODELS_DIR=str(models))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "cli", "append", str(models / f"{V10}.pth")],
                env=env,
                cwd=ledger_ws.root,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outcomes = [(proc.wait(120), proc.stderr.read() if proc.stderr else "") for proc in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    [loser] = [err for code, err in outcomes if code == 2]
    assert f"{V10} already exists; expected v1.1 (micro) or v2.0 (major)" in loser
    assert len(loser.strip().splitlines()) == 1
    ledger = open_ledger(ledger_ws)
    assert ledger.head().height == 1
    winner = "a" if outcomes[0][0] == 0 else "b"
    loser_side = "b" if winner == "a" else "a"
    loser_meta = json.loads((ledger_ws.root / f"models-{loser_side}" / f"{V10}.json").read_text())
    assert loser_meta == seed_metadata(V10)  # untouched: no block reference written into the loser's file
    recorded = ledger.find(V10).data()["weights"]["sha256"]
    assert recorded == hashlib.sha256((ledger_ws.root / f"models-{winner}" / f"{V10}.pth").read_bytes()).hexdigest()


# --- adapters in the audit ---------------------------------------------------------------------


def _adapter_version(ws: Workspace) -> Path:
    adapter = ws.adapters / V10
    (adapter / "sub").mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "mistralai/Mistral-7B"}))
    (adapter / "adapter_model.bin").write_bytes(b"\x01" * 1000)
    (adapter / "sub" / "extra.txt").write_text("hello\n")
    block = open_ledger(ws).append(ws.write_version(V10))
    assert block.data()["adapter"]["base_model"] == "mistralai/Mistral-7B"
    return adapter


def _same_size_edit(adapter: Path) -> None:
    path = adapter / "adapter_model.bin"
    info = path.stat()
    path.write_bytes(b"\x02" * 1000)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


ADAPTER_CHANGES: dict[str, tuple[Callable[[Path], object], dict[str, str], dict[str, str]]] = {
    # name: (mutation, {path: words expected in a full audit}, {path: words expected in a quick audit})
    "changed-same-size": (_same_size_edit, {"adapter_model.bin": "changed blake3"}, {}),
    "changed-size": (
        lambda a: (a / "adapter_model.bin").write_bytes(b"\x01" * 999),
        {"adapter_model.bin": "changed size 1000 -> 999"},
        {"adapter_model.bin": "changed size"},
    ),
    "added": (lambda a: (a / "new.txt").write_text("x"), {"new.txt": "added"}, {"new.txt": "added"}),
    "removed": (
        lambda a: (a / "sub" / "extra.txt").unlink(),
        {"sub/extra.txt": "removed"},
        {"sub/extra.txt": "removed"},
    ),
    "renamed": (
        lambda a: (a / "sub" / "extra.txt").rename(a / "sub" / "moved.txt"),
        {"sub/moved.txt": "renamed from sub/extra.txt"},
        {"sub/extra.txt": "removed", "sub/moved.txt": "added"},
    ),
}


@pytest.mark.parametrize("change", sorted(ADAPTER_CHANGES))
def test_audit_names_changed_adapter_file(ledger_ws: Workspace, change: str) -> None:
    adapter = _adapter_version(ledger_ws)
    ledger = open_ledger(ledger_ws)
    assert ledger.audit(files=FilesMode.FULL).findings == ()
    mutate, full, quick = ADAPTER_CHANGES[change]
    mutate(adapter)
    for mode, expected in ((FilesMode.FULL, full), (FilesMode.QUICK, quick)):
        findings = ledger.audit(files=mode).findings
        got = {f.path: f.message for f in findings}
        assert set(got) == {f"{V10}/{name}" for name in expected}, (mode, findings)
        for name, words in expected.items():
            assert all(f.kind is FindingClass.FILE_MISMATCH for f in findings)
            assert f"adapter file {V10}/{name} {words}" in got[f"{V10}/{name}"], got
    result = ledger_ws.cli("audit", "--files", "full")
    assert result.returncode == 1 and f"{V10}/{next(iter(full))}" in result.stdout


def test_audit_adapter_directory_removed_or_symlinked(ledger_ws: Workspace) -> None:
    adapter = _adapter_version(ledger_ws)
    ledger = open_ledger(ledger_ws)
    (adapter / "link.bin").symlink_to(adapter / "adapter_model.bin")
    findings = ledger.audit(files=FilesMode.FULL).findings
    assert [f.kind for f in findings] == [FindingClass.FILE_MISMATCH] and "symbolic link" in findings[0].message
    shutil.rmtree(adapter)
    findings = ledger.audit(files=FilesMode.QUICK).findings
    assert [(f.kind, f.path) for f in findings] == [(FindingClass.FILE_MISSING, V10)]


def test_inspect_safetensors(tmp_path: Path) -> None:
    import struct

    header = json.dumps(
        {
            "__metadata__": {"format": "pt"},
            "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
            "b": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32]},
        }
    ).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(32))
    data = json.loads(cli_alone(tmp_path, "--json", "inspect", str(path)).stdout)
    assert (data["tensors"], data["parameters"], data["bytes"]) == (2, 10, 32)
    assert data["dtypes"] == {"bfloat16": 4, "float32": 6}
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(struct.pack("<Q", 1 << 40))
    result = cli_alone(tmp_path, "inspect", str(broken))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    missing = cli_alone(tmp_path, "inspect", str(tmp_path / "nope.pth"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr, missing.stderr
