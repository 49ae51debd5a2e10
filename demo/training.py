"""A tiny real training job for the demo: a synthetic data set with a protected group, an MLP, LoRA adapters."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

FEATURES = 16
HIDDEN = 32
LORA_RANK = 4
LORA_ALPHA = 8


@dataclass(frozen=True, slots=True)
class Dataset:
    """Features, labels and a binary group attribute (feature 0), split into training and validation."""

    x: torch.Tensor
    y: torch.Tensor
    group: torch.Tensor

    def split(self, fraction: float = 0.8) -> tuple[Dataset, Dataset]:
        """Training and validation parts."""
        cut = int(len(self.y) * fraction)
        return (
            Dataset(self.x[:cut], self.y[:cut], self.group[:cut]),
            Dataset(self.x[cut:], self.y[cut:], self.group[cut:]),
        )

    def save(self, path: Path) -> None:
        """Write the data set (what the ledger hashes as the training data)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"x": self.x, "y": self.y, "group": self.group}, path)


def make_dataset(seed: int, size: int) -> Dataset:
    """A reproducible synthetic classification problem whose labels lean slightly on the group attribute."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, FEATURES, generator=generator)
    group = (torch.rand(size, generator=generator) < 0.4).long()
    x[:, 0] = group.float()
    rule = torch.randn(FEATURES, generator=torch.Generator().manual_seed(7))  # same task every round
    logits = x @ rule + 0.3 * group + 0.2 * torch.randn(size, generator=generator)
    return Dataset(x, (logits > 0).long(), group)


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update ``(alpha / r) * B @ A`` (the LoRA recipe)."""

    def __init__(self, base: nn.Linear, rank: int = LORA_RANK, alpha: int = LORA_ALPHA) -> None:
        super().__init__()
        self.base = base
        for parameter in self.base.parameters():
            parameter.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features) * 0.01)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Base output plus the low-rank correction."""
        result: torch.Tensor = self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scale
        return result

    def merged_weight(self) -> torch.Tensor:
        """The base weight with the adapter folded in."""
        return (self.base.weight + self.scale * self.lora_B @ self.lora_A).detach()


def make_model() -> nn.Sequential:
    """The demo's model: a two-layer MLP."""
    return nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2))


def train(model: nn.Module, data: Dataset, *, steps: int | None, seconds: float, lr: float) -> int:
    """Train with Adam on mini-batches for ``steps`` steps, or for ``seconds`` when steps is None."""
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    deadline = time.monotonic() + seconds
    done = 0
    while (done < steps) if steps is not None else (time.monotonic() < deadline):
        index = torch.randint(0, len(data.y), (64,), generator=generator)
        optimiser.zero_grad()
        loss = loss_fn(model(data.x[index]), data.y[index])
        loss.backward()
        optimiser.step()
        done += 1
    return done


def metrics(model: nn.Module, data: Dataset) -> dict[str, float]:
    """The seed's three metrics: accuracy, fairness (1 - accuracy gap between groups) and bias (gap in
    positive prediction rates between groups), all in [0, 1]."""
    with torch.no_grad():
        predicted = model(data.x).argmax(dim=1)
    correct = (predicted == data.y).float()
    rates, accuracies = [], []
    for g in (0, 1):
        mask = data.group == g
        accuracies.append(correct[mask].mean().item() if mask.any() else 0.0)
        rates.append(predicted[mask].float().mean().item() if mask.any() else 0.0)
    return {
        "validation_accuracy": round(correct.mean().item(), 4),
        "fairness_score": round(1.0 - abs(accuracies[0] - accuracies[1]), 4),
        "bias_score": round(abs(rates[0] - rates[1]), 4),
    }


def attach_lora(model: nn.Sequential) -> LoRALinear:
    """Replace the first layer by a LoRA-wrapped copy; returns the wrapper."""
    first = model[0]
    assert isinstance(first, nn.Linear)
    wrapper = LoRALinear(first)
    model[0] = wrapper
    return wrapper


def merge_lora(model: nn.Sequential) -> dict[str, Any]:
    """The plain state dict of the model with the adapter folded into the first layer (what is deployed)."""
    wrapper = model[0]
    assert isinstance(wrapper, LoRALinear)
    merged = make_model()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("0.")}
    state["0.weight"] = wrapper.merged_weight()
    state["0.bias"] = wrapper.base.bias.detach().clone()
    merged.load_state_dict(state)
    return merged.state_dict()


def adapter_state(wrapper: LoRALinear) -> dict[str, torch.Tensor]:
    """The adapter's own tensors, named like PEFT does."""
    return {
        "base_model.model.0.lora_A.weight": wrapper.lora_A.detach().clone(),
        "base_model.model.0.lora_B.weight": wrapper.lora_B.detach().clone(),
    }
