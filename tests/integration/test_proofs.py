"""Offline proof bundles on both backends: round trips through the CLI, and tampered bundles refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.api import Ledger
from ledger.checkpoints import issue
from ledger.errors import BadSignatureError, CheckpointError, InputError, ProofError
from ledger.note import verifier_key
from ledger.proof import verify_bundle
from ledger.proving import prove_consistency, prove_inclusion
from ledger.signing import SigningKey
from tests.conftest import Workspace, open_ledger


@pytest.fixture
def proven(ledger_ws: Workspace) -> tuple[Workspace, dict[str, Any], bytes]:
    """A ledger with three versions and a checkpoint; an inclusion bundle for version v1.1 and the first note."""
    ledger = open_ledger(ledger_ws)
    first = issue(ledger, witness=None, state_dir=None).signed.note
    for name in ("oneseek-7b-zero-v1.0", "oneseek-7b-zero-v1.1", "oneseek-7b-zero-v1.2"):
        ledger.append(ledger_ws.write_version(name))
        ledger.append_event("event", {"after": name})
    issue(ledger, witness=None, state_dir=None)
    bundle = prove_inclusion(ledger, ledger.find("oneseek-7b-zero-v1.1")).bundle
    return ledger_ws, bundle, first


def dump(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_inclusion_round_trip_cli(proven: tuple[Workspace, dict[str, Any], bytes], tmp_path: Path) -> None:
    ws, _, _ = proven
    out = tmp_path / "proof.json"
    ws.cli("prove", "oneseek-7b-zero-v1.1", "--out", str(out), check=True)
    vkey = verifier_key(open_ledger(ws).origin, open_ledger(ws).key.public)
    # no database at all: an empty environment apart from the bundle
    ok = ws.cli(
        "verify-proof",
        str(out),
        "--file",
        str(ws.models / "oneseek-7b-zero-v1.1.pth"),
        "--vkey",
        vkey,
        LEDGER_DB="sqlite:////nonexistent/none.db",
    )
    assert ok.returncode == 0, ok.stderr
    assert "matches the block" in ok.stdout
    wrong = ws.cli("verify-proof", str(out), "--file", str(ws.models / "oneseek-7b-zero-v1.0.pth"))
    assert wrong.returncode == 1
    other = verifier_key(open_ledger(ws).origin, SigningKey.generate().public)
    assert ws.cli("verify-proof", str(out), "--vkey", other).returncode == 1
    (tmp_path / "bad.json").write_text("{not json")
    assert ws.cli("verify-proof", str(tmp_path / "bad.json")).returncode == 2


def test_consistency_round_trip_cli(proven: tuple[Workspace, dict[str, Any], bytes], tmp_path: Path) -> None:
    ws, _, old = proven
    (tmp_path / "old.note").write_bytes(old)
    out = tmp_path / "c.json"
    ws.cli("prove", "--since", str(tmp_path / "old.note"), "--out", str(out), check=True)
    assert ws.cli("verify-proof", str(out)).returncode == 0
    bundle = json.loads(out.read_text())
    bundle["consistency_path"][0] = "00" * 32
    out.write_text(json.dumps(bundle))
    assert ws.cli("verify-proof", str(out)).returncode == 1


def test_consistency_bundle_across_rotation(ledger_ws: Workspace) -> None:
    from ledger.rotation import rotate

    ledger = open_ledger(ledger_ws)
    ledger.append_event("event", {"n": 1})
    old = issue(ledger, witness=None, state_dir=None).signed.note
    rotate(ledger, SigningKey.generate(), reason="test")
    ledger.append_event("event", {"n": 2})
    issue(ledger, witness=None, state_dir=None)
    result = verify_bundle(dump(prove_consistency(ledger, old).bundle))
    assert (result.old_size, result.size) == (2, 4)


def _tampered(bundle: dict[str, Any], change: str) -> dict[str, Any]:
    b: dict[str, Any] = json.loads(json.dumps(bundle))
    block = b["block"]
    if change == "payload":
        raw = bytearray(base64.b64decode(block["payload_base64"]))
        raw[10] ^= 1
        block["payload_base64"] = base64.b64encode(bytes(raw)).decode()
    elif change == "payload_and_hash":
        import hashlib

        raw2 = base64.b64decode(block["payload_base64"]).replace(b'"size":4096', b'"size":4097')
        block["payload_base64"] = base64.b64encode(raw2).decode()
        block["payload_hash"] = hashlib.sha256(raw2).hexdigest()
    elif change == "path":
        b["inclusion_path"][0] = "11" * 32
    elif change == "short_path":
        b["inclusion_path"] = b["inclusion_path"][:-1]
    elif change == "index":
        b["leaf_index"] = b["leaf_index"] + 1
    elif change == "note":
        b["checkpoint"] = b["checkpoint"].replace("\n", "\n\n", 1)
    elif change == "root":
        lines = b["checkpoint"].split("\n")
        lines[2] = base64.b64encode(b"\x00" * 32).decode()
        b["checkpoint"] = "\n".join(lines)
    elif change == "signature":
        block["signature"] = "00" * 64
    elif change == "key_block":
        b["key_blocks"][0]["inclusion_path"][0] = "22" * 32
    elif change == "size":
        b["tree_size"] = b["tree_size"] + 1
    return b


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("payload", ProofError),
        ("payload_and_hash", ProofError),
        ("path", ProofError),
        ("short_path", ProofError),
        ("index", ProofError),
        ("note", CheckpointError),
        ("root", CheckpointError),
        ("signature", BadSignatureError),
        ("key_block", ProofError),
        ("size", ProofError),
    ],
)
def test_tampered_bundle_refused(proven: tuple[Workspace, dict[str, Any], bytes], change: str, error: type) -> None:
    _, bundle, _ = proven
    assert verify_bundle(dump(bundle)).block is not None
    with pytest.raises(error):
        verify_bundle(dump(_tampered(bundle, change)))


@pytest.mark.parametrize("field", ["block", "leaf_index", "inclusion_path", "schema", "key_blocks", "origin"])
def test_malformed_bundle_is_input_error(proven: tuple[Workspace, dict[str, Any], bytes], field: str) -> None:
    _, bundle, _ = proven
    broken = dict(bundle)
    del broken[field]
    with pytest.raises(InputError):
        verify_bundle(dump(broken))


# --- a retired key: refused by verify-proof as the audit reports it --------------------------------------------------


def test_block_signed_by_retired_key_refused_like_the_audit(ledger_ws: Workspace, tmp_path: Path) -> None:
    from ledger import merkle
    from ledger.api import NodesOf
    from ledger.audit import FilesMode
    from ledger.block import seal
    from ledger.findings import FindingClass
    from ledger.proof import Included, inclusion_bundle
    from ledger.rotation import rotate
    from ledger.store import Store

    ledger = open_ledger(ledger_ws)
    ledger.append_event("event", {"n": 1})
    old = ledger.key
    rotation = rotate(ledger, SigningKey.generate(), reason="compromise")
    head = ledger.head()
    forged = seal(
        height=head.height + 1, prev_hash=head.block_hash, timestamp=head.timestamp, kind="event", payload={}, key=old
    )  # the holder of the retired key appends around the library's refusal
    leaf = merkle.leaf_hash(bytes.fromhex(forged.block_hash))
    with ledger.store.reading() as connection:
        nodes, _ = merkle.completed_nodes(forged.height, leaf, merkle.load_frontier(NodesOf(connection), forged.height))
    ledger.store.write(lambda c: (Store.insert_block(c, forged), Store.insert_nodes(c, nodes)))
    signed = issue(ledger, witness=None, state_dir=None).signed  # an honest checkpoint now covers it
    report = ledger.audit(files=FilesMode.NONE)
    assert [(f.height, f.kind) for f in report.findings] == [(forged.height, FindingClass.SIGNATURE)]

    refused = ledger_ws.cli("prove", str(forged.height))  # the builder will not hand out such a bundle
    assert refused.returncode == 1 and "retired" in refused.stderr, refused.stderr
    vkey = verifier_key(ledger.origin, ledger.key.public)
    size = signed.checkpoint.size
    for chain in ([0, rotation.height], [0]):  # with the rotation, and with the rotation left out
        bundle = inclusion_bundle(
            ledger_id=ledger.ledger_id,
            block=forged,
            path=ledger.inclusion_proof(forged.height, size),
            checkpoint=signed,
            verifier_key=vkey,
            key_blocks=[Included(ledger.block(h), ledger.inclusion_proof(h, size)) for h in chain],
        )
        path = tmp_path / f"forged-{len(chain)}.json"
        path.write_bytes(dump(bundle))
        with pytest.raises(BadSignatureError):
            verify_bundle(path.read_bytes(), vkey=vkey)
        result = ledger_ws.cli("verify-proof", str(path), "--vkey", vkey)
        assert result.returncode == 1 and result.stderr.startswith("ledger: error: "), result.stderr


def test_inclusion_after_rotation_carries_the_key_chain(ledger_ws: Workspace) -> None:
    from ledger.rotation import rotate

    ledger = open_ledger(ledger_ws)
    before = ledger.append_event("event", {"n": 1})
    first = rotate(ledger, SigningKey.generate(), reason="one")
    second = rotate(ledger, SigningKey.generate(), reason="two")
    after = ledger.append_event("event", {"n": 2})
    issue(ledger, witness=None, state_dir=None)
    vkey = verifier_key(ledger.origin, ledger.key.public)
    old = prove_inclusion(ledger, before).bundle
    assert [k["block"]["height"] for k in old["key_blocks"]] == [0, first.height, second.height]
    assert verify_bundle(dump(old), vkey=vkey).block == before
    new = prove_inclusion(ledger, after).bundle
    assert [k["block"]["height"] for k in new["key_blocks"]] == [second.height]
    assert verify_bundle(dump(new), vkey=vkey).block == after
    skipped = json.loads(json.dumps(old))
    del skipped["key_blocks"][1]  # leave out the middle rotation
    with pytest.raises(BadSignatureError):
        verify_bundle(dump(skipped), vkey=vkey)


# --- prove when no stored checkpoint reaches far enough ------------------------------------------------------------


def _stored(ws: Workspace) -> list[bytes]:
    from ledger.checkpoints import stored_notes

    return stored_notes(open_ledger(ws, signing=False))


@pytest.fixture
def moved_on(proven: tuple[Workspace, dict[str, Any], bytes], tmp_path: Path) -> tuple[Workspace, Ledger, Path, int]:
    """The proven ledger whose head moved one block past its newest stored checkpoint; the first note's file."""
    ws, _, old = proven
    (tmp_path / "old.note").write_bytes(old)
    ledger = open_ledger(ws)
    stored_size = ledger.size()
    ledger.append_event("event", {"n": "later"})
    return ws, ledger, tmp_path / "old.note", stored_size


