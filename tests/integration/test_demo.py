"""``make demo`` end to end in a temporary directory, twice: a fresh ledger, then the continued sequence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def run_demo(root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGER_", "DEMO_"))}
    env.update(PYTHONPATH=str(REPO), DEMO_STEPS="2")
    return subprocess.run(
        [sys.executable, "-m", "demo", "--root", str(root)],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_demo_twice(tmp_path: Path) -> None:
    first = run_demo(tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("new demo ledger")
    assert "audit clean" in first.stdout
    assert (tmp_path / ".demo-key.pem").exists()
    second = run_demo(tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("continuing the demo ledger")
    assert "latest oneseek-demo-tiny-v1.4" in second.stdout
    assert "audit clean" in second.stdout
    table = second.stdout.split("$ ledger versions")[1].splitlines()[2:]
    rows = [line.split() for line in table if line.startswith("oneseek-demo-tiny-")]
    assert [row[0].rsplit("-v", 1)[1] for row in rows] == [
        "1.0",
        "1.1",
        "1.2",
        "1.3",
        "1.4",
        "2.0",
        "2.1",
        "2.2",
        "2.3",
        "2.4",
    ]
    assert [row[2] for row in rows[5:]] == ["-", "1/q2-1", "2/q2-1", "1/q2-2", "2/q2-2"]
    assert all(row[-1] == "present" for row in rows)
    adapters = sorted(p.name for p in (tmp_path / "lora_adapters").iterdir())
    assert adapters == [f"oneseek-demo-tiny-v{m}.{n}" for m in (1, 2) for n in (1, 2, 3, 4)]
    config = json.loads((tmp_path / "lora_adapters" / "oneseek-demo-tiny-v2.1" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "oneseek-demo-tiny-v2.0"
    meta = json.loads((tmp_path / "models" / "oneseek-demo-tiny-v2.2.json").read_text())
    assert meta["version"] == "2.2" and meta["provenance"]["training_data_hash"].startswith("sha256:")
    assert meta["provenance"]["ledger_block_id"] == "block-8"
