"""Incremental inference: keep a user's encoded state so that appending one event runs one
position through the network instead of the whole history.

The state is a KV cache: for every layer, the keys and values of the items that the *next*
request will attend to (the most recent `max_len - 1` items), computed with exactly the context
and positions they will have then. A request runs the new item alone through the layers,
attending to the cached keys/values, and its scores equal a full forward pass
(`full_scores`) — see tests/models/test_incremental.py.

How each model keeps the cache valid:

* **HSTU** — positions and times enter through a relative bias (and, with `abs_pos`, a
  position counted from the window's first item), and the pointwise attention is normalised by
  the constant `max_len`, so a past item's keys and values never change when an item is
  appended: the new keys/values are appended and the cache stays fresh while the history fits
  `max_len`. Once it is longer, the window slides: the oldest item leaves
  every later item's context, and the cache must be *refreshed* (recomputed for the new prefix).
* **SASRec** — learned absolute positions aligned to the *latest* item: appending an event moves
  every earlier item one position back, which changes all keys and values. No exact cache
  survives an append, so after every request the prefix is refreshed at its next positions. The
  request itself is still one position (the latency win); the refresh is a full pass that a
  server runs off the request path (`defer_refresh=True`, then `refresh`) — no compute is saved.

Item ids are the model's internal ids (0..n_items-1); unknown items must be filtered before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from playnext.data.interactions import Histories
from playnext.models.hstu import HSTU, HSTUNet, pair_buckets
from playnext.models.sasrec import Block, SASRec, SASRecNet
from playnext.train import batches as B

Model = SASRec | HSTU


@dataclass
class UserState:
    """One user's history and the per-layer keys/values of the next request's prefix."""

    items: list[int]
    times: list[int] | None
    keys: list[torch.Tensor] = field(default_factory=list)  # per layer (1, H, P, dk)
    values: list[torch.Tensor] = field(default_factory=list)  # per layer (1, H, P, dv)
    fresh: bool = False  # whether keys/values are those of the next request's prefix

    @property
    def prefix_len(self) -> int:
        return int(self.keys[0].shape[2]) if self.keys else 0


def _uses_time(model: Model) -> bool:
    return isinstance(model, HSTU) and model.user_times_ is not None


def _times_tensor(model: Model, times: Sequence[int] | None, n: int) -> torch.Tensor | None:
    """(1, n) seconds for an HSTU trained with times (zeros when unknown, as `HSTU.score` does)."""
    if not _uses_time(model):
        return None
    vals = list(times)[-n:] if times is not None else [0] * n
    return torch.tensor([vals], dtype=torch.int64, device=model.device)


def _check_items(model: Model, items: Sequence[int]) -> None:
    n_items = int(model.n_items_ or 0)
    if any(not 0 <= int(i) < n_items for i in items):
        raise ValueError(f"item ids must be known internal ids in [0, {n_items})")


def full_scores(model: Model, items: Sequence[int], times: Sequence[int] | None = None) -> torch.Tensor:
    """Uncached reference: one full forward pass over the last `max_len` items → (n_items,)."""
    _check_items(model, items)
    hist = Histories.from_lists([list(items)])
    seq = torch.from_numpy(B.left_pad(hist, model.config.max_len)).to(model.device)  # (1, T)
    with torch.no_grad():
        if isinstance(model, HSTU):
            h = model.net_.encode(seq, _times_tensor(model, times, seq.shape[1]), last_only=True)[
                :, -1
            ]  # (1, D)
            return (h @ model.net_.item_vectors().T)[0].float().cpu()
        h = model.net_.encode(seq)[:, -1]  # (1, D)
        return (h @ model.net_.item_emb.weight[1:].T)[0].float().cpu()


class IncrementalScorer:
    """Serve a stream of events per user from a KV cache; exact with respect to `full_scores`."""

    def __init__(self, model: Model, defer_refresh: bool = False) -> None:
        if not model.fitted:
            raise RuntimeError("IncrementalScorer needs a fitted (or loaded) model")
        self.model = model
        self.defer_refresh = defer_refresh
        model.net_.eval()

    @property
    def max_len(self) -> int:
        return int(self.model.config.max_len)

    def start(
        self, items: Sequence[int], times: Sequence[int] | None = None
    ) -> tuple[UserState, torch.Tensor]:
        """A user's first request: full scores of `items`, and the cache for the next one."""
        state = UserState(list(map(int, items)), list(map(int, times)) if times is not None else None)
        scores = full_scores(self.model, state.items, state.times)
        self.refresh(state)
        return state, scores

    def append(self, state: UserState, item: int, time: int | None = None) -> torch.Tensor:
        """Add one event and return the (n_items,) scores of the extended history."""
        _check_items(self.model, [item])
        if (state.times is None) != (time is None):
            raise ValueError("give a time with every event or with none")
        if not state.fresh:
            self.refresh(state)
        with torch.no_grad():
            if isinstance(self.model, HSTU):
                scores, k_new, v_new = self._hstu_step(self.model.net_, state, item, time)
            else:
                scores, k_new, v_new = self._sasrec_step(cast(SASRecNet, self.model.net_), state, item)
        state.items.append(int(item))
        if state.times is not None and time is not None:
            state.times.append(int(time))
        if isinstance(self.model, HSTU) and len(state.items) < self.max_len:
            # past keys/values are unchanged by an append: extend the cache in place
            state.keys = [torch.cat([k, kn], dim=2) for k, kn in zip(state.keys, k_new, strict=True)]
            state.values = [torch.cat([v, vn], dim=2) for v, vn in zip(state.values, v_new, strict=True)]
        else:
            state.fresh = False
            if not self.defer_refresh:
                self.refresh(state)
        return scores

    def refresh(self, state: UserState) -> None:
        """Recompute the keys/values of the next request's prefix (the last max_len - 1 items)."""
        prefix = state.items[-(self.max_len - 1) :] if self.max_len > 1 else []
        ptimes = state.times[-len(prefix) :] if state.times is not None and prefix else []
        with torch.no_grad():
            if not prefix:
                state.keys, state.values = self._empty_cache()
            elif isinstance(self.model, HSTU):
                state.keys, state.values = self._hstu_prefix(self.model.net_, prefix, ptimes)
            else:
                state.keys, state.values = self._sasrec_prefix(cast(SASRecNet, self.model.net_), prefix)
        state.fresh = True

    def _empty_cache(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        dev, cfg = self.model.device, self.model.config
        if isinstance(self.model, HSTU):
            dk, dv = self.model.config.head_dims
        else:
            dk = dv = cfg.dim // self.model.config.n_heads
        h = self.model.config.n_heads
        keys = [torch.zeros(1, h, 0, dk, device=dev) for _ in range(self.model.config.n_blocks)]
        values = [torch.zeros(1, h, 0, dv, device=dev) for _ in range(self.model.config.n_blocks)]
        return keys, values

    # ---- SASRec -------------------------------------------------------------------------------
    def _sasrec_prefix(
        self, net: SASRecNet, prefix: list[int]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        p, dev = len(prefix), self.model.device
        seq = torch.tensor([prefix], dtype=torch.int64, device=dev).view(1, p) + 1  # (1, P)
        pos = torch.arange(net.max_len - 1 - p, net.max_len - 1, device=dev)  # its next-request positions
        x = net.item_emb(seq) * net.scale + net.pos_emb(pos)[None]  # (1, P, D)
        causal = torch.ones(p, p, dtype=torch.bool, device=dev).tril()  # (P, P)
        keys, values = [], []
        for block in self._sasrec_blocks(net):
            q, k, v = self._sasrec_qkv(block, x)  # (1, H, P, hs)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=causal)  # (1, H, P, hs)
            x = self._sasrec_rest(block, x, y)  # (1, P, D)
            keys.append(k)
            values.append(v)
        return keys, values

    def _sasrec_step(
        self, net: SASRecNet, state: UserState, item: int
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        dev = self.model.device
        seq = torch.tensor([[item + 1]], device=dev)  # (1, 1)
        x = net.item_emb(seq) * net.scale + net.pos_emb.weight[net.max_len - 1]  # (1, 1, D) the last position
        ks, vs = [], []
        for block, kc, vc in zip(self._sasrec_blocks(net), state.keys, state.values, strict=True):
            q, k, v = self._sasrec_qkv(block, x)  # (1, H, 1, hs)
            y = F.scaled_dot_product_attention(
                q, torch.cat([kc, k], 2), torch.cat([vc, v], 2)
            )  # (1, H, 1, hs)
            x = self._sasrec_rest(block, x, y)  # (1, 1, D)
            ks.append(k)
            vs.append(v)
        h = net.ln(x)[:, -1]  # (1, D)
        return (h @ net.item_emb.weight[1:].T)[0].float().cpu(), ks, vs

    @staticmethod
    def _sasrec_blocks(net: SASRecNet) -> list[Block]:
        return [cast(Block, b) for b in net.blocks]

    @staticmethod
    def _sasrec_qkv(block: Block, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b, t, d = x.shape
        h = int(block.n_heads)
        q, k, v = block.qkv(block.ln1(x)).split(d, dim=2)  # 3 × (B, T, D)
        return tuple(z.view(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))  # (B, H, T, hs)

    @staticmethod
    def _sasrec_rest(block: Block, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, _, t, _ = y.shape
        x = x + block.proj(y.transpose(1, 2).reshape(b, t, -1))  # (B, T, D)
        out: torch.Tensor = x + block.ffn(block.ln2(x))
        return out

    # ---- HSTU ---------------------------------------------------------------------------------
    def _hstu_prefix(
        self, net: HSTUNet, prefix: list[int], ptimes: list[int]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        p, dev = len(prefix), self.model.device
        seq = torch.tensor([prefix], dtype=torch.int64, device=dev).view(1, p) + 1  # (1, P)
        times = _times_tensor(self.model, ptimes if ptimes else None, p)
        idx = torch.arange(p, device=dev)
        mask = torch.ones(p, p, device=dev).tril()[None]  # (1, P, P)
        x = net.embed(seq)  # (1, P, D)
        buckets = pair_buckets(times, times, net.n_time_buckets)  # (1, P, P) or None
        keys, values = [], []
        for block in net.layers:
            u, v, q, k = block.project(x)
            x = block.mix(x, u, block.attend(q, k, v, block.rab(idx, idx, buckets), mask))  # (1, P, D)
            keys.append(k)
            values.append(v)
        return keys, values

    def _hstu_step(
        self, net: HSTUNet, state: UserState, item: int, time: int | None
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        dev, p = self.model.device, state.prefix_len
        seq = torch.tensor([[item + 1]], device=dev)  # (1, 1)
        all_times = _times_tensor(self.model, None if time is None else [*(state.times or []), time], p + 1)
        q_t = all_times[:, -1:] if all_times is not None else None  # (1, 1)
        q_idx = torch.tensor([p], device=dev)
        k_idx = torch.arange(p + 1, device=dev)
        mask = torch.ones(1, 1, p + 1, device=dev)
        x = net.embed(seq, first_pos=p)  # (1, 1, D)
        buckets = pair_buckets(q_t, all_times, net.n_time_buckets)  # (1, 1, P + 1) or None
        ks, vs = [], []
        for block, kc, vc in zip(net.layers, state.keys, state.values, strict=True):
            u, v, q, k = block.project(x)  # (1, H, 1, ·)
            bias = block.rab(q_idx, k_idx, buckets)  # (1, 1, P + 1)
            a = block.attend(q, torch.cat([kc, k], 2), torch.cat([vc, v], 2), bias, mask)  # (1, H, 1, dv)
            x = block.mix(x, u, a)  # (1, 1, D)
            ks.append(k)
            vs.append(v)
        h = F.normalize(x[:, -1], dim=-1)  # (1, D)
        return (h @ net.item_vectors().T)[0].float().cpu(), ks, vs


def stream_scores(
    model: Model, items: Sequence[int], start: int, times: Sequence[int] | None = None
) -> np.ndarray:
    """Scores after each event from `start` on, through the cache: (len(items) - start, n_items)."""
    scorer = IncrementalScorer(model)
    state, first = scorer.start(items[:start], times[:start] if times is not None else None)
    out = [first]
    for i in range(start, len(items)):
        out.append(scorer.append(state, items[i], None if times is None else times[i]))
    return torch.stack(out[1:]).numpy() if len(out) > 1 else np.zeros((0, len(first)), dtype=np.float32)