def test_prove_since_signs_a_checkpoint_of_the_head(
    moved_on: tuple[Workspace, Ledger, Path, int], tmp_path: Path
) -> None:
    ws, ledger, old, _ = moved_on
    witness = tmp_path / "witness"
    before = _stored(ws)
    out = tmp_path / "c.json"
    result = ws.cli("prove", "--since", str(old), "--out", str(out), LEDGER_WITNESS=str(witness))
    assert result.returncode == 0, result.stderr
    size = ledger.size()
    assert f"signed checkpoint size {size}" in result.stdout
    assert len(_stored(ws)) == len(before) + 1
    assert [p.name.split(".")[1] for p in witness.iterdir()] == [f"{size:020d}"]
    vkey = verifier_key(ledger.origin, ledger.key.public)
    assert verify_bundle(out.read_bytes(), vkey=vkey).size == size
    state = json.loads((ws.root / "state" / f"{ledger.ledger_id}.json").read_text())
    assert state["size"] == size  # issued exactly as `ledger checkpoint` would


def test_prove_since_without_key_stops_at_the_newest_checkpoint(
    moved_on: tuple[Workspace, Ledger, Path, int], tmp_path: Path
) -> None:
    ws, _, old, stored_size = moved_on
    before = _stored(ws)
    result = ws.cli("prove", "--since", str(old), LEDGER_KEY=str(tmp_path / "no-key.pem"))
    assert result.returncode == 0, result.stderr
    assert f"newest stored checkpoint (size {stored_size})" in result.stderr
    assert f"head is at size {stored_size + 1}" in result.stderr
    assert verify_bundle(result.stdout.encode()).size == stored_size
    assert _stored(ws) == before


