"""The engine without HTTP: its parts raise domain errors (no statuses), and one table turns
each error into its HTTP answer."""

from __future__ import annotations

import json

import pytest

from playnext.errors import ConfigError, PlaynextError, UnknownEventTypeError
from playnext.serve.app import error_response
from playnext.serve.errors import Conflict, NotFound, QueryError, UnknownIds
from playnext.state import StateConflict, StateError


@pytest.mark.parametrize(
    ("error", "status", "extra"),
    [
        (NotFound("item id", ["x"]), 404, {"unknown": ["x"]}),
        (UnknownIds("item id(s) in history", ["x", "y"]), 422, {"unknown": ["x", "y"]}),
        (QueryError("k=6 is above the limit of 5"), 422, {}),
        (UnknownEventTypeError("unknown event type 'buy'", ("play",)), 422, {"known_event_types": ["play"]}),
        (ConfigError("rerank.pool: bad"), 422, {}),
        (Conflict("item id x already exists"), 409, {}),
        (StateConflict("the store already holds 3 added items"), 409, {}),
        (StateError("database is locked"), 503, {}),
    ],
)  # fmt: skip
def test_one_table_maps_each_error_to_its_http_answer(
    error: PlaynextError, status: int, extra: dict[str, object]
) -> None:
    r = error_response(error)
    assert r.status_code == status
    assert json.loads(bytes(r.body)) == {"detail": str(error), **extra}
