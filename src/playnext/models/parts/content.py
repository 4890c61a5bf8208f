"""The item content tower: what an item *is* (genres or tags, kind, year, its title's meaning),
embedded and added to its id embedding, so that an item never seen in training still has a
vector the model can score.

    v_i = e_id(i) · m_i + E_g(genres_i) + E_k(kind_i) + E_y(bucket(year_i)) + W · t_i

E_g is the mean of the item's genre (tag) embeddings, bucket() cuts years at the training
catalog's quantiles, t_i is the frozen offline MiniLM vector of `item_text` (title, kind,
genres, year) and W a learned projection. m_i is 1 except in training, where each item's id part
is dropped with probability `id_dropout` (a fresh draw per step): the content part must then
stand on its own, which is what a cold item's vector is (m = 0, no id row exists). Vocabularies
are the training catalog's; a genre, kind or year never seen there maps to "unknown" (row 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from playnext.data.interactions import Columns
from playnext.errors import ConfigError
from playnext.io import sha256_text
from playnext.text import item_text, make_encoder

FEATURES = ("genres", "kind", "year", "text")
TEXT_ENCODERS = ("minilm", "hashing")
MAX_GENRES = 8  # genres (tags) kept per item, in their metadata order
YEAR_BUCKETS = 8


@dataclass(frozen=True)
class ContentVocab:
    """What maps metadata to feature ids: learned once from the training catalog, saved in
    model.json, and applied unchanged to every item that arrives later."""

    features: tuple[str, ...]
    genres: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    year_edges: tuple[float, ...] = ()
    text_encoder: str = ""
    text_dim: int = 0

    @classmethod
    def learn(
        cls, meta: pl.DataFrame, features: Sequence[str], text_encoder: str, text_dim: int
    ) -> ContentVocab:
        genres = kinds = ()
        edges: tuple[float, ...] = ()
        if "genres" in features:
            genres = tuple(sorted({g for gs in meta.get_column(Columns.GENRES).to_list() if gs for g in gs}))
        if "kind" in features:
            kinds = tuple(sorted({k for k in meta.get_column(Columns.KIND).to_list() if k}))
        if "year" in features:
            years = meta.get_column(Columns.YEAR).drop_nulls().to_numpy().astype(np.float64)
            if len(years):
                qs = np.quantile(years, np.linspace(0, 1, YEAR_BUCKETS + 1)[1:-1])
                edges = tuple(float(e) for e in np.unique(qs))
        missing = [f for f, empty in (("genres", not genres), ("kind", not kinds)) if f in features and empty]
        if "year" in features and not edges:
            missing.append("year")
        if missing:
            raise ConfigError(
                f"item_features asks for {', '.join(missing)}, but the catalog's metadata has none "
                f"(items with {', '.join(missing)}: 0 of {meta.height})"
            )
        return cls(
            tuple(features), genres, kinds, edges, text_encoder if "text" in features else "", text_dim
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "genres": list(self.genres),
            "kinds": list(self.kinds),
            "year_edges": list(self.year_edges),
            "text_encoder": self.text_encoder,
            "text_dim": self.text_dim,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContentVocab:
        return cls(
            tuple(d["features"]),
            tuple(d.get("genres", ())),
            tuple(d.get("kinds", ())),
            tuple(float(e) for e in d.get("year_edges", ())),
            str(d.get("text_encoder", "")),
            int(d.get("text_dim", 0)),
        )

    def encode(self, meta: pl.DataFrame) -> dict[str, torch.Tensor]:
        """Feature ids of each metadata row (0 = unknown/none), and its text vector."""
        n = meta.height
        out: dict[str, torch.Tensor] = {}
        if "genres" in self.features:
            index = {g: i + 1 for i, g in enumerate(self.genres)}
            ids = np.zeros((n, MAX_GENRES), dtype=np.int64)
            for r, gs in enumerate(meta.get_column(Columns.GENRES).to_list()):
                row = [index[g] for g in (gs or ()) if g in index][:MAX_GENRES]
                ids[r, : len(row)] = row
            out["genres"] = torch.from_numpy(ids)  # (N, G)
        if "kind" in self.features:
            index = {k: i + 1 for i, k in enumerate(self.kinds)}
            out["kind"] = torch.tensor(
                [index.get(k or "", 0) for k in meta.get_column(Columns.KIND).to_list()]
            )
        if "year" in self.features:
            years = meta.get_column(Columns.YEAR).cast(pl.Float64).to_numpy()  # NaN for missing
            bucket = np.searchsorted(np.asarray(self.year_edges), years, side="right") + 1
            out["year"] = torch.from_numpy(np.where(np.isnan(years), 0, bucket).astype(np.int64))  # (N,)
        if "text" in self.features:
            out["text"] = torch.from_numpy(self.text_vectors(meta))  # (N, T)
        return out

    def text_vectors(self, meta: pl.DataFrame) -> np.ndarray:
        encoder = _encoder(self.text_encoder)
        if encoder.dim != self.text_dim:
            raise ConfigError(
                f"the model's text vectors are {self.text_dim}-d ({self.text_encoder}), "
                f"but the encoder available here gives {encoder.dim}-d"
            )
        rows = meta.select(Columns.TITLE, Columns.KIND, Columns.GENRES, Columns.YEAR).iter_rows()
        texts = [item_text(*row) for row in rows]
        key = sha256_text(encoder.name, *texts)
        if key not in _VECTORS:  # seeds and refits of one catalog encode it once per process
            _VECTORS.clear()
            _VECTORS[key] = encoder.encode(texts)
        return _VECTORS[key]


_ENCODERS: dict[str, Any] = {}
_VECTORS: dict[str, np.ndarray] = {}


def _encoder(kind: str) -> Any:
    """One encoder per kind per process: MiniLM takes seconds to load."""
    if kind not in _ENCODERS:
        enc = make_encoder(kind)
        if enc is None:
            raise ConfigError(f"text encoder {kind!r} is unavailable")
        _ENCODERS[kind] = enc
    return _ENCODERS[kind]


def text_dim(kind: str) -> int:
    return int(_encoder(kind).dim)


class ContentTower(nn.Module):
    """(I + 1, D) content vectors of the catalog (row 0 = padding, zero), from feature buffers
    saved with the weights, so a loaded model needs no metadata to score its own items."""

    def __init__(self, vocab: ContentVocab, n_items: int, dim: int, init_std: float) -> None:
        super().__init__()
        self.vocab = vocab
        f = vocab.features
        rows = n_items + 1
        self.genre_emb = nn.Embedding(len(vocab.genres) + 1, dim, padding_idx=0) if "genres" in f else None
        self.kind_emb = nn.Embedding(len(vocab.kinds) + 1, dim, padding_idx=0) if "kind" in f else None
        self.year_emb = nn.Embedding(len(vocab.year_edges) + 2, dim, padding_idx=0) if "year" in f else None
        self.text_proj = nn.Linear(vocab.text_dim, dim, bias=False) if "text" in f else None
        for emb in (self.genre_emb, self.kind_emb, self.year_emb):
            if emb is not None:
                nn.init.normal_(emb.weight, std=init_std)
                with torch.no_grad():
                    emb.weight[0].zero_()
        if self.text_proj is not None:  # unit-norm text rows: outputs start at about init_std
            nn.init.normal_(self.text_proj.weight, std=init_std)
        self.genres: torch.Tensor
        self.kind: torch.Tensor
        self.year: torch.Tensor
        self.text: torch.Tensor
        self.register_buffer("genres", torch.zeros(rows, MAX_GENRES, dtype=torch.long))  # (I + 1, G)
        self.register_buffer("kind", torch.zeros(rows, dtype=torch.long))  # (I + 1,)
        self.register_buffer("year", torch.zeros(rows, dtype=torch.long))  # (I + 1,)
        self.register_buffer("text", torch.zeros(rows, max(vocab.text_dim, 1)))  # (I + 1, T)

    def set_features(self, feats: dict[str, torch.Tensor], first: int = 1) -> None:
        """Fill rows `first`.. from `ContentVocab.encode` of those items' metadata (internal
        order): the whole catalog (row 1 on), or the items a warm start appended."""
        with torch.no_grad():
            for name, value in feats.items():
                buf = getattr(self, name)
                buf[first:] = value.to(buf.device, buf.dtype)

    def add_to(self, id_rows: torch.Tensor, id_dropout: float) -> torch.Tensor:
        """(I + 1, D) input vectors of the catalog: its (I + 1, D) id rows plus the content
        vectors, each id row dropped with probability `id_dropout` in training (a fresh draw per
        call), so the content part learns to stand on its own as a cold item's must."""
        w = id_rows
        if self.training and id_dropout > 0:
            keep = torch.rand(w.shape[0], 1, device=w.device) >= id_dropout  # (I + 1, 1)
            w = w * keep.to(w.dtype)
        return w + self()  # (I + 1, D)

    def forward(self, feats: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """(I + 1, D) vectors of the catalog, or (N, D) of the items `feats` describes."""
        if feats is None:
            feats = {"genres": self.genres, "kind": self.kind, "year": self.year, "text": self.text}
        parts: list[torch.Tensor] = []
        if self.genre_emb is not None:
            g = feats["genres"]  # (N, G)
            n = (g > 0).sum(1, keepdim=True).clamp(min=1)  # (N, 1)
            parts.append(self.genre_emb(g).sum(1) / n)  # (N, D) mean over the item's genres
        if self.kind_emb is not None:
            parts.append(self.kind_emb(feats["kind"]))  # (N, D)
        if self.year_emb is not None:
            parts.append(self.year_emb(feats["year"]))  # (N, D)
        if self.text_proj is not None:
            parts.append(self.text_proj(feats["text"].to(self.text_proj.weight.dtype)))  # (N, D)
        out = parts[0]
        for p in parts[1:]:
            out = out + p
        return out  # row 0 of the buffers is all "unknown": the padding row comes out zero


def learn_content(
    meta: pl.DataFrame, features: Sequence[str], text_encoder: str
) -> tuple[ContentVocab | None, dict[str, torch.Tensor] | None]:
    """The vocabulary of the training catalog's metadata and its items' encoded features, or
    (None, None) when the config asks for no features."""
    if not features:
        return None, None
    dim = text_dim(text_encoder) if "text" in features else 0
    vocab = ContentVocab.learn(meta, features, text_encoder, dim)
    return vocab, vocab.encode(meta)


def new_tower(
    vocab: ContentVocab,
    n_items: int,
    dim: int,
    id_table: torch.Tensor,
    seed: int,
    feats: dict[str, torch.Tensor] | None,
) -> ContentTower:
    """A tower started at the spread of the (I + 1, D) id table it adds to, drawn from its own
    seed so that the id net's initial weights stay what they are without content."""
    std = float(id_table[1:].detach().std()) if id_table.shape[0] > 1 else 0.02
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tower = ContentTower(vocab, n_items, dim, std)
    if feats is not None:
        tower.set_features(feats)
    return tower
