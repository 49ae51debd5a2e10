"""Checking an export file against the ledger it came from; every check is returned as data.

All formats: the file's SHA-256 must be recorded by a valid ``export`` block. Signed formats (in-toto): every
DSSE signature must verify under a key the chain introduced, and every statement must match its version block.
The others: the embedded integrity section (head, signed checkpoint, version blocks) must match the ledger now.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger.canonical import decode
from ledger.errors import CheckpointError, InputError, JSONInputError, LedgerError, VerificationError

if TYPE_CHECKING:
    from ledger.api import Ledger
    from ledger.block import Block

_SCRIPT_RE = re.compile(rb'<script type="application/json" id="ledger-integrity">(.*?)</script>', re.DOTALL)


@dataclass(frozen=True, slots=True)
class Check:
    """One thing verify-export checked: a name, whether it held, and what was seen."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class ExportVerification:
    """The result of ``verify_export``."""

    format: str
    sha256: str
    size: int
    export_height: int | None
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when every check held."""
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """The result for ``--json``."""
        return {
            "format": self.format,
            "sha256": self.sha256,
            "size": self.size,
            "export_block": self.export_height,
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


def detect_format(data: bytes) -> str:
    """Which export format ``data`` is, from its content (file names can be changed)."""
    if data.startswith(b"%PDF-"):
        return "pdf"
    head = data[:4096].lstrip()
    if head.lower().startswith((b"<!doctype html", b"<html")):
        return "html"
    if head.startswith(b"{"):
        first_line = data.split(b"\n", 1)[0]
        try:
            first = decode(first_line)
        except ValueError:
            first = None
        if isinstance(first, dict) and "payloadType" in first:
            return "intoto"
        document = _json(data)
        if document.get("bomFormat") == "CycloneDX":
            return "cyclonedx"
        if isinstance(document.get("schema"), str) and document["schema"].startswith("ledger-export/"):
            return "json"
    if head.startswith(b"model,version,name,"):
        return "csv"
    raise InputError("the file is not a ledger export (html, pdf, json, csv, intoto or cyclonedx)")


def _json(data: bytes) -> dict[str, Any]:
    try:
        document = decode(data)
    except ValueError as exc:
        raise JSONInputError(f"the file is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise JSONInputError("the file is not a JSON object")
    return document


class _Checker:
    """Collects checks; a check that raises a ledger error counts as failed with its message."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def run(self, name: str, work: Callable[[], str]) -> None:
        try:
            detail = work()
        except (VerificationError, InputError) as exc:
            self.add(name, False, str(exc))
            return
        self.add(name, True, detail)


def verify_export(ledger: Ledger, data: bytes) -> ExportVerification:
    """Check an export file against ``ledger``; raises only when the file is not an export at all."""
    from ledger.chain import check_block, collect_keys

    kind = detect_format(data)
    digest = hashlib.sha256(data).hexdigest()
    keys = collect_keys(ledger.blocks_of_kind("genesis", "key"))
    checker = _Checker()
    export_height = _check_export_block(checker, ledger, digest, keys, check_block)
    if kind == "intoto":
        _check_intoto(checker, ledger, data, keys)
    elif kind == "csv":
        _check_rows(checker, ledger, _csv_blocks(data))
    else:
        integrity, blocks = _integrity_of(kind, data)
        _check_integrity(checker, ledger, integrity, keys)
        _check_rows(checker, ledger, blocks)
    audit = ledger.audit(files=_files_none())
    checker.add(
        "ledger chain audit now",
        audit.clean,
        f"{audit.blocks_checked} blocks verified, head {audit.head_height}"
        if audit.clean
        else f"{sum(not f.is_warning for f in audit.findings)} finding(s): run `ledger audit`",
    )
    return ExportVerification(kind, digest, len(data), export_height, tuple(checker.checks))


def _files_none() -> Any:
    from ledger.audit import FilesMode

    return FilesMode.NONE


