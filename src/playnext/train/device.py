"""Where training and scoring run, and in which precision."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch


def resolve_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    return best_device()


def load_device(name: str) -> torch.device:
    """Where a saved model runs: its configured device when this machine has it, else the best
    one here, so a model trained on a GPU box loads on a laptop and vice versa."""
    device = torch.device(name) if name != "auto" else best_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        return best_device()
    if device.type == "mps" and not torch.backends.mps.is_available():
        return best_device()
    return device


def best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_for(device: torch.device, amp: str) -> AbstractContextManager[Any]:
    use = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if use and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()
