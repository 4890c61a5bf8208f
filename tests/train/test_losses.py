"""Losses agree with their textbook definitions on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from playnext.train.losses import bce, chunked_softmax_ce, dot_product_loss, sampled_softmax


def test_chunked_ce_matches_cross_entropy_value_and_gradients() -> None:
    torch.manual_seed(0)
    h = torch.randn(37, 8, requires_grad=True)
    w = torch.randn(11, 8, requires_grad=True)
    b = torch.randn(11, requires_grad=True)
    t = torch.randint(0, 11, (37,))
    ref = F.cross_entropy(h @ w.T + b, t)
    ref_grads = torch.autograd.grad(ref, (h, w, b))
    out = chunked_softmax_ce(h, w, t, b, chunk=5)
    grads = torch.autograd.grad(out, (h, w, b))
    assert out.item() == pytest.approx(ref.item(), rel=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        assert torch.allclose(g, r, atol=1e-5)


def test_bce_is_mean_positive_plus_summed_negatives() -> None:
    pos, neg = torch.tensor([0.0, 2.0]), torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    expected = (math.log(2) + math.log1p(math.exp(-2))) / 2 + (
        (math.log(2) + math.log1p(math.exp(-1))) + (math.log1p(math.e) + math.log(2))
    ) / 2
    assert bce(pos, neg).item() == pytest.approx(expected, rel=1e-6)


def test_sampled_softmax_masks_accidental_hits_and_applies_log_q() -> None:
    pos = torch.tensor([1.0])
    cand = torch.tensor([[1.0, 50.0]])
    ids = torch.tensor([3, 7])  # 7 is the target itself: an accidental hit, ignored
    log_q = torch.tensor([math.log(2.0), math.log(2.0)])
    loss = sampled_softmax(pos, cand, torch.tensor([7]), ids, log_q, torch.tensor([0.0]))
    expected = -math.log(math.exp(1.0) / (math.exp(1.0) + math.exp(1.0 - math.log(2.0))))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_all_negatives_sampled_softmax_equals_full_softmax() -> None:
    """With every item as a (uniform, K = I) candidate the logQ terms cancel: exact full softmax."""
    torch.manual_seed(1)
    h, w, t = torch.randn(6, 4), torch.randn(9, 4), torch.randint(0, 9, (6,))
    full = dot_product_loss("ce", h, t, w)
    sampled = dot_product_loss("sampled_softmax", h, t, w, negatives=torch.arange(9))
    assert sampled.item() == pytest.approx(full.item(), rel=1e-5)


def test_in_batch_and_bce_paths_run() -> None:
    torch.manual_seed(2)
    h, w, t = torch.randn(5, 4), torch.randn(9, 4), torch.randint(0, 9, (5,))
    log_freq = torch.log(torch.full((9,), 1 / 9))
    a = dot_product_loss("sampled_softmax", h, t, w, in_batch=True, item_log_freq=log_freq)
    b = dot_product_loss("bce", h, t, w, negatives=torch.randint(0, 9, (5, 3)))
    assert torch.isfinite(a) and torch.isfinite(b)
    with pytest.raises(ValueError, match="unknown loss"):
        dot_product_loss("nope", h, t, w)
