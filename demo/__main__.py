"""``python -m demo``: one major version, then two questions of micro-training (stage 1 and 2), audited and listed.

Uses ``./models`` (weights, metadata and the SQLite ledger), ``./lora_adapters`` and ``./demo-workdir`` (data
sets, adapter staging) under ``--root`` (default: the current directory), and the signing key
``./.demo-key.pem``. A second run continues the same ledger: the next major version, then two more questions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

MODEL_NAME = "OneSeek-Demo-Tiny"
SLUG = MODEL_NAME.lower()
TRAINER = "ledger-demo"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="where models/ and lora_adapters/ live")
    parser.add_argument(
        "--steps",
        type=int,
        default=int(os.environ["DEMO_STEPS"]) if os.environ.get("DEMO_STEPS") else None,
        help="training steps per phase instead of the time budget (env DEMO_STEPS; tests use a few)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="training time of the major version")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code (0 when the audit is clean)."""
    args = parse_args(argv)
    import torch

    from cli.render import audit_text, log_text
    from cli.versions import versions_text
    from ledger.api import Ledger
    from ledger.audit import FilesMode
    from ledger.checkpoints import issue
    from ledger.errors import LedgerError
    from ledger.inventory import list_versions
    from ledger.signing import SigningKey, write_key_file
    from ledger.witness import Witness

    torch.set_num_threads(2)
    root = args.root.absolute()
    models, adapters, work = root / "models", root / "lora_adapters", root / "demo-workdir"
    key, db = root / ".demo-key.pem", models / "ledger.db"
    models.mkdir(parents=True, exist_ok=True)
    adapters.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{db}"
    try:
        if db.exists():
            if not key.exists():
                print(
                    f"demo: {db} exists but its key {key} is missing: remove the ledger to start afresh",
                    file=sys.stderr,
                )
                return 2
            ledger = Ledger.open(url, models_dir=models, key=key, adapters_dir=adapters)
            last = ledger.last_version(SLUG)
            latest = f"latest {SLUG}-{last.version.tag}" if last else "no demo versions yet"
            print(
                f"continuing the demo ledger {db} (head {ledger.head().height}, {latest}): "
                "next major, then two questions"
            )
        else:
            if not key.exists():
                write_key_file(key, SigningKey.generate(), None)
            ledger = Ledger.create(url, models_dir=models, key=key, adapters_dir=adapters, origin="demo.ledger.local")
            print(f"new demo ledger {db} (key {key}): first major version, then two questions")
        run_round(ledger, work=work, steps=args.steps, seconds=args.seconds)
        witness, state = work / "witness", work / "state"
        witness.mkdir(parents=True, exist_ok=True)
        issued = issue(ledger, witness=Witness(str(witness)), state_dir=state)
        report = ledger.audit(files=FilesMode.FULL, witness=str(witness), state_dir=state)
    except LedgerError as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 2
    print()
    print(f"$ ledger checkpoint --witness {witness}")
    print(f"signed checkpoint of {issued.signed.checkpoint.size} blocks, published to the witness")
    print()
    print("$ ledger log --limit 8")
    print(log_text(list(ledger.blocks(max(0, ledger.head().height - 7)))[::-1]))
    print()
    print("$ ledger audit --files full")
    print(audit_text(report))
    print()
    print(f"$ ledger versions --model {MODEL_NAME}")
    print(versions_text(list_versions(ledger, model=MODEL_NAME)))
    return 0 if report.clean else 1


def run_round(ledger: Any, *, work: Path, steps: int | None, seconds: float) -> None:
    """Train and save one major version, then two questions of micro-training with LoRA adapters."""
    import torch

    from demo import training

    last = ledger.last_version(SLUG)
    major = 1 if last is None else last.version.major + 1
    model = training.make_model()
    if last is not None:  # start from the latest recorded weights when they are still on disk
        previous = ledger.models_dir / f"{SLUG}-{last.version.tag}.pth"
        if previous.exists():
            model.load_state_dict(torch.load(previous, weights_only=True))
            print(f"starting from {previous.name}")

    batch = training.make_dataset(seed=major, size=4000)
    data_path = work / "data" / f"batch-{major}.pt"
    batch.save(data_path)
    train_part, validation = batch.split()
    lr = 1e-2
    ran = training.train(model, train_part, steps=steps, seconds=seconds, lr=lr)
    scores = training.metrics(model, validation)
    block = ledger.save_version(
        model,
        metadata(len(train_part.y), ran, lr, scores, use_lora=False, base=["demo-mlp"]),
        kind="major",
        data=data_path,
    )
    report(block, scores, ran)
    base_name = block.data()["name"]

    for number in (1, 2):
        question = f"q{major}-{number}"
        wrapper = training.attach_lora(model)
        raw = training.make_dataset(seed=1000 * major + number, size=600)
        raw_path = work / "data" / f"{question}-raw.pt"
        raw.save(raw_path)
        for stage in (1, 2):
            # Stage 1 learns from the question's raw data; stage 2 continues on it once analysed (here: simply
            # trained longer), each saved as its own micro version with its adapter.
            part, check = raw.split()
            ran = training.train(model, part, steps=steps, seconds=0.5 * stage, lr=5e-3)
            scores = training.metrics(model, check)
            staging = work / "adapters" / f"{question}-stage{stage}"
            write_adapter(staging, wrapper, base_name)
            merged = training.merge_lora(model)
            block = ledger.save_version(
                merged,
                metadata(len(part.y), ran, 5e-3, scores, use_lora=True, base=[base_name]),
                stage=stage,
                question=question,
                adapter_dir=staging,
                data=raw_path,
            )
            shutil.rmtree(staging)  # the ledgered copy lives in lora_adapters/<version>/
            report(block, scores, ran)
        model = training.make_model()
        model.load_state_dict(merged)


def write_adapter(directory: Path, wrapper: Any, base_name: str) -> None:
    """A PEFT-shaped adapter directory: ``adapter_config.json`` and ``adapter_model.bin``."""
    import torch

    from demo import training

    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    config = {
        "base_model_name_or_path": base_name,
        "peft_type": "LORA",
        "r": training.LORA_RANK,
        "lora_alpha": training.LORA_ALPHA,
        "target_modules": ["0"],
    }
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    torch.save(training.adapter_state(wrapper), directory / "adapter_model.bin")


def metadata(
    size: int, steps: int, lr: float, scores: dict[str, float], *, use_lora: bool, base: list[str]
) -> dict[str, Any]:
    """Seed-shaped metadata; the ledger fills in version, timestamp and the training data hash."""
    from demo import training

    return {
        "model_name": MODEL_NAME,
        "base_models": base,
        "training_config": {
            "dataset_size": size,
            "epochs": 1,
            "batch_size": 64,
            "learning_rate": lr,
            "use_lora": use_lora,
            "lora_rank": training.LORA_RANK if use_lora else 0,
            "lora_alpha": training.LORA_ALPHA if use_lora else 0,
            "steps": steps,
        },
        "metrics": scores,
        "provenance": {"trainer": TRAINER},
    }


def report(block: Any, scores: dict[str, float], steps: int) -> None:
    """One line per saved version."""
    data = block.data()
    stage = f" stage {data['stage']} of {data['question']}" if data.get("stage") else ""
    print(
        f"saved {data['name']} ({data['release']}{stage}) as block {block.height} after {steps} steps: "
        f"accuracy {scores['validation_accuracy']:.3f}, fairness {scores['fairness_score']:.3f}, "
        f"bias {scores['bias_score']:.3f}"
    )


if __name__ == "__main__":
    sys.exit(main())
