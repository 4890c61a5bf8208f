"""`RerankSpec`: which re-rankers run after the model, with which parameters, checked.

One pydantic model serves the HTTP API (a `rerank` field of /recommend and /search: a bad value
is a 422 naming the field and its range), the CLI (`--rerank calibrate:lambda=0.5`, parsed by
`parse_spec`; a bad value exits 2) and code. They always run in one fixed order (docs/rerank.md):
novelty re-weights the relevance, calibration and MMR are terms of one greedy objective, and
quotas constrain every step of that greedy.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from playnext.errors import ConfigError

RERANKERS = ("novelty", "calibrate", "mmr", "quota")
"""The re-rankers, in the order they are applied."""
SETTINGS = ("pool", "relevance", "slots")
"""The spec's fields that are not re-rankers: what every re-ranker works on."""
MAX_POOL = 1000
MAX_QUOTA_KINDS = 20


def _in_range(lo: float, hi: float, *, integer: bool = False) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if not lo <= v <= hi:
            shown = f"{int(lo)}..{int(hi)}" if integer else f"[{lo:g}, {hi:g}]"
            raise ValueError(f"must be in {shown}, got {v}")
        return v

    return check


def _range(lo: float, hi: float) -> dict[str, Any]:
    return {"minimum": lo, "maximum": hi}


# each range is in the schema (for clients) and stated in full in the error (for people)
Unit = Annotated[float, AfterValidator(_in_range(0.0, 1.0)), Field(json_schema_extra=_range(0.0, 1.0))]
Alpha = Annotated[float, AfterValidator(_in_range(1e-4, 0.5)), Field(json_schema_extra=_range(1e-4, 0.5))]
Count = Annotated[
    int, AfterValidator(_in_range(0, 1000, integer=True)), Field(json_schema_extra=_range(0, 1000))
]
PositiveCount = Annotated[
    int, AfterValidator(_in_range(1, 1000, integer=True)), Field(json_schema_extra=_range(1, 1000))
]
Pool = Annotated[
    int, AfterValidator(_in_range(10, MAX_POOL, integer=True)), Field(json_schema_extra=_range(10, MAX_POOL))
]
LAMBDA_HELP = "Trade-off in [0, 1]: 0 = the model's order, 1 = only the re-ranking term."


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        """An unknown parameter names the known ones (pydantic alone says only 'extra input')."""
        if isinstance(data, dict):
            known = [f.alias or name for name, f in cls.model_fields.items()]
            unknown = [k for k in data if k not in known and k not in cls.model_fields]
            if unknown:
                close = [m for k in unknown for m in difflib.get_close_matches(str(k), known, n=1)]
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ValueError(
                    f"unknown parameter(s) {', '.join(map(str, unknown))}{hint}; known: {', '.join(known)}"
                )
        return data


class Novelty(_Part):
    """relevance − weight · log(1 + popularity) / log(1 + max popularity) (relevance ≤ 1)."""

    weight: Unit = Field(0.2, description="Popularity penalty on the (0, 1] relevance, in [0, 1].")


class Calibrate(_Part):
    """Steck (RecSys 2018): (1 − λ)·Σ relevance − λ·KL(p ‖ q̃), p the history's mix, q the list's."""

    lam: Unit = Field(0.3, alias="lambda", description=LAMBDA_HELP)
    alpha: Alpha = Field(
        0.01, description="Smoothing of the list's mix, q̃ = (1 − α)·q + α·p; in [1e-4, 0.5]."
    )
    by: Literal["genre", "kind"] = Field("genre", description="Calibrate the genre mix or the kind mix.")
    lookahead: bool = Field(
        True,
        description="Judge each pick by the KL of the list completed at the history's mix (the slots "
        "still open assumed calibrated) rather than of the partial list (Steck's greedy): the head "
        "stays the model's and the tail corrects the mix.",
    )


class MMR(_Part):
    """Maximal marginal relevance: (1 − λ)·gain − λ·max similarity to what is already listed."""

    lam: Unit = Field(0.3, alias="lambda", description=LAMBDA_HELP)
    by: Literal["auto", "embedding", "genres"] = Field(
        "auto",
        description="Cosine of item vectors (the model's, else text) or Jaccard of genres; auto: "
        "vectors when there are any.",
    )


