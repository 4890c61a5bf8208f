"""Slow clients cannot hold a worker's connections forever.

Twenty connections that each send a byte a second were never closed: uvicorn times out only
idle keep-alive connections, not a request that trickles in. Now a request's headers and body
must arrive within `timeout_request` seconds, and beyond `limit_concurrency` connections a
worker answers 503 at once instead of queueing without bound.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

REQUEST = (
    b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
)


def _trickle(port: int, data: bytes, closed_after: list[float], stop: threading.Event) -> None:
    """Send `data` a byte a second; record when the server closed the connection."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.settimeout(1.0)
        for b in data:
            if stop.is_set():
                return
            try:
                s.sendall(bytes([b]))
                if s.recv(4096) == b"":  # EOF: the server closed it
                    break
            except TimeoutError:
                continue  # nothing to read yet: keep trickling
            except OSError:
                break
            # anything read is a response (a 408 or 503) before the close: keep reading
        else:
            return
        closed_after.append(time.monotonic() - t0)


def test_twenty_connections_sending_a_byte_a_second_are_closed(
    serve: Callable[..., Any], model_dirs: dict[str, Any]
) -> None:
    # two workers: each gets the protocol by name and its limits from the environment
    server = serve("--model-dir", model_dirs["ease"], "--workers", "2", env={"PLAYNEXT_TIMEOUT_REQUEST": "2"})
    stop = threading.Event()
    for data in (REQUEST, REQUEST[:40]):  # stuck in the headers, and in the body
        closed: list[float] = []
        threads = [
            threading.Thread(target=_trickle, args=(server.port, data + b"{" * 40, closed, stop), daemon=True)
            for _ in range(20)
        ]
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert server.get("/health").status_code == 200  # others are still answered meanwhile
        deadline = time.monotonic() + 10
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stop.set()
        assert len(closed) == 20, f"{len(closed)} of 20 slow connections were closed"
        assert max(closed) < 6, closed
        stop.clear()


def test_beyond_the_connection_limit_a_worker_answers_503_until_slow_clients_are_dropped(
    serve: Callable[..., Any], model_dirs: dict[str, Any]
) -> None:
    server = serve(
        "--model-dir",
        model_dirs["ease"],
        env={"PLAYNEXT_TIMEOUT_REQUEST": "3", "PLAYNEXT_LIMIT_CONCURRENCY": "10"},
    )
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(12)]
    try:
        for s in held:
            s.sendall(b"GET /health HTTP/1.1\r\n")  # never finished
        time.sleep(0.3)
        r = server.get("/health")
        assert r.status_code == 503, r.text
        time.sleep(3.5)  # the held connections pass timeout_request and are closed
        assert server.get("/health").status_code == 200
    finally:
        for s in held:
            s.close()
