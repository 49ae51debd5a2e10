"""Proof bundle verification without a database: the golden vectors of docs/FORMAT.md, the public Merkle probes
driven through the bundle verifier's own proof checks (and, as signed bundles, through ``ledger verify-proof``),
and key rotation: a block signed by a retired key is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from cli.main import app
from ledger import merkle
from ledger.block import GENESIS_PREV_HASH, Block, seal
from ledger.errors import BadSignatureError, CheckpointError, InputError, ProofError
from ledger.note import Checkpoint, SignedCheckpoint, verifier_key
from ledger.proof import (
    SCHEMA_V1,
    Included,
    check_consistency,
    check_inclusion,
    consistency_bundle,
    inclusion_bundle,
    verify_bundle,
)
from ledger.signing import SigningKey
from tests.probes import CONSISTENCY, PROBES, Probe

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "proof"
VECTOR = VECTORS / "example-inclusion.json"
ROTATION = VECTORS / "example-rotation.json"
ORIGIN = "example.com/ledger"
VKEY = "example.com/ledger+93727de6+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
ROOT = "991b9d53eec82ed457fb0af6ee9ca59a187f680141856c4e592a1faeb495adb3"


def dump(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_worked_example_verifies() -> None:
    result = verify_bundle(VECTOR.read_bytes(), vkey=VKEY)
    assert result.root.hex() == ROOT and result.size == 3
    assert result.block is not None and result.block.payload == b'{"n":1}'
    assert json.loads(VECTOR.read_text())["schema"] == SCHEMA_V1  # the first format stays readable


def test_worked_example_rejects_other_key() -> None:
    other = "example.com/ledger+00000000+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
    with pytest.raises(CheckpointError):
        verify_bundle(VECTOR.read_bytes(), vkey=other)


def test_worked_example_is_what_the_docs_show() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md").read_text()
    bundle = json.loads(VECTOR.read_text())
    assert bundle["block"]["block_hash"] in doc and ROOT in doc and bundle["checkpoint"].split("\n")[2] in doc
    rotation = json.loads(ROTATION.read_text())
    assert rotation["key_blocks"][1]["block"]["block_hash"] in doc
    assert rotation["checkpoint"].split("\n")[2] in doc and rotation["verifier_key"] in doc


# --- the probes, through the bundle verifier's proof checks --------------------------------------------------------


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.name)
def test_probe_through_bundle_checks(probe: Probe) -> None:
    """Exactly the parsing and checking ``verify_bundle`` does: integers as JSON gives them, the path as hex."""
    case, path = probe.case, [h.hex() for h in probe.proof]
    if probe.kind == "inclusion":
        args: dict[str, Any] = {"leaf": probe.raw("leafHash"), "root": probe.raw("root")}
        args.update(index=case["leafIdx"], size=case["treeSize"], path=path)
        check: Any = check_inclusion
    else:
        args = {"root1": probe.raw("root1"), "root2": probe.raw("root2"), "path": path}
        args.update(size1=case["size1"], size2=case["size2"])
        check = check_consistency
    if probe.want_error:
        with pytest.raises(ProofError):
            check(**args)
    else:
        check(**args)


PROBE_KEY = SigningKey.from_private(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
PROBE_VKEY = verifier_key(ORIGIN, PROBE_KEY.public)
#: Consistency probes a bundle can carry: a checkpoint note holds a 32-byte root and a size below 2**64.
AS_BUNDLES = [
    p
    for p in CONSISTENCY
    if len(p.raw("root1")) == len(p.raw("root2")) == 32 and min(p.case["size1"], p.case["size2"]) >= 0
]


def _note(size: int, root: bytes) -> SignedCheckpoint:
    return SignedCheckpoint.sign(Checkpoint(ORIGIN, size, root), name=ORIGIN, private_key=PROBE_KEY.private)


def _probe_bundle(probe: Probe) -> dict[str, Any]:
    case = probe.case
    return consistency_bundle(
        ledger_id="00000000-0000-4000-8000-000000000000",
        old=_note(case["size1"], probe.raw("root1")),
        new=_note(case["size2"], probe.raw("root2")),
        path=probe.proof,
        verifier_keys=[PROBE_VKEY],
    )


def test_nearly_every_consistency_probe_is_a_bundle() -> None:
    """Only the probes whose roots are not 32 bytes long cannot be written as checkpoint notes."""
    left_out = [p for p in CONSISTENCY if p not in AS_BUNDLES]
    assert all(len(p.raw("root1")) != 32 or len(p.raw("root2")) != 32 for p in left_out)
    assert len(AS_BUNDLES) >= 70 and any(not p.want_error for p in AS_BUNDLES)


@pytest.mark.parametrize("probe", AS_BUNDLES, ids=lambda p: p.name)
def test_consistency_probe_as_signed_bundle(probe: Probe, tmp_path: Path) -> None:
    data = dump(_probe_bundle(probe))
    path = tmp_path / "bundle.json"
    path.write_bytes(data)
    result = CliRunner().invoke(app, ["verify-proof", str(path), "--vkey", PROBE_VKEY], env={"LEDGER_DB": ""})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if probe.want_error:
        with pytest.raises(ProofError):
            verify_bundle(data, vkey=PROBE_VKEY)
        assert result.exit_code == 1, result.output + result.stderr
        assert result.stderr.startswith("ledger: error: ") and len(result.stderr.strip().splitlines()) == 1
    else:
        assert verify_bundle(data, vkey=PROBE_VKEY).size == probe.case["size2"]
        assert result.exit_code == 0, result.stderr
        assert "valid:" in result.stdout


# --- key rotation: the key-block chain (docs/FORMAT.md, second worked example) --------------------------------------

KEY0 = PROBE_KEY
KEY1 = SigningKey.from_private(Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64))))
VKEY1 = verifier_key(ORIGIN, KEY1.public)


def _example_chain() -> list[Block]:
    """Genesis and block 1 of the first example, then a rotation to KEY1 (block 2) and a block KEY1 signs."""
    genesis_payload = {
        "algorithm": "ed25519",
        "created": "2026-01-01T00:00:00.000000Z",
        "ledger_id": "00000000-0000-4000-8000-000000000000",
        "origin": ORIGIN,
        "public_key": KEY0.public.hex(),
    }
    rotation = {"previous_key_id": KEY0.key_id, "public_key": KEY1.public.hex(), "reason": "example"}
    specs: list[tuple[str, dict[str, Any], SigningKey]] = [
        ("genesis", genesis_payload, KEY0),
        ("event", {"n": 1}, KEY0),
        ("key", rotation, KEY0),
        ("event", {"n": 3}, KEY1),
    ]
    blocks: list[Block] = []
    for height, (kind, payload, key) in enumerate(specs):
        prev = blocks[-1].block_hash if blocks else GENESIS_PREV_HASH
        stamp = f"2026-01-01T00:00:0{height}.000000Z"
        blocks.append(seal(height=height, prev_hash=prev, timestamp=stamp, kind=kind, payload=payload, key=key))
    return blocks


def _bundle(blocks: list[Block], height: int, chain: list[int], signer: SigningKey) -> dict[str, Any]:
    tree = merkle.MemoryTree(merkle.leaf_hash(bytes.fromhex(b.block_hash)) for b in blocks)
    size = len(blocks)
    checkpoint = SignedCheckpoint.sign(Checkpoint(ORIGIN, size, tree.root()), name=ORIGIN, private_key=signer.private)
    return inclusion_bundle(
        ledger_id="00000000-0000-4000-8000-000000000000",
        block=blocks[height],
        path=merkle.inclusion_proof(tree, height, size),
        checkpoint=checkpoint,
        verifier_key=verifier_key(ORIGIN, signer.public),
        key_blocks=[Included(blocks[h], merkle.inclusion_proof(tree, h, size)) for h in chain],
    )


def test_rotation_vector_is_reproducible() -> None:
    """The committed vector is exactly what the documented inputs give (Ed25519 signatures are deterministic)."""
    assert json.loads(ROTATION.read_text()) == _bundle(_example_chain(), 1, [0, 2], KEY1)


def test_rotation_vector_verifies() -> None:
    result = verify_bundle(ROTATION.read_bytes(), vkey=VKEY1)
    assert result.block is not None and result.block.height == 1 and result.size == 4
    with pytest.raises(CheckpointError):  # the checkpoint is signed by the new key, not the retired one
        verify_bundle(ROTATION.read_bytes(), vkey=PROBE_VKEY)


def test_rotation_chain_cannot_be_shortened_or_skipped() -> None:
    blocks = _example_chain()
    assert verify_bundle(dump(_bundle(blocks, 3, [2], KEY1))).block is not None
    assert verify_bundle(dump(_bundle(blocks, 2, [0, 2], KEY1))).block is not None  # the rotation itself
    with pytest.raises(BadSignatureError, match="end at key"):  # the rotation left out
        verify_bundle(dump(_bundle(blocks, 1, [0], KEY1)))
    with pytest.raises(BadSignatureError, match="first key block"):
        verify_bundle(dump(_bundle(blocks, 1, [2], KEY1)))
    with pytest.raises(BadSignatureError, match="later `key` block"):
        verify_bundle(dump(_bundle(blocks, 1, [0, 1], KEY1)))
    early = seal(
        height=1, prev_hash=blocks[0].block_hash, timestamp=blocks[1].timestamp, kind="event", payload={}, key=KEY1
    )
    with pytest.raises(BadSignatureError, match="introduced after"):  # signed by KEY1 before block 2 brought it in
        verify_bundle(dump(_bundle([blocks[0], early, *blocks[2:]], 1, [2], KEY1)))


def test_block_signed_by_retired_key_is_refused() -> None:
    """An attacker holding the retired key appends a block after the rotation; a checkpoint covers it."""
    blocks = _example_chain()[:3]
    head = blocks[-1]
    forged = seal(height=3, prev_hash=head.block_hash, timestamp=head.timestamp, kind="event", payload={}, key=KEY0)
    blocks.append(forged)
    with pytest.raises(BadSignatureError, match="retired"):
        verify_bundle(dump(_bundle(blocks, 3, [0, 2], KEY1)))
    with pytest.raises(BadSignatureError, match="end at key"):
        verify_bundle(dump(_bundle(blocks, 3, [0], KEY1)))
    old_format = _bundle(blocks, 3, [0], KEY1)
    old_format["schema"] = SCHEMA_V1
    old_format["key_block"] = old_format.pop("key_blocks")[0]
    with pytest.raises(BadSignatureError, match="v1 bundle"):
        verify_bundle(dump(old_format))


@pytest.mark.parametrize("change", ["not a list", "empty", "entry", "path"])
def test_malformed_key_blocks_are_input_errors(change: str) -> None:
    bundle = _bundle(_example_chain(), 1, [0, 2], KEY1)
    if change == "not a list":
        bundle["key_blocks"] = bundle["key_blocks"][0]
    elif change == "empty":
        bundle["key_blocks"] = []
    elif change == "entry":
        bundle["key_blocks"][1] = "block 2"
    else:
        bundle["key_blocks"][1]["inclusion_path"] = "ab" * 32
    with pytest.raises(InputError):
        verify_bundle(dump(bundle))
