"""The Recommender contract every model follows.

`__init__` only stores a typed config; `fit` computes learned state (attributes ending in `_`)
and returns self; fitting again starts fresh. `score` maps (users, histories) to a dense
(B, n_items) score matrix — histories make every model usable for anonymous sessions.
Saved models are `config.json` + `weights.safetensors`: no pickle, loadable anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from playnext.data.interactions import Histories, Interactions
from playnext.data.split import EvalSet
from playnext.errors import ConfigError


@dataclasses.dataclass
class ModelConfig:
    """Base for typed model configs. Subclasses are dataclasses with defaults for every field."""

    seed: int = 0

    def validate(self) -> None:
        """Raise ConfigError on impossible values, before any training starts."""

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> Self:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        coerced = {}
        for k, v in params.items():
            ftype = known[k].type
            coerced[k] = _coerce(
                v, ftype if isinstance(ftype, str) else getattr(ftype, "__name__", ""), k, cls
            )
        cfg = cls(**coerced)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, type_name: str, key: str, cls: type) -> Any:
    """Accept CLI strings for numeric/bool fields with a clear error."""
    if not isinstance(value, str):
        return value
    try:
        if type_name.startswith("int"):
            return int(value)
        if type_name.startswith("float"):
            return float(value)
        if type_name.startswith("bool"):
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError(value)
    except ValueError:
        raise ConfigError(f"{cls.__name__}.{key}: cannot read {value!r} as {type_name}") from None
    return value


def require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


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

    # ---- persistence ------------------------------------------------------------------------
    @abstractmethod
    def _state(self) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def _load_state(self, state: dict[str, torch.Tensor]) -> None: ...

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
        model_cls = get(meta["model"])
        model = model_cls(model_cls.config_class.from_dict(meta["config"]))
        model.n_items_ = int(meta["n_items"])
        model.n_users_ = int(meta["n_users"])
        try:
            state = load_file(str(directory / "weights.safetensors"))
        except Exception as e:  # safetensors raises several types for corrupt files
            raise ConfigError(f"{directory / 'weights.safetensors'}: cannot read weights ({e})") from None
        model._load_state(state)
        return model


def atomic_write(path: Path, write: Any) -> None:
    """Write via a temp file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def histories_to_csr(history: Histories, n_items: int, weights: np.ndarray | None = None) -> Any:
    """User × item sparse matrix (scipy CSR) with duplicates summed."""
    import scipy.sparse as sp

    data = np.ones(len(history.items), dtype=np.float32) if weights is None else weights
    return sp.csr_matrix((data, history.items, history.indptr), shape=(len(history), n_items))