def test_prove_with_an_encrypted_key_and_no_passphrase(
    moved_on: tuple[Workspace, Ledger, Path, int], tmp_path: Path
) -> None:
    """The key is optional for prove: one that cannot be opened is a note, and the proof uses the stored
    checkpoint, as with no key at all."""
    from ledger.signing import SigningKey, write_key_file

    ws, _, old, stored_size = moved_on
    locked = tmp_path / "locked.pem"
    write_key_file(locked, SigningKey.generate(), b"secret")
    before = _stored(ws)
    result = ws.cli("prove", "--since", str(old), LEDGER_KEY=str(locked))
    assert result.returncode == 0, result.stderr
    assert "not signing a new checkpoint" in result.stderr and "LEDGER_KEY_PASSPHRASE" in result.stderr
    assert verify_bundle(result.stdout.encode()).size == stored_size
    assert _stored(ws) == before


def test_prove_since_the_newest_checkpoint_is_an_empty_proof(ledger_ws: Workspace, tmp_path: Path) -> None:
    ledger = open_ledger(ledger_ws)
    ledger.append_event("event", {"n": 1})
    note = issue(ledger, witness=None, state_dir=None).signed.note
    (tmp_path / "old.note").write_bytes(note)
    before = _stored(ledger_ws)
    result = ledger_ws.cli("prove", "--since", str(tmp_path / "old.note"), check=True)
    bundle = json.loads(result.stdout)
    assert bundle["consistency_path"] == [] and bundle["old_checkpoint"] == bundle["new_checkpoint"]
    assert "signed checkpoint" not in result.stderr and _stored(ledger_ws) == before
    assert verify_bundle(result.stdout.encode()).old_size == 2


