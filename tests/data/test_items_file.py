"""Generic data: an items file beside an id-only log, and the separator hint on a one-column header."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from playnext.data.readers import load_dataset
from playnext.errors import ConfigError, DataError

LOG = "user,item,timestamp\n" + "".join(
    f"u{u},{u % 4 + j},{100 * u + j}\n" for u in range(6) for j in range(4)
)


def _meta(data: object, item: str) -> dict[str, object]:
    meta = data.meta  # type: ignore[attr-defined]
    row: dict[str, object] = meta.filter(pl.col("item_id") == item).row(0, named=True)
    return row


def test_an_items_file_gives_an_id_only_log_titles_genres_year_and_kind(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text(LOG)
    (tmp_path / "items.csv").write_text(
        'id,title,genres,year,kind\n1,"Heat, the film",Crime|Drama,1995,movie\n'
        "2,Blue,,,music\n99,Unused,x,1,game\n"
    )
    data = load_dataset("csv", tmp_path / "log.csv", items=str(tmp_path / "items.csv"))
    assert _meta(data, "1") == {
        "item_id": "1",
        "title": "Heat, the film",
        "genres": ["Crime", "Drama"],
        "year": 1995,
        "kind": "movie",
    }
    assert _meta(data, "2")["title"] == "Blue" and _meta(data, "2")["genres"] == []
    assert _meta(data, "3")["title"] == "3"  # not in the file: the id stands in
    assert "99" not in data.items  # metadata alone does not add an item to the catalog


def test_items_columns_by_other_names_and_the_log_item_column_as_id(tmp_path: Path) -> None:
    (tmp_path / "log.tsv").write_text(LOG.replace(",", "\t").replace("item", "song"))
    (tmp_path / "songs.tsv").write_text("song\tname\ttags\tkind\n1\tOne\ta | b\tmusic\n")
    data = load_dataset(
        "csv",
        tmp_path / "log.tsv",
        separator="tab",
        item_col="song",
        items=str(tmp_path / "songs.tsv"),
        items_title_col="name",
        items_genres_col="tags",
    )
    assert _meta(data, "1")["title"] == "One" and _meta(data, "1")["genres"] == ["a", "b"]


def test_items_file_for_a_parquet_log_and_a_parquet_items_file(tmp_path: Path) -> None:
    log = pl.read_csv(LOG.encode(), schema_overrides={"item": pl.String})
    log.write_parquet(tmp_path / "log.parquet")
    pl.DataFrame({"id": ["1"], "title": ["One"], "year": [2001]}).write_parquet(tmp_path / "items.parquet")
    data = load_dataset("parquet", tmp_path / "log.parquet", items=str(tmp_path / "items.parquet"))
    assert (_meta(data, "1")["title"], _meta(data, "1")["year"]) == ("One", 2001)


def test_items_file_errors_name_the_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text(LOG)
    (tmp_path / "items.csv").write_text("movie,title\n1,One\n")
    with pytest.raises(DataError, match=r"items.csv, line 1: no item id column .*items_id_col"):
        load_dataset("csv", tmp_path / "log.csv", items=str(tmp_path / "items.csv"))
    with pytest.raises(DataError, match=r"no column 'name' \(items_title_col\)"):
        load_dataset(
            "csv",
            tmp_path / "log.csv",
            items=str(tmp_path / "items.csv"),
            items_id_col="movie",
            items_title_col="name",
        )
    (tmp_path / "bad.csv").write_text("id,year\n1,nineteen\n")
    with pytest.raises(DataError, match=r"bad.csv, line 2, field 'year': expected an integer"):
        load_dataset("csv", tmp_path / "log.csv", items=str(tmp_path / "bad.csv"))
    with pytest.raises(ConfigError, match="give it with items=FILE"):
        load_dataset("csv", tmp_path / "log.csv", items_title_col="name")


@pytest.mark.parametrize(
    ("sep", "hint"), [(";", "separator=';'"), ("\t", "separator='tab'"), ("|", "separator='|'")]
)
def test_a_one_column_header_suggests_the_separator(tmp_path: Path, sep: str, hint: str) -> None:
    (tmp_path / "log.csv").write_text(LOG.replace(",", sep))
    with pytest.raises(DataError, match="the header is one column") as e:
        load_dataset("csv", tmp_path / "log.csv")
    assert f"--option {hint}" in str(e.value)
    sep_name = {"\t": "tab"}.get(sep, sep)
    assert len(load_dataset("csv", tmp_path / "log.csv", separator=sep_name)) == 24  # and it is right
