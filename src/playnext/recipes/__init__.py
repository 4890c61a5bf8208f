"""Recipes are data: one TOML file per validated configuration, shipped inside the package.

A recipe names its model, the config fields it fixes (`[params]`), the candidates `--search`
tries (`[[search]]`, each a table of fields that vary), its wall-clock budget, and what it
scored where (`[[scored]]`: dataset, metric, value, the record tag in benchmarks/results, and
the published number it is set beside).
`playnext train --recipe NAME|FILE.toml` runs one; `--model NAME` alone runs the recipe that
says `default = true` for that model. The demo, the benchmarks and the tests read these files,
so the configuration behind a published number exists exactly once.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from playnext.config import convert
from playnext.errors import ConfigError
from playnext.models.registry import get, names

SECTIONS = ("recipe", "params", "search", "scored")
RECIPE_KEYS = ("model", "description", "default", "budget_minutes")
SCORE_TYPES: dict[str, type] = {
    "dataset": str,
    "metric": str,
    "value": float,
    "tag": str,
    "seeds": int,
    "note": str,
    "changed_since": str,
    "published": float,
    "published_by": str,
}
SCORED_KEYS = tuple(SCORE_TYPES)


@dataclass(frozen=True)
class Score:
    """One published number of a recipe: `value` of `metric` on `dataset`, record tag `tag`."""

    dataset: str
    metric: str
    value: float
    tag: str
    seeds: int = 1
    note: str = ""
    # fields [params] has set otherwise since this run, for speed (comma-separated); the record
    # holds the run's values, the test of the records checks every other field
    changed_since: str = ""
    published: float | None = None  # the paper's number for this metric under the same protocol
    published_by: str = ""

    @property
    def changed_fields(self) -> tuple[str, ...]:
        return tuple(f.strip() for f in self.changed_since.split(",") if f.strip())


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    search: list[dict[str, Any]] = field(default_factory=list)
    scored: tuple[Score, ...] = ()
    default: bool = False
    budget_minutes: float = 0.0  # 0 = the params' own epochs / max_minutes decide
    source: str = ""

    def config(self) -> Any:
        """The model's typed config for `params` (validated)."""
        cls = get(self.model)
        return cls.config_class.from_dict(self.params, where=f"{self.source or self.name} [params]")


def _check_keys(found: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in found:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{where}: unknown field {key!r}{hint}; allowed: {', '.join(allowed)}")


def parse(text: str, *, name: str, source: str) -> Recipe:
    """A validated recipe from TOML text; every error names `source` and the field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML ({e})") from None
    _check_keys(doc, SECTIONS, source)
    head = doc.get("recipe", {})
    if not isinstance(head, dict):
        raise ConfigError(f"{source}: [recipe] must be a table")
    _check_keys(head, RECIPE_KEYS, f"{source} [recipe]")
    model = head.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{source} [recipe]: field 'model' is required; one of {', '.join(names())}")
    if model not in names():
        raise ConfigError(f"{source} [recipe] model: unknown model {model!r}; one of {', '.join(names())}")
    where = f"{source} [recipe]"
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: [params] must be a table")
    search = doc.get("search", [])
    if not isinstance(search, list) or not all(isinstance(c, dict) for c in search):
        raise ConfigError(f"{source}: [[search]] must be an array of tables")
    scored = []
    for i, s in enumerate(doc.get("scored", [])):
        w = f"{source} [[scored]] #{i + 1}"
        _check_keys(s, SCORED_KEYS, w)
        missing = [k for k in ("dataset", "metric", "value", "tag") if k not in s]
        if missing:
            raise ConfigError(f"{w}: missing field(s) {', '.join(missing)}")
        typed = {k: convert(v, SCORE_TYPES[k], f"{w} {k}") for k, v in s.items()}
        scored.append(Score(**typed))
    recipe = Recipe(
        name=name,
        model=model,
        description=str(convert(head.get("description", ""), str, f"{where} description")),
        params=params,
        search=search,
        scored=tuple(scored),
        default=bool(convert(head.get("default", False), bool, f"{where} default")),
        budget_minutes=float(convert(head.get("budget_minutes", 0.0), float, f"{where} budget_minutes")),
        source=source,
    )
    if recipe.budget_minutes < 0:
        raise ConfigError(f"{where} budget_minutes: must be >= 0, got {recipe.budget_minutes}")
    recipe.config()  # [params]: unknown fields, wrong types and out-of-range values fail here
    cls = get(model)
    for i, cand in enumerate(search):
        cls.config_class.from_dict({**params, **cand}, where=f"{source} [[search]] #{i + 1}")
    return recipe


def shipped() -> list[Recipe]:
    """Every recipe inside the package, by name."""
    folder = resources.files(__name__)
    out = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            name = entry.name.removesuffix(".toml")
            out.append(parse(entry.read_text(encoding="utf-8"), name=name, source=f"recipe {name}"))
    return out


def load(name_or_path: str | Path) -> Recipe:
    """A shipped recipe by name, or a recipe file (anything ending in .toml or naming a file)."""
    text = str(name_or_path)
    path = Path(text)
    if text.endswith(".toml") or path.is_file():
        try:
            body = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{path}: cannot read recipe ({e.strerror or e})") from None
        return parse(body, name=path.stem, source=str(path))
    recipes = {r.name: r for r in shipped()}
    if text not in recipes:
        close = difflib.get_close_matches(text, recipes, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown recipe {text!r}{hint}; shipped: {', '.join(recipes)}")
    return recipes[text]


def default_for(model: str) -> Recipe:
    """The recipe `playnext train --model MODEL` uses; a model without one gets its defaults."""
    model = get(model).name  # refused with the registered names if unknown; any case (`SASRec`)
    for r in shipped():
        if r.model == model and r.default:
            return r
    return Recipe(name=model, model=model, description="the model's own defaults", source="defaults")
