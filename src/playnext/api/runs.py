"""`pn.train`, `pn.save`, `pn.load`: the run `playnext train` makes, and the folder it serves.

`train` goes through `playnext.experiment.run` — choose on validation, test once, one record —
so a notebook's number and a results file's are the same kind of number. `save` writes the
model folder `playnext serve`, `playnext recommend` and batch output read; `load` reads it back
with the caller's column names and id types.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playnext import recipes
from playnext.api.dataset import Dataset, DataSplit, Names
from playnext.api.model import Model
from playnext.artifact import Artifact
from playnext.errors import ConfigError
from playnext.experiment import Plan, popularity_baseline, run
from playnext.report import REPORT_FILE, write_report

DEFAULT_BUDGET_MINUTES = 10.0  # as `playnext train --model NAME`


@dataclass
class Run:
    """A finished `pn.train`: the tested model, its record and the split it was judged on."""

    model: Model
    record: dict[str, Any]
    split: DataSplit

    @property
    def metrics(self) -> dict[str, float]:
        """Test metrics, read once for the configuration and epoch validation chose."""
        return dict(self.record["metrics"])

    def report(self, path: str | Path) -> Path:
        """Write the run's report page (`playnext train --out` writes the same): the data, the
        learning curve by epoch and by minute, validation vs test beside popularity on the same
        split, the recipe. `path` is an .html file or a folder (its report.html); returns it."""
        file = Path(path) if Path(path).suffix.lower() in (".html", ".htm") else Path(path) / REPORT_FILE
        return write_report(self.record, file.parent, file)


def train(
    model: str,
    data: Dataset,
    *,
    recipe: str | None = None,
    budget_minutes: float | None = None,
    search: bool = False,
    **overrides: Any,
) -> Run:
    """The `playnext train` run in Python: `model`'s default recipe (or `recipe`), your fields
    on top, leave-one-out, chosen on validation, tested once, within `budget_minutes` (default
    10 for a model's default recipe, the recipe's own for a named one)."""
    chosen = recipes.load(recipe) if recipe is not None else recipes.default_for(model)
    if chosen.model != model:
        raise ConfigError(f"model {model!r} disagrees with recipe {chosen.name} (a {chosen.model} recipe)")
    if budget_minutes is None and recipe is None:
        budget_minutes = DEFAULT_BUDGET_MINUTES
    plan = Plan.from_recipe(chosen, overrides=overrides, search=search, budget_minutes=budget_minutes)
    done = run(plan, data.interactions, dataset=data.interactions.name)
    record = {**done.record, "data_stats": data.interactions.stats(), "names": data.names.to_dict()}
    if plan.model != "popular":  # the number to beat, on the same split (as `playnext train`)
        record["baseline"] = popularity_baseline(plan, done.split)
    art = Artifact.from_data(done.result.model, done.data, record)
    return Run(Model.wrap(art, data.names), record, DataSplit(data.with_interactions(done.data), done.split))


def save(model: Model, data: Dataset | None, path: str | Path) -> Path:
    """Write the model folder (`playnext serve --model-dir PATH` reads it). `data` gives the
    histories that `--user` answers from (the full log, usually); None keeps the fitted ones."""
    art = model._fitted()
    info = {**art.info, "names": (data.names if data is not None else model._names()).to_dict()}
    if data is not None:
        if data.interactions.items != art.items:
            raise ConfigError(
                "save: the dataset numbers its items differently from the model's; give the dataset "
                "(or a split of it) the model was fitted on"
            )
        art = Artifact(
            art.model, data.interactions.users, art.items, art.meta, data.interactions.sequences(), info
        )
    else:
        art = Artifact(art.model, art.users, art.items, art.meta, art.histories, info)
    return art.save(path)


def load(path: str | Path) -> Model:
    """A saved model folder as a fitted Model, answering with the names it was saved with."""
    art = Artifact.load(path)
    names = Names.from_dict(art.info["names"]) if "names" in art.info else Names()
    return Model.wrap(art, names)
