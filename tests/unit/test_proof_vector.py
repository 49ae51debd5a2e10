"""The worked example of docs/FORMAT.md (proof bundles) is a committed golden vector; it must keep verifying."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.errors import CheckpointError
from ledger.proof import verify_bundle

VECTOR = Path(__file__).resolve().parent.parent / "vectors" / "proof" / "example-inclusion.json"
VKEY = "example.com/ledger+93727de6+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
ROOT = "991b9d53eec82ed457fb0af6ee9ca59a187f680141856c4e592a1faeb495adb3"


def test_worked_example_verifies() -> None:
    result = verify_bundle(VECTOR.read_bytes(), vkey=VKEY)
    assert result.root.hex() == ROOT and result.size == 3
    assert result.block is not None and result.block.payload == b'{"n":1}'


def test_worked_example_rejects_other_key() -> None:
    other = "example.com/ledger+00000000+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
    with pytest.raises(CheckpointError):
        verify_bundle(VECTOR.read_bytes(), vkey=other)


def test_worked_example_is_what_the_docs_show() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md").read_text()
    bundle = json.loads(VECTOR.read_text())
    assert bundle["block"]["block_hash"] in doc and ROOT in doc and bundle["checkpoint"].split("\n")[2] in doc
