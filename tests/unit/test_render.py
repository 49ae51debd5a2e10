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
    with render.progress_bar(settings(json=False)) as start:
        progress = start(render.size_of(big_file))
        assert progress is not None
        progress(render.PROGRESS_THRESHOLD + 1)
    assert "hashing" in fake.getvalue()


@pytest.mark.parametrize("json", [True, False])
def test_no_progress_with_json_or_pipe(big_file: Path, monkeypatch: pytest.MonkeyPatch, json: bool) -> None:
    stderr = FakeTTY() if json else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    with render.progress_bar(settings(json=json)) as start:
        assert start(render.size_of(big_file)) is None
    assert stderr.getvalue() == ""


def test_no_progress_for_small_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = tmp_path / "small.pth"
    small.write_bytes(b"x")
    monkeypatch.setattr(sys, "stderr", FakeTTY())
    with render.progress_bar(settings(json=False)) as start:
        assert start(render.size_of(small, None, tmp_path / "missing")) is None


def test_size_of_counts_directories(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a").write_bytes(b"12345")
    (tmp_path / "d" / "sub" / "b").write_bytes(b"123")
    (tmp_path / "f").write_bytes(b"1")
    assert render.size_of(tmp_path / "d", tmp_path / "f", None) == 9