def _check_export_block(
    checker: _Checker,
    ledger: Ledger,
    digest: str,
    keys: Mapping[str, bytes],
    check_block: Callable[[Block, Mapping[str, bytes]], Any],
) -> int | None:
    for block in ledger.blocks_of_kind("export"):
        payload = block.data()
        if isinstance(payload, dict) and payload.get("sha256") == digest:
            problem = check_block(block, keys)
            if problem is not None:
                checker.add("export block", False, f"block {block.height} records this file but {problem.message}")
                return block.height
            checker.add(
                "export block",
                True,
                f"block {block.height} ({block.timestamp}) records this file: {payload.get('format')} "
                f"{payload.get('file')}, {payload.get('size')} bytes",
            )
            return block.height
    checker.add(
        "export block", False, f"no export block records sha256 {digest}: the file was altered or not issued here"
    )
    return None


def _check_integrity(checker: _Checker, ledger: Ledger, integrity: dict[str, Any], keys: Mapping[str, bytes]) -> None:
    from ledger.api import NodesOf
    from ledger.export.attest import open_checkpoint
    from ledger.merkle import root

    def ledger_id() -> str:
        if integrity.get("ledger_id") != ledger.ledger_id:
            raise VerificationError(f"report names ledger {integrity.get('ledger_id')}, this is {ledger.ledger_id}")
        return ledger.ledger_id

    def head() -> str:
        found = _dict(integrity.get("head"))
        height, claimed = found.get("height"), found.get("hash")
        if not isinstance(height, int):
            raise VerificationError("the integrity section has no head height")
        block = ledger.block(height)
        if block.block_hash != claimed:
            raise VerificationError(f"block {height} is {block.block_hash}, the report says {claimed}")
        return f"block {height} is still {claimed}"

    def checkpoint() -> str:
        found = _dict(integrity.get("checkpoint"))
        try:
            opened = open_checkpoint(
                str(found.get("note")), key_name=str(found.get("key_name")), keys=keys, origin=ledger.origin
            )
        except CheckpointError as exc:
            raise VerificationError(f"checkpoint note: {exc}") from exc
        head_height = _dict(integrity.get("head")).get("height")
        if opened.size != (head_height + 1 if isinstance(head_height, int) else None):
            raise VerificationError(f"checkpoint covers {opened.size} blocks, the head is {head_height}")
        with ledger.store.reading() as connection:
            actual = root(NodesOf(connection), opened.size)
        if actual != opened.root:
            raise VerificationError(
                f"Merkle root of the first {opened.size} blocks is {actual.hex()}, not the signed one"
            )
        return f"signed note verifies; root of {opened.size} blocks recomputed: {actual.hex()}"

    checker.run("ledger id", ledger_id)
    checker.run("head block", head)
    checker.run("signed checkpoint", checkpoint)


def _check_rows(checker: _Checker, ledger: Ledger, rows: list[tuple[int, str]]) -> None:
    def work() -> str:
        if not rows:
            raise VerificationError("the file lists no version blocks")
        wanted = {height: digest for height, digest in rows}
        seen: dict[int, str] = {}
        for block in ledger.blocks_of_kind("version"):
            if block.height in wanted:
                seen[block.height] = block.block_hash
        bad = [h for h, d in wanted.items() if seen.get(h) != d]
        if bad:
            shown = ", ".join(str(h) for h in sorted(bad)[:10])
            raise VerificationError(f"{len(bad)} version row(s) do not match the ledger's blocks (heights {shown})")
        return f"{len(rows)} version block(s) match"

    checker.run("version blocks", work)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _pairs(value: Any) -> list[tuple[int, str]]:
    out = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, list) and len(item) == 2 and isinstance(item[0], int) and isinstance(item[1], str):
            out.append((item[0], item[1]))
    return out


def _integrity_of(kind: str, data: bytes) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    if kind == "json":
        document = _json(data)
        integrity = _dict(document.get("integrity"))
        rows = [
            (v["height"], v["block_hash"])
            for v in document.get("versions", [])
            if isinstance(v, dict) and isinstance(v.get("height"), int) and isinstance(v.get("block_hash"), str)
        ]
        return integrity, rows
    if kind == "html":
        match = _SCRIPT_RE.search(data)
        if match is None:
            raise InputError("the HTML page has no ledger integrity section")
        integrity = _json(match.group(1))
        return integrity, _pairs(integrity.get("blocks"))
    if kind == "pdf":
        integrity = _json(_pdf_attachment(data))
        return integrity, _pairs(integrity.get("blocks"))
    if kind == "cyclonedx":
        return _cyclonedx_integrity(_json(data))
    raise InputError(f"format {kind} has no integrity section")  # pragma: no cover


