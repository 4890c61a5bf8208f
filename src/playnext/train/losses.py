"""Next-item losses, selectable per model by name (`config.loss`).

* ``ce`` — full softmax cross-entropy over the whole catalog. The strongest and simplest
  choice when the catalog fits (ML-1M: 3.7k items); SASRec with it matches the published
  full-ranking numbers that BCE-trained SASRec misses.
* ``sampled_softmax`` — softmax over the positive and N uniform negatives shared by the batch,
  optionally plus the other targets of the batch (in-batch negatives). Both are corrected by
  subtracting log Q(item), the log expected count of the item among the candidates, so the
  estimate is unbiased for the full softmax (Bengio & Senécal; Yi et al. 2019).
* ``bce`` — binary cross-entropy, positive against per-example sampled negatives (original
  SASRec, Caser and NCF). Cheap but ranks worse under full-ranking evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

LOSSES: tuple[str, ...] = ("ce", "sampled_softmax", "bce")


def full_softmax(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (N, I) logits against (N,) item ids."""
    return F.cross_entropy(logits.float(), targets)


def bce(pos: torch.Tensor, neg: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean BCE: (N,) positive logits labelled 1, (N, K) negative logits labelled 0
    (`reduction="none"`: each row's (N,))."""
    ones = torch.ones_like(pos, dtype=torch.float32)
    pos_loss = F.binary_cross_entropy_with_logits(pos.float(), ones, reduction=reduction)
    neg_loss = F.binary_cross_entropy_with_logits(
        neg.float(), torch.zeros_like(neg, dtype=torch.float32), reduction="none"
    ).sum(-1)
    return pos_loss + (neg_loss.mean() if reduction == "mean" else neg_loss)


def sampled_softmax(
    pos: torch.Tensor,
    cand: torch.Tensor,
    targets: torch.Tensor,
    cand_ids: torch.Tensor,
    log_q: torch.Tensor,
    pos_log_q: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """Softmax over [positive, candidates] with logQ correction and accidental hits masked.

    pos: (N,) positive logits; cand: (N, C) candidate logits; targets: (N,) positive ids;
    cand_ids: (C,) shared or (N, C) per-row candidate ids; log_q: same shape as cand_ids, and
    pos_log_q: (N,), the log expected counts.
    """
    if cand_ids.dim() == 1:
        cand_ids, log_q = cand_ids[None, :], log_q[None, :]  # (1, C)
    cand = cand.float() - log_q  # (N, C)
    cand = cand.masked_fill(cand_ids == targets[:, None], float("-inf"))  # accidental hits
    logits = torch.cat([(pos.float() - pos_log_q)[:, None], cand], dim=1)  # (N, 1 + C)
    zeros = torch.zeros(len(pos), dtype=torch.long, device=pos.device)
    return F.cross_entropy(logits, zeros, reduction=reduction)


def dot_product_loss(
    kind: str,
    h: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    negatives: torch.Tensor | None = None,
    in_batch: bool = False,
    item_log_freq: torch.Tensor | None = None,
    rows: Callable[[torch.Tensor], torch.Tensor] | None = None,
    weights: torch.Tensor | None = None,
    bonus: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Loss for models whose logits are `h · W[item] (+ b[item])` — every sequence model here.

    h: (N, D) hidden states of the positions that have a target; targets: (N,) item ids;
    weight: (I, D); negatives: (K,) shared ids for sampled_softmax, (N, K) ids for bce.
    `item_log_freq` (I,) is log training frequency, needed only for in-batch logQ. `rows(ids)`
    replaces `weight[ids]` where the table must get a sparse gradient (sampled losses only).
    `weights` (N,) make it a weighted mean Σ w·loss / Σ w (typed events' per-type weights);
    without them every loss is computed exactly as before. `bonus` (ids, amounts), both (N, L),
    is added to the full softmax's logits at those item ids (a repeat bonus; `ce` only).
    """
    n_items = weight.shape[0]
    red = "mean" if weights is None else "none"

    def reduce(per_row: torch.Tensor) -> torch.Tensor:
        if weights is None:
            return per_row
        w = weights.to(per_row.device, torch.float32)
        return (per_row * w).sum() / w.sum().clamp(min=1e-12)

    take: Callable[[torch.Tensor], torch.Tensor] = rows if rows is not None else weight.__getitem__

    def logits_for(ids: torch.Tensor) -> torch.Tensor:
        out = h @ take(ids).T  # (N, C)
        return out + bias[ids][None, :] if bias is not None else out

    if bonus is not None and kind != "ce":
        raise ValueError("a logit bonus needs the full softmax (loss='ce')")
    if kind == "ce":
        if rows is not None:
            raise ValueError("full softmax uses every item row; sparse rows need a sampled loss")
        if weights is not None or bonus is not None:  # the (N, I) logits are materialised
            logits = h.float() @ weight.float().T + (bias.float() if bias is not None else 0.0)
            if bonus is not None:
                logits = logits.scatter_add(1, bonus[0], bonus[1].float())
            return reduce(F.cross_entropy(logits, targets, reduction=red))
        return chunked_softmax_ce(h, weight, targets, bias)
    pos = (h * take(targets)).sum(-1)  # (N,)
    if bias is not None:
        pos = pos + bias[targets]
    if kind == "bce":
        if negatives is None or negatives.dim() != 2:
            raise ValueError("bce needs (N, K) negatives")
        neg = torch.einsum("nd,nkd->nk", h, take(negatives))  # (N, K)
        if bias is not None:
            neg = neg + bias[negatives]
        return reduce(bce(pos, neg, red))
    if kind == "sampled_softmax":
        parts_ids: list[torch.Tensor] = []
        parts_q: list[torch.Tensor] = []
        # expected count of item i among the candidates: K/I for uniform, N·p(i) in-batch
        uniform_q = math.log(max(1, 0 if negatives is None else negatives.numel()) / n_items)
        if negatives is not None and negatives.numel():
            parts_ids.append(negatives.reshape(-1))
            parts_q.append(torch.full((negatives.numel(),), uniform_q, device=h.device))
        pos_q = torch.full((len(targets),), uniform_q if negatives is not None else 0.0, device=h.device)
        if in_batch:
            if item_log_freq is None:
                raise ValueError("in-batch negatives need item_log_freq for the logQ correction")
            parts_ids.append(targets)
            batch_q = item_log_freq[targets] + math.log(len(targets))
            parts_q.append(batch_q)
            pos_q = torch.logaddexp(pos_q, batch_q) if negatives is not None else batch_q
        if not parts_ids:
            raise ValueError("sampled_softmax needs uniform negatives or in_batch=True")
        cand_ids = torch.cat(parts_ids)  # (C,)
        return reduce(
            sampled_softmax(pos, logits_for(cand_ids), targets, cand_ids, torch.cat(parts_q), pos_q, red)
        )
    raise ValueError(f"unknown loss {kind!r}; known: {', '.join(LOSSES)}")


class _ChunkedSoftmaxCE(torch.autograd.Function):
    """Mean CE of logits h·Wᵀ (+ b) without materialising the (N, I) matrix for autograd.

    Logits are recomputed chunk by chunk in backward, so memory traffic stays in cache-sized
    blocks: on CPUs this is several times faster than `F.cross_entropy` on the full matrix,
    whose log-softmax backward is memory-bound. The four matmuls run in `dtype` (bf16 under
    autocast: ~4× faster with AMX), softmax and gradient accumulation in fp32.
    """

    @staticmethod
    def forward(
        ctx: Any,
        h: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        targets: torch.Tensor,
        chunk: int,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        hl, wl = h.to(dtype), weight.to(dtype)
        lse = torch.empty(len(h), dtype=torch.float32, device=h.device)
        for s in range(0, len(h), chunk):
            logits = (hl[s : s + chunk] @ wl.T).float() + bias  # (c, I)
            lse[s : s + chunk] = torch.logsumexp(logits, dim=1)
        pos = (h * weight[targets]).sum(1) + bias[targets]  # (N,)
        ctx.save_for_backward(h, weight, bias, targets, lse)
        ctx.chunk, ctx.dtype = chunk, dtype
        return (lse - pos).mean()

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> Any:
        h, weight, bias, targets, lse = ctx.saved_tensors
        chunk, n, dtype = ctx.chunk, len(h), ctx.dtype
        hl, wl = h.to(dtype), weight.to(dtype)
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros_like(weight)
        grad_b = torch.zeros_like(bias)
        scale = grad_out / n
        rows = torch.arange(min(chunk, n), device=h.device)
        for s in range(0, n, chunk):
            hc = hl[s : s + chunk]
            g = ((hc @ wl.T).float() + bias).sub_(lse[s : s + chunk, None]).exp_()  # (c, I) softmax
            g[rows[: len(hc)], targets[s : s + chunk]] -= 1.0
            g.mul_(scale)
            gl = g.to(dtype)
            grad_h[s : s + chunk] = (gl @ wl).float()  # (c, D)
            grad_w += (gl.T @ hc).float()  # (I, D)
            grad_b += g.sum(0)
        return grad_h, grad_w, grad_b, None, None, None


def chunked_softmax_ce(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    chunk: int = 256,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Full softmax CE of (N, D) states against (I, D) item weights, memory-light.

    `dtype` of the matmuls defaults to bf16 inside a bf16 autocast region, else fp32.
    """
    if dtype is None:
        kind = h.device.type
        bf16 = torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.bfloat16
        dtype = torch.bfloat16 if bf16 else torch.float32
    h, weight = h.float(), weight.float()
    b = bias.float() if bias is not None else torch.zeros(weight.shape[0], device=h.device)
    with torch.autocast(h.device.type, enabled=False):
        out: torch.Tensor = _ChunkedSoftmaxCE.apply(h, weight, b, targets, chunk, dtype)
    return out
