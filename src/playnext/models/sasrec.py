"""SASRec (Kang & McAuley, ICDM 2018): a causal self-attention Transformer over the history.

Pre-LN blocks, learned positional embeddings aligned to the *latest* item, item embeddings
tied with the output layer. Trained SASRec-style (every position predicts its next item) with
full softmax cross-entropy by default — the recipe of Klenitskiy & Vasilev (RecSys 2023) that
reaches NDCG@10 ≈ 0.18 on ML-1M, well above the original BCE loss.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from playnext.config import choice, require
from playnext.models.cache import KV, KVCache
from playnext.models.neural import search_space_from
from playnext.models.parts.actions import ActionEmbedding
from playnext.models.parts.net import SequenceNet
from playnext.models.registry import register
from playnext.models.sequence import SequenceRecommender
from playnext.models.sequence_config import SequenceConfig

BLOCKS = ("pre_ln", "sasrec")
ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}
INITS = ("default", "xavier")


@dataclasses.dataclass
class SASRecConfig(SequenceConfig):
    max_len: int = 0  # 0: fitted to the training histories (max_len_from_lengths)
    n_blocks: int = 2
    n_heads: int = 1
    ffn_mult: int = 1  # feed-forward width = ffn_mult · dim (the paper uses 1)
    attn_dropout: float = (
        0.0  # on attention weights; off by default: a (B, H, T, T) mask per layer is costly on CPU
    )
    # the block variants of the SASRec authors' code (and RecTools) beside playnext's, each a
    # switch so that one ladder (docs/ladder.md) measures what each is worth on validation:
    # "pre_ln" x + Attn(LN(x)), x + FFN(LN(x)); "sasrec": q = LN(x), x = q + Attn(q, x, x),
    # f = LN(x), x = f + FFN(f) (keys and values from the un-normalised input)
    block: str = "pre_ln"
    activation: str = "gelu"  # of the feed-forward layer: gelu | relu
    init: str = "default"  # default: N(0, 1/sqrt(dim)) items, N(0, 0.02) positions; xavier: Xavier-normal
    scale_items: bool = True  # item embeddings × sqrt(dim) at the input

    def validate(self) -> None:
        super().validate()
        require(self.n_blocks >= 1, f"n_blocks must be >= 1, got {self.n_blocks}")
        require(self.n_heads >= 1, f"n_heads must be >= 1, got {self.n_heads}")
        require(
            self.dim % self.n_heads == 0, f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})"
        )
        require(self.ffn_mult >= 1, f"ffn_mult must be >= 1, got {self.ffn_mult}")
        require(0.0 <= self.attn_dropout < 1.0, f"attn_dropout must be in [0, 1), got {self.attn_dropout}")
        choice(self.block, BLOCKS, "block")
        choice(self.activation, tuple(ACTIVATIONS), "activation")
        choice(self.init, INITS, "init")


class Block(nn.Module):
    """A Transformer block, pre-LN (x + Attn(LN(x)), then x + FFN(LN(x))) or the SASRec authors'
    (residuals from the normalised input, keys and values from the raw one): `SASRecConfig.block`."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        ffn_mult: int,
        dropout: float,
        attn_dropout: float,
        kind: str = "pre_ln",
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.attn_dropout = attn_dropout
        self.authors = kind == "sasrec"
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_mult * dim),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            nn.Linear(ffn_mult * dim, dim),
        )
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False, past: KV | None = None
    ) -> tuple[torch.Tensor, KV]:
        """(B, T, D) → (B, T, D), and the keys and values attended to (`past`'s, then x's): the
        layer's cache. mask (B|1, 1, T, P + T) over the P past and T new positions. With
        `last_only` only the last query runs ((B, 1, D)): keys and values still cover every
        position, which is all that scoring the next item needs."""
        b, t, d = x.shape
        h, hs = self.n_heads, d // self.n_heads
        if self.authors:  # q from LN(x), which is also the residual; k, v from x itself
            w, bias = self.qkv.weight, self.qkv.bias
            k, v = F.linear(x, w[d:], bias[d:]).split(d, dim=2)  # 2 × (B, T, D)
            x = self.ln1(x)  # (B, T, D): the residual stream from here on
            q = F.linear(x, w[:d], bias[:d])  # (B, T, D)
        else:
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)  # 3 × (B, T, D)
        if last_only:
            x, q, mask = x[:, -1:], q[:, -1:], mask[..., -1:, :]  # (B, 1, D), (B, 1, D), (B, 1, 1, P + T)
        tq = q.shape[1]
        q = q.view(b, tq, h, hs).transpose(1, 2)  # (B, H, Tq, hs)
        k, v = (z.view(b, t, h, hs).transpose(1, 2) for z in (k, v))  # (B, H, T, hs)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)  # (B, H, P + T, hs)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )  # (B, H, Tq, hs)
        y = y.transpose(1, 2).reshape(b, tq, d)  # (B, Tq, D)
        x = x + self.drop(self.proj(y))
        if self.authors:
            f = self.ln2(x)  # (B, Tq, D)
            return f + self.drop(self.ffn(f)), (k, v)  # (B, Tq, D)
        return x + self.drop(self.ffn(self.ln2(x))), (k, v)  # (B, Tq, D)


