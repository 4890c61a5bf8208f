"""Entry point for `playnext serve` (and `python -m playnext.serve`)."""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
import time
from pathlib import Path

from playnext.errors import ConfigError
from playnext.serve.settings import ENV_PREFIX, Settings


def serve(
    model_dir: Path | None,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    *,
    model_root: Path | None = None,
    state: str | None = None,
    workers: int | None = None,
) -> None:
    """Serve a model folder (or ROOT/current, swapping published models) over HTTP until interrupted.

    `token` (else PLAYNEXT_TOKEN) protects POST /items and POST /admin/model; `state` is the state
    store (a folder or a postgresql:// URL); other settings come from PLAYNEXT_* variables (see
    playnext.serve.settings). Everything is checked before the server starts: a model folder that
    does not load or a store that cannot be opened is one error (exit 2), not a worker crash loop.
    """
    import uvicorn

    from playnext.artifact import Artifact, current_model
    from playnext.serve.app import create_app
    from playnext.serve.protocol import server_options
    from playnext.serve.startup import open_state, state_location

    if (model_dir is None) == (model_root is None):
        raise ConfigError("give exactly one of --model-dir or --model-root")
    first = Path(model_dir) if model_dir is not None else current_model(Path(str(model_root)))
    if not (first / "model.json").is_file():
        raise ConfigError(
            f"{first}: not a model folder (no model.json); train one with `playnext train --out`"
        )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    log = logging.getLogger("playnext.serve")
    check_port(host, port)  # a port in use is one line now, not after seconds of loading the model
    t0 = time.perf_counter()
    artifact = Artifact.load(first)  # one clear line now (exit 2), not a worker's traceback or N crashing
    log.info("serve: model %s loaded and checked in %.1f s", first, time.perf_counter() - t0)
    settings = Settings.from_env(
        host=host,
        port=port,
        token=token,
        model_root=Path(model_root).resolve() if model_root is not None else None,
        state=state,
        workers=workers,
    )
    if settings.cache_dir is None:  # re-encoding item texts on every restart is slow on a CPU
        settings = settings.model_copy(update={"cache_dir": Path.home() / ".cache" / "playnext"})
    source = Path(model_dir).resolve() if model_dir is not None else None
    where, _ = state_location(source, settings)
    settings = settings.model_copy(update={"state": where})
    t0 = time.perf_counter()
    store = open_state(where, settings, artifact)  # fail here, once, with the reason (store, schema, catalog)
    log.info("serve: state store (%s) opened and checked in %.1f s", store.kind, time.perf_counter() - t0)
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: reachable beyond this machine", settings.host)
    if settings.workers == 1:  # the app serves what was just loaded and checked: nothing twice
        app = create_app(source, settings, preloaded=(first, artifact), store=store)
        del artifact
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="info",
            **server_options(settings),
        )
        return
    # several processes: each builds its app from the environment (uvicorn imports the factory),
    # loading the model and opening the store itself
    store.close()
    del artifact
    for name, value in settings.model_dump().items():
        if value is not None:
            os.environ[ENV_PREFIX + name.upper()] = str(value)
    os.environ["PLAYNEXT_MODEL_DIR"] = str(source) if source is not None else ""
    uvicorn.run(
        "playnext.serve.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="info",
        **server_options(settings),
    )


def check_port(host: str, port: int) -> None:
    """Refuse (ConfigError: one line, exit 2) a host:port this process cannot listen on, before
    anything slow: bind a socket there and close it. With SO_REUSEADDR, as uvicorn binds: a live
    listener is still refused, but the TIME_WAIT connections a crashed server leaves for a
    minute are not (without it, a restart right after a kill -9 was refused)."""
    if port == 0:  # any free port: nothing to check
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"--host {host}: cannot resolve it ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: the same refusal as elsewhere
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is already in use; stop what listens there or give another --port"
                ) from None
            raise ConfigError(f"cannot listen on {host} port {port}: {e.strerror or e}") from None


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m playnext.serve", description=serve.__doc__)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--token", default=None)
    ap.add_argument("--state", default=None)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    from playnext.errors import PlaynextError

    try:
        serve(args.model_dir, args.host, args.port, args.token, state=args.state, workers=args.workers)
    except PlaynextError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
