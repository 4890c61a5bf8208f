"""The public Python API: frames in with the caller's names, DataFrames out with the caller's ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

import playnext as pn
from playnext.errors import ConfigError


def plays(n_users: int = 200, n_items: int = 60, length: int = 10, seed: int = 0) -> pd.DataFrame:
    """A planted answer: every user walks the catalog in order, so the next item is the one
    after the last (integer ids, on purpose: they must come back as integers)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(0, n_items))
        rows += [(10_000 + u, 500 + (start + t) % n_items, 1_600_000_000 + 60 * t) for t in range(length)]
    return pd.DataFrame(rows, columns=["uid", "iid", "ts"])


@pytest.fixture(scope="module")
def data() -> pn.Dataset:
    return pn.Dataset.from_frame(plays(), user="uid", item="iid", time="ts")


@pytest.fixture(scope="module")
def split(data: pn.Dataset) -> pn.DataSplit:
    return pn.leave_one_out(data)


@pytest.fixture(scope="module")
def sasrec(split: pn.DataSplit) -> pn.Model:
    return pn.SASRec(dim=32, max_len=12, epochs=40, lr=3e-3, verbose=False).fit(split)


def test_every_users_top_10_in_the_callers_ids_and_dtypes(data: pn.Dataset, sasrec: pn.Model) -> None:
    recs = sasrec.recommend(data, k=10)
    assert isinstance(recs, pd.DataFrame)
    assert list(recs.columns) == ["uid", "rank", "iid", "score"]
    assert recs["uid"].dtype == np.int64 and recs["iid"].dtype == np.int64
    assert recs.groupby("uid").size().eq(10).all() and recs["uid"].nunique() == data.n_users
    seen = set(map(tuple, plays()[["uid", "iid"]].to_numpy()))
    assert not any((u, i) in seen for u, i in recs[["uid", "iid"]].to_numpy())


def test_the_model_learns_the_planted_next_item(data: pn.Dataset, sasrec: pn.Model) -> None:
    df = plays()
    last = df.groupby("uid")["iid"].last()
    recs = sasrec.recommend(data, users=list(last.index[:50]), k=1)
    want = 500 + (last.to_numpy()[:50] - 500 + 1) % 60
    assert (recs["iid"].to_numpy() == want).mean() > 0.8


def test_polars_in_polars_out_with_string_ids() -> None:
    df = pl.from_pandas(plays(40, 20)).with_columns(
        pl.col("uid").cast(pl.String), pl.col("iid").cast(pl.String)
    )
    data = pn.Dataset.from_frame(df, user="uid", item="iid", time="ts")
    recs = pn.Popular().fit(data).recommend(data, users=["10003"], k=3)
    assert isinstance(recs, pl.DataFrame) and recs.schema["iid"] == pl.String
    assert recs.get_column("uid").to_list() == ["10003"] * 3


def test_a_missing_column_is_named_with_the_frames_columns() -> None:
    with pytest.raises(ConfigError, match=r"'song'.*uid, iid, ts"):
        pn.Dataset.from_frame(plays(5), user="uid", item="song", time="ts")


def test_mixed_id_types_name_the_column() -> None:
    df = pd.DataFrame({"u": [1, "a", 2], "i": [1, 2, 3]})
    with pytest.raises(ConfigError, match="'u' mixes"):
        pn.Dataset.from_frame(df, user="u", item="i", time=None)


def test_unknown_users_are_listed_or_skipped(data: pn.Dataset, sasrec: pn.Model) -> None:
    with pytest.raises(ConfigError, match=r"7 unknown user\(s\): 1, 2, 3, 4, 5 and 2 more"):
        sasrec.recommend(data, users=[1, 2, 3, 4, 5, 6, 7, 10_001])
    recs = sasrec.recommend(data, users=[1, 10_001], k=2, unknown="skip")
    assert recs["uid"].tolist() == [10_001, 10_001]


@pytest.mark.parametrize("k", [0, -3, 2.5, "10", True])
def test_a_bad_k_is_named(data: pn.Dataset, sasrec: pn.Model, k: object) -> None:
    with pytest.raises(ConfigError, match="k must be"):
        sasrec.recommend(data, users=[10_000], k=k)  # type: ignore[arg-type]


def test_a_mistyped_field_names_the_closest_one() -> None:
    with pytest.raises(ConfigError, match=r"unknown field\(s\) dimm \(did you mean dim\?\)"):
        pn.SASRec(dimm=64)


def test_a_config_object_works_too() -> None:
    from playnext.models.sasrec import SASRecConfig

    assert pn.SASRec(SASRecConfig(dim=16)).config.dim == 16  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="expected a SASRecConfig"):
        pn.SASRec(object())  # type: ignore[arg-type]


def test_from_recipe_applies_overrides() -> None:
    m = pn.from_recipe("hstu-large", epochs=1)
    assert isinstance(m, pn.HSTU) and m.config.epochs == 1  # type: ignore[attr-defined]


