"""One full forward pass of a SASRec or HSTU over a history (`full_scores`: the uncached
reference the KV cache of serve/incremental.py must equal), and the pieces it shares with the
cache: the input tensors of times, action ids (`action_ids` makes them from event types and
values) and the request's time, the item-id check, and scores from a state.

Item ids are the model's internal ids (0..n_items-1). A request-time model's `at` is read as
serve/incremental.py's docstring describes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from playnext.data.events import check_event
from playnext.data.interactions import Histories
from playnext.models.hstu import HSTU
from playnext.models.nn import SequenceNet
from playnext.models.sasrec import SASRec
from playnext.train import batches as B

Model = SASRec | HSTU


def _uses_time(model: Model) -> bool:
    return isinstance(model, HSTU) and model.user_times_ is not None


def times_tensor(model: Model, times: Sequence[int] | None, n: int) -> torch.Tensor | None:
    """(1, n) seconds for an HSTU trained with times (zeros when unknown, as `HSTU.score` does)."""
    if not _uses_time(model):
        return None
    vals = list(times)[-n:] if times is not None else [0] * n
    return torch.tensor([vals], dtype=torch.int64, device=model.device)


def action_ids(model: Model, events: Sequence[str | None], values: Sequence[float | None]) -> list[int]:
    """The action id of each event (type or None, value or None) for a model trained with actions;
    a type it was not trained with, or a value outside its type's range, is a ConfigError naming
    the known types (the rule the API and the CLI apply)."""
    known = model.event_types
    if not known:
        raise ValueError(f"this {model.name} model was trained without actions: it reads no event types")
    for n, (name, value) in enumerate(zip(events, values, strict=True), 1):
        check_event(name, value, known, where=f"event {n}")
    codes = np.array([-1 if e is None else known.index(e) for e in events], dtype=np.int32)
    vals = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
    hist = Histories.from_lists([np.zeros(len(codes), dtype=np.int64)]).with_events(codes, vals, known)
    return model.action_ids(hist).tolist()


def actions_tensor(model: Model, actions: Sequence[int] | None, width: int) -> torch.Tensor | None:
    """(1, width) action ids aligned with the last `width` items, left-padded with 0, or None."""
    if actions is None:
        return None
    if not model.config.actions:
        raise ValueError(f"this {model.name} model was trained without actions: pass none")
    acts = list(actions)[-width:] if width else []
    return torch.tensor([[0] * (width - len(acts)) + acts], dtype=torch.int64, device=model.device)


def pending(model: Model, times: Sequence[int] | None) -> bool:
    """Whether the cache stops one event short: a request-time model given the events' times
    (without them every Δt is 0 and `at` is not read, as in `HSTU.score`)."""
    return model.uses_request_time and times is not None


def at_tensor(model: Model, times: Sequence[int] | None, at: int | None) -> torch.Tensor | None:
    """(1,) the time the last event is asked at, for a request-time model given times: `at`,
    never before the last event (`hstu.asked_at`); None (the last event's own time) otherwise."""
    if at is None or not pending(model, times) or not times:
        return None
    assert times is not None
    return torch.tensor([max(int(at), int(times[-1]))], dtype=torch.int64, device=model.device)


def check_items(model: Model, items: Sequence[int]) -> None:
    n_items = int(model.n_items_ or 0)
    if any(not 0 <= int(i) < n_items for i in items):
        raise ValueError(f"item ids must be known internal ids in [0, {n_items})")


def state_scores(model: Model, net: SequenceNet, h: torch.Tensor, items: Sequence[int]) -> torch.Tensor:
    """(n_items,) scores of state (1, D) after `items`, with a repeat bonus where the model has one."""
    s = (h @ net.item_vectors().T).float()  # (1, n_items)
    return model.add_repeat_bonus(s, Histories.from_lists([list(items)]))[0].cpu()


def full_scores(
    model: Model,
    items: Sequence[int],
    times: Sequence[int] | None = None,
    actions: Sequence[int] | None = None,
    at: int | None = None,
) -> torch.Tensor:
    """Uncached reference: one full forward pass over the last `max_len` items, asked at `at`
    (a request-time model's; see the module docstring) → (n_items,)."""
    check_items(model, items)
    if actions is not None and len(actions) != len(items):
        raise ValueError(f"{len(actions)} action(s) for {len(items)} item(s)")
    seq = torch.from_numpy(B.left_pad(Histories.from_lists([list(items)]), model.config.max_len))
    seq = seq.to(model.device)  # (1, T)
    width = seq.shape[1]
    with torch.no_grad():
        t, a = times_tensor(model, times, width), actions_tensor(model, actions, width)
        asked = at_tensor(model, times, at)
        extra = {"at": asked} if asked is not None else {}  # only a request-time net reads it
        h = model.net_.encode_last(seq, t, actions=a, **extra)  # (1, D)
        return state_scores(model, model.net_, h, items)
