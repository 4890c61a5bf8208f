"""Weight averaging: an exponential moving average of the trainable weights."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """An exponential moving average of the trainable weights (Polyak averaging).

    Why: once validation plateaus, one step's weights sit somewhere in the optimiser's noise, and
    which epoch scores best is partly luck; the average over the last ~1 / (1 - decay) steps is a
    smoother point and a steadier choice. The decay ramps up as (1 + t) / (10 + t) so the average
    is not anchored to the random initial weights. It is swapped into the live network for
    scoring (a model's scorer reads that network), not kept as a copy of the module.
    """

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.named = [(k, p) for k, p in net.named_parameters() if p.requires_grad and p.is_floating_point()]
        self.shadow = [p.detach().clone() for _, p in self.named]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, (_, p) in zip(self.shadow, self.named, strict=True):
            avg.lerp_(p.detach(), 1.0 - decay)

    @contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[None]:
        """The averaged weights in the network for the block, the live ones restored after."""
        live = [p.detach().clone() for _, p in self.named]
        self.copy_to_net()
        try:
            yield
        finally:
            for (_, p), value in zip(self.named, live, strict=True):
                p.copy_(value)

    @torch.no_grad()
    def copy_to_net(self) -> None:
        for avg, (_, p) in zip(self.shadow, self.named, strict=True):
            p.copy_(avg)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: avg for avg, (k, _) in zip(self.shadow, self.named, strict=True)}

    @torch.no_grad()
    def load(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        for avg, (k, _) in zip(self.shadow, self.named, strict=True):
            avg.copy_(tensors[k])
        self.updates = updates
