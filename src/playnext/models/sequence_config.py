"""The config of the sequence models (SASRec, HSTU, GRU4Rec): the window they read, and the
opt-in features `SequenceRecommender` composes from models/parts/, each off by default so that
saved models and recipes read as they always did."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from playnext.config import choice, require
from playnext.models.neural import NeuralConfig
from playnext.models.parts.content import FEATURES, TEXT_ENCODERS
from playnext.models.parts.targets import TARGETS, parse_event_weights

# max_len = 0: the 95th percentile of the training histories' lengths, at most 200 (the window
# the ML-1M recipes were tuned at, where 95 % of users are longer: it stays 200 there) and at
# least 8. steam-200k's histories (median 2) get 40: the last 5 % of users lose only their
# oldest events, and every batch pads far less
MAX_LEN_QUANTILE = 0.95
MAX_LEN_CAP = 200
MAX_LEN_FLOOR = 8


def max_len_from_lengths(lengths: np.ndarray) -> int:
    """The window `max_len = 0` resolves to for training histories of these lengths."""
    if len(lengths) == 0:
        return MAX_LEN_FLOOR
    q = math.ceil(float(np.quantile(lengths, MAX_LEN_QUANTILE)))
    return int(min(MAX_LEN_CAP, max(MAX_LEN_FLOOR, q)))


@dataclasses.dataclass
class SequenceConfig(NeuralConfig):
    """A neural config for models that read the most recent `max_len` items of a history."""

    # 0 = from the data at fit (`max_len_from_lengths`), so short histories do not pay for a
    # 200-wide position table; the fitted config holds the number chosen
    max_len: int = 200
    # sparse item-table gradients + SparseAdam: only the rows a batch touches are read and
    # written, which is what lets a 10M-item catalog train on one machine (sampled losses only)
    sparse_embeddings: bool = False
    # 0: shuffled batches; k > 0: sort each pool of k batches by length (batches pad far less:
    # ML-1M rows average 108 of 200 positions), each batch's mean loss re-weighted by its share
    # of the epoch's positions so the objective stays the per-position mean it is without buckets
    length_buckets: int = 0
    # typed events (docs/models.md): an action embedding (event type, bucketed value) added to
    # each input item's; off by default, so saved models and recipes read as before
    actions: bool = False
    n_value_buckets: int = 4
    # which events are next-item targets: every one; only positive ones (skips and low ratings
    # stay inputs); or every one with its type's weight from `event_weights` ("skip:0.2", …)
    targets: str = "all"
    event_weights: list[str] = dataclasses.field(default_factory=list)
    # item content (docs/models.md): a tower over these metadata features adds to each item's id
    # embedding, and an item unseen in training is scored from its content alone
    item_features: list[str] = dataclasses.field(default_factory=list)
    text_encoder: str = "minilm"  # for "text": the offline MiniLM, or hashing (fast, for tests)
    id_dropout: float = 0.1  # with item_features: P(an item's id part is dropped) per training step
    # re-listens (docs/models.md): each item of the input window adds a learned weight of how
    # long ago it was (log-spaced buckets) to its own score, so returning is learned apart from taste
    repeat_bonus: bool = False

    def validate(self) -> None:
        super().validate()
        require(self.max_len >= 0, f"max_len must be >= 1, or 0 (from the data), got {self.max_len}")
        require(self.n_value_buckets >= 1, f"n_value_buckets must be >= 1, got {self.n_value_buckets}")
        choice(self.targets, TARGETS, "targets")
        self.type_weights()
        require(self.length_buckets >= 0, f"length_buckets must be >= 0, got {self.length_buckets}")
        for f in self.item_features:
            choice(f, FEATURES, "item_features entries")
        require(len(set(self.item_features)) == len(self.item_features), "item_features has duplicates")
        choice(self.text_encoder, TEXT_ENCODERS, "text_encoder")
        require(0.0 <= self.id_dropout < 1.0, f"id_dropout must be in [0, 1), got {self.id_dropout}")
        require(
            not (self.sparse_embeddings and self.item_features),
            "item_features needs dense item tables (sparse_embeddings=false): every step reads the tower",
        )
        require(
            not self.repeat_bonus or self.loss == "ce",
            "repeat_bonus needs loss='ce' (the bonus reaches every seen item's logit in the full softmax)",
        )
        require(
            not self.sparse_embeddings or self.loss != "ce",
            "sparse_embeddings needs loss='sampled_softmax' or 'bce' (full softmax touches every item row)",
        )

    def type_weights(self) -> dict[str, float]:
        """`event_weights` as {type: weight}; a type not listed weighs 1."""
        return parse_event_weights(self.event_weights)

    @property
    def typed(self) -> bool:
        """Whether the model reads events at all (as inputs or to choose its targets)."""
        return self.actions or self.targets != "all"
