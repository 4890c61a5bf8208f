"""Entry point for `playnext serve` (and `python -m playnext.serve`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from playnext.errors import ConfigError
from playnext.serve.settings import Settings


def serve(model_dir: Path, host: str = "127.0.0.1", port: int = 8000, token: str | None = None) -> None:
    """Serve the model folder `model_dir` over HTTP until interrupted (docs at /docs, page at /).

    `token` (else the PLAYNEXT_TOKEN environment variable) protects POST /items; other
    settings come from PLAYNEXT_* variables (see playnext.serve.settings).
    """
    import uvicorn

    from playnext.serve.app import create_app

    model_dir = Path(model_dir)
    if not (model_dir / "model.json").is_file():
        raise ConfigError(
            f"{model_dir}: not a model folder (no model.json); train one with `playnext train --out`"
        )
    settings = Settings.from_env(host=host, port=port, token=token)
    if settings.cache_dir is None:  # re-encoding item texts on every restart is slow on a CPU
        settings = settings.model_copy(update={"cache_dir": Path.home() / ".cache" / "playnext"})
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("playnext.serve").warning("listening on %s: reachable beyond this machine", host)
    app = create_app(model_dir, settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m playnext.serve", description=serve.__doc__)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--token", default=None)
    args = ap.parse_args(argv)
    try:
        serve(args.model_dir, args.host, args.port, args.token)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
