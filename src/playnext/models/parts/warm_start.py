"""A warm start's growth of a trained network's state dict: per-item tables gain rows for new
items, per-user tables for new users; every known row stays as it was.

A new item starts at the mean of its given neighbours' rows (its text or co-occurrence
neighbours; every known row when it has none), a new user at the mean user. A content tower's
feature buffers (`content.*`) are metadata, not learned: new rows stay unknown until told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

State = dict[str, torch.Tensor]


def grow_items(state: State, tables: Mapping[str, int], init_from: Sequence[Sequence[int]]) -> State:
    """`state` with `len(init_from)` rows appended to each per-item table in `tables` (key →
    leading rows before the items, 1 for a padding row); row j is the mean of known rows
    `init_from[j]`. A table this config does not build is skipped."""
    out = dict(state)
    for key, lead in tables.items():
        if key not in out:
            continue
        old = out[key]
        items = old[lead:]  # (I, …)
        if key.startswith("content."):
            rows = [torch.zeros_like(items[0]) for _ in init_from]
        else:
            rows = [
                items[torch.as_tensor(list(nb), dtype=torch.long, device=old.device)].mean(0)
                if len(nb)
                else items.mean(0)
                for nb in init_from
            ]
        out[key] = torch.cat([old, torch.stack(rows)]) if rows else old  # (lead + I + N, …)
    return out


def grow_users(state: State, tables: Sequence[str], n_users: int) -> State:
    """`state` with each per-user table in `tables` grown to `n_users` rows of the mean user."""
    out = dict(state)
    for key in tables:
        if key in out:
            old = out[key]  # (U, …)
            extra = old.mean(0, keepdim=True).expand(n_users - len(old), *old.shape[1:])
            out[key] = torch.cat([old, extra])  # (n_users, …)
    return out
