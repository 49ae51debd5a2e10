"""Exports end to end: every format rendered from a real ledger, recorded, re-verified and attacked.

The HTML is opened in headless Chromium (screenshot and rendered DOM), the PDF rasterised with pdftoppm and
its text extracted; JSON is validated against our schema, CycloneDX against the official 1.6 schema.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ledger.api import Ledger
from ledger.audit import FilesMode
from ledger.export.report import Selection
from ledger.export.service import ExportRequest, Produced, parse_thresholds, produce, record
from ledger.export.verify import verify_export
from tests.conftest import REPO, Workspace, open_ledger, seed_metadata, tamper

METRICS = [(0.80, 0.90, 0.15), (0.83, 0.91, 0.13), (0.86, 0.88, 0.22), (0.88, 0.93, 0.11)]
THRESHOLDS = ("validation_accuracy=0.82", "bias_score=0.2")


def populate(ws: Workspace) -> Ledger:
    """Four versions with changing config and metrics, then a promotion, a backup and a prune."""
    ledger: Ledger = open_ledger(ws)
    for i, (acc, fair, bias) in enumerate(METRICS):
        name = f"oneseek-7b-zero-v1.{i}"
        meta = seed_metadata(name)
        meta["metrics"] = {"validation_accuracy": acc, "fairness_score": fair, "bias_score": bias}
        meta["training_config"]["learning_rate"] = 2e-5 * (i + 1)
        ws.write_version(name, meta=meta)
        ledger.append(ws.models / f"{name}.pth")
    ledger.append_event(
        "alias",
        {"model": "oneseek-7b-zero", "alias": "production", "version": "1.3", "previous": None, "action": "promote"},
    )
    weights = ws.models / "oneseek-7b-zero-v1.0.pth"
    ledger.append_event(
        "backup",
        {
            "version": "oneseek-7b-zero-v1.0",
            "location": "s3://compliance-bucket/models",
            "files": [
                {
                    "role": "weights",
                    "path": weights.name,
                    "remote": f"s3://compliance-bucket/models/{weights.name}",
                    "size": 4096,
                    "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
                    "blake3": "0" * 64,
                }
            ],
            "verified": True,
        },
    )
    return ledger


def export(ledger: Ledger, fmt: str, out: Path, **selection: Any) -> Produced:
    """What ``ledger export`` does: produce, write, record."""
    request = ExportRequest(
        format=fmt,
        selection=Selection.make(**selection),
        thresholds=parse_thresholds(THRESHOLDS),
        files=FilesMode.FULL,
        file_name=out.name,
    )
    produced = produce(ledger, request)
    out.write_bytes(produced.data)
    record(ledger, produced, out.name)
    return produced


@pytest.fixture
def sqlite_ws(tmp_path: Path) -> Workspace:
    """A SQLite workspace with an initialised ledger (for the slow renderers, run once)."""
    from ledger.signing import SigningKey, write_key_file

    models, adapters = tmp_path / "models", tmp_path / "lora_adapters"
    models.mkdir()
    adapters.mkdir()
    key = tmp_path / "key.pem"
    write_key_file(key, SigningKey.generate(), None)
    ws = Workspace(tmp_path, models, adapters, key, f"sqlite:///{tmp_path / 'ledger.db'}")
    Ledger.create(ws.db_url, models_dir=models, key=key, adapters_dir=adapters, origin="example.com/models")
    return ws


# --- every format, on both backends ---------------------------------------------------------------


def test_every_format_is_recorded_and_verifies(ledger_ws: Workspace) -> None:
    ledger = populate(ledger_ws)
    for fmt in ("json", "csv", "intoto", "cyclonedx", "html"):
        before = ledger.head().height
        out = ledger_ws.root / f"report.{fmt}"
        produced = export(ledger, fmt, out)
        block = ledger.head()
        assert block.height == before + 1 and block.kind == "export"
        assert block.data() == {
            "format": fmt,
            "file": out.name,
            "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
            "size": out.stat().st_size,
            "selection": produced.selection,
        }
        assert produced.selection["head"] == {"height": before, "hash": ledger.block(before).block_hash}
        result = verify_export(ledger, out.read_bytes())
        assert result.ok, result.checks
        assert result.format == fmt and result.export_height == block.height
    assert ledger.audit(files=FilesMode.FULL).clean


def test_verify_export_catches_edits_and_forgeries(ledger_ws: Workspace) -> None:
    ledger = populate(ledger_ws)
    out = ledger_ws.root / "report.json"
    export(ledger, "json", out)
    document = json.loads(out.read_bytes())
    # an edited metric: the file hash is no longer in any export block
    document["versions"][2]["metrics"]["bias_score"] = 0.01
    edited = json.dumps(document).encode()
    result = verify_export(ledger, edited)
    assert not result.ok and [c.name for c in result.checks if not c.ok] == ["export block"]
    # a forged integrity section pointing at a head that never existed
    document["integrity"]["head"]["hash"] = "0" * 64
    document["integrity"]["blocks"][0][1] = "f" * 64
    document["versions"][0]["block_hash"] = "f" * 64
    failed = {c.name for c in verify_export(ledger, json.dumps(document).encode()).checks if not c.ok}
    assert failed == {"export block", "head block", "version blocks"}
    # a checkpoint signed by a key the chain never introduced
    from ledger.export.attest import sign_checkpoint
    from ledger.merkle import MemoryTree
    from ledger.signing import SigningKey

    fake = sign_checkpoint(
        MemoryTree([b"\x00" * 32]), size=1, origin=ledger.origin, ledger_id=ledger.ledger_id, key=SigningKey.generate()
    )
    document = json.loads(out.read_bytes())
    document["integrity"]["checkpoint"]["note"] = fake.note
    failed = {c.name for c in verify_export(ledger, json.dumps(document).encode()).checks if not c.ok}
    assert failed == {"export block", "signed checkpoint"}


def test_verify_export_sees_a_rewritten_ledger(ledger_ws: Workspace) -> None:
    ledger = populate(ledger_ws)
    out = ledger_ws.root / "report.html"
    export(ledger, "html", out)
    assert verify_export(ledger, out.read_bytes()).ok
    # an attacker rewrites version 1.2's block hash in the database, around the triggers
    tamper(ledger_ws.db_url, ("UPDATE blocks SET block_hash = :h WHERE height = 3", {"h": "e" * 64}))
    failed = {c.name for c in verify_export(ledger, out.read_bytes()).checks if not c.ok}
    assert {"version blocks", "ledger chain audit now"} <= failed


def test_intoto_statements(ledger_ws: Workspace) -> None:
    ledger = populate(ledger_ws)
    out = ledger_ws.root / "provenance.intoto.jsonl"
    export(ledger, "intoto", out)
    lines = out.read_bytes().splitlines()
    assert len(lines) == 4
    genesis_key = bytes.fromhex(ledger.genesis.data()["public_key"])
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    statements = []
    for line in lines:
        envelope = json.loads(line)
        assert envelope["payloadType"] == "application/vnd.in-toto+json"
        payload = base64.b64decode(envelope["payload"])
        pae = b"DSSEv1 28 application/vnd.in-toto+json %d %s" % (len(payload), payload)
        Ed25519PublicKey.from_public_bytes(genesis_key).verify(base64.b64decode(envelope["signatures"][0]["sig"]), pae)
        statements.append(json.loads(payload))
    last = statements[-1]
    block = ledger.find("oneseek-7b-zero-v1.3")
    assert last["_type"] == "https://in-toto.io/Statement/v1"
    assert last["subject"] == [
        {"name": "oneseek-7b-zero-v1.3.pth", "digest": {"sha256": block.data()["weights"]["sha256"]}}
    ]
    assert last["predicateType"] == "https://slsa.dev/provenance/v1"
    definition = last["predicate"]["buildDefinition"]
    assert definition["buildType"].startswith("urn:ledger:build-type:")
    assert definition["externalParameters"]["training_config"]["learning_rate"] == pytest.approx(8e-5)
    deps = {d["name"]: d for d in definition["resolvedDependencies"]}
    assert deps["training-data"]["digest"] == {"sha256": "ab" * 32}
    assert {"Mistral-7B", "LLaMA-2"} <= set(deps)
    parent = ledger.find("oneseek-7b-zero-v1.2").data()["weights"]["sha256"]
    assert deps["oneseek-7b-zero-v1.2"]["digest"] == {"sha256": parent}
    assert last["predicate"]["runDetails"]["builder"]["id"] == "urn:ledger:trainer:OneSeek-Training-Pipeline"
    # one altered envelope fails verification even though the others are fine
    envelope = json.loads(lines[1])
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    forged = b"\n".join([lines[0], json.dumps(envelope).encode(), *lines[2:]]) + b"\n"
    failed = [c for c in verify_export(ledger, forged).checks if not c.ok]
    assert any(c.name == "DSSE envelope line 2" for c in failed)


def test_cyclonedx_validates_against_the_official_schema(ledger_ws: Workspace) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    ledger = populate(ledger_ws)
    out = ledger_ws.root / "bom.cdx.json"
    export(ledger, "cyclonedx", out)
    text = out.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["specVersion"] == "1.6"
    models = [c for c in bom["components"] if c["type"] == "machine-learning-model"]
    assert [m["version"] for m in models] == ["1.0", "1.1", "1.2", "1.3"]
    v12 = models[2]
    assert v12["hashes"] == [
        {"alg": "SHA-256", "content": ledger.find("oneseek-7b-zero-v1.2").data()["weights"]["sha256"]}
    ]
    metrics = v12["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    assert {"type": "bias_score", "value": "0.22"} in metrics and all(isinstance(m["value"], str) for m in metrics)
    ancestor = v12["pedigree"]["ancestors"][0]
    assert (ancestor["name"], ancestor["version"]) == ("oneseek-7b-zero", "1.1")
    assert ancestor["hashes"][0]["content"] == models[1]["hashes"][0]["content"]
    ref = v12["modelCard"]["modelParameters"]["datasets"][0]["ref"]
    data = next(c for c in bom["components"] if c.get("bom-ref") == ref)
    assert data["type"] == "data" and data["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    # a schema violation is caught (the validator is not a no-op)
    v12["modelCard"]["quantitativeAnalysis"]["performanceMetrics"][0]["value"] = 0.5
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom)) is not None


def test_json_matches_its_schema(ledger_ws: Workspace) -> None:
    import jsonschema

    ledger = populate(ledger_ws)
    out = ledger_ws.root / "report.json"
    export(ledger, "json", out, versions="v1.1..v1.3")
    schema = json.loads((REPO / "ledger" / "schemas" / "export-report.schema.json").read_text())
    document = json.loads(out.read_bytes())
    jsonschema.Draft202012Validator(schema).validate(document)
    assert document["schema"] == "ledger-export/v2"
    assert [v["version"] for v in document["versions"]] == ["1.1", "1.2", "1.3"]
    assert document["evaluation"]["breaches"] == [
        {"version": "oneseek-7b-zero-v1.2", "metric": "bias_score", "value": 0.22, "op": "<=", "threshold": 0.2}
    ]
    assert document["config_changes"][0]["changes"] == [
        {"key": "learning_rate", "change": "changed", "before": 2e-5, "after": 4e-5}
    ]
    kinds = [e["kind"] for e in document["lifecycle"]]
    assert kinds == ["alias"]  # the backup concerns v1.0, outside the range
    document["versions"][0]["height"] = "3"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(document)


# --- a ledger built by the real lifecycle commands -----------------------------------------------------

REAL_VERSIONS = ("1.0", "1.1", "1.2", "2.0")
RETENTION_TOML = """
[retention]                    # not the built-in 3 / 50
keep_major = 2
keep_micro = 5

