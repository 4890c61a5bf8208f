"""Where training and scoring run, and in which precision."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from playnext.errors import ConfigError

CUDA_INSTALL = "pip install torch=={version} --index-url https://download.pytorch.org/whl/cu126"
"""How to replace a CPU-only torch with a CUDA build (README, "A CUDA build")."""


def resolve_device(name: str) -> torch.device:
    """The device a config names ('auto': the best one here); a GPU this torch cannot use is
    refused in one line that says how to get one, before any work starts."""
    if name == "auto":
        return best_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name}: not a device (auto, cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        if torch.version.cuda is None:  # a CPU-only wheel (`2.13.0+cpu`)
            version = torch.__version__.split("+")[0]
            raise ConfigError(
                f"device={name}: this torch ({torch.__version__}) is a CPU-only build; install a CUDA "
                f"build: {CUDA_INSTALL.format(version=version)}"
            )
        raise ConfigError(f"device={name}: torch {torch.__version__} has CUDA, but no GPU is visible")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name}: MPS (Apple GPU) is not available on this machine")
    return device


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
