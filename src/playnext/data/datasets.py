"""Kept for old imports: the readers now live in `playnext.data.readers`."""

from playnext.data.readers import DATASETS, load_dataset

__all__ = ["DATASETS", "load_dataset"]