[retention.models."oneseek-7b-zero"]
keep_major = 1
keep_micro = 1
"""


def _real_lifecycle(ws: Workspace, remote: Path) -> Ledger:
    """Versions appended by the library, then backup to file://, promote, prune, restore, promote, rollback and a
    key rotation, each by its ``ledger`` command; ledger.toml sets a non-default and a per-model policy."""
    ledger: Ledger = open_ledger(ws)
    for version in REAL_VERSIONS:
        ledger.append(ws.write_version(f"oneseek-7b-zero-v{version}"))
    ledger.append(ws.write_version("other-model-v1.0"))
    (ws.models / "ledger.toml").write_text(RETENTION_TOML)
    url = remote.as_uri()
    ws.cli("backup", "--to", url, check=True)
    ws.cli("promote", "1.2", "--model", "oneseek-7b-zero", check=True)
    ws.cli("prune", check=True)  # keep 1 major / 1 micro of oneseek: 1.0 and 1.1 go; other-model keeps its one
    ws.cli("restore", "oneseek-7b-zero-v1.0", check=True)
    ws.cli("promote", "2.0", "--model", "oneseek-7b-zero", check=True)
    ws.cli("rollback", "--model", "oneseek-7b-zero", check=True)
    ws.cli("keys", "rotate", "--reason", "annual rotation", check=True)
    return ledger  # used for reading from here on (its key is the one before the rotation)


def _text(html: str, section: str) -> str:
    """The visible text of one ``<section id=...>`` of a report page, whitespace folded (what a reader sees)."""
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.depth = 0
            self.parts: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "section" and ("id", section) in attrs:
                self.depth = 1
            elif self.depth and tag == "section":
                self.depth += 1

        def handle_endtag(self, tag: str) -> None:
            if self.depth and tag == "section":
                self.depth -= 1

        def handle_data(self, data: str) -> None:
            if self.depth:
                self.parts.append(data)

    parser = Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def test_real_lifecycle_in_the_json_html_and_pdf_reports(ledger_ws: Workspace, tmp_path: Path) -> None:
    import jsonschema
    from pypdf import PdfReader

    remote = tmp_path / "remote"
    ledger = _real_lifecycle(ledger_ws, remote)
    url = remote.as_uri()
    toml = str(ledger_ws.models / "ledger.toml")
    outs = {fmt: ledger_ws.root / f"report.{fmt}" for fmt in ("json", "html", "pdf")}
    for out in outs.values():
        ledger_ws.cli("export", "--format", out.suffix[1:], "--out", str(out), check=True)
    document = json.loads(outs["json"].read_bytes())
    schema = json.loads((REPO / "ledger" / "schemas" / "export-report.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(document)

    # lifecycle: exactly the blocks the commands appended, in chain order, each summarised from its payload
    attested = document["integrity"]["head"]["height"]
    chain = [b for b in ledger.blocks(0, attested + 1) if b.kind in ("alias", "backup", "prune", "restore", "key")]
    assert [(e["height"], e["kind"]) for e in document["lifecycle"]] == [(b.height, b.kind) for b in chain]
    oneseek = [f"oneseek-7b-zero-v{v}" for v in REAL_VERSIONS]
    backed_up = [b.data()["version"] for b in chain if b.kind == "backup"]
    assert sorted(backed_up) == sorted([*oneseek, "other-model-v1.0"])
    summaries = [e["summary"] for e in document["lifecycle"]]
    backup_files = {b.data()["version"]: len(b.data()["files"]) for b in chain if b.kind == "backup"}
    new_key = next(b for b in chain if b.kind == "key").data()
    from ledger.signing import key_id

    expected = [
        *(f"backed up {v} to {url} ({backup_files[v]} files, verified)" for v in backed_up),
        "promoted oneseek-7b-zero alias 'current' to oneseek-7b-zero-v1.2",
        *(
            f"pruned {v}: {backup_files[v]} files released locally, copy at {url} (backup block "
            f"{next(b.height for b in chain if b.kind == 'backup' and b.data()['version'] == v)}); "
            "policy keep 1 major / 1 micro"
            for v in oneseek[:2]
        ),
        f"restored oneseek-7b-zero-v1.0 from {url} ({backup_files[oneseek[0]]} files, backup block "
        f"{next(b.height for b in chain if b.kind == 'backup' and b.data()['version'] == oneseek[0])})",
        "promoted oneseek-7b-zero alias 'current' to oneseek-7b-zero-v2.0 (was oneseek-7b-zero-v1.2)",
        "rolled back oneseek-7b-zero alias 'current' to oneseek-7b-zero-v1.2 (was oneseek-7b-zero-v2.0)",
        f"signing key rotated to {key_id(bytes.fromhex(new_key['public_key']))} "
        f"(previous {new_key['previous_key_id']}): annual rotation",
    ]
    assert summaries == expected
    assert [k["reason"] for k in document["integrity"]["keys"]] == ["ledger created", "annual rotation"]

    # retention: the configured policy per model (ledger.toml), the one the prunes recorded, where the backups are
    retention = document["retention"]
    assert retention["configured"] == [
        {
            "model": "oneseek-7b-zero",
            "keep_major": 1,
            "keep_micro": 1,
            "source": f'{toml} [retention.models."oneseek-7b-zero"]',
        },
        {
            "model": "other-model",
            "keep_major": 2,
            "keep_micro": 5,
            "source": f"{toml} [retention] (built-in defaults for keys it does not set)",
        },
    ]
    prunes = [b for b in chain if b.kind == "prune"]
    assert [
        (r["model"], r["policy"], r["prunes"], r["first_height"], r["last_height"]) for r in retention["recorded"]
    ] == [("oneseek-7b-zero", {"keep_major": 1, "keep_micro": 1}, 2, prunes[0].height, prunes[1].height)]
    assert [(loc["location"], loc["versions"], loc["all_verified"]) for loc in retention["locations"]] == [
        (url, 5, True)
    ]
    states = {s["version"]: (s["state"], s["locations"]) for s in retention["versions"]}
    assert states == {
        oneseek[0]: ("restored", [url]),
        oneseek[1]: ("pruned", [url]),
        oneseek[2]: ("local", [url]),
        oneseek[3]: ("local", [url]),
        "other-model-v1.0": ("local", [url]),
    }
    assert not (ledger_ws.models / f"{oneseek[1]}.pth").exists() and (ledger_ws.models / f"{oneseek[0]}.pth").exists()

    # the same facts as a reader sees them: the HTML page's text and the PDF's extracted text
    page = outs["html"].read_text()
    lifecycle, kept = _text(page, "lifecycle"), _text(page, "retention")
    pdf = "".join(" ".join((p.extract_text() or "") for p in PdfReader(str(outs["pdf"])).pages).split())
    for line in [*expected, "exported json report report.json"]:
        assert line in lifecycle, line
        assert "".join(line.split()) in pdf, line  # PDF table cells wrap: compare without whitespace
    for fact in (
        f'oneseek-7b-zero 1 1 {toml} [retention.models."oneseek-7b-zero"]',
        f"other-model 2 5 {toml} [retention] (built-in defaults for keys it does not set)",
        f"oneseek-7b-zero keep_major = 1, keep_micro = 1 2 {prunes[0].height} {prunes[1].height}",
        f"{url} 5 ",
        f"{oneseek[0]} restored {url}",
        f"{oneseek[1]} pruned {url}",
    ):
        assert fact in kept, fact
        assert "".join(fact.split()) in pdf, fact
    assert verify_export(ledger, outs["pdf"].read_bytes()).ok


# --- the CLI and bad input ------------------------------------------------------------------------


def test_cli_export_and_verify(ledger_ws: Workspace) -> None:
    populate(ledger_ws)
    out = ledger_ws.root / "out" / "report.csv"
    out.parent.mkdir()
    done = ledger_ws.cli(
        "--json", "export", "--format", "csv", "--out", str(out), "--versions", "v1.2..v1.3", check=True
    )
    summary = json.loads(done.stdout)
    assert summary["versions"] == 2 and summary["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    rows = out.read_text().splitlines()
    assert rows[0].startswith("model,version,name,release") and len(rows) == 3
    verified = ledger_ws.cli("verify-export", str(out))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "export verified" in verified.stdout
    out.write_text(out.read_text().replace("0.86", "0.96"))
    rejected = ledger_ws.cli("verify-export", str(out))
    assert rejected.returncode == 1 and "FAIL export block" in rejected.stdout
    garbage = ledger_ws.root / "notes.txt"
    garbage.write_text("hello")
    assert ledger_ws.cli("verify-export", str(garbage)).returncode == 2


def test_cli_thresholds_from_ledger_toml_flags_override(ledger_ws: Workspace) -> None:
    """[export.thresholds] sets the pass lines, --threshold replaces one; breaches highlighted in HTML, marked in
    JSON."""
    import jsonschema

    populate(ledger_ws)
    (ledger_ws.models / "ledger.toml").write_text(
        '[export.thresholds]\nvalidation_accuracy = 0.85\nbias_score = "<= 0.2"\nfairness_score = 0.9\n'
    )
    toml = str(ledger_ws.models / "ledger.toml")
    html, doc = ledger_ws.root / "report.html", ledger_ws.root / "report.json"
    for out in (html, doc):
        ledger_ws.cli(
            "export",
            "--format",
            out.suffix[1:],
            "--out",
            str(out),
            "--threshold",
            "validation_accuracy=0.82",
            check=True,
        )
    document = json.loads(doc.read_bytes())
    schema = json.loads((REPO / "ledger" / "schemas" / "export-report.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(document)
    assert document["evaluation"]["thresholds"] == [
        {"metric": "bias_score", "op": "<=", "value": 0.2, "source": toml},
        {"metric": "fairness_score", "op": ">=", "value": 0.9, "source": toml},
        {"metric": "validation_accuracy", "op": ">=", "value": 0.82, "source": "--threshold"},
    ]
    # v1.0: accuracy 0.80 < 0.82; v1.1's 0.83 only breaches the file's 0.85, which the flag replaced;
    # v1.2: fairness 0.88 < 0.9 and bias 0.22 > 0.2
    marks = {v["version"]: v["breaches"] for v in document["versions"]}
    assert marks == {"1.0": ["validation_accuracy"], "1.1": [], "1.2": ["bias_score", "fairness_score"], "1.3": []}
    assert {(b["version"], b["metric"]) for b in document["evaluation"]["breaches"]} == {
        ("oneseek-7b-zero-v1.0", "validation_accuracy"),
        ("oneseek-7b-zero-v1.2", "fairness_score"),
        ("oneseek-7b-zero-v1.2", "bias_score"),
    }
    page = html.read_text()
    section = page[page.index('<section id="evaluation">') : page.index('<section id="lifecycle">')]
    table = section[: section.index("<h3>Breaches</h3>")]  # the metrics table, before the list of breaches
    rows = re.findall(r"<tr><td>oneseek-7b-zero-v1\.(\d)</td>(.*?)</tr>", table)
    highlighted = {f"1.{n}": re.findall(r'<td class="breach">([0-9.]+) ✗</td>', cells) for n, cells in rows}
    assert highlighted == {"1.0": ["0.8"], "1.1": [], "1.2": ["0.88", "0.22"], "1.3": []}
    assert f"bias_score &lt;= 0.2 <span class='muted'>({toml})</span>" in section
    assert "validation_accuracy &gt;= 0.82 <span class='muted'>(--threshold)</span>" in section
    assert "3 breach(es)" in section


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--format", "docx"), "unknown export format 'docx'"),
        (("--format", "json", "--model", "nonexistent-model"), "no versions in this ledger"),
        (("--format", "json", "--since", "2999-01-01"), "matches no version"),
        (("--format", "json", "--versions", "v1.3..v1.1"), "other way round"),
        (("--format", "json", "--threshold", "accuracy"), "threshold"),
    ],
)
def test_bad_input_exits_2_without_export_block(ledger_ws: Workspace, args: tuple[str, ...], message: str) -> None:
    ledger = populate(ledger_ws)
    head = ledger.head()
    out = ledger_ws.root / "report.out"
    done = ledger_ws.cli("export", *args, "--out", str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert ledger.head() == head
    assert not out.exists()


def _unwritable(root: Path, case: str) -> Path:
    """Output paths that cannot be written even as root (the tests run as root: permission bits do not stop it)."""
    if case == "file as parent":
        (root / "notes.txt").write_text("a regular file, not a directory")
        return root / "notes.txt" / "report.json"
    if case == "not a regular file":  # a FIFO here, never a device: a regression would replace it
        os.mkfifo(root / "report.fifo")
        return root / "report.fifo"
    return {
        "missing directory": root / "missing" / "report.json",
        "a directory": root,
        "under /proc": Path("/proc/ledger-report.json"),
        "under /sys": Path("/sys/ledger-report.json"),
    }[case]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing directory", "directory {root}/missing does not exist"),
        ("a directory", "output {root} is a directory"),
        ("file as parent", "{root}/notes.txt is not a directory"),
        ("under /proc", "cannot create a file in directory /proc"),
        ("under /sys", "cannot create a file in directory /sys"),
        ("not a regular file", "output {root}/report.fifo exists and is not a regular file"),
    ],
)
def test_unwritable_output_exits_2_before_any_work(ledger_ws: Workspace, case: str, message: str) -> None:
    ledger = populate(ledger_ws)
    head = ledger.head()
    out = _unwritable(ledger_ws.root, case)
    before = _files(ledger_ws.root)
    done = ledger_ws.cli("export", "--format", "json", "--out", str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message.format(root=ledger_ws.root) in lines[0], lines
    assert ledger.head() == head
    assert _files(ledger_ws.root) == before  # no report, no probe file, nothing else


def _files(root: Path) -> list[Path]:
    """Every path under ``root`` except the SQLite database and its WAL files (opening the ledger touches them)."""
    return sorted(p for p in root.rglob("*") if not p.name.startswith("ledger.db"))


def test_output_write_failure_is_bad_input_without_export_block(ledger_ws: Workspace) -> None:
    """The directory takes files but the report does not fit (a file size limit, like a full disk): exit 2,
    one line, no export block and no file, although the audit and the rendering had already run."""
    import resource
    import sys

    ledger = populate(ledger_ws)
    head = ledger.head()
    out = ledger_ws.root / "report.html"
    limit = 40 * 1024  # the 4-version HTML report is ~50 KiB; before the write the database is only read

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    done = subprocess.run(
        [sys.executable, "-m", "cli", "export", "--format", "html", "--out", str(out)],
        env=ledger_ws.env(),
        cwd=ledger_ws.root,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=small_files,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot write {out}" in lines[0] and "not recorded" in lines[0], lines
    assert ledger.head() == head
    assert [p.name for p in ledger_ws.root.iterdir() if p.name.startswith(".report.html")] == []
    assert not out.exists()
    # the same export without the limit works: the path itself was fine
    assert ledger_ws.cli("export", "--format", "html", "--out", str(out)).returncode == 0
    assert len(out.read_bytes()) > limit and ledger.head().kind == "export"


# --- as a person would look: a browser and a PDF viewer ------------------------------------------------


def test_html_in_headless_chromium(sqlite_ws: Workspace, tmp_path: Path) -> None:
    import re

    ledger = populate(sqlite_ws)
    out = sqlite_ws.root / "report.html"
    export(ledger, "html", out)
    html = out.read_text()
    # self-contained: no external resource of any kind
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", html)
    assert "<link" not in html and "@import" not in html
    assert not re.search(r"url\((?!#)", html)  # only the SVGs' own clip paths (url(#id)) are referenced
    assert html.count("<svg") == 3
    chromium = [
        "/usr/bin/chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ]
    shot = tmp_path / "report.png"
    subprocess.run(
        [*chromium, f"--screenshot={shot}", "--window-size=1280,4000", out.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 50_000
    _assert_rendered(shot)
    dom = subprocess.run(
        [*chromium, "--dump-dom", out.as_uri()], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    from ledger.export.html import SECTIONS

    for _, title in SECTIONS:
        assert title in dom
    head = ledger.block(ledger.head().height - 1)  # the head the report attests (before its own export block)
    for value in (
        head.block_hash,
        ledger.ledger_id,
        ledger.find("oneseek-7b-zero-v1.2").data()["weights"]["sha256"],
        "OneSeek-Training-Pipeline",
        "s3://compliance-bucket/models",
        "promoted oneseek-7b-zero alias 'production' to 1.3",
        "ledger --db",
        "verify-export report.html",
        "bias_score &lt;= 0.2",
    ):
        assert value in dom, value
    assert re.search(r'<td class="breach">0\.22 ✗</td>', dom)  # v1.2's bias breach highlighted
    assert re.search(r'<td class="breach">0\.8 ✗</td>', dom)  # v1.0's accuracy breach highlighted


def _assert_rendered(shot: Path) -> None:
    """The screenshot shows a page, not a blank or an error stub: ink on most rows, rows that differ, and the
    breach highlight (the CSS --bad-bg colour) visible. A blank 1280x4000 page measures 0 on all three."""
    import numpy
    from PIL import Image

    with Image.open(shot) as image:
        rgb = numpy.asarray(image.convert("RGB"))
    dark = rgb.mean(axis=2) < 200
    assert dark.mean() > 0.01, f"only {dark.mean():.2%} of the pixels are dark"
    assert dark.any(axis=1).mean() > 0.5, "most pixel rows are empty"
    assert len(numpy.unique(rgb.reshape(rgb.shape[0], -1), axis=0)) > 200, "the pixel rows hardly vary"
    highlight = numpy.all(rgb == (0xFD, 0xE7, 0xEA), axis=2).sum()
    assert highlight > 1000, f"the breach highlight covers {highlight} pixels"


def test_pdf_rendered_and_read_back(sqlite_ws: Workspace, tmp_path: Path) -> None:
    from pypdf import PdfReader

    ledger = populate(sqlite_ws)
    out = sqlite_ws.root / "report.pdf"
    export(ledger, "pdf", out)
    assert verify_export(ledger, out.read_bytes()).ok
    subprocess.run(["pdftoppm", "-png", "-r", "50", str(out), str(tmp_path / "page")], check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 3 and all(p.read_bytes().startswith(b"\x89PNG") for p in pages)
    reader = PdfReader(str(out))
    text = " ".join(" ".join((page.extract_text() or "").split()) for page in reader.pages)
    compact = "".join(text.split())  # table cells wrap long values (hashes, names) over several lines
    from ledger.export.html import SECTIONS

    for _, title in SECTIONS:
        assert title in text, title
    head = ledger.block(ledger.head().height - 1)
    for value in (
        head.block_hash,
        ledger.find("oneseek-7b-zero-v1.3").data()["weights"]["sha256"],
        "oneseek-7b-zero-v1.3",
        "OneSeek-Training-Pipeline",
        "validation_accuracy",
        "Responsibleperson(name)",
        "s3://compliance-bucket/models",
    ):
        assert value in compact, value
    attached = json.loads(reader.attachments["ledger-integrity.json"][0])
    assert attached["head"] == {"height": head.height, "hash": head.block_hash}


def test_export_audit_resumes_from_the_trusted_state_and_says_so(ledger_ws: Workspace, tmp_path: Path) -> None:
    from ledger.checkpoints import issue

    ledger = populate(ledger_ws)
    state = tmp_path / "state"

    def audit_of(**options: Any) -> dict[str, Any]:
        request = ExportRequest(format="json", selection=Selection(), files=FilesMode.NONE, **options)
        data: dict[str, Any] = json.loads(produce(ledger, request).data)
        audit: dict[str, Any] = data["integrity"]["audit"]
        return audit

    first = audit_of(state_dir=state)  # no trusted state yet
    assert (first["mode"], first["incremental_from"]) == ("full", None)
    assert first["blocks_checked"] == ledger.size()
    issue(ledger, witness=None, state_dir=state)
    assert ledger.audit(files=FilesMode.NONE, state_dir=state).clean
    trusted = ledger.size()
    ledger.append_event("note", {"text": "after the checkpoint"})
    resumed = audit_of(state_dir=state)
    assert (resumed["mode"], resumed["incremental_from"], resumed["clean"]) == ("incremental", trusted, True)
    assert resumed["blocks_checked"] == ledger.size() - trusted
    assert any(n.startswith("incremental:") for n in resumed["notes"])
    forced = audit_of(state_dir=state, full_audit=True)
    assert (forced["mode"], forced["blocks_checked"]) == ("full", ledger.size())
    tamper(ledger_ws.db_url, ("UPDATE blocks SET payload_hash = 'x' WHERE height = :h", {"h": ledger.size() - 1}))
    assert audit_of(state_dir=state)["clean"] is False  # the re-checked new block is still checked


# --- the export-time audit runs in a forked process beside the report ----------------------------


def _quick_request() -> ExportRequest:
    return ExportRequest(format="json", selection=Selection(), files=FilesMode.QUICK, file_name="r.json")


def test_the_audit_in_a_child_gives_the_report_it_gives_inline(
    ledger_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forking: None
) -> None:
    """The audit runs in a forked process where one can be; its findings reach the report exactly as when it
    runs inline (one thread more, and ``ledger.background`` does not fork)."""
    from ledger import background
    from ledger.export import service

    ledger = populate(ledger_ws)
    (ledger_ws.models / "oneseek-7b-zero-v1.1.pth").write_bytes(b"changed")
    ran_in = tmp_path / "ran-in"
    real = service._audit

    def audit(led: Ledger, request: ExportRequest) -> Any:
        with ran_in.open("a") as out:
            out.write(f"{os.getpid()}\n")
        return real(led, request)

    monkeypatch.setattr(service, "_audit", audit)
    forked = produce(ledger, _quick_request()).report
    monkeypatch.setattr(background, "can_fork", lambda: False)
    inline = produce(ledger, _quick_request()).report
    child, here = (int(line) for line in ran_in.read_text().split())
    assert child != os.getpid() and here == os.getpid()
    for report in (forked, inline):
        assert not report.integrity.audit.clean
        assert [(f.version, f.kind) for f in report.findings] == [("oneseek-7b-zero-v1.1", "file-mismatch")]
    assert (forked.versions, forked.findings, forked.integrity.audit) == (
        inline.versions,
        inline.findings,
        inline.integrity.audit,
    )


def test_a_version_appended_while_the_export_audits_is_in_the_report(
    ledger_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forking: None
) -> None:
    """Another writer appends after the report's sections were read up to the head but before the audit reads
    the chain: the sections are read again up to the head the audit saw, so the report covers what it audited."""
    from ledger.export import service

    ledger = populate(ledger_ws)
    before = ledger.head().height
    ledger_ws.write_version("oneseek-7b-zero-v1.4")
    started = tmp_path / "draft-started"
    real_audit, real_draft = service._audit, service._draft
    drafted: list[int] = []

    def audit(led: Ledger, request: ExportRequest) -> Any:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        open_ledger(ledger_ws).append(ledger_ws.models / "oneseek-7b-zero-v1.4.pth")
        return real_audit(led, request)

    def draft(led: Ledger, request: ExportRequest, head_height: int) -> Any:
        drafted.append(head_height)
        started.touch()
        return real_draft(led, request, head_height)

    monkeypatch.setattr(service, "_audit", audit)
    monkeypatch.setattr(service, "_draft", draft)
    report = produce(ledger, _quick_request()).report
    assert drafted == [before, before + 1]
    assert report.integrity.head_height == before + 1 and report.integrity.audit.clean
    assert report.versions[-1].name == "oneseek-7b-zero-v1.4"
