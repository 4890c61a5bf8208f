"""HSTU (Zhai et al., ICML 2024): the Hierarchical Sequential Transduction Unit of
"Actions Speak Louder than Words: Trillion-Parameter Sequential Transducers for Generative
Recommendations".

Each block is one fused projection and a pointwise attention, no feed-forward layer:

    U, V, Q, K = SiLU(LN(x) · W_uvqk)
    A(i, j)    = SiLU(Q_i · K_j + rab_p(i - j) + rab_t(bucket(t_i - t_j))) / max_len   (causal)
    x         ← x + W_o · Dropout(LN(A · V) ⊙ U)

SiLU replaces softmax, so weights do not compete and the sum is normalised by the constant
`max_len` (as in the reference code), which keeps an output independent of later items and of
padding — what makes the KV cache of `HSTUNet.prefill` / `step` exact. Positions enter through
the relative bias (and, with `abs_pos`, an embedding of the position counted from the first
item, as in the reference code's input), so a cached key never has to be recomputed when an
event is appended.
The time bias buckets log |Δt| (base 2, as in the paper's code) when every training event has a
timestamp; otherwise only the positional bias is learned. `time_reference` says which time a
query position i measures Δt from:

* "query" (the default): item i's own time. Known when a request arrives, and it keeps past
  keys valid when an event is appended (the KV cache is exact).
* "request": the time of the event position i predicts, as the reference code does. In training
  that is the next event's timestamp; at scoring the next history event's for earlier positions
  and the request's time (`Histories.at`) for the last one, so that the last state knows how
  long after the history the question is asked. Both are `query_times(times, at)`, one formula.
  A request that gives no time is asked at the last known one (Δt = 0 to it; serving passes
  now); one given before it is read as at it. Such a model also reads the history's own event
  times (`Histories.times`) where a request gives them: a test question's last event (the
  validation one) happened after training, and its gap to the request is the signal. The KV
  cache stays exact if it stops one event short: a position's keys in deeper layers depend on
  its query time, which for the last event is the request's and changes when the next event
  arrives. So `prefill` caches every event but the last, each asked at its successor's time
  (`at` = the last event's time), and `step` runs the last event asked at the request's `at`;
  appending commits that event with the new one's time (serve/incremental.py).

Outputs and item embeddings are L2-normalised and trained with sampled softmax over many
negatives at a temperature. The item table starts small (std 0.02, the reference code's init);
at 1/sqrt(dim), a 64-wide model at lr 1e-3 left its early plateau about half as fast
(`benchmarks/hstu_plateau.py`). How many items each step's loss reaches matters more: there,
1,024 negatives learned 2.4× faster than 128, and `loss="ce"` (a full softmax: every item a
negative, affordable on small catalogs) 3×.

Histories passed to `score` carry item ids (and, optionally, the request time `at` and event
times); unless a "request" model is given the events' times, for users seen in training whose
history starts with their training sequence the stored training timestamps are used (later
items get the last known time), any other row gets Δt = 0 everywhere.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, cast

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from playnext.config import require
from playnext.data.interactions import Columns, Histories, Interactions
from playnext.data.split import EvalSet
from playnext.models.base import ModelConfig
from playnext.models.cache import KV, KVCache
from playnext.models.neural import search_space_from
from playnext.models.parts.actions import ActionEmbedding
from playnext.models.parts.net import SequenceNet
from playnext.models.registry import register
from playnext.models.sequence import SequenceRecommender
from playnext.models.sequence_config import SequenceConfig
from playnext.train import batches as B
from playnext.train.device import resolve_device
from playnext.train.loop import Batch

LOG2 = math.log(2.0)
TIME_REFERENCES = ("query", "request")


@dataclasses.dataclass
class HSTUConfig(SequenceConfig):
    dim: int = 64
    epochs: int = 20  # small defaults that learn tiny data in seconds; benchmark recipes set their own
    lr: float = 2e-3
    n_blocks: int = 2
    n_heads: int = 1
    qk_dim: int = 0  # per-head width of Q and K; 0 = dim // n_heads
    v_dim: int = 0  # per-head width of U and V; 0 = dim // n_heads
    loss: str = "sampled_softmax"
    n_negatives: int = 256
    temperature: float = 0.05  # logits = cos(h, item) / temperature
    time_bias: bool = True  # learn a log-bucketed Δt bias when every training event has a timestamp
    n_time_buckets: int = 64
    # std of the item table at init (the reference code's 0.02): Adam moves every entry by about
    # lr per step, so a table initialised at 1/sqrt(dim) turns its directions several times
    # slower, and the cosine logits need directions to move
    item_init_std: float = 0.02
    abs_pos: bool = False  # add a learned embedding of the position counted from the history's start
    # which time a query position measures Δt from: "query" = its own item's; "request" = the
    # event it predicts (the next one's in training, the request's `at` for the last at scoring)
    time_reference: str = "query"

    def validate(self) -> None:
        super().validate()
        require(self.n_blocks >= 1, f"n_blocks must be >= 1, got {self.n_blocks}")
        require(self.n_heads >= 1, f"n_heads must be >= 1, got {self.n_heads}")
        require(not self.sparse_embeddings, "hstu normalises the whole item table: no sparse_embeddings")
        require(self.qk_dim >= 0, f"qk_dim must be >= 0, got {self.qk_dim}")
        require(self.v_dim >= 0, f"v_dim must be >= 0, got {self.v_dim}")
        require(
            bool(self.qk_dim and self.v_dim) or self.dim % self.n_heads == 0,
            f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads}) unless qk_dim and v_dim are set",
        )
        require(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        require(self.n_time_buckets >= 1, f"n_time_buckets must be >= 1, got {self.n_time_buckets}")
        require(self.item_init_std > 0, f"item_init_std must be > 0, got {self.item_init_std}")
        require(
            self.time_reference in TIME_REFERENCES,
            f"time_reference must be one of {', '.join(TIME_REFERENCES)}, got {self.time_reference!r}",
        )

    @property
    def head_dims(self) -> tuple[int, int]:
        return self.qk_dim or self.dim // self.n_heads, self.v_dim or self.dim // self.n_heads


def time_buckets(dt: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Bucket of a time gap in seconds: floor(log2 |Δt|), 0 for gaps under 2 s, capped. ln 2 is a
    float64 tensor, not a Python float: the ONNX exporter makes a float constant float32, and
    then every gap of exactly 2^k seconds falls one bucket low in the exported graph."""
    ln2 = torch.tensor(LOG2, dtype=torch.float64, device=dt.device)
    return (torch.log(dt.abs().clamp(min=1).double()) / ln2).long().clamp(0, n_buckets)


