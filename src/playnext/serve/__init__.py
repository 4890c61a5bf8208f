"""HTTP serving: `create_app(model_dir | Artifact, settings)` and the uvicorn runner."""

from playnext.serve.app import create_app, run
from playnext.serve.settings import Settings

__all__ = ["Settings", "create_app", "run"]
