"""The service's domain errors: what went wrong, never an HTTP status.

Engine parts raise these (and the package's own `playnext.errors`), so they stay testable without
HTTP; `app.py` maps every error class to its status in one table.
"""

from __future__ import annotations

from collections.abc import Sequence

from playnext.errors import PlaynextError, UnknownIdError


class UnknownIds(UnknownIdError):
    """Ids a request names that no user, item or session has; the message lists them."""

    def __init__(self, what: str, ids: Sequence[str]) -> None:
        super().__init__(what, list(ids))
        shown = ", ".join(ids[:10]) + (f" … ({len(ids)} in all)" if len(ids) > 10 else "")
        self.args = (f"unknown {what}: {shown}",)


class NotFound(UnknownIds):
    """The one thing a call is about (an item or a session) does not exist, as opposed to an
    unknown id inside a query: a client asked for something absent rather than sent bad input."""


class QueryError(PlaynextError):
    """A request value the server cannot serve: a limit passed, an unknown filter value."""


class TextOff(QueryError):
    """Text search, text similarity and cold-start items need item text embeddings."""

    def __init__(self) -> None:
        super().__init__("text features are off on this server (text_encoder=none, or items with ids only)")


class Conflict(PlaynextError):
    """A write that clashes with what exists: an item id the catalog already has."""


__all__ = ["Conflict", "NotFound", "QueryError", "TextOff", "UnknownIds"]
