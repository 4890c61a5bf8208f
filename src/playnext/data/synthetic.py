"""The embedded synthetic entertainment world: the default dataset, so everything runs offline.

A catalog of movies, album tracks and games grouped into *series* (a film and its sequels, an
album, a game franchise). Users have Dirichlet genre tastes, pick series by Zipf popularity
within a favourite genre, and consume a series from its first item onwards, in order. So each
model family has something planted to find: popularity (a power law), co-occurrence (tastes,
series siblings) and order (item k is usually followed by item k+1), which only sequence
models can exploit.

Item ids spell the structure out — ``"movie-17-2"`` is instalment 2 of movie series 17 — so
`next_in_series` recovers the planted answer from any `Interactions` built here.

Everything is vectorised numpy: the only Python loops run over kinds and over a handful of
sampling rounds, never over users, items or interactions (10⁷ interactions in seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from playnext.data.interactions import Columns, Interactions

KINDS: tuple[str, ...] = ("movie", "music", "game")

_T0 = 1_325_376_000  # 2012-01-01: users join uniformly over the following nine years
_T_SPAN = 9 * 365 * 86_400
_DAY = 86_400
_ROMAN = ("", " II", " III", " IV", " V", " VI", " VII", " VIII", " IX", " X")


@dataclass(frozen=True)
class _Kind:
    """How one kind of item is catalogued and consumed."""

    name: str
    genres: tuple[str, ...]
    lengths: tuple[int, ...]  # possible series lengths ...
    length_p: tuple[float, ...]  # ... and their probabilities
    keep_going: float  # P(consume item k+1 | just consumed item k of the series)
    years: tuple[int, int]
    year_step: tuple[int, int]  # years between instalments (inclusive range)
    gap_s: tuple[float, float]  # seconds between items of one series: minimum + exponential mean


# hand-wrapped lists read better than one word a line
# fmt: off
_SPECS: dict[str, _Kind] = {
    "movie": _Kind(
        "movie",
        ("sci-fi", "comedy", "horror", "drama", "action", "romance", "thriller", "animation",
         "documentary", "fantasy"),
        (1, 2, 3, 4, 5),
        (0.50, 0.15, 0.20, 0.10, 0.05),
        0.75,
        (1960, 2024),
        (2, 4),
        (5_400.0, 2.0 * _DAY),  # a film's length, then a day or two to the sequel
    ),
    "music": _Kind(
        "music",
        ("rock", "jazz", "pop", "hip-hop", "electronic", "classical", "folk", "metal", "r&b", "ambient"),
        tuple(range(6, 15)),
        (1 / 9,) * 9,
        0.85,
        (1965, 2024),
        (0, 0),
        (150.0, 90.0),  # one track after another
    ),
    "game": _Kind(
        "game",
        ("rpg", "shooter", "strategy", "puzzle", "platformer", "racing", "sports", "adventure",
         "simulation", "roguelike"),
        (1, 2, 3, 4, 5, 6),
        (0.45, 0.20, 0.15, 0.10, 0.06, 0.04),
        0.70,
        (1985, 2024),
        (1, 3),
        (36_000.0, 14.0 * _DAY),  # finish one instalment, start the next weeks later
    ),
}

# word lists for plausible titles
_ADJ = np.array(["Last", "Silent", "Crimson", "Hidden", "Broken", "Eternal", "Midnight", "Golden", "Lost",
                 "Savage", "Frozen", "Burning", "Final", "Secret", "Distant", "Iron", "Wild", "Hollow"])
_NOUN = np.array(["Voyage", "Kingdom", "Signal", "Harvest", "Empire", "Garden", "Frontier", "Promise",
                  "Witness", "Horizon", "Legacy", "Storm", "Mirror", "Circus", "Tide", "Reckoning",
                  "Summer", "Heist", "Lighthouse", "Protocol"])
_NAME = np.array(["Orion", "Avalon", "Marlowe", "Kepler", "Juniper", "Vega", "Solace", "Brooklyn", "Eden",
                  "Calypso", "Nightfall", "the North", "Saturn", "Rosewood", "the Deep", "Tomorrow"])
_ALBUM_A = np.array(["Neon", "Velvet", "Paper", "Golden", "Electric", "Midnight", "Glass", "Satellite",
                     "Honey", "Static", "Wild", "Silver", "Lonely", "Northern", "Slow", "Cosmic"])
_ALBUM_N = np.array(["Hearts", "Echoes", "Dreams", "Lights", "Rivers", "Machines", "Ghosts", "Waves",
                     "Skies", "Letters", "Highways", "Gardens", "Signals", "Animals", "Tides", "Cities"])
_GAME_P = np.array(["Star", "Iron", "Shadow", "Sky", "Void", "Rune", "Dragon", "Neon", "Storm", "Frost",
                    "Ember", "Chrono", "Hex", "Titan"])
_GAME_S = np.array(["forge", "fall", "born", "reach", "gate", "bound", "hold", "spire", "wake", "crest",
                    "lord", "craft"])
_GAME_T = np.array(["Tactics", "Legends", "Racers", "Odyssey", "Arena", "Chronicles", "Siege", "Quest",
                    "Drift", "Frontier", "Rising", "Online", "Saga", "Knights"])
# fmt: on


def _pick(words: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return words[rng.integers(len(words), size=n)]


def _base_titles(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Series titles from word lists: 'The Last Voyage of Orion', 'Neon Hearts', 'Starforge Tactics'."""
    if kind == "music":
        return np.char.add(np.char.add(_pick(_ALBUM_A, n, rng), " "), _pick(_ALBUM_N, n, rng))
    if kind == "game":
        return np.char.add(
            np.char.add(np.char.add(_pick(_GAME_P, n, rng), _pick(_GAME_S, n, rng)), " "),
            _pick(_GAME_T, n, rng),
        )
    adj_noun = np.char.add(np.char.add(_pick(_ADJ, n, rng), " "), _pick(_NOUN, n, rng))
    the = np.char.add("The ", adj_noun)
    of_name = np.char.add(np.char.add(the, " of "), _pick(_NAME, n, rng))
    name_colon = np.char.add(np.char.add(_pick(_NAME, n, rng), ": "), adj_noun)
    pattern = rng.integers(3, size=n)
    return np.where(pattern == 0, the, np.where(pattern == 1, of_name, name_colon))


