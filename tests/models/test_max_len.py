"""`max_len = 0` (SASRec's default, and the `sasrec` recipe leaves it open): the window is fitted
to the training histories, and the fitted model keeps the number it chose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from playnext import recipes
from playnext.artifact import Artifact
from playnext.data.interactions import Interactions
from playnext.errors import ConfigError
from playnext.models.registry import create
from playnext.models.sasrec import SASRec, SASRecConfig
from playnext.models.sequence_config import MAX_LEN_CAP, MAX_LEN_FLOOR, max_len_from_lengths

TINY: dict[str, Any] = {"dim": 8, "n_blocks": 1, "epochs": 1, "verbose": False}


def _log(lengths: list[int], n_items: int = 30) -> Interactions:
    """One user per entry of `lengths`, with that many events."""
    rows = [
        {"user": f"u{u}", "item": f"i{(u + j) % n_items}", "timestamp": j}
        for u, n in enumerate(lengths)
        for j in range(n)
    ]
    return Interactions.from_frame(pl.DataFrame(rows))


def test_the_window_is_a_high_quantile_of_the_lengths_capped_and_floored() -> None:
    lengths = np.array([2] * 90 + [30] * 6 + [1000] * 4)
    assert max_len_from_lengths(lengths) == 30  # the 95th percentile: the longest 5 % are cropped
    assert max_len_from_lengths(np.array([3, 4, 5])) == MAX_LEN_FLOOR
    assert max_len_from_lengths(np.array([500] * 10)) == MAX_LEN_CAP
    assert max_len_from_lengths(np.array([], dtype=np.int64)) == MAX_LEN_FLOOR


def test_sasrec_left_open_fits_the_window_to_the_data_and_saves_it(tmp_path: Path) -> None:
    data = _log([3] * 60 + [24] * 20 + [60] * 2)
    assert SASRecConfig().max_len == 0
    model = SASRec(SASRecConfig.from_dict(TINY)).fit(data)
    want = max_len_from_lengths(data.sequences().lengths)
    assert model.config.max_len == want == 24
    assert model.net_.pos_emb.weight.shape[0] == want  # the net is built at the fitted width
    saved = Artifact.from_data(model, data, {}).save(tmp_path / "m")
    loaded = Artifact.load(saved).model
    assert isinstance(loaded, SASRec) and loaded.config.max_len == want
    users = np.arange(5)
    history = data.sequences().take(users)
    np.testing.assert_allclose(loaded.score(users, history), model.score(users, history), atol=1e-5)


def test_a_given_max_len_is_kept_and_a_negative_one_refused() -> None:
    data = _log([3] * 40)
    assert create("sasrec", **TINY, max_len=50).fit(data).config.max_len == 50
    with pytest.raises(ConfigError, match="max_len"):
        create("sasrec", **TINY, max_len=-1)


def test_the_default_recipe_leaves_max_len_to_the_data_and_buckets_its_batches() -> None:
    params = recipes.default_for("sasrec").params
    assert params.get("max_len", 0) == 0
    assert params["length_buckets"] > 0