class SASRecNet(SequenceNet):
    def __init__(self, n_items: int, cfg: SASRecConfig, n_actions: int = 0) -> None:
        super().__init__()
        self.max_len = cfg.max_len
        std = 1.0 / math.sqrt(cfg.dim)  # the item table's initial scale (and the action table's)
        self.scale = self.input_scale = math.sqrt(cfg.dim) if cfg.scale_items else 1.0
        self.item_emb = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0, sparse=cfg.sparse_embeddings)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            Block(
                cfg.dim, cfg.n_heads, cfg.ffn_mult, cfg.dropout, cfg.attn_dropout, cfg.block, cfg.activation
            )
            for _ in range(cfg.n_blocks)
        )
        self.ln = nn.LayerNorm(cfg.dim)
        if cfg.init == "xavier":  # every matrix, the tables included (the authors' code, RecTools)
            for p in self.parameters():
                if p.dim() > 1:
                    nn.init.xavier_normal_(p)
        else:
            nn.init.normal_(self.item_emb.weight, std=std)
            nn.init.normal_(self.pos_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        if n_actions:  # built last: an untyped net draws the initial weights it always did
            self.action_emb = ActionEmbedding(n_actions, cfg.dim, init_std=std)

    def encode(
        self, seq: torch.Tensor, last_only: bool = False, *, actions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T) left-padded ids (and (B, T) action ids) → (B, T, D) states; (B, 1, D) with
        `last_only`, which runs the last block for the last position only (scoring needs
        nothing else)."""
        first = self.max_len - seq.shape[1]  # last item ↔ last position
        x, _ = self._run(seq, first, _self_mask(seq > 0), last_only, actions=actions)  # (B, T|1, D)
        return self.ln(x)  # (B, T|1, D)

    def encode_last(
        self, seq: torch.Tensor, times: torch.Tensor | None = None, *, actions: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.encode(seq, last_only=True, actions=actions)[:, -1]  # (B, D)

    def prefill(
        self, seq: torch.Tensor, times: torch.Tensor | None = None, *, actions: torch.Tensor | None = None
    ) -> KVCache:
        """Keys and values of the last `max_len - 1` items one position back from where `encode`
        puts them, since the appended item takes the last position. Valid for one step only:
        every append moves every earlier item, so nothing cached survives it."""
        lo = max(0, seq.shape[1] - self.max_len + 1)
        seq, actions = seq[:, lo:], actions[:, lo:] if actions is not None else None  # (B, P)
        first = self.max_len - 1 - seq.shape[1]
        _, layers = self._run(seq, first, _self_mask(seq > 0), last_only=True, actions=actions)
        return KVCache(layers, seq > 0)

    def step(
        self,
        items: torch.Tensor,
        cache: KVCache,
        times: torch.Tensor | None = None,
        *,
        actions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        cache.check_step(items)
        new = items > 0  # (B, 1)
        # the new position attends to the real cached items and to itself (as `encode`'s rows do)
        mask = torch.cat([cache.keep, torch.ones_like(new)], 1)[:, None, None, :]  # (B, 1, 1, P + 1)
        x, layers = self._run(items, self.max_len - 1, mask, past=cache, actions=actions)  # (B, 1, D)
        keep = torch.cat([cache.keep, new], 1)  # (B, P + 1)
        return self.ln(x)[:, -1], KVCache(layers, keep, extendable=False)  # (B, D)

    def _run(
        self,
        seq: torch.Tensor,
        first_pos: int,
        mask: torch.Tensor,
        last_only: bool = False,
        past: KVCache | None = None,
        actions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[KV, ...]]:
        """The blocks over (B, T) ids at positions first_pos.. after `past`'s: the last block's
        output (B, T|1, D), before the final LayerNorm, and every layer's keys and values."""
        t = seq.shape[1]
        pos = torch.arange(first_pos, first_pos + t, device=seq.device)  # (T,)
        x = self.drop(self.embed_items(seq, actions) * self.scale + self.pos_emb(pos)[None])  # (B, T, D)
        blocks = list(self.blocks)
        layers = []
        for i, block in enumerate(blocks):
            x, kv = block(
                x, mask, last_only and i == len(blocks) - 1, past.layers[i] if past is not None else None
            )
            layers.append(kv)
        return x, tuple(layers)


def _self_mask(keep: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) causal attention over the real items of (B, T) `keep`; a padding query
    attends to itself only (no all-masked NaN rows)."""
    t = keep.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=keep.device).tril()  # (T, T)
    eye = torch.eye(t, dtype=torch.bool, device=keep.device)
    return ((causal & keep[:, None, :]) | eye)[:, None]  # (B, 1, T, T)


@register("sasrec")
class SASRec(SequenceRecommender):
    """Self-attentive sequential recommendation; scores = last hidden state · all item embeddings."""

    config_class = SASRecConfig
    config: SASRecConfig

    @classmethod
    def search_space(cls) -> list[dict[str, Any]]:
        return search_space_from({"dropout": [0.2, 0.1, 0.3], "lr": [1e-3, 2e-3]})

    def _build(self) -> SASRecNet:
        return SASRecNet(int(self.n_items_ or 0), self.config, self.n_actions())
