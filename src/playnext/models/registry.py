"""Models register by name; the CLI, benchmarks and contract tests discover them here."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from playnext.errors import ConfigError

T = TypeVar("T")
_REGISTRY: dict[str, type[Any]] = {}
# modules imported lazily so that `playnext data stats` does not pay for every model
_MODULES = ("popular", "recency", "ease", "mlp", "caser", "gru4rec", "sasrec", "hstu")


def register(name: str) -> Callable[[type[T]], type[T]]:
    if name != name.lower():
        raise ValueError(f"model names are lower case, got {name!r}")

    def deco(cls: type[T]) -> type[T]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} registered twice")
        _REGISTRY[name] = cls
        cls.name = name  # type: ignore[attr-defined]
        return cls

    return deco


def _load_all() -> None:
    for mod in _MODULES:
        try:
            importlib.import_module(f"playnext.models.{mod}")
        except ModuleNotFoundError as e:  # a model file not written yet
            if e.name != f"playnext.models.{mod}":
                raise


def names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def canonical(name: str) -> str:
    """The registered name a user meant: names are matched without regard to case (`SASRec`)."""
    _load_all()
    key = name.strip().lower()
    if key not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return key


def get(name: str) -> type[Any]:
    return _REGISTRY[canonical(name)]


def create(name: str, **params: Any) -> Any:
    cls = get(name)
    return cls(cls.config_class.from_dict(params))
