"""Rendering: the progress bar shows only for large files on a terminal, never with --json."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from cli import render
from ledger.settings import Settings


def settings(*, json: bool) -> Settings:
    return Settings(
        db_url="sqlite:///x.db",
        models_dir=Path("."),
        key_path=Path("k"),
        passphrase=None,
        adapters_dir=Path("."),
        state_dir=Path("."),
        json=json,
    )


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.pth"
    with path.open("wb") as handle:
        handle.truncate(render.PROGRESS_THRESHOLD + 1)  # sparse: large without writing
    return path


def test_progress_on_terminal_for_large_file(big_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake)
    with render.hashing_progress(settings(json=False), big_file) as progress:
        assert progress is not None
        progress(render.PROGRESS_THRESHOLD + 1)


@pytest.mark.parametrize("json", [True, False])
def test_no_progress_with_json_or_pipe(big_file: Path, monkeypatch: pytest.MonkeyPatch, json: bool) -> None:
    monkeypatch.setattr(sys, "stderr", FakeTTY() if json else io.StringIO())
    with render.hashing_progress(settings(json=json), big_file) as progress:
        assert progress is None


def test_no_progress_for_small_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = tmp_path / "small.pth"
    small.write_bytes(b"x")
    monkeypatch.setattr(sys, "stderr", FakeTTY())
    with render.hashing_progress(settings(json=False), small) as progress:
        assert progress is None