def test_prove_block_newer_than_every_checkpoint(ledger_ws: Workspace, tmp_path: Path) -> None:
    ledger = open_ledger(ledger_ws)
    issue(ledger, witness=None, state_dir=None)
    block = ledger.append_event("event", {"n": 1})
    before = _stored(ledger_ws)
    refused = ledger_ws.cli("prove", str(block.height), LEDGER_KEY=str(tmp_path / "no-key.pem"))
    assert refused.returncode == 2 and "no checkpoint covers height" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and _stored(ledger_ws) == before
    assert open_ledger(ledger_ws).head() == block
    out = tmp_path / "p.json"
    made = ledger_ws.cli("prove", str(block.height), "--out", str(out), check=True)  # with the key: signs one
    assert "signed checkpoint size 2" in made.stdout and len(_stored(ledger_ws)) == len(before) + 1
    result = verify_bundle(out.read_bytes(), vkey=verifier_key(ledger.origin, ledger.key.public))
    assert result.block == block and result.size == 2


# --- CLI paths: prove HEIGHT, verify-proof --vkey on a consistency bundle ---------------------------------------------


def test_prove_height(proven: tuple[Workspace, dict[str, Any], bytes], tmp_path: Path) -> None:
    ws, by_name, _ = proven
    height = by_name["leaf_index"]
    result = ws.cli("prove", str(height), check=True)
    assert json.loads(result.stdout)["block"] == by_name["block"]
    assert ws.cli("prove", "999").returncode == 2
    assert ws.cli("prove").returncode == 2  # neither a block nor --since


def test_verify_proof_vkey_on_consistency_bundle(
    proven: tuple[Workspace, dict[str, Any], bytes], tmp_path: Path
) -> None:
    ws, _, old = proven
    (tmp_path / "old.note").write_bytes(old)
    out = tmp_path / "c.json"
    ws.cli("prove", "--since", str(tmp_path / "old.note"), "--out", str(out), check=True)
    ledger = open_ledger(ws)
    vkey = verifier_key(ledger.origin, ledger.key.public)
    pinned = ws.cli("--json", "verify-proof", str(out), "--vkey", vkey)
    assert pinned.returncode == 0, pinned.stderr
    shown = json.loads(pinned.stdout)
    assert shown["key_pinned"] is True and shown["type"] == "consistency" and shown["old_size"] == 1
    unpinned = ws.cli("verify-proof", str(out))
    assert unpinned.returncode == 0 and "pin it with --vkey" in unpinned.stdout
    other = verifier_key(ledger.origin, SigningKey.generate().public)
    refused = ws.cli("verify-proof", str(out), "--vkey", other)
    assert refused.returncode == 1 and refused.stderr.startswith("ledger: error: ")
    assert ws.cli("verify-proof", str(out), "--vkey", "not-a-key").returncode == 1
