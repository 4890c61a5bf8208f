"""Shared route helpers: request bodies → engine queries, error responses for the OpenAPI docs, and
the JSON every route reads (`StrictJSONRoute`)."""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel

from playnext.serve.engine import Engine, Query, Ranked
from playnext.serve.schemas import ErrorBody, RecommendResponse, Who

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "An id in the URL path does not exist."},
    422: {"description": "Invalid input, or unknown ids in the body (named in `detail`)."},
}


def to_query(body: Who) -> Query:
    kinds = [body.kind] if isinstance(body.kind, str) else body.kind
    return Query(
        user_id=str(body.user_id) if body.user_id is not None else None,
        history=[str(h) for h in body.history] if body.history is not None else None,
        session_id=body.session_id,
        remove=[str(i) for i in body.remove_from_history] if body.remove_from_history else None,
        k=body.k,
        exclude_seen=body.exclude_seen,
        explain=body.explain,
        kinds=kinds,
        genres=body.genres,
        year_min=body.year_min,
        year_max=body.year_max,
        exclude_items=[str(i) for i in body.exclude_items] if body.exclude_items is not None else None,
        only_items=[str(i) for i in body.only_items] if body.only_items is not None else None,
        rerank=body.rerank,
        at=body.at_seconds,
    )


def json_response(body: BaseModel) -> Response:
    """A response model validated once, serialised by pydantic-core: returning the model itself
    would make FastAPI validate it again in a thread-pool hop (~0.1 ms of a 2 ms request)."""
    return Response(body.model_dump_json(), media_type="application/json")


def ranked(answer: Ranked | list[dict[str, Any]], engine: Engine) -> Response:
    """The shared body of /recommend, /search and /similar."""
    items, rerank = (answer.items, answer.rerank) if isinstance(answer, Ranked) else (answer, None)
    body = {"items": items, "model": engine.model.name, "rerank": rerank}
    return json_response(RecommendResponse.model_validate(body))


# ---- the JSON a request may send -------------------------------------------------------------
class _Bad:
    """Stands where the parser met a number JSON cannot carry (NaN, ±Infinity, 1e999)."""

    def __init__(self, text: str) -> None:
        self.text = text


_SURROGATE = re.compile("[\ud800-\udfff]")


def strict_json(body: bytes) -> Any:
    """Parse a request body as RFC 8259 JSON: UTF-8, finite numbers, no lone surrogates.

    Python's parser takes `NaN`, `Infinity`, `1e999` and `"\\ud800"`; answering them would need
    JSON no client can read (or, for a surrogate, no UTF-8 at all), so they are a 422 naming the
    field here. Raises `RequestValidationError`; a body that is no JSON at all raises
    `json.JSONDecodeError`, as FastAPI's own parser does."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": f"the body is not UTF-8 (byte {e.start})"}]
        ) from None
    bad: list[_Bad] = []

    def constant(c: str) -> _Bad:
        bad.append(_Bad(c))
        return bad[-1]

    def number(s: str) -> float | _Bad:
        f = float(s)
        return f if math.isfinite(f) else constant(s)

    try:
        data = json.loads(text, parse_constant=constant, parse_float=number)
        # the walk only when there may be something to find
        errors = list(_strict_errors(data, ("body",))) if bad or "\\u" in text else []
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as e:  # an integer of 5,000 digits, arrays 10,000 deep
        msg = f"the body cannot be read: {str(e).split(';')[0]}"
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": msg}]) from None
    if errors:
        raise RequestValidationError(errors[:20])
    return data


def _strict_errors(v: Any, loc: tuple[str | int, ...]) -> Any:
    if isinstance(v, _Bad):
        yield {
            "type": "finite_number",
            "loc": loc,
            "msg": f"{v.text} is not a finite number",
            "input": v.text,
        }
    elif isinstance(v, str):
        if _SURROGATE.search(v):
            yield {
                "type": "string_unicode",
                "loc": loc,
                "msg": "a lone UTF-16 surrogate is no character",
                "input": printable(v),
            }
    elif isinstance(v, dict):
        for k, x in v.items():
            if _SURROGATE.search(k):
                yield {
                    "type": "string_unicode",
                    "loc": loc,
                    "msg": "a lone UTF-16 surrogate is no character",
                    "input": printable(k),
                }
            yield from _strict_errors(x, (*loc, printable(k)))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _strict_errors(x, (*loc, i))


def printable(v: Any) -> Any:
    """`v` with what JSON cannot carry spelt out: non-finite floats as text, lone surrogates
    escaped; an error body that echoes a request must itself be valid JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, str):
        return v.encode("utf-8", "backslashreplace").decode("utf-8") if _SURROGATE.search(v) else v
    if isinstance(v, dict):
        return {printable(k): printable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [printable(x) for x in v]
    return v


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """Every route's JSON body goes through `strict_json` (FastAPI then validates it as usual)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            request = _StrictJSONRequest(request.scope, request.receive)
            ctype = request.headers.get("content-type")
            if (ctype is None or "json" in ctype) and await request.body():
                # parsed here, so a bad value is our 422 (inside FastAPI's handler it would be a 400)
                with contextlib.suppress(json.JSONDecodeError):  # FastAPI's own 422 for non-JSON
                    await request.json()
            return await handler(request)

        return strict


# ---- what an unauthenticated client may read ---------------------------------------------------
_ABS_PATH = re.compile(r"(?<![\w.~:/-])/[^\s/'\"(),;:]+(?:/[^\s/'\"(),;:]*)+")


def redact_paths(text: str) -> str:
    """`text` with each absolute file path cut to its last part (`/srv/pn/state/state.db` →
    `…/state.db`): bodies any client may read (/health, 503s) do not map the server's disks."""
    return _ABS_PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)
