"""The Recommender contract every model follows.

`__init__` only stores a typed config; `fit` computes learned state (attributes ending in `_`)
and returns self; fitting again starts fresh. `score` maps (users, histories) to a dense
(B, n_items) score matrix — histories make every model usable for anonymous sessions.
Saved models are `config.json` + `weights.safetensors`: no pickle, loadable anywhere.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from safetensors.torch import load, save_file

from playnext.config import Config
from playnext.data.interactions import Histories, Interactions
from playnext.data.split import EvalSet
from playnext.errors import ConfigError
from playnext.io import atomic_write


@dataclasses.dataclass
class ModelConfig(Config):
    """Base for typed model configs. Subclasses are dataclasses with defaults for every field."""

    seed: int = 0


class Recommender(ABC):
    """Base class: validate and bookkeep here, compute in the `_fit` / `_score` hooks."""

    name: ClassVar[str] = "base"
    config_class: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.config.validate()
        self.n_items_: int | None = None
        self.n_users_: int | None = None

    # ---- hyper-parameter search -----------------------------------------------------------
    @classmethod
    def search_space(cls) -> list[dict[str, Any]]:
        """Configs to try on validation when the user does not fix them (first = default)."""
        return [{}]

    # ---- fitting ----------------------------------------------------------------------------
    def fit(self, train: Interactions, valid: EvalSet | None = None) -> Self:
        if len(train) == 0:
            raise ValueError("cannot fit on an empty interaction log")
        self.n_items_ = train.n_items
        self.n_users_ = train.n_users
        self._fit(train, valid)
        return self

    @abstractmethod
    def _fit(self, train: Interactions, valid: EvalSet | None) -> None: ...

    @property
    def fitted(self) -> bool:
        return self.n_items_ is not None

    # ---- growing a fitted model (the feedback loop's warm start) -------------------------------
    warm_startable: ClassVar[bool] = False  # True: `extend_items` + `fine_tune` continue its weights

    def extend_items(self, init_from: Sequence[Sequence[int]]) -> None:
        """Append `len(init_from)` items after the known ones, new item j starting as the mean of
        the known items `init_from[j]` (all known items when empty); known ids keep their rows.

        Only models whose learned state is worth continuing implement it; for the others (EASE,
        popularity: a closed form or a count, seconds to refit) a warm start is simply a refit.
        """
        raise NotImplementedError(f"{self.name} has no warm start: refit it (fit) on the new data")

    def fine_tune(self, train: Interactions, valid: EvalSet | None = None) -> Self:
        """Continue training the current state on `train` (same items: see `extend_items`)."""
        raise NotImplementedError(f"{self.name} has no warm start: refit it (fit) on the new data")

    # ---- scoring ----------------------------------------------------------------------------
    def score(self, users: np.ndarray, history: Histories) -> torch.Tensor:
        """(B, n_items) float32 scores; `users` may hold -1 for anonymous sessions."""
        if self.n_items_ is None:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        if len(users) != len(history):
            raise ValueError("users and history must have the same number of rows")
        with torch.no_grad():
            out = self._score(np.asarray(users, dtype=np.int64), history)
        return out.float()

    @abstractmethod
    def _score(self, users: np.ndarray, history: Histories) -> torch.Tensor: ...

    def item_embeddings(self) -> np.ndarray | None:
        """(n_items, D) float32 item vectors for similarity (re-ranking diversity), or None for a
        model without them; a model that scores by state · item vector returns those vectors."""
        return None

    # ---- capabilities: what callers ask the contract instead of probing attributes -----------
    @property
    def event_types(self) -> tuple[str, ...]:
        """The event types the model reads as inputs (trained with typed actions), else none:
        the only types a history's events may name."""
        return ()

    @property
    def trained_event_types(self) -> tuple[str, ...]:
        """Every event type the model learned from, as inputs or as weighted targets: the types a
        warm start on new events must keep."""
        return ()

    @property
    def has_content(self) -> bool:
        """Whether items unseen in training can be scored from their metadata (`score_new_items`)."""
        return False

    @property
    def uses_repeat_bonus(self) -> bool:
        """Whether seen items gain a learned re-listen bonus (graphs that end at state · item
        vectors, such as the ONNX export, cannot compute it)."""
        return False

    @property
    def uses_request_time(self) -> bool:
        """Whether scores read when the question is asked (`Histories.at`): serving, batch output
        and the ONNX export pass the request's time (default now) to such a model."""
        return False

    def stored_times(self, user: int) -> np.ndarray | None:
        """A training user's event seconds, aligned with their training sequence, for a model
        that keeps them (HSTU trained on a timed log); None otherwise. A server joins them with
        a session's own times for a request-time model."""
        return None

    @property
    def max_len(self) -> int | None:
        """The longest history window the model reads (None: the whole history)."""
        return None

    def content_vectors(self, meta: Any) -> torch.Tensor:
        """(N, D) output vectors of the items `meta` describes, from their content alone."""
        raise NotImplementedError(f"{self.name}: no content tower; check has_content first")

    def score_new_items(self, users: np.ndarray, history: Histories, vectors: torch.Tensor) -> torch.Tensor:
        """(B, I + N) scores: the model's items, then N new ones given by `content_vectors`."""
        raise NotImplementedError(f"{self.name}: no content tower; check has_content first")

    def item_item(self) -> torch.Tensor | None:
        """(I, I) item-to-item weights when the scores are history · weights (EASE): explanations
        read exact contributions from it; None for any other model."""
        return None

    def training_report(self) -> Any | None:
        """The training curve (`playnext.train.loop.TrainReport`) of a model trained by epochs."""
        return None

    def n_params(self) -> int | None:
        """Learned parameters, for the run record (None for a model without a parameter count)."""
        return None

    # ---- persistence ------------------------------------------------------------------------
    @abstractmethod
    def _state(self) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def _load_state(self, state: dict[str, torch.Tensor]) -> None: ...

    def _meta(self) -> dict[str, Any]:
        """Learned facts that are not tensors (names), saved in model.json beside the config."""
        return {}

    def _load_meta(self, meta: dict[str, Any]) -> None:
        """Read back what `_meta` saved (before the weights, which may depend on it)."""
        return None

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.n_items_ is None:
            raise RuntimeError("cannot save an unfitted model")
        meta = {
            "model": self.name,
            "config": self.config.to_dict(),
            "n_items": self.n_items_,
            "n_users": self.n_users_,
            # said, not only implied by the config: a reader of the folder sees it needs `at`
            **({"request_time": True} if self.uses_request_time else {}),
            **self._meta(),
        }
        state = {k: v.detach().cpu().contiguous() for k, v in self._state().items()}
        atomic_write(directory / "weights.safetensors", lambda p: save_file(state, str(p)))
        atomic_write(directory / "model.json", lambda p: p.write_text(json.dumps(meta, indent=2)))

    @classmethod
    def load(cls, directory: str | Path) -> Recommender:
        from playnext.models.registry import get

        directory = Path(directory)
        try:
            meta = json.loads((directory / "model.json").read_text())
        except FileNotFoundError:
            raise ConfigError(f"{directory}: no model.json — not a playnext model directory") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{directory / 'model.json'}: corrupt ({e})") from None
        try:
            model_cls = get(meta["model"])
            model = model_cls(model_cls.config_class.from_dict(meta["config"]))
            model.n_items_ = int(meta["n_items"])
            model.n_users_ = int(meta["n_users"])
            model._load_meta(meta)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{directory / 'model.json'}: incomplete or invalid ({e!r})") from None
        weights = directory / "weights.safetensors"
        try:
            # read into memory, not memory-mapped: a file truncated or copied over while a server
            # holds the model would otherwise kill it with SIGBUS on the next page it touches
            state = load(weights.read_bytes())
        except Exception as e:  # safetensors raises several types for corrupt files
            raise ConfigError(f"{weights}: cannot read weights ({e})") from None
        try:
            model._load_state(state)
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            found = ", ".join(f"'{k}' {tuple(v.shape)}" for k, v in sorted(state.items())[:8])
            raise ConfigError(
                f"{weights}: does not match model.json (model {model.name!r}: {_what(e)}); "
                f"the file holds {found or 'no tensors'} — written by another model?"
            ) from None
        return model


def _what(e: Exception) -> str:
    """What a `_load_state` failure says, in words: a missing tensor is a bare KeyError."""
    if isinstance(e, KeyError):
        return f"no tensor {e}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def histories_to_csr(history: Histories, n_items: int, weights: np.ndarray | None = None) -> Any:
    """User × item sparse matrix (scipy CSR) with duplicates summed."""
    import scipy.sparse as sp

    data = np.ones(len(history.items), dtype=np.float32) if weights is None else weights
    return sp.csr_matrix((data, history.items, history.indptr), shape=(len(history), n_items))