def _suffixes(kind: str, max_len: int) -> list[str]:
    """What instalment k adds to its series title: a sequel numeral, a track number."""
    if kind == "music":
        return [f" (track {k + 1})" for k in range(max_len)]
    if kind == "game":
        return [""] + [f" {k + 1}" for k in range(1, max_len)]
    return [_ROMAN[k] if k < len(_ROMAN) else f" {k + 1}" for k in range(max_len)]


@dataclass
class _Catalog:
    """Series-level arrays (items of a series are contiguous) plus the item metadata."""

    kind: np.ndarray  # (S,) index into the world's kinds
    genre: np.ndarray  # (S,) global genre index of the primary genre
    start: np.ndarray  # (S,) first item of the series
    length: np.ndarray  # (S,)
    meta: pl.DataFrame  # (I,) item_id, title, genres, year, kind


def _catalog(n_items: int, kinds: tuple[str, ...], rng: np.random.Generator) -> _Catalog:
    specs = [_SPECS[k] for k in kinds]
    per_kind = np.full(len(specs), n_items // len(specs))
    per_kind[: n_items % len(specs)] += 1
    genre_offset = np.concatenate([[0], np.cumsum([len(s.genres) for s in specs])])
    all_genres = np.array([g for s in specs for g in s.genres])
    parts: list[dict[str, np.ndarray]] = []
    metas: list[pl.DataFrame] = []
    for ki, (spec, m) in enumerate(zip(specs, per_kind, strict=True)):
        # series lengths until the kind's share of the catalog is full; the last one is cut short
        draws = rng.choice(np.array(spec.lengths), size=m, p=np.array(spec.length_p))
        cum = np.cumsum(draws)
        n_s = int(np.searchsorted(cum, m)) + 1
        length = draws[:n_s].copy()
        length[-1] -= cum[n_s - 1] - m
        # some genres are bigger than others
        g_local = rng.choice(len(spec.genres), size=n_s, p=rng.dirichlet(np.full(len(spec.genres), 4.0)))
        second = (g_local + 1 + rng.integers(len(spec.genres) - 1, size=n_s)) % len(spec.genres)
        has_second = rng.random(n_s) < 0.4
        step = rng.integers(spec.year_step[0], spec.year_step[1] + 1, size=n_s)
        lo, hi = spec.years
        first_year = hi - np.floor(rng.beta(1.0, 2.5, size=n_s) * (hi - lo)).astype(np.int64)
        first_year = np.maximum(lo, np.minimum(first_year, hi - (length - 1) * step))
        titles = _base_titles(spec.name, n_s, rng)
        # per item: series (kind-local), position within the series
        series = np.repeat(np.arange(n_s), length)
        pos = np.arange(m) - np.repeat(np.cumsum(length) - length, length)
        genres = pl.DataFrame(
            {
                "a": all_genres[genre_offset[ki] + g_local[series]],
                "b": all_genres[genre_offset[ki] + second[series]],
                "has_b": has_second[series],
            }
        ).select(pl.concat_list("a", pl.when("has_b").then("b")).list.drop_nulls().alias(Columns.GENRES))
        metas.append(
            pl.DataFrame(
                {
                    Columns.ITEM_ID: pl.Series(
                        np.char.add(
                            np.char.add(f"{spec.name}-", series.astype(str)),
                            np.char.add("-", (pos + 1).astype(str)),
                        )
                    ),
                    Columns.TITLE: pl.Series(titles[series])
                    + pl.Series(_suffixes(spec.name, int(length.max()))).gather(pos),
                    Columns.GENRES: genres.get_column(Columns.GENRES),
                    Columns.YEAR: pl.Series(first_year[series] + pos * step[series], dtype=pl.Int32),
                    Columns.KIND: pl.repeat(spec.name, int(m), eager=True),
                }
            )
        )
        parts.append({"kind": np.full(n_s, ki), "genre": genre_offset[ki] + g_local, "length": length})
    length = np.concatenate([p["length"] for p in parts])
    return _Catalog(
        kind=np.concatenate([p["kind"] for p in parts]),
        genre=np.concatenate([p["genre"] for p in parts]),
        start=np.cumsum(length) - length,
        length=length,
        meta=pl.concat(metas),
    )


def _flat_cdf(weights: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Per-group CDFs laid end to end, group g's running from g to g + 1, so one `searchsorted`
    of `g + U(0, 1)` samples within every group at once. `group`: sorted, every 0..G-1 present."""
    run = np.cumsum(weights)
    starts = np.flatnonzero(np.diff(group, prepend=-1))
    ends = np.append(starts[1:], len(group)) - 1
    sizes = ends - starts + 1
    before = run[starts] - weights[starts]
    cdf = (run - np.repeat(before, sizes)) / np.repeat(run[ends] - before, sizes) + group
    cdf[ends] = group[ends] + 1.0  # exact group boundaries despite rounding
    return np.minimum(cdf, group + 1.0)


def generate_world(
    n_users: int = 2000,
    n_items: int = 1500,
    *,
    seed: int = 0,
    mean_length: float = 40.0,
    kinds: tuple[str, ...] = KINDS,
    allow_repeats: bool = False,
    zipf_exponent: float = 1.0,
    taste_alpha: float = 0.15,
    explore: float = 0.1,
    tie_rate: float = 0.02,
    typed_events: bool = False,
    skip_rate: float = 0.3,
    relisten_rate: float = 0.0,
) -> Interactions:
    """A deterministic synthetic log of users watching, listening to and playing a generated catalog.

    `n_users * mean_length` is the approximate number of interactions (10³…10⁷ in seconds).
    `zipf_exponent` shapes series popularity; `taste_alpha` is the Dirichlet concentration of
    genre tastes (small = few favourite genres); `explore` is the share of picks made by global
    popularity instead of taste; `tie_rate` the share of events logged in the same second as the
    previous one. Items are consumed once unless `allow_repeats`, which lets albums be replayed.
    `relisten_rate` plants re-listens (`_relistens`): after that share of music events the user
    plays again a track of their own recent music history.

    `typed_events` adds events with a planted meaning (`_typed_events`); the untyped log, the
    default, is unchanged by it (its draws come from a separate random stream).
    """
    if not kinds or len(set(kinds)) != len(kinds) or not set(kinds) <= set(_SPECS):
        raise ValueError(f"kinds must be distinct values from {KINDS}, got {kinds}")
    if n_users < 1 or n_items < len(kinds) or mean_length < 1:
        raise ValueError("need n_users >= 1, n_items >= len(kinds) and mean_length >= 1")
    if not (0 <= skip_rate <= 1):
        raise ValueError(f"need 0 <= skip_rate <= 1, got {skip_rate}")
    if not (0 <= relisten_rate <= 1):
        raise ValueError(f"need 0 <= relisten_rate <= 1, got {relisten_rate}")
    if relisten_rate and typed_events:
        raise ValueError("relisten_rate and typed_events do not combine (re-listens carry no event type)")
    if not (0 <= explore <= 1 and 0 <= tie_rate < 1 and taste_alpha > 0 and zipf_exponent >= 0):
        raise ValueError("need 0 <= explore <= 1, 0 <= tie_rate < 1, taste_alpha > 0, zipf_exponent >= 0")
    rng = np.random.default_rng(seed)
    cat = _catalog(n_items, kinds, rng)
    n_series = len(cat.length)

    # -- popularity: Zipf over randomly ranked series; sampling tables per genre and global
    rank = rng.permutation(n_series)
    weight = (1.0 + rank) ** -zipf_exponent
    present, genre = np.unique(cat.genre, return_inverse=True)  # only genres that have series
    by_genre = np.argsort(genre, kind="stable")
    genre_cdf = _flat_cdf(weight[by_genre], genre[by_genre])
    global_cdf = np.cumsum(weight) / weight.sum()

    # -- users: genre tastes and target lengths (log-normal: a few heavy users)
    n_genres = len(present)
    taste = rng.dirichlet(np.full(n_genres, taste_alpha), size=n_users)
    taste_cdf = np.cumsum(taste, axis=1)
    taste_cdf[:, -1] = 1.0
    taste_cdf = (taste_cdf + np.arange(n_users)[:, None]).ravel()  # row u runs from u to u + 1
    sigma = 0.7
    target = np.round(rng.lognormal(np.log(mean_length) - sigma**2 / 2, sigma, size=n_users)).astype(np.int64)
    target = np.clip(target, 1, max(1, n_items // 4))
    keep_going = np.array([_SPECS[k].keep_going for k in kinds])[cat.kind]
    repeatable = np.array([allow_repeats and k == "music" for k in kinds])[cat.kind]

    def draw(who: np.ndarray, rng: np.random.Generator = rng) -> tuple[np.ndarray, np.ndarray]:
        """One series pick and how many of its items get consumed, for each entry of `who`."""
        g = np.searchsorted(taste_cdf, who + rng.random(len(who)), side="right") - who * n_genres
        s = by_genre[np.searchsorted(genre_cdf, g + rng.random(len(who)), side="right")]
        wander = rng.random(len(who)) < explore
        s[wander] = np.searchsorted(global_cdf, rng.random(int(wander.sum())), side="right")
        s = np.minimum(s, n_series - 1)  # guards the rounding edge of the last cdf entry
        return s, np.minimum(cat.length[s], rng.geometric(1.0 - keep_going[s]))

    # -- visits (user, series, items consumed): draw, drop series already visited, top up the
    # users still short. Round 1 does almost all the work; later rounds only touch short users.
    per_pick = (1.0 - keep_going**cat.length) / (1.0 - keep_going)  # E[items consumed | pick s]
    mean_pick = float(per_pick @ weight) / float(weight.sum())
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    got = np.zeros(n_users, dtype=np.int64)
    seen = np.zeros(0, dtype=np.int64)  # user * n_series + series, for users still short
    for _ in range(10):
        need = np.flatnonzero(got < target)
        if not len(need):
            break
        seen = seen[np.isin(seen // n_series, need, kind="table")] if len(seen) else seen
        deficit = target[need] - got[need]
        who = np.repeat(need, (deficit / mean_pick * 1.3).astype(np.int64) + 1)
        s, n = draw(who)
        keys = who * n_series + s
        # first occurrence of each (user, series): earlier rounds first, then draw order
        _, first = np.unique(np.concatenate([seen, keys]), return_index=True)
        fresh = np.zeros(len(who), dtype=bool)
        fresh[first[first >= len(seen)] - len(seen)] = True
        fresh |= repeatable[s]
        parts.append((who[fresh], s[fresh], n[fresh]))
        seen = np.concatenate([seen, keys[fresh]])
        got += np.bincount(who[fresh], weights=n[fresh], minlength=n_users).astype(np.int64)
    v_user, v_series, v_len = (np.concatenate([p[i] for p in parts]) for i in range(3))
    order = np.argsort(v_user, kind="stable")  # merges the rounds' sorted runs, keeps draw order
    v_user, v_series, v_len = v_user[order], v_series[order], v_len[order]
    # cut every user's visits at the target length (the last visit may end early)
    user_start = np.concatenate([[0], np.cumsum(got)])
    offset = np.cumsum(v_len) - v_len - user_start[v_user]
    v_len = np.minimum(v_len, target[v_user] - offset)
    keep = v_len > 0
    v_user, v_series, v_len = v_user[keep], v_series[keep], v_len[keep]

    # -- expand visits into events: items k, k+1, … of the series, back to back
    total = int(v_len.sum())
    v_first = np.cumsum(v_len) - v_len  # event index of each visit's first item
    item = np.arange(total) + np.repeat(cat.start[v_series] - v_first, v_len)
    user = np.repeat(v_user.astype(np.int32), v_len)

    # -- timestamps: series binges are quick, new picks days apart, some same-second ties
    n_kinds = len(kinds)
    gap_min = np.array([_SPECS[k].gap_s[0] for k in kinds] + [0.0])
    gap_mean = np.array([_SPECS[k].gap_s[1] for k in kinds] + [3.0 * _DAY])
    code = np.repeat(cat.kind[v_series].astype(np.int8), v_len)  # continuation of a kind's series
    code[v_first] = n_kinds  # ... or a new pick
    gap = rng.standard_exponential(total)
    gap *= gap_mean[code]
    gap += gap_min[code]
    del code
    clock = gap.astype(np.int64)
    del gap
    clock[rng.random(total) < tie_rate] = 0
    joined = _T0 + rng.integers(_T_SPAN, size=n_users)
    n_events = np.bincount(user, minlength=n_users)
    active = np.flatnonzero(n_events)
    first_event = (np.cumsum(n_events) - n_events)[active]
    clock[first_event] = 0
    np.cumsum(clock, out=clock)
    clock += np.repeat(joined[active] - clock[first_event], n_events[active])  # per-user timestamps

    if relisten_rate:
        rrng = np.random.default_rng([seed, 2])  # its own stream: a world without re-listens is unchanged
        is_music = np.repeat(np.asarray(kinds)[cat.kind] == "music", cat.length)[item]  # (total,)
        user, item, clock = _relistens(rrng, user, item, clock, is_music, relisten_rate)
        total = len(item)

    user_ids = pl.select(pl.format("u{}", pl.int_range(0, n_users))).to_series()
    columns: dict[str, pl.Series] = {}
    if typed_events:
        trng = np.random.default_rng([seed, 1])  # the untyped world's stream stays untouched
        visit = np.repeat(np.arange(len(v_len)), v_len)  # (total,) each event's visit
        user, item, clock, events, values = _typed_events(
            trng, user, item, clock, visit, v_first + v_len - 1, v_len < cat.length[v_series],
            v_series, cat.start, lambda who: draw(who, trng)[0], skip_rate,
        )  # fmt: skip
        total = len(item)
        columns = {Columns.EVENT: pl.Series(events), Columns.WEIGHT: pl.Series(values, dtype=pl.Float32)}
    raw = pl.DataFrame(
        {
            Columns.USER: user_ids.gather(user),
            Columns.ITEM: cat.meta.get_column(Columns.ITEM_ID).gather(item),
            Columns.TIMESTAMP: pl.Series(clock, dtype=pl.Int64),
            Columns.POSITION: pl.int_range(0, total, eager=True, dtype=pl.Int64),
            **columns,
        }
    )
    return Interactions.from_frame(raw, meta=cat.meta, name="synthetic")


RELISTEN_DECAY = 0.7
"""A re-listen goes back d music plays with probability (1 - γ) γ^d, γ this."""


def _relistens(
    rng: np.random.Generator,
    user: np.ndarray,
    item: np.ndarray,
    clock: np.ndarray,
    is_music: np.ndarray,
    rate: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The events with re-listens inserted: (user, item, clock).

    What is planted: after a music event, with probability `rate`, the user plays again the
    track d music plays back in their own history (d = 0: the track just played), d geometric
    with P(d) = (1 - γ) γ^d, γ = `RELISTEN_DECAY` (back past the first track: the first
    track), then goes on where they were. A track's chance to return is thus the sum of γ^d
    over its plays — the recency × frequency score (`models/recency.py`) is the oracle for
    which track comes back, and a replayed album (`allow_repeats`) weighs twice. A re-listen
    may follow a user's last event, so test targets are re-listens about `rate` of the time.
    Re-listens are logged in the second of the play they follow (file order breaks the tie).
    """
    n = len(item)
    seen_music = np.cumsum(is_music)  # (n,) music plays up to and including each event
    first = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])  # each user's first event
    before_user = np.repeat(seen_music[first] - is_music[first], np.diff(np.r_[first, n]))
    at = np.flatnonzero(is_music & (rng.random(n) < rate))  # events a re-listen follows
    back = rng.geometric(1.0 - RELISTEN_DECAY, len(at)) - 1  # d >= 0
    rank = seen_music[at] - 1 - before_user[at]  # the play's index among the user's music plays
    music = np.flatnonzero(is_music)
    chosen = item[music[seen_music[at] - 1 - np.minimum(back, rank)]]
    ins = np.zeros(n, dtype=bool)
    ins[at] = True
    new_pos = np.arange(n) + np.cumsum(ins) - ins  # where each event moves to
    out = n + len(at)
    o_user, o_item, o_clock = np.empty(out, user.dtype), np.empty(out, item.dtype), np.empty(out, clock.dtype)
    o_user[new_pos], o_item[new_pos], o_clock[new_pos] = user, item, clock
    o_user[new_pos[at] + 1], o_item[new_pos[at] + 1], o_clock[new_pos[at] + 1] = user[at], chosen, clock[at]
    return o_user, o_item, o_clock


