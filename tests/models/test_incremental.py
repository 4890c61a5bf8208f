"""The KV cache is exact: after several appends, cached scores equal a full forward pass, for
SASRec (absolute positions aligned to the latest item) and HSTU (relative position and time
bias, optionally positions counted from the first item), while the history grows inside
`max_len` and after it starts to slide."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from playnext.data.interactions import Histories
from playnext.models.hstu import HSTU, HSTUConfig
from playnext.models.sasrec import SASRec, SASRecConfig
from playnext.serve.full_pass import full_scores
from playnext.serve.incremental import IncrementalScorer

N_ITEMS, MAX_LEN = 40, 8


def untrained(name: str, **over: Any) -> SASRec | HSTU:
    """A model with random weights (what is cached does not depend on training)."""
    torch.manual_seed(1)
    common = {"dim": 16, "n_heads": 2, "n_blocks": 2, "max_len": MAX_LEN, "dropout": 0.0, **over}
    model: SASRec | HSTU = (
        SASRec(SASRecConfig.from_dict(common)) if name == "sasrec" else HSTU(HSTUConfig.from_dict(common))
    )
    model.n_items_, model.n_users_ = N_ITEMS, 1
    model.net_ = model._build().eval()
    return model


def with_times(model: HSTU) -> HSTU:
    """Pretend the model was trained with timestamps, with a time bias that matters."""
    model.user_items_ = Histories.from_lists([[0]])
    model.user_times_ = np.zeros(1, dtype=np.int64)
    with torch.no_grad():
        for block in model.net_.layers:
            block.rab.time_w.normal_(0.0, 1.0)
    return model


@pytest.mark.parametrize("case", ["sasrec", "hstu", "hstu-time", "hstu-abs"])
@pytest.mark.parametrize("defer", [False, True])
def test_cached_equals_uncached_after_appends(case: str, defer: bool) -> None:
    model = untrained(case.split("-")[0], **({"abs_pos": True} if case == "hstu-abs" else {}))
    if case == "hstu-time":
        model = with_times(model)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    events = rng.integers(0, N_ITEMS, size=14).tolist()  # grows past MAX_LEN: the window slides
    times = np.cumsum(rng.integers(1, 5000, size=14)).tolist() if case == "hstu-time" else None
    scorer = IncrementalScorer(model, defer_refresh=defer)
    state, first = scorer.start(events[:3], times[:3] if times else None)
    assert torch.allclose(first, full_scores(model, events[:3], times[:3] if times else None), atol=1e-5)
    for i in range(3, len(events)):
        cached = scorer.append(state, events[i], times[i] if times else None)
        uncached = full_scores(model, events[: i + 1], times[: i + 1] if times else None)
        assert torch.allclose(cached, uncached, atol=1e-4), (case, i, (cached - uncached).abs().max())
        if defer and not state.fresh:
            scorer.refresh(state)  # what a server does off the request path


def test_full_scores_match_model_score() -> None:
    for name in ("sasrec", "hstu"):
        model = untrained(name)
        items = [3, 1, 4, 1, 5]
        expected = model.score(np.array([-1]), Histories.from_lists([items]))[0]
        assert torch.allclose(full_scores(model, items), expected, atol=1e-5)


@pytest.mark.parametrize("abs_pos", [False, True])
def test_hstu_cache_grows_without_refresh_inside_max_len(abs_pos: bool) -> None:
    model = untrained("hstu", abs_pos=abs_pos)
    scorer = IncrementalScorer(model)
    state, _ = scorer.start([])
    for item in range(MAX_LEN - 1):
        scorer.append(state, item)
        assert state.fresh and state.prefix_len == item + 1  # appended in place, never recomputed
    scorer.append(state, 0)  # the next request's window drops the oldest item
    assert state.prefix_len == MAX_LEN - 1


def test_rejects_unknown_items_and_mixed_times() -> None:
    scorer = IncrementalScorer(untrained("sasrec"))
    state, _ = scorer.start([1, 2])
    with pytest.raises(ValueError, match="internal ids"):
        scorer.append(state, N_ITEMS)
    with pytest.raises(ValueError, match="time"):
        scorer.append(state, 1, time=5)


@pytest.mark.parametrize("name", ["sasrec", "hstu"])
def test_cache_rebuilt_when_the_network_is_replaced_and_history_bounded(name: str) -> None:
    model = untrained(name)
    scorer = IncrementalScorer(model)
    state, _ = scorer.start([1, 2, 3])
    torch.manual_seed(7)
    model.net_ = model._build().eval()  # a refit or a reload: the cached keys belong to the old net
    cached = scorer.append(state, 4)
    assert torch.allclose(cached, full_scores(model, [1, 2, 3, 4]), atol=1e-5)
    for item in range(3 * MAX_LEN):
        scorer.append(state, item % N_ITEMS)
    assert len(state.items) == MAX_LEN  # all that a full pass reads


@pytest.mark.parametrize("name", ["sasrec", "hstu"])
def test_typed_events_through_the_cache_equal_the_full_score_path(name: str) -> None:
    """A model trained with actions: each appended event's type and value reach the cached step,
    and the scores equal `Recommender.score` on the typed history (not the untyped one)."""
    from playnext.errors import ConfigError
    from playnext.serve.full_pass import action_ids
    from playnext.serve.incremental import stream_scores

    torch.manual_seed(1)
    common = {"dim": 16, "n_heads": 2, "n_blocks": 2, "max_len": MAX_LEN, "dropout": 0.0, "actions": True}
    model: SASRec | HSTU = (
        SASRec(SASRecConfig.from_dict(common)) if name == "sasrec" else HSTU(HSTUConfig.from_dict(common))
    )
    model.n_items_, model.n_users_ = N_ITEMS, 1
    model.event_types_ = ("like", "skip", "watch")
    model.net_ = model._build().eval()
    rng = np.random.default_rng(0)
    items = rng.integers(0, N_ITEMS, size=12).tolist()  # past MAX_LEN: the window slides
    names = [["like", "skip", "watch", None][int(i)] for i in rng.integers(0, 4, size=12)]
    values = [None if n in (None, "like") else float(v) for n, v in zip(names, rng.random(12), strict=True)]
    acts = action_ids(model, names, values)
    cached = stream_scores(model, items, 3, actions=acts)  # (9, I)
    codes = np.array([-1 if n is None else model.event_types_.index(n) for n in names], dtype=np.int32)
    vals = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
    for i in range(3, len(items)):
        hist = Histories.from_lists([items[: i + 1]]).with_events(
            codes[: i + 1], vals[: i + 1], model.event_types_
        )
        want = model.score(np.array([-1]), hist)[0].numpy()
        np.testing.assert_allclose(cached[i - 3], want, atol=1e-4)
    untyped = stream_scores(model, items, 3)
    assert not np.allclose(cached, untyped, atol=1e-3)  # the events were read
    with pytest.raises(ConfigError, match=r"unknown event type 'purchase'.*like, skip, watch"):
        action_ids(model, ["purchase"], [None])


DAY = 86_400


@pytest.mark.parametrize("abs_pos", [False, True])
def test_request_time_cache_equals_model_score_at_that_time(abs_pos: bool) -> None:
    """A request-time HSTU (issue #32): the cache stops one event short, and every answer —
    after an append or at a later time with no new event — equals `HSTU.score` of the same
    history asked at that time, through the window's slide; the time moves the scores."""
    model = with_times(untrained("hstu", time_reference="request", abs_pos=abs_pos))  # type: ignore[arg-type]
    assert model.uses_request_time
    rng = np.random.default_rng(2)
    events = rng.integers(0, N_ITEMS, size=15).tolist()  # past MAX_LEN: the window slides
    times = np.cumsum(rng.integers(1, 3 * DAY, size=15)).tolist()

    def scored(n: int, at: int) -> torch.Tensor:
        hist = Histories.from_lists([events[:n]]).with_times(np.array(times[:n])).with_at(np.array([at]))
        return model.score(np.array([-1]), hist)[0]

    scorer = IncrementalScorer(model)
    state, first = scorer.start(events[:1], times[:1], at=times[0] + 60)
    assert torch.allclose(first, scored(1, times[0] + 60), atol=1e-5)
    for i in range(1, len(events)):
        at = times[i] + int(rng.integers(0, 5 * DAY))
        got = scorer.append(state, events[i], times[i], at=at)
        assert torch.allclose(got, scored(i + 1, at), atol=1e-4), (i, (got - scored(i + 1, at)).abs().max())
        later = scorer.ask(state, at + 30 * DAY)
        assert torch.allclose(later, scored(i + 1, at + 30 * DAY), atol=1e-4), i
        assert torch.allclose(got, full_scores(model, events[: i + 1], times[: i + 1], at=at), atol=1e-4)
    assert not torch.allclose(
        scorer.ask(state, times[-1]), scorer.ask(state, times[-1] + 30 * DAY), atol=1e-3
    )
    # before the last event is read as at it, as `HSTU.score` reads it
    assert torch.equal(scorer.ask(state, times[-1] - DAY), scorer.ask(state, times[-1]))
