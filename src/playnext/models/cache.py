"""The KV cache of the attention models: what a one-event `step` needs from the past.

A network's `prefill(seq)` returns one; `step(item, cache)` runs only the new position through
the same blocks as the full pass, attending to the cached keys and values, and returns the
state that scores the next item with the cache grown by that position (as Hugging Face's
`GPT2Attention.forward(..., layer_past, use_cache)` returns its `present`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KV = tuple[torch.Tensor, torch.Tensor]  # one layer's keys (B, H, P, dk) and values (B, H, P, dv)


@dataclass(frozen=True)
class KVCache:
    """Per-layer keys and values of the P positions a step attends to, for B left-padded rows.

    `extendable` is the network's word on exactness: False when a further step would need keys
    the cache does not hold (SASRec's positions move on every append; a window that reached
    `max_len` slides), so the caller prefills again.
    """

    layers: tuple[KV, ...]
    keep: torch.Tensor  # (B, P) bool: a real item, not left padding
    times: torch.Tensor | None = None  # (B, P) seconds, for a net with a time bias
    extendable: bool = True

    @property
    def length(self) -> int:
        """P, the padded number of cached positions."""
        return int(self.keep.shape[1])

    def n_real(self) -> torch.Tensor:
        """(B, 1) real items per row."""
        return self.keep.sum(1, keepdim=True)

    def check_step(self, items: torch.Tensor) -> None:
        """Refuse a step this cache cannot take exactly: one (B, 1) id per cached row."""
        b = int(self.keep.shape[0])
        if items.dim() != 2 or tuple(items.shape) != (b, 1):
            raise ValueError(f"a step takes (B, 1) ids for the cache's {b} rows, got {tuple(items.shape)}")
        if not self.extendable:
            raise ValueError("this cache cannot take another step: prefill the history again")