def _pdf_attachment(data: bytes) -> bytes:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    from ledger.export.pdf import ATTACHMENT_NAME

    try:
        found = PdfReader(io.BytesIO(data)).attachments.get(ATTACHMENT_NAME)
    except (PdfReadError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read the PDF: {exc}") from exc
    if not found:
        raise InputError(f"the PDF has no {ATTACHMENT_NAME} attachment")
    return bytes(found[0])


def _properties(items: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str):
            out.setdefault(item["name"].removeprefix("ledger:"), item["value"])
    return out


def _cyclonedx_integrity(bom: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    props = _properties(_dict(bom.get("metadata")).get("properties"))
    try:
        head = {"height": int(props.get("head_height", "")), "hash": props.get("head_hash")}
    except ValueError:
        head = {}
    integrity = {
        "ledger_id": props.get("ledger_id"),
        "head": head,
        "checkpoint": {"note": props.get("checkpoint_note"), "key_name": props.get("checkpoint_key_name")},
    }
    rows = []
    for component in bom.get("components", []):
        if isinstance(component, dict) and component.get("type") == "machine-learning-model":
            p = _properties(component.get("properties"))
            if p.get("height", "").isdigit() and "block_hash" in p:
                rows.append((int(p["height"]), p["block_hash"]))
    return integrity, rows


def _csv_blocks(data: bytes) -> list[tuple[int, str]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("the CSV file is not UTF-8") from exc
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        height, digest = row.get("height") or "", row.get("block_hash") or ""
        if height.isdigit():
            rows.append((int(height), digest))
    return rows


def _envelopes(data: bytes) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            try:
                yield number, decode(line)
            except ValueError as exc:
                raise JSONInputError(f"line {number} is not JSON: {exc}") from exc


def _check_intoto(checker: _Checker, ledger: Ledger, data: bytes, keys: Mapping[str, bytes]) -> None:
    from ledger.export.dsse import decode_statement, verify_envelope
    from ledger.export.intoto import PREDICATE_TYPE, STATEMENT_TYPE

    blocks = {b.height: b for b in ledger.blocks_of_kind("version")}
    signers: set[str] = set()
    count = 0
    for number, envelope in _envelopes(data):
        try:
            verified = verify_envelope(envelope, keys)
            statement = decode_statement(verified)
        except LedgerError as exc:
            checker.add(f"DSSE envelope line {number}", False, str(exc))
            continue
        signers.add(verified.key_id)
        count += 1
        problem = _statement_problem(statement, blocks, ledger.ledger_id, STATEMENT_TYPE, PREDICATE_TYPE)
        if problem is not None:
            checker.add(f"statement line {number}", False, problem)
    if count:
        checker.add(
            "DSSE signatures",
            all(c.ok for c in checker.checks if c.name.startswith(("DSSE", "statement"))),
            f"{count} envelope(s) signed by key(s) {', '.join(sorted(signers))}, introduced by the chain",
        )
    else:
        checker.add("DSSE signatures", False, "no envelope verified")


def _statement_problem(
    statement: dict[str, Any], blocks: Mapping[int, Block], ledger_id: str, statement_type: str, predicate_type: str
) -> str | None:
    if statement.get("_type") != statement_type or statement.get("predicateType") != predicate_type:
        return "not an in-toto v1 statement with a SLSA v1 predicate"
    info = _dict(
        _dict(_dict(_dict(statement.get("predicate")).get("buildDefinition")).get("internalParameters")).get("ledger")
    )
    if info.get("ledger_id") != ledger_id:
        return f"statement names ledger {info.get('ledger_id')}"
    height = info.get("height")
    block = blocks.get(height) if isinstance(height, int) else None
    if block is None or block.block_hash != info.get("block_hash"):
        return f"version block {height} does not match the ledger"
    weights = _dict(block.data().get("weights"))
    subjects = statement.get("subject")
    digest = _dict(_dict(subjects[0]).get("digest")).get("sha256") if isinstance(subjects, list) and subjects else None
    expected = weights.get("sha256") or _dict(block.data().get("adapter")).get("root")
    if digest != expected:
        return f"subject digest {digest} is not the ledgered {expected}"
    return None
