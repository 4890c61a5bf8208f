"""A prepared on-disk dataset: interaction logs larger than memory, read through memory maps.

`prepare` streams a log (MovieLens `ratings.csv`, any CSV, Parquet, `user item` lines, or an
in-memory `Interactions`) into a folder (its files: `format`); `open_store` reads it back.

The order is the one `Interactions` uses everywhere: by user (numbered by first appearance),
then timestamp (missing last), then file position; ids are numbered exactly as the readers in
`playnext.data.readers` number them, so `open_store(p).to_interactions()` equals
`load_dataset(...)`. The reader (`reader.py`) and the writer (`writer.py`, `ingest.py`) share
only the format module.
"""

from playnext.data.store.reader import Store, open_store
from playnext.data.store.writer import prepare, prepare_synthetic, synthetic_blocks

__all__ = ["Store", "open_store", "prepare", "prepare_synthetic", "synthetic_blocks"]