def test_anonymous_history_and_filters(data: pn.Dataset, sasrec: pn.Model) -> None:
    recs = sasrec.recommend(history=[510, 511, 512], k=3)
    assert list(recs.columns) == ["rank", "iid", "score"] and recs["iid"].iloc[0] == 513
    only = sasrec.recommend(data, users=[10_000], k=5, filters={"only_items": [520, 521]})
    assert set(only["iid"]) <= {520, 521}
    with pytest.raises(ConfigError, match="unknown key"):
        sasrec.recommend(data, users=[10_000], filters={"colour": "red"})


def test_evaluate_is_tidy_with_segments(sasrec: pn.Model, split: pn.DataSplit) -> None:
    table = pn.evaluate(sasrec, split, ks=(10,))
    assert list(table.columns) == ["segment", "group", "users", "metric", "value"]
    overall = table[(table.segment == "all") & (table.metric == "NDCG@10")]
    assert len(overall) == 1 and 0 < overall["value"].iloc[0] <= 1
    by_len = table[(table.segment == "history") & (table.metric == "NDCG@10")]
    assert by_len["users"].sum() == overall["users"].iloc[0]
    weighted = (by_len["value"] * by_len["users"]).sum() / by_len["users"].sum()
    assert weighted == pytest.approx(overall["value"].iloc[0], rel=1e-5)


def test_compare_against_popularity_with_a_paired_interval(sasrec: pn.Model, split: pn.DataSplit) -> None:
    table = pn.compare([sasrec, "popular"], split)
    pop = table[(table.model == "popular") & (table.metric == "NDCG@10")].iloc[0]
    assert pop["diff_vs_first"] < 0 and pop["ci_low"] <= pop["diff_vs_first"] <= pop["ci_high"] < 0


def test_save_then_load_answers_alike(tmp_path: Path, data: pn.Dataset, sasrec: pn.Model) -> None:
    pn.save(sasrec, data, tmp_path / "m")
    back = pn.load(tmp_path / "m")
    a = sasrec.recommend(data, users=[10_000, 10_005], k=5)
    b = back.recommend(users=[10_000, 10_005], k=5)  # from the saved histories
    pd.testing.assert_frame_equal(a, b)


def test_train_returns_the_cli_record(data: pn.Dataset) -> None:
    run = pn.train("ease", data)
    for key in ("model", "dataset", "metrics", "valid_metrics", "params", "protocol", "train_seconds"):
        assert key in run.record
    assert run.metrics["NDCG@10"] > 0
    assert run.model.recommend(data, users=[10_000], k=2)["uid"].tolist() == [10_000, 10_000]


def test_splits_by_date_fraction_core_and_duplicates() -> None:
    df = plays(50, 30)
    short = pd.DataFrame({"uid": [1, 1], "iid": [500, 501], "ts": [1_600_000_000, 1_600_000_060]})
    df = pd.concat([df, df.iloc[:5], short])  # five repeated rows, one user with two events
    data = pn.Dataset.from_frame(df, user="uid", item="iid", time="ts")
    assert len(pn.deduplicate(data)) == len(data) - 5
    cut = pd.Timestamp(1_600_000_000 + 60 * 7, unit="s").isoformat()
    by_date = pn.temporal_split(data, at=cut)
    assert by_date.split.protocol["split"] == "global temporal"
    by_fraction = pn.temporal_split(data, at=0.8)
    assert len(by_fraction.split.train) < len(data)
    assert pn.k_core(data, 5).n_users == data.n_users - 1
    with pytest.raises(ConfigError, match="left no interactions"):
        pn.k_core(data, 100)
    with pytest.raises(ConfigError, match="at: a fraction"):
        pn.temporal_split(data, at=1.5)


def test_learning_curve_table_and_plot(sasrec: pn.Model) -> None:
    import matplotlib

    matplotlib.use("Agg")
    curve = sasrec.history
    assert len(curve) >= 1 and "valid_NDCG@10" in curve.columns
    ax = sasrec.plot()
    assert ax.get_xlabel() == "epoch"


def test_millisecond_timestamps_are_read_as_seconds_and_said() -> None:
    df = plays(20, 10)
    df["ts"] = df["ts"] * 1000
    with pytest.warns(UserWarning, match="milliseconds"):
        data = pn.Dataset.from_frame(df, user="uid", item="iid", time="ts")
    ts = data.interactions.frame.get_column("timestamp")
    assert ts.min() == 1_600_000_000


def test_an_unreadable_time_names_the_column_row_and_value() -> None:
    df = pd.DataFrame({"u": [1, 1, 2], "i": [1, 2, 3], "t": ["2003-01-01", "2003-01-02T10:00:00", "nope"]})
    with pytest.raises(ConfigError, match=r"time column 't', row 2: cannot read 'nope'"):
        pn.Dataset.from_frame(df, user="u", item="i", time="t")