TYPED_EVENTS = ("like", "skip", "watch")
"""The event types of the typed world."""


def _typed_events(
    rng: np.random.Generator,
    user: np.ndarray,
    item: np.ndarray,
    clock: np.ndarray,
    visit: np.ndarray,
    visit_last: np.ndarray,
    abandoned: np.ndarray,
    v_series: np.ndarray,
    series_start: np.ndarray,
    draw: Callable[[np.ndarray], np.ndarray],
    skip_rate: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The untyped events, typed, with skips inserted: (user, item, clock, event, value).

    What is planted, so that only a model reading the events can know it:
    * a *skip* (value = fraction played, < 0.15): after any event but a user's last, with
      probability `skip_rate`, the user starts a series drawn from their own taste (so it looks
      like a new pick) and skips it: a dislike of that series, whose next item never follows —
      the user returns to what they were doing. An untyped model cannot tell this skipped first
      item from the first item of a new series they will go on with;
    * a *partial* watch (value 0.1–0.45) ends a visit cut short: the series does not go on;
    * otherwise a full *watch* (0.8–1.0), or a *like* (value 1, 15 %); both continue the series.
    """
    n = len(item)
    value = rng.uniform(0.8, 1.0, n)
    event = np.full(n, 2, dtype=np.int64)  # index into TYPED_EVENTS: watch
    liked = rng.random(n) < 0.15
    event[liked], value[liked] = 0, 1.0
    partial = visit_last[abandoned]
    event[partial], value[partial] = 2, rng.uniform(0.1, 0.45, len(partial))
    last_of_user = np.append(user[1:] != user[:-1], True)
    ins = (rng.random(n) < skip_rate) & ~last_of_user
    at = np.flatnonzero(ins)
    s = draw(user[at])
    # never a series the user is in or goes on to next: the skip must not be confusable with them
    ok = (s != v_series[visit[at]]) & (s != v_series[visit[np.minimum(at + 1, n - 1)]])
    at, s = at[ok], s[ok]
    ins = np.zeros(n, dtype=bool)
    ins[at] = True
    new_pos = np.arange(n) + np.cumsum(ins) - ins  # where each event moves to
    out = n + len(at)
    skip_pos = new_pos[at] + 1
    o_user, o_item, o_clock = np.empty(out, user.dtype), np.empty(out, np.int64), np.empty(out, clock.dtype)
    o_event, o_value = np.empty(out, np.int64), np.empty(out, np.float64)
    o_user[new_pos], o_item[new_pos], o_clock[new_pos] = user, item, clock
    o_event[new_pos], o_value[new_pos] = event, value
    # a skip happens in the same second as the event it follows (the file order breaks the tie)
    o_user[skip_pos], o_item[skip_pos], o_clock[skip_pos] = user[at], series_start[s], clock[at]
    o_event[skip_pos], o_value[skip_pos] = 1, rng.uniform(0.0, 0.15, len(at))
    return o_user, o_item, o_clock, np.array(TYPED_EVENTS)[o_event], o_value


def next_in_series(data: Interactions) -> np.ndarray:
    """For every internal item, the internal id of the next item of its series, or -1.

    Read from the synthetic item ids (``kind-series-k``), so this is the planted sequential answer:
    a scorer that recommends it is the oracle a sequence model should approach.
    """
    parts = pl.col(Columns.ITEM_ID).str.extract_groups(r"^(.+-\d+)-(\d+)$")
    following = (parts.struct.field("2").cast(pl.Int64) + 1).cast(pl.String)
    succ = (
        pl.DataFrame({Columns.ITEM_ID: data.items.external})
        .select(pl.concat_str(parts.struct.field("1"), pl.lit("-"), following).fill_null(""))
        .to_series()
    )  # "" (not a synthetic id) maps to -1
    return data.items.to_internal(succ.to_list(), strict=False)
