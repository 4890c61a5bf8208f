"""The prepared store's on-disk format, shared by its reader and its writer: file names and dtypes.

A store is a folder::

    manifest.json      counts, dtypes, shapes, byte sizes and sha256 of every file — written LAST
    indptr.npy         (n_users + 1,) int64: user u's events are [indptr[u], indptr[u + 1])
    items.npy          (n_interactions,) int32 internal item ids, per user in stable time order
    timestamps.npy     (n_interactions,) int64 unix seconds (absent when the log has no times)
    positions.npy      (n_interactions,) int64 0-based row in the source file (the tie-breaker)
    weights.npy        (n_interactions,) float32
    events.npy         (n_interactions,) int16 codes into the manifest's "events" (only when mixed)
    users.parquet      external user ids in internal-id order
    items.parquet      item metadata (item_id, title, genres, year, kind) in internal-id order
"""

from __future__ import annotations

import numpy as np

FORMAT = "playnext-store"
VERSION = 1
MANIFEST = "manifest.json"
NO_TIME = np.iinfo(np.int64).min
"""A missing timestamp in timestamps.npy."""
ARRAYS: dict[str, tuple[str, str]] = {  # name -> (file, dtype)
    "indptr": ("indptr.npy", "<i8"),
    "items": ("items.npy", "<i4"),
    "timestamps": ("timestamps.npy", "<i8"),
    "positions": ("positions.npy", "<i8"),
    "weights": ("weights.npy", "<f4"),
    "events": ("events.npy", "<i2"),
}
REQUIRED_ARRAYS = ("indptr", "items", "positions", "weights")
TABLES = {"users": "users.parquet", "items": "items.parquet"}
