"""Server settings: one typed object, read from `PLAYNEXT_*` environment variables or given in code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

ENV_PREFIX = "PLAYNEXT_"


class Settings(BaseModel):
    """Everything the server can be told; every field has a safe default.

    Each field `x` may also be set by the environment variable `PLAYNEXT_X` (e.g. `PLAYNEXT_TOKEN`,
    `PLAYNEXT_MAX_K`) through `Settings.from_env()`.
    """

    host: str = Field("127.0.0.1", description="Bind address; loopback unless told otherwise.")
    port: int = Field(8000, ge=0, le=65535)
    token: str | None = Field(None, description="Bearer token for write endpoints (POST /items).")
    max_k: int = Field(100, ge=1, description="Largest k a request may ask for.")
    max_history: int = Field(500, ge=1, description="Longest history a request may send.")
    max_body_bytes: int = Field(64 * 1024, ge=256, description="Larger request bodies get 413.")
    timeout_request: float = Field(
        10.0,
        ge=0.0,
        description="Seconds a request's headers and body may take to arrive, from its first byte (or "
        "the connection's opening); a slower one is closed with 408 (0: no limit).",
    )
    timeout_keep_alive: int = Field(5, ge=1, description="Seconds an idle kept-alive connection stays open.")
    limit_concurrency: int | None = Field(
        1024,
        ge=1,
        description="Connections (or requests in flight) per worker beyond which it answers 503 at once.",
    )
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, description="A request line and headers larger than this are closed with 431."
    )
    state: str | None = Field(
        None,
        description="The state store: a folder (SQLite, WAL), sqlite:///FILE or postgresql://…; default "
        "`state/<model folder name>/` beside the model folder (`ROOT/state` for a model root); a temporary "
        "one for an in-memory model.",
    )
    model_root: Path | None = Field(
        None, description="Serve ROOT/current and swap models when that link is re-pointed."
    )
    max_sessions: int = Field(
        10_000,
        ge=1,
        description="Sessions kept (the least recently written evicted; its events stay logged).",
    )
    max_session_events: int = Field(200, ge=1, description="Events a session's view keeps (the last ones).")
    max_log_events: int = Field(
        5_000_000, ge=1, description="Events the log keeps for retraining (oldest dropped)."
    )
    max_cold_items: int = Field(10_000, ge=0, description="Items that may be added at run time.")
    cold_poll_seconds: float = Field(
        1.0, ge=0.0, description="How often a worker looks for cold items other workers added."
    )
    swap_poll_seconds: float = Field(
        1.0, ge=0.0, description="How often a worker looks for a newly published model (0: never)."
    )
    workers: int = Field(1, ge=1, le=64, description="Server processes sharing the state store.")
    explain_last: int = Field(10, ge=1, description="History items considered by leave-one-out explanations.")
    text_encoder: Literal["minilm", "hashing", "none"] = Field(
        "minilm", description="Item/query text embeddings: the offline MiniLM, a hashing fallback, or off."
    )
    search_blend: float = Field(
        0.3, ge=0.0, le=1.0, description="POST /search: weight of the user's taste vs the text match."
    )
    cold_neighbors: int = Field(10, ge=1, description="Known items a cold-start item borrows scores from.")
    cold_temperature: float = Field(
        0.05, gt=0.0, le=10.0, description="Softmax temperature over those neighbours' text similarities."
    )
    cold_live_weight: float | None = Field(
        None,
        ge=0.0,
        le=100.0,
        description="Weight of log(1 + a cold item's events so far) added to its score; unset: the "
        "weight `playnext train --cold` chose on validation questions (0 for other models).",
    )
    ann_threshold: int = Field(
        100_000, ge=0, description="Vector indexes over more items than this use faiss ANN, else exact."
    )
    torch_threads: int = Field(
        1,
        ge=0,
        description="Intra-op threads per model call (0: torch's default). One request's forward pass "
        "is small and runs fastest on one thread; concurrent requests share the cores via the thread pool.",
    )
    cache_dir: Path | None = Field(None, description="Where item text embeddings are cached across restarts.")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Defaults, then `PLAYNEXT_*` environment variables, then explicit (non-None) overrides."""
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = os.environ.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
