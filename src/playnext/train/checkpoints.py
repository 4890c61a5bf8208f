"""Per-epoch checkpoints: safetensors weights + an index written last, named by SHA-256."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from playnext.errors import ConfigError
from playnext.io import atomic_write, sha256_file, write_json
from playnext.train.optim import Optimizers


class Checkpointer:
    """`epoch-NNNN.safetensors` (model, best, averaged and optimizer tensors) + `checkpoint.json`.

    The json is written last and names the weights file with its SHA-256, so the json always
    points at a complete checkpoint; a crash mid-write leaves the previous one usable.
    """

    def __init__(self, directory: Path, fingerprint: dict[str, Any]) -> None:
        self.directory = directory
        self.fingerprint = json.loads(json.dumps(fingerprint))  # normalise tuples etc.

    @property
    def index(self) -> Path:
        return self.directory / "checkpoint.json"

    def clear(self) -> None:
        self.index.unlink(missing_ok=True)
        for p in self.directory.glob("epoch-*.safetensors"):
            p.unlink()

    def save(
        self,
        epoch: int,
        net: nn.Module,
        best: dict[str, torch.Tensor] | None,
        opt: torch.optim.Optimizer | Optimizers,
        meta: dict[str, Any],
        ema: dict[str, torch.Tensor] | None = None,
    ) -> None:
        tensors = {f"model/{k}": v for k, v in net.state_dict().items()}
        tensors.update({f"best/{k}": v for k, v in (best or {}).items()})
        tensors.update({f"ema/{k}": v for k, v in (ema or {}).items()})
        for pid, st in opt.state_dict()["state"].items():
            tensors.update({f"optim/{pid}/{k}": v for k, v in st.items() if isinstance(v, torch.Tensor)})
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        name = f"epoch-{epoch:04d}.safetensors"
        atomic_write(self.directory / name, lambda p: save_file(tensors, str(p)))
        digest = sha256_file(self.directory / name)
        doc = {**meta, "weights": name, "sha256": digest, "fingerprint": self.fingerprint}
        write_json(self.index, doc)
        for p in self.directory.glob("epoch-*.safetensors"):
            if p.name != name:
                p.unlink(missing_ok=True)

    def load(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """The last complete checkpoint, None if there is none; ConfigError if it is unusable."""
        if not self.index.exists():
            return None
        hint = "delete the folder or train with resume=False"
        try:
            meta = json.loads(self.index.read_text())
            weights = self.directory / str(meta["weights"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ConfigError(f"{self.index}: corrupt checkpoint index ({e}); {hint}") from None
        if meta.get("fingerprint") != self.fingerprint:
            raise ConfigError(f"{self.index}: checkpoint is from another model, config or dataset; {hint}")
        if not weights.exists():
            raise ConfigError(f"{weights}: checkpoint weights missing; {hint}")
        if sha256_file(weights) != meta.get("sha256"):
            raise ConfigError(f"{weights}: corrupt checkpoint (SHA-256 mismatch); {hint}")
        try:
            tensors = load_file(str(weights))
        except Exception as e:  # safetensors raises several types for corrupt files
            raise ConfigError(f"{weights}: corrupt checkpoint ({e}); {hint}") from None
        return meta, tensors


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
