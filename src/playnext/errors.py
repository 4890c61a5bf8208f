"""Errors a user can act on. The CLI prints them in one line and exits with code 2."""

from __future__ import annotations

from pathlib import Path


class PlaynextError(Exception):
    """Base class for errors caused by the user's input, not by a bug."""


class DataError(PlaynextError):
    """Bad input data, located as precisely as we can: file, line and field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ConfigError(PlaynextError):
    """An invalid model or run configuration, caught before any work starts."""


class UnknownEventTypeError(ConfigError):
    """An event type a model was not trained with; `known` lists the ones it reads."""

    def __init__(self, message: str, known: tuple[str, ...]) -> None:
        super().__init__(message)
        self.known = known


class UnknownIdError(PlaynextError, KeyError):
    """External ids that the model has never seen."""

    def __init__(self, kind: str, ids: list[str]) -> None:
        self.kind = kind
        self.ids = ids
        shown = ", ".join(ids[:10]) + (" …" if len(ids) > 10 else "")
        super().__init__(f"unknown {kind} id(s): {shown}")

    def __str__(self) -> str:
        return str(self.args[0])