class Quota(_Part):
    """Hard constraints of the greedy fill; one that cannot be met is relaxed and named."""

    min_per_kind: dict[str, Count] = Field(
        default_factory=dict, max_length=MAX_QUOTA_KINDS, description="At least n items of each kind."
    )
    max_per_genre: PositiveCount | None = Field(None, description="No genre in more than n items (1..1000).")


class RerankSpec(_Part):
    """The re-rankers to apply after the model (any subset; the order is always the same)."""

    novelty: Novelty | None = None
    calibrate: Calibrate | None = None
    mmr: MMR | None = None
    quota: Quota | None = None
    pool: Pool = Field(
        100, description="Candidates re-ranked: the model's top `pool` (at least k), 10..1000."
    )
    relevance: Literal["rank", "prob"] = Field(
        "rank",
        description="The relevance the greedy keeps: rank = the NDCG weight 1/log2(1 + rank) of the "
        "model's place (any model's scores); prob = the model's softmax probability over the "
        "candidates (scores that are softmax logits; λ then sits near 0.02).",
    )
    slots: Literal["equal", "dcg"] = Field(
        "equal",
        description="How much relevance each slot of the list is worth: equal (Σ relevance, as "
        "Steck) or dcg = 1/log2(1 + slot), the list's expected DCG: accuracy is kept at the head, "
        "the re-rankers act further down.",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [k for k in data if k not in (*RERANKERS, *SETTINGS)]
            if unknown:
                close = [m for k in unknown for m in difflib.get_close_matches(str(k), RERANKERS, n=1)]
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ValueError(
                    f"unknown re-ranker(s) {', '.join(map(str, unknown))}{hint}; "
                    f"known: {', '.join(RERANKERS)} (and {', '.join(SETTINGS)})"
                )
            # `{"calibrate": true}` and `{"calibrate": {}}` both mean the defaults
            data = {k: ({} if v is True else v) for k, v in data.items() if v is not False}
        return data

    @property
    def applied(self) -> list[str]:
        """The re-rankers this spec runs, in the order they run."""
        return [name for name in RERANKERS if getattr(self, name) is not None]

    @property
    def active(self) -> bool:
        return bool(self.applied)

    def describe(self) -> dict[str, Any]:
        """The full spec with defaults, as a client would send it."""
        return self.model_dump(by_alias=True, exclude_none=True)


def parse_spec(items: Sequence[str] | None, where: str = "--rerank") -> RerankSpec | None:
    """A spec from command-line strings, each `NAME[:key=value,…]` or one JSON object.

    `calibrate:lambda=0.5`, `mmr:lambda=0.3,by=genres`, `novelty:weight=0.2`,
    `quota:max_per_genre=3,min_per_kind.game=2`, `pool=200`, `relevance=prob`, `slots=dcg`. Errors are
    ConfigErrors naming the field and its range (the CLI exits 2).
    """
    if not items:
        return None
    doc: dict[str, Any] = {}
    for item in items:
        text = item.strip()
        if text.startswith("{"):
            try:
                part = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{where} {text!r}: not valid JSON ({e.msg})") from None
            if not isinstance(part, dict):
                raise ConfigError(f"{where} {text!r}: expected a JSON object")
            doc.update(part)
            continue
        name, _, params = text.partition(":")
        name = name.strip()
        if "=" in name and not params:  # pool=200, relevance=prob
            key, _, value = name.partition("=")
            doc[key.strip()] = _scalar(value)
            continue
        fields: dict[str, Any] = {}
        for pair in filter(None, (p.strip() for p in params.split(","))):
            key, eq, value = pair.partition("=")
            if not eq:
                raise ConfigError(f"{where} {text!r}: expected key=value, got {pair!r}")
            head, _, sub = key.strip().partition(".")
            if sub:  # min_per_kind.game=2
                fields.setdefault(head, {})[sub] = _scalar(value)
            else:
                fields[head] = _scalar(value)
        doc[name] = fields
    return spec_from(doc, where)


def spec_from(doc: Any, where: str = "rerank") -> RerankSpec:
    """A validated spec from a dict; a ConfigError names the first bad field and why."""
    try:
        return RerankSpec.model_validate(doc)
    except ValidationError as e:
        raise ConfigError(f"{where}: {validation_message(e)}") from None


def validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _scalar(value: str) -> Any:
    v = value.strip()
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v
