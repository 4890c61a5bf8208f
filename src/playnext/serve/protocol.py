"""The HTTP connection limits uvicorn is run with, and a request deadline it lacks.

uvicorn closes a connection that sits idle between requests (`timeout_keep_alive`), but not one
whose request trickles in: headers sent a byte a second keep a connection (and its slot)
forever. `DeadlineProtocol` gives each request `timeout_request` seconds from its first byte
(or from the connection's opening) until its headers and body have arrived, and caps the
header bytes; past either the connection is closed (with a 408 or a 431 when nothing was
answered yet). Beyond `limit_concurrency` connections or requests in flight, uvicorn itself
answers 503 at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from playnext.serve.settings import Settings

log = logging.getLogger("playnext.serve")


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a per-request read deadline and a header size cap."""

    def __init__(
        self,
        *args: Any,
        timeout_request: float | None = None,
        max_header_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        default_timeout, default_max = _from_env()
        self.timeout_request = default_timeout if timeout_request is None else timeout_request
        self.max_header_bytes = default_max if max_header_bytes is None else max_header_bytes
        self._deadline: asyncio.TimerHandle | None = None
        self._reading = True  # a request's headers or body are still to come
        self._header_bytes = 0
        self._in_headers = True

    # a request starts: at the connection's opening, then after each response (keep-alive)
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if not self._reading:  # the first byte of the next request on a kept-alive connection
            self._reading, self._in_headers, self._header_bytes = True, True, 0
            self._arm()
        if self._in_headers:
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self._close(431, "Request Header Fields Too Large")
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading = False
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # ---- the deadline ------------------------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        if self.timeout_request > 0:
            self._deadline = self.loop.call_later(self.timeout_request, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._reading and not self.transport.is_closing():
            log.warning(
                "request not received within %.0fs from %s: closed", self.timeout_request, self.client
            )
            self._close(408, "Request Timeout")

    def _close(self, status: int, reason: str) -> None:
        """Answer `status` when no response has started on this connection, then close it."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            head = f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            self.transport.write(head.encode())
            if cycle is not None:  # the app waiting for the body gets http.disconnect
                cycle.disconnected = True
                cycle.message_event.set()
        self.transport.close()


@functools.cache
def _from_env() -> tuple[float, int]:
    """The limits of a worker process, which `playnext serve --workers N` gives in PLAYNEXT_*."""
    settings = Settings.from_env()
    return settings.timeout_request, settings.max_header_bytes


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's keyword arguments for these settings' connection limits.

    Several workers get the protocol by name: uvicorn pickles its config into each spawned
    worker, and a class object there would be imported (with torch) before the worker answers
    the supervisor's 5 s health pings, which kills a worker that starts slowly on a busy machine.
    By name it is imported with the app, and reads its limits from the PLAYNEXT_* environment
    the workers share."""
    http: Any = functools.partial(
        DeadlineProtocol, timeout_request=settings.timeout_request, max_header_bytes=settings.max_header_bytes
    )
    if settings.workers > 1:
        http = f"{__name__}:{DeadlineProtocol.__name__}"
    return {
        "http": http,
        "timeout_keep_alive": settings.timeout_keep_alive,
        "limit_concurrency": settings.limit_concurrency,
    }