def asked_at(times: np.ndarray, known: np.ndarray, at: np.ndarray | None) -> np.ndarray:
    """(B,) request time of rows with (B, T) left-padded seconds, `known` (B,) where they were
    found: `at` where given and known, never before the last known time; else that time."""
    last = times[:, -1]  # (B,)
    return last if at is None else np.where(known, np.maximum(at, last), last)


class _Lookup(torch.autograd.Function):
    """table[idx] whose backward is a weighted bincount: deterministic and fast on CPU, unlike
    the sorted index_put that deterministic mode would use for (B, T, T) indices."""

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(idx)
        ctx.n, ctx.dtype = table.shape[0], table.dtype
        return table[idx]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        (idx,) = ctx.saved_tensors
        flat = torch.bincount(idx.reshape(-1), weights=grad.reshape(-1).float(), minlength=ctx.n)
        return flat.to(ctx.dtype), None


def lookup(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = _Lookup.apply(table, idx)
    return out


class RelativeBias(nn.Module):
    """rab(i, j) = w_pos[min(i - j, L - 1)] + w_time[bucket(t_i - t_j)] for causal pairs (i ≥ j)."""

    def __init__(self, max_len: int, n_buckets: int) -> None:
        super().__init__()
        self.max_len, self.n_buckets = max_len, n_buckets
        self.pos_w = nn.Parameter(torch.randn(max_len) * 0.02)
        self.time_w = nn.Parameter(torch.randn(n_buckets + 1) * 0.02)

    def forward(self, q_idx: torch.Tensor, k_idx: torch.Tensor, buckets: torch.Tensor | None) -> torch.Tensor:
        """q_idx (Tq,), k_idx (Tk,) positions; buckets (B, Tq, Tk) from `time_buckets` or None
        → (B|1, Tq, Tk)."""
        rel = (q_idx[:, None] - k_idx[None, :]).clamp(0, self.max_len - 1)  # (Tq, Tk)
        bias = lookup(self.pos_w, rel)[None]  # (1, Tq, Tk)
        if buckets is not None:
            bias = bias + lookup(self.time_w, buckets)  # (B, Tq, Tk)
        return bias


def query_times(times: torch.Tensor, at: torch.Tensor | None) -> torch.Tensor:
    """(B, T) time of the event each position predicts, for (B, T) left-padded seconds `times`:
    the next item's, and `at` (B,) for the last (None: the last item's own, Δt = 0 to it).
    Training passes the last target's time as `at`, scoring the request's."""
    last = times[:, -1:] if at is None else at.to(times.dtype).reshape(-1, 1)  # (B, 1)
    return torch.cat([times[:, 1:], last], 1)  # (B, T)


def pair_buckets(q_t: torch.Tensor | None, k_t: torch.Tensor | None, n_buckets: int) -> torch.Tensor | None:
    """(B, Tq, Tk) time buckets of q_t (B, Tq) against k_t (B, Tk); computed once, shared by blocks."""
    if q_t is None or k_t is None:
        return None
    return time_buckets(q_t[:, :, None] - k_t[:, None, :], n_buckets)


class HSTUBlock(nn.Module):
    def __init__(self, cfg: HSTUConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qk_dim, self.v_dim = cfg.head_dims
        self.norm = float(cfg.max_len)
        self.uvqk = nn.Linear(cfg.dim, cfg.n_heads * 2 * (self.qk_dim + self.v_dim), bias=False)
        self.out = nn.Linear(cfg.n_heads * self.v_dim, cfg.dim)
        self.rab = RelativeBias(cfg.max_len, cfg.n_time_buckets)
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.uvqk.weight, std=0.02)
        nn.init.xavier_uniform_(self.out.weight)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """U, V (B, H, T, dv) and Q, K (B, H, T, dqk) of x (B, T, D)."""
        b, t, _ = x.shape
        h, dv, dqk = self.n_heads, self.v_dim, self.qk_dim
        z = F.silu(self.uvqk(F.layer_norm(x, x.shape[-1:], eps=1e-6)))  # (B, T, H·(2dv + 2dqk))
        u, v, q, k = z.split([h * dv, h * dv, h * dqk, h * dqk], dim=2)
        u, v = (y.view(b, t, h, dv).transpose(1, 2) for y in (u, v))  # (B, H, T, dv)
        q, k = (y.view(b, t, h, dqk).transpose(1, 2) for y in (q, k))  # (B, H, T, dqk)
        return u, v, q, k

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Pointwise SiLU attention: q (B, H, Tq, dqk), k/v (B, H, Tk, ·), bias/mask (B|1, Tq, Tk)."""
        scores = (q @ k.transpose(-1, -2)).add_(bias[:, None])  # (B, H, Tq, Tk)
        weights = F.silu(scores).mul_((mask / self.norm)[:, None])  # (B, H, Tq, Tk); silu saves its input
        return weights @ v  # (B, H, Tq, dv)

    def mix(self, x: torch.Tensor, u: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """x + W_o(LN(A·V) ⊙ U); u, a (B, H, T, dv) → (B, T, D)."""
        b, h, t, dv = a.shape
        a = F.layer_norm(a.transpose(1, 2).reshape(b, t, h * dv), (h * dv,), eps=1e-6)  # (B, T, H·dv)
        u = u.transpose(1, 2).reshape(b, t, h * dv)  # (B, T, H·dv)
        return x + self.out(self.drop(a * u))  # (B, T, D)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        buckets: torch.Tensor | None,
        last_only: bool = False,
        past: KV | None = None,
    ) -> tuple[torch.Tensor, KV]:
        """(B, T, D) at the positions after the P of `past` → (B, T, D), and the keys and values
        attended to (`past`'s, then x's): the layer's cache. mask (B, T, P + T), buckets
        (B, T, P + T) or None. With `last_only` only the last query runs ((B, 1, D))."""
        u, v, q, k = self.project(x)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)  # (B, H, P + T, ·)
        k_idx = torch.arange(k.shape[2], device=x.device)  # (P + T,)
        q_idx = k_idx[k.shape[2] - x.shape[1] :]  # (T,)
        if last_only:
            x, u, q, q_idx, mask = x[:, -1:], u[:, :, -1:], q[:, :, -1:], q_idx[-1:], mask[:, -1:]
            buckets = buckets[:, -1:] if buckets is not None else None
        a = self.attend(q, k, v, self.rab(q_idx, k_idx, buckets), mask)  # (B, H, T|1, dv)
        return self.mix(x, u, a), (k, v)  # (B, T|1, D)


class HSTUNet(SequenceNet):
    def __init__(self, n_items: int, cfg: HSTUConfig, n_actions: int = 0) -> None:
        super().__init__()
        self.max_len = cfg.max_len
        self.n_time_buckets = cfg.n_time_buckets
        self.time_reference = cfg.time_reference
        self.scale = self.input_scale = math.sqrt(cfg.dim)
        self.temperature = cfg.temperature
        self.item_emb = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(HSTUBlock(cfg) for _ in range(cfg.n_blocks))
        # positions count from the first real item, so appending one never moves the others
        # (the KV cache stays exact); a window sliding past max_len refreshes it anyway
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim) if cfg.abs_pos else None
        nn.init.normal_(self.item_emb.weight, std=cfg.item_init_std)
        if self.pos_emb is not None:
            nn.init.normal_(self.pos_emb.weight, std=1.0 / self.scale)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        if n_actions:  # built last: an untyped net draws the initial weights it always did
            self.action_emb = ActionEmbedding(n_actions, cfg.dim, init_std=cfg.item_init_std)

    def embed(
        self, seq: torch.Tensor, first_pos: int | torch.Tensor = 0, actions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Block input of (B, T) left-padded +1 ids whose first real item sits at position
        `first_pos` (an int or (B, 1)) of the history: scaled item (+ action) embeddings
        (+ positions), zero on padding."""
        keep = seq > 0  # (B, T)
        x = self.embed_items(seq, actions) * self.scale  # (B, T, D)
        if self.pos_emb is not None:
            pos = (keep.cumsum(1) - 1).clamp(min=0) + first_pos  # (B, T)
            x = x + self.pos_emb(pos.clamp(max=self.max_len - 1))
        return self.drop(x) * keep[..., None]  # (B, T, D)

    def encode(
        self,
        seq: torch.Tensor,
        times: torch.Tensor | None = None,
        last_only: bool = False,
        *,
        actions: torch.Tensor | None = None,
        at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T) left-padded ids (+ optional (B, T) seconds and action ids) → (B, T, D)
        L2-normalised states; (B, 1, D) with `last_only`, which skips the last block's other
        queries (for scoring). `at` (B,) is the time of the event the last position predicts,
        read with `time_reference="request"` only."""
        mask = self._self_mask(seq > 0)  # (B, T, T)
        x = self.embed(seq, actions=actions)  # (B, T, D)
        buckets = pair_buckets(self._query_times(times, at), times, self.n_time_buckets)  # (B, T, T) or None
        x, _ = self._run(x, mask, buckets, last_only)
        return F.normalize(x, dim=-1)  # (B, T|1, D)

    def encode_last(
        self,
        seq: torch.Tensor,
        times: torch.Tensor | None = None,
        *,
        actions: torch.Tensor | None = None,
        at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.encode(seq, times, last_only=True, actions=actions, at=at)[:, -1]  # (B, D)

    def _query_times(self, times: torch.Tensor | None, at: torch.Tensor | None) -> torch.Tensor | None:
        """The times queries measure Δt from (see `time_reference`); keys use `times` as given."""
        if times is None or self.time_reference == "query":
            return times
        return query_times(times, at)  # (B, T)

    def prefill(
        self,
        seq: torch.Tensor,
        times: torch.Tensor | None = None,
        *,
        actions: torch.Tensor | None = None,
        at: torch.Tensor | None = None,
    ) -> KVCache:
        """Keys and values of the last `max_len - 1` items: exactly those of `encode`, since
        positions and times enter relative to each other (and `abs_pos` counts from the first).
        With `time_reference="request"` and times, `at` (B,) is the time of the event that
        follows `seq` (each position's query time is its successor's): required, since the last
        cached position's keys depend on it."""
        lo = max(0, seq.shape[1] - self.max_len + 1)
        seq, times = seq[:, lo:], times[:, lo:] if times is not None else None  # (B, P)
        actions = actions[:, lo:] if actions is not None else None  # (B, P)
        if times is not None and self.time_reference == "request" and at is None:
            raise ValueError(
                "HSTU with time_reference='request': prefill needs `at`, the time of the event that "
                "follows the cached ones (their last position's query time)"
            )
        buckets = pair_buckets(self._query_times(times, at), times, self.n_time_buckets)  # (B, P, P)
        x = self.embed(seq, actions=actions)  # (B, P, D)
        _, layers = self._run(x, self._self_mask(seq > 0), buckets, last_only=True)
        return KVCache(layers, seq > 0, times)

    def step(
        self,
        items: torch.Tensor,
        cache: KVCache,
        times: torch.Tensor | None = None,
        *,
        actions: torch.Tensor | None = None,
        at: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """One position through the blocks against the cache; the grown cache stays exact (the
        attention is normalised by the constant `max_len`) until a row holds `max_len` items,
        when the next window slides past its first. With `time_reference="request"` the
        position is asked at `at` (B,) (None: its own time, Δt = 0), and the grown cache is
        exact for a next step only if `at` was that step's item time (a request's answer drops
        it; serve/incremental.py)."""
        cache.check_step(items)
        if (times is None) != (cache.times is None):
            raise ValueError("give times with every step of a cache prefilled with times, else none")
        keep = torch.cat([cache.keep, items > 0], 1)  # (B, P + 1)
        all_times = (
            torch.cat([cache.times, times], 1) if cache.times is not None and times is not None else None
        )
        buckets = pair_buckets(self._query_times(times, at), all_times, self.n_time_buckets)  # (B, 1, P + 1)
        mask = keep[:, None, :].to(self.item_emb.weight.dtype)  # (B, 1, P + 1)
        x = self.embed(items, first_pos=cache.n_real(), actions=actions)  # (B, 1, D)
        x, layers = self._run(x, mask, buckets, past=cache)  # (B, 1, D)
        extendable = bool((keep.sum(1) < self.max_len).all())
        return F.normalize(x[:, -1], dim=-1), KVCache(layers, keep, all_times, extendable)  # (B, D)

    def _self_mask(self, keep: torch.Tensor) -> torch.Tensor:
        """(B, T, T) causal weights over the real items of (B, T) `keep`."""
        t = keep.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=keep.device).tril()  # (T, T)
        return (causal & keep[:, None, :]).to(self.item_emb.weight.dtype)  # (B, T, T)

    def _run(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        buckets: torch.Tensor | None,
        last_only: bool = False,
        past: KVCache | None = None,
    ) -> tuple[torch.Tensor, tuple[KV, ...]]:
        """The blocks over (B, T, D) inputs after `past`'s positions: the last block's output
        (B, T|1, D), before normalisation, and every layer's keys and values."""
        layers = self.layers
        caches = []
        for i, block in enumerate(layers):
            pkv = past.layers[i] if past is not None else None
            x, kv = block(x, mask, buckets, last_only and i == len(layers) - 1, pkv)  # (B, T, D)
            caches.append(kv)
        return x, tuple(caches)

    @property
    def layers(self) -> list[HSTUBlock]:
        return [cast(HSTUBlock, b) for b in self.blocks]

    def out_vectors(self, v: torch.Tensor) -> torch.Tensor:
        """Unit vectors over the temperature: a score is cos(h, item) / temperature, the logit HSTU
        trains on, so everything that reads scores (serving, ONNX, a softmax over them) gets it."""
        return F.normalize(v, dim=-1) / self.temperature


@register("hstu")
class HSTU(SequenceRecommender):
    """Generative recommender with HSTU blocks; scores = cos(last state, item embedding) / temperature."""

    config_class = HSTUConfig
    config: HSTUConfig
    net_: HSTUNet
    # its logits are cosines over a small temperature: the loss takes float32 states and vectors
    logits_in_float32 = True

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        # every user's training sequence (items and seconds), to look up times when scoring
        self.user_items_: Histories | None = None
        self.user_times_: np.ndarray | None = None
        self._times: Histories | None = None

    @classmethod
    def search_space(cls) -> list[dict[str, Any]]:
        return search_space_from({"dropout": [0.2, 0.1, 0.3], "lr": [1e-3, 2e-3]})

    def _build(self) -> HSTUNet:
        return HSTUNet(int(self.n_items_ or 0), self.config, self.n_actions())

    def _fit(
        self, train_data: Interactions, valid: EvalSet | None, start: dict[str, torch.Tensor] | None = None
    ) -> None:
        # the sampled-softmax gathers back-propagate through index_put(accumulate=True), whose
        # default CPU kernel adds duplicates in a thread-dependent order; the sorted one keeps a
        # refit bit-identical (the contract) at no measurable cost here
        cpu = resolve_device(self.config.device).type == "cpu"
        before = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(before or cpu)
        try:
            super()._fit(train_data, valid, start)
        finally:
            torch.use_deterministic_algorithms(before)

    # ---- training -----------------------------------------------------------------------------
    def _prepare(self, train: Interactions) -> None:
        seqs = train.sequences()
        self._prepare_events(seqs)
        ts = train.frame.get_column(Columns.TIMESTAMP)
        self.user_items_, self.user_times_ = None, None
        if self.config.time_bias and len(ts) and ts.null_count() == 0:
            self.user_items_ = Histories(seqs.indptr, seqs.items)  # the times' key: items only
            self.user_times_ = ts.cast(pl.Int64).to_numpy().astype(np.int64)
        _, self._seqs = B.next_item_arrays(seqs, self.config.max_len)
        self._times = None
        if self.user_times_ is not None:
            _, self._times = B.next_item_arrays(Histories(seqs.indptr, self.user_times_), self.config.max_len)

    def _release(self) -> None:
        super()._release()
        self._times = None

    def _batch_extras(self, rows: np.ndarray) -> Batch:
        if self._times is None:
            return {}
        # left_pad adds 1 to every value: harmless, only differences of times are used
        times, next_times = B.split_next(self._times.take(rows))  # (B, T) each
        out = {"times": torch.from_numpy(times)}
        if self.config.time_reference == "request":  # the last position predicts the row's last event
            out["at"] = torch.from_numpy(next_times[:, -1].copy())  # (B,)
        return out

    def _encode_batch(self, batch: Batch) -> torch.Tensor:
        times, acts = batch.get("times"), batch.get("actions")  # (B, T) each, or None
        return self.net_.encode(batch["inputs"], times, actions=acts, at=batch.get("at"))  # (B, T, D)

    # ---- scoring ------------------------------------------------------------------------------
    def times_for(self, users: np.ndarray, history: Histories, width: int) -> np.ndarray | None:
        """(B, width) left-padded seconds for each row, from the stored training times; None if
        the model was trained without times. Rows that do not extend their user's training
        sequence get zeros (Δt = 0)."""
        found = self._known_times(users, history, width)
        return found[0] if found is not None else None

    def request_times(self, users: np.ndarray, history: Histories, width: int) -> np.ndarray | None:
        """(B,) the time each row's question is asked, for a model with `time_reference="request"`:
        `history.at` where its row's times are known, else the last known time (Δt = 0 to it:
        zeros for rows without times); never before the last known time. None otherwise."""
        found = self._known_times(users, history, width)
        if found is None or self.config.time_reference != "request":
            return None
        return asked_at(*found, history.at)

    def _known_times(
        self, users: np.ndarray, history: Histories, width: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """`times_for`'s (B, width) seconds and (B,) whether each row's were found; a "request"
        model takes the history's own event times where given."""
        if self.user_items_ is None or self.user_times_ is None:
            return None
        if history.times is not None and self.config.time_reference == "request":
            padded = B.left_pad(Histories(history.indptr, history.times - 1), self.config.max_len, width)
            return padded, np.ones(len(history), dtype=bool)  # (B, width): left_pad adds the 1 back
        out = np.zeros((len(history), width), dtype=np.int64)
        found = np.zeros(len(history), dtype=bool)
        for r, u in enumerate(users):
            if not 0 <= u < len(self.user_items_):
                continue
            row, known = history[r], self.user_items_[int(u)]
            if len(known) == 0 or len(row) < len(known) or not np.array_equal(row[: len(known)], known):
                continue
            lo, hi = self.user_items_.indptr[int(u)], self.user_items_.indptr[int(u) + 1]
            times = self.user_times_[lo:hi]
            full = np.concatenate([times, np.full(len(row) - len(known), times[-1], dtype=np.int64)])
            kept = full[-min(len(full), width, self.config.max_len) :]
            out[r, width - len(kept) :] = kept
            found[r] = True
        return out, found

    def _score_inputs(self, users: np.ndarray, rows: Histories, width: int) -> dict[str, torch.Tensor]:
        found = self._known_times(users, rows, width)
        if found is None:
            return {}
        out = {"times": torch.from_numpy(found[0]).to(self.device)}  # (b, T)
        if self.config.time_reference == "request":
            out["at"] = torch.from_numpy(asked_at(*found, rows.at)).to(self.device)  # (b,)
        return out

    def stored_times(self, user: int) -> np.ndarray | None:
        if self.user_items_ is None or self.user_times_ is None or not 0 <= user < len(self.user_items_):
            return None
        lo, hi = self.user_items_.indptr[user], self.user_items_.indptr[user + 1]
        return self.user_times_[lo:hi].copy()

    @property
    def uses_request_time(self) -> bool:
        """Trained with `time_reference="request"` on a timed log: scores read `Histories.at`
        (and the events' `times`), and there is no KV cache (`prefill`/`step` refuse)."""
        return self.config.time_reference == "request" and self.user_times_ is not None

    # ---- persistence: the timestamp lookup travels with the weights ---------------------------
    def _state(self) -> dict[str, torch.Tensor]:
        state = super()._state()
        if self.user_items_ is not None and self.user_times_ is not None:
            state["aux.user_indptr"] = torch.from_numpy(self.user_items_.indptr)
            state["aux.user_items"] = torch.from_numpy(self.user_items_.items.astype(np.int64))
            state["aux.user_times"] = torch.from_numpy(self.user_times_)
        return state

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        aux = {k: state.pop(k).numpy() for k in list(state) if k.startswith("aux.")}
        super()._load_state(state)
        if aux:
            self.user_items_ = Histories(aux["aux.user_indptr"], aux["aux.user_items"])
            self.user_times_ = aux["aux.user_times"]
        else:
            self.user_items_, self.user_times_ = None, None
