"""`serve` checks its port before anything slow: a live listener is one line and exit 2, but the
TIME_WAIT connections a killed server leaves behind for a minute must not refuse its restart."""

from __future__ import annotations

import socket

import pytest

from playnext.errors import ConfigError
from playnext.serve.cli import check_port


def test_a_live_listener_is_refused() -> None:
    with socket.socket() as live:
        live.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        live.bind(("127.0.0.1", 0))
        live.listen()
        port = live.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is already in use"):
            check_port("127.0.0.1", port)


def test_time_wait_after_a_crash_does_not_refuse_the_restart() -> None:
    # the server side closes first, so its end of the connection sits in TIME_WAIT (as after a
    # kill -9 with clients connected), then the listener is gone
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = listener.accept()
        conn.close()
    client.close()
    check_port("127.0.0.1", port)  # nothing listens: the restart may bind
