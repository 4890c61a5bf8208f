"""Optimizers: dense Adam(W), plus SparseAdam for sparse embedding tables, stepped as one."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from playnext.train.config import TrainConfig


class Optimizers:
    """Dense Adam(W) plus SparseAdam for embedding tables with sparse gradients, stepped as one.

    A large catalog's table gets a sparse gradient (only the rows a batch touched); dense Adam
    would read and write every row's moments on every step — 10M × D each time."""

    def __init__(self, dense: torch.optim.Optimizer, sparse: torch.optim.SparseAdam) -> None:
        self.parts: list[torch.optim.Optimizer] = [dense, sparse]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.parts for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.parts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.parts:
            o.step()

    def _sizes(self) -> list[int]:
        return [sum(len(g["params"]) for g in o.param_groups) for o in self.parts]

    def state_dict(self) -> dict[str, Any]:
        """One numbering over both parts, the way a single optimizer numbers its parameters."""
        state: dict[int, Any] = {}
        offset = 0
        for o, n in zip(self.parts, self._sizes(), strict=True):
            for pid, st in o.state_dict()["state"].items():
                # SparseAdam keeps `step` as a Python int; a tensor survives the safetensors file
                state[offset + pid] = {k: torch.as_tensor(v) for k, v in st.items()}
            offset += n
        return {"state": state}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        offset = 0
        for o, n in zip(self.parts, self._sizes(), strict=True):
            own = o.state_dict()
            part = {pid - offset: dict(st) for pid, st in sd["state"].items() if offset <= pid < offset + n}
            if isinstance(o, torch.optim.SparseAdam):
                for st in part.values():
                    st["step"] = int(st["step"])
            own["state"] = part
            o.load_state_dict(own)
            offset += n


def make_optimizer(
    net: nn.Module, cfg: TrainConfig
) -> tuple[torch.optim.Optimizer | Optimizers, list[nn.Parameter]]:
    """The optimizer, and the parameters whose gradient norm is clipped (the dense ones)."""
    sparse_ids = {id(m.weight) for m in net.modules() if isinstance(m, nn.Embedding) and m.sparse}
    params = [p for p in net.parameters() if p.requires_grad and id(p) not in sparse_ids]
    sparse = [p for p in net.parameters() if p.requires_grad and id(p) in sparse_ids]
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    betas = (0.9, cfg.adam_beta2)
    dense = opt_cls(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
    if not sparse:
        return dense, params
    return Optimizers(dense, torch.optim.SparseAdam(sparse, lr=cfg.lr, betas=betas)), params


def load_optimizer_state(opt: torch.optim.Optimizer | Optimizers, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        pid, name = key.split("/", 1)
        state.setdefault(int(pid), {})[name] = value
    sd = opt.state_dict()
    sd["state"] = state
    opt.load_state_dict(sd)
