"""Rows of similar length together, so that a batch pads to its own rows instead of the longest
history it happens to hold: length-bucketed training batches (`length_buckets=k`) and
longest-first scoring chunks.

Bucketed batches hold unequal numbers of positions, so each batch's mean loss is re-weighted by
its share of the epoch's positions (the loop's `LOSS_SCALE`): the objective stays the
per-position mean it is without buckets (ML-1M rows average 108 of 200 positions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from playnext.data.interactions import Histories
from playnext.train import batches as B

# rows per forward pass when scoring: bounds attention memory, and with rows longest first a
# smaller chunk pads less (ML-1M SASRec, all users on 2 CPU cores: 128 rows took 45 % fewer
# CPU-seconds than 512, benchmarks/library_api.py)
SCORE_CHUNK = 128


def training_groups(
    order: np.ndarray, terms: np.ndarray, batch_size: int, pool: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], float]:
    """One epoch's batches of the shuffled row `order`, and the mean loss terms per batch that
    `loss_scale` divides by (0.0: plain slices, no re-weighting). `terms` counts each row's
    positions with a next item; `pool` batches at a time are sorted by length (0: none)."""
    if not pool:
        return [order[sl] for sl in B.batch_slices(len(order), batch_size)], 0.0
    groups = B.length_buckets(order, terms, batch_size, pool, rng)
    return groups, float(terms[order].sum()) / max(1, len(groups))


def loss_scale(terms: np.ndarray, mean_terms: float) -> torch.Tensor:
    """0-d weight of a batch whose rows have `terms` positions: its share of the epoch's."""
    return torch.tensor(float(terms.sum()) / mean_terms)


def score_chunks(history: Histories, max_len: int) -> Iterator[np.ndarray]:
    """Row indices per scoring forward pass, longest rows first, so that a chunk pads only to
    its own rows; callers put each chunk's scores back at these indices."""
    order = B.longest_first(history, max_len)
    for sl in B.batch_slices(len(order), SCORE_CHUNK):
        yield order[sl]


def run_chunks(chunks: list[np.ndarray], work: Callable[[np.ndarray], None], device: torch.device) -> None:
    """`work(chunk)` for every chunk; on a CPU with n intra-op threads, in n Python threads of
    one intra-op thread each, taking every n-th chunk (chunks come longest first, so the shares
    stay even). A 128-row forward pass is too small to keep two cores busy through its ~30 ops
    (each waits for its slowest thread); whole chunks in parallel do (ML-1M SASRec, every user:
    2.2 → 1.9 CPU-seconds, benchmarks/library_api.py). Each chunk's arithmetic is the same
    whichever thread runs it, so the scores do not depend on scheduling."""
    n = torch.get_num_threads()
    if device.type != "cpu" or n < 2 or len(chunks) < 2:
        for c in chunks:
            work(c)
        return
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def share(part: list[np.ndarray]) -> None:
        torch.set_num_threads(1)  # this thread's OpenMP setting only; the caller keeps its own
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):  # thread-local modes
            for c in part:
                work(c)

    with ThreadPoolExecutor(n, thread_name_prefix="playnext-score") as pool:
        for f in [pool.submit(share, chunks[i::n]) for i in range(n)]:
            f.result()
