"""The names the neural models' shared code had when it lived in one module, for imports
elsewhere: the code is in `neural` (fit / warm start / save), `sequence` (the next-item recipe)
and `parts/` (the sequence network and each opt-in feature)."""

from playnext.models.neural import (
    NeuralConfig,
    NeuralRecommender,
    known_items,
    sample_negatives,
    search_space_from,
)
from playnext.models.parts.actions import UNTYPED_ACTION
from playnext.models.parts.net import SequenceNet
from playnext.models.parts.repeat import recency_bucket, recency_buckets
from playnext.models.sequence import SequenceRecommender
from playnext.models.sequence_config import SequenceConfig

__all__ = [
    "UNTYPED_ACTION",
    "NeuralConfig",
    "NeuralRecommender",
    "SequenceConfig",
    "SequenceNet",
    "SequenceRecommender",
    "known_items",
    "recency_bucket",
    "recency_buckets",
    "sample_negatives",
    "search_space_from",
]
