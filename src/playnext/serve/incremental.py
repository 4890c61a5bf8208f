"""Incremental inference: keep a user's KV cache so that appending one event runs one position
through the network instead of the whole history.

The mathematics is the model's (`SequenceNet.prefill` / `step`, see models/cache.py); this module
only keeps the books: which cache belongs to which user, and when it must be rebuilt —

* when the network says so (`KVCache.extendable` is False): SASRec after every event (its
  positions are aligned to the latest item, so an append moves every earlier one), HSTU once
  the history fills `max_len` and the window starts to slide. A server can rebuild off the
  request path (`defer_refresh=True`, then `refresh`); for SASRec that saves latency, not compute;
* when the model's network was replaced (a refit or a reload) since the cache was built.

A user's history is kept to the last `max_len` events, all a full pass reads. Scores equal a
full forward pass (`full_scores`, in serve/full_pass.py with the input tensors both build) — see
tests/models/test_incremental.py and test_kv_cache.py. Item ids are the model's internal ids
(0..n_items-1); unknown items must be filtered before. A model trained with typed events
(`actions=true`) takes each event's action id beside its item (`full_pass.action_ids` makes them
from event types and values, refusing types the model does not know); without them every event
reads as untyped, as in `Recommender.score`.

A model trained with the request's time (`uses_request_time`: HSTU, `time_reference="request"`)
is asked each request at its `at` (unix seconds; None: at the last event's time, Δt = 0, as
`Recommender.score` reads a history without `at`; never before the last event). Its last
event's deeper keys depend on that time, so its cache stops one event short (`HSTUNet.prefill`):
a request runs the last event against it, asked at `at`, and appending an event first commits
the previous last one, asked at the new event's time — two positions per event instead of one,
still no full pass. `ask` answers a later request without a new event (one position).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from playnext.models.cache import KVCache
from playnext.models.hstu import HSTUNet
from playnext.models.nn import SequenceNet
from playnext.serve.full_pass import (
    Model,
    actions_tensor,
    at_tensor,
    check_items,
    full_scores,
    pending,
    state_scores,
    times_tensor,
)


@dataclass
class UserState:
    """One user's recent history and the cache of the next request (None: to be rebuilt); for a
    request-time model, the cache of every event but the last."""

    items: list[int]
    times: list[int] | None
    cache: KVCache | None = None
    actions: list[int] | None = None  # action ids aligned with `items` (typed models)
    net: SequenceNet | None = None  # the network that built `cache`

    @property
    def fresh(self) -> bool:
        """Whether the next request can run on the cache as it is."""
        return self.cache is not None and self.cache.extendable

    @property
    def prefix_len(self) -> int:
        return self.cache.length if self.cache is not None else 0


class IncrementalScorer:
    """Serve a stream of events per user from a KV cache; exact with respect to `full_scores`."""

    def __init__(self, model: Model, defer_refresh: bool = False) -> None:
        if not model.fitted:
            raise RuntimeError("IncrementalScorer needs a fitted (or loaded) model")
        self.model = model
        self.defer_refresh = defer_refresh

    @property
    def max_len(self) -> int:
        return int(self.model.config.max_len)

    def start(
        self,
        items: Sequence[int],
        times: Sequence[int] | None = None,
        actions: Sequence[int] | None = None,
        at: int | None = None,
    ) -> tuple[UserState, torch.Tensor]:
        """A user's first request: full scores of `items` (with their `action_ids` for a model
        trained with actions; asked at `at`), and the cache for the next one."""
        n = self.max_len
        state = UserState(
            list(map(int, items))[-n:],
            list(map(int, times))[-n:] if times is not None else None,
            actions=list(map(int, actions))[-n:] if actions is not None else None,
        )
        self.model.net_.eval()
        scores = full_scores(self.model, state.items, state.times, state.actions, at)
        self.refresh(state)
        return state, scores

    def append(
        self,
        state: UserState,
        item: int,
        time: int | None = None,
        action: int | None = None,
        at: int | None = None,
    ) -> torch.Tensor:
        """Add one event and return the (n_items,) scores of the extended history (asked at
        `at` by a request-time model)."""
        check_items(self.model, [item])
        if (state.times is None) != (time is None):
            raise ValueError("give a time with every event or with none")
        if (state.actions is None) != (action is None):
            raise ValueError("give an action with every event or with none")
        if pending(self.model, state.times):
            return self._append_pending(state, item, time, action, at)
        net = self.model.net_
        cache = state.cache if state.fresh and state.net is net else None
        if cache is None:
            cache = self.refresh(state)
        assert cache is not None  # only a request-time model's prefix cache may be empty
        new = torch.tensor([[item + 1]], device=self.model.device)  # (1, 1)
        t = times_tensor(self.model, None if time is None else [time], 1)  # (1, 1) or None
        a = actions_tensor(self.model, None if action is None else [action], 1)  # (1, 1) or None
        with torch.no_grad():
            h, cache = net.step(new, cache, t, actions=a)  # (1, D)
        state.items = [*state.items, int(item)][-self.max_len :]
        with torch.no_grad():
            scores = state_scores(self.model, net, h, state.items)
        if state.times is not None and time is not None:
            state.times = [*state.times, int(time)][-self.max_len :]
        if state.actions is not None and action is not None:
            state.actions = [*state.actions, int(action)][-self.max_len :]
        state.cache = cache
        if not cache.extendable and not self.defer_refresh:
            self.refresh(state)
        return scores

    def ask(self, state: UserState, at: int | None = None) -> torch.Tensor:
        """The (n_items,) scores of the history as it is, asked at `at`: one position against a
        request-time model's cache; a full pass for any other model (its answer does not move
        with the time, and its cache holds no state of the last event)."""
        if not pending(self.model, state.times):
            return full_scores(self.model, state.items, state.times, state.actions, at)
        cache = self._prefix_cache(state)
        if cache is None:
            return full_scores(self.model, state.items, state.times, state.actions, at)
        return self._last_scores(state, cache, at)

    def _append_pending(
        self, state: UserState, item: int, time: int | None, action: int | None, at: int | None
    ) -> torch.Tensor:
        """`append` for a request-time model: commit the previous last event (asked at the new
        one's time) to the cache, then run the new one asked at `at`."""
        assert state.times is not None and time is not None
        net = self.model.net_
        cache = state.cache if state.fresh and state.net is net else None
        if cache is not None and state.items:
            assert isinstance(net, HSTUNet)
            last = torch.tensor([[state.items[-1] + 1]], device=self.model.device)  # (1, 1)
            when = times_tensor(self.model, state.times[-1:], 1)  # (1, 1)
            a = actions_tensor(self.model, state.actions[-1:] if state.actions is not None else None, 1)
            with torch.no_grad():
                nxt = torch.tensor([int(time)], device=self.model.device)  # (1,)
                _, cache = net.step(last, cache, when, actions=a, at=nxt)
        state.items = [*state.items, int(item)][-self.max_len :]
        state.times = [*state.times, int(time)][-self.max_len :]
        if state.actions is not None and action is not None:
            state.actions = [*state.actions, int(action)][-self.max_len :]
        state.cache, state.net = cache, net
        cache = self._prefix_cache(state)
        if cache is None:
            return full_scores(self.model, state.items, state.times, state.actions, at)
        return self._last_scores(state, cache, at)

    def _prefix_cache(self, state: UserState) -> KVCache | None:
        """A request-time model's cache of every event but the last, rebuilt when stale or when
        the window slides; None for a history of one event (nothing to cache)."""
        if state.fresh and state.net is self.model.net_ and state.cache is not None:
            return state.cache
        self.refresh(state)
        return state.cache

    def _last_scores(self, state: UserState, cache: KVCache, at: int | None) -> torch.Tensor:
        """(n_items,) scores: the last event through the blocks against `cache`, asked at `at`;
        the grown cache is dropped (the next event's time is not known yet)."""
        net = self.model.net_
        assert isinstance(net, HSTUNet) and state.times is not None
        last = torch.tensor([[state.items[-1] + 1]], device=self.model.device)  # (1, 1)
        when = times_tensor(self.model, state.times[-1:], 1)
        a = actions_tensor(self.model, state.actions[-1:] if state.actions is not None else None, 1)
        asked = at_tensor(self.model, state.times, at)
        with torch.no_grad():
            h, _ = net.step(last, cache, when, actions=a, at=asked)  # (1, D)
            return state_scores(self.model, net, h, state.items)

    def refresh(self, state: UserState) -> KVCache | None:
        """Rebuild the cache of the next request from the history (the model keeps its window);
        a request-time model's stops one event short (None when the history holds one)."""
        net = self.model.net_
        net.eval()
        if pending(self.model, state.times):
            return self._refresh_prefix(state)
        seq = torch.tensor([state.items], dtype=torch.int64, device=self.model.device) + 1  # (1, T)
        width = seq.shape[1]
        with torch.no_grad():
            t, a = (
                times_tensor(self.model, state.times, width),
                actions_tensor(self.model, state.actions, width),
            )
            state.cache = net.prefill(seq, t, actions=a)
        state.net = net
        return state.cache

    def _refresh_prefix(self, state: UserState) -> KVCache | None:
        """Prefill every event but the last, each asked at its successor's time."""
        net = self.model.net_
        assert isinstance(net, HSTUNet) and state.times is not None
        state.net = net
        if len(state.items) < 2:
            state.cache = None
            return None
        seq = torch.tensor([state.items[:-1]], dtype=torch.int64, device=self.model.device) + 1  # (1, P)
        width = seq.shape[1]
        with torch.no_grad():
            t = times_tensor(self.model, state.times[:-1], width)
            a = actions_tensor(self.model, state.actions[:-1] if state.actions is not None else None, width)
            nxt = torch.tensor([state.times[-1]], dtype=torch.int64, device=self.model.device)
            state.cache = net.prefill(seq, t, actions=a, at=nxt)
        return state.cache


def stream_scores(
    model: Model,
    items: Sequence[int],
    start: int,
    times: Sequence[int] | None = None,
    actions: Sequence[int] | None = None,
) -> np.ndarray:
    """Scores after each event from `start` on, through the cache: (len(items) - start, n_items)."""
    scorer = IncrementalScorer(model)
    state, first = scorer.start(
        items[:start],
        times[:start] if times is not None else None,
        actions[:start] if actions is not None else None,
    )
    out = [first]
    for i in range(start, len(items)):
        t, a = None if times is None else times[i], None if actions is None else actions[i]
        out.append(scorer.append(state, items[i], t, a))
    return torch.stack(out[1:]).numpy() if len(out) > 1 else np.zeros((0, len(first)), dtype=np.float32)
