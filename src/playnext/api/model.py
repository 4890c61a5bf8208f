"""`pn.SASRec(...)`, `pn.from_recipe(...)`: a model you fit on a Dataset and ask for DataFrames.

A `Model` wraps a registered `Recommender` (the engine) with what a notebook needs: keyword
arguments validated as recipes are, `fit` on a Dataset or a DataSplit, and `recommend` that
returns the caller's column names and id types. Lists come from `Artifact.rank_histories`,
the one ranking path the CLI, batch output and the service also use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl

from playnext.api.dataset import Dataset, DataSplit, Frame, Names
from playnext.artifact import Artifact
from playnext.data.interactions import Histories
from playnext.data.request_time import Times, request_times
from playnext.data.split import EvalSet
from playnext.errors import ConfigError
from playnext.models import registry
from playnext.models.base import ModelConfig, Recommender
from playnext.recipes import default_for
from playnext.recipes import load as load_recipe
from playnext.report import draw_curve
from playnext.rerank import RerankSpec, spec_from
from playnext.train.batches import longest_first

BATCH_USERS = 1024  # users scored per forward pass: (1024, n_items) float32 scores at a time
FILTERS = ("kinds", "genres", "year_min", "year_max", "exclude_items", "only_items")


class Model:
    """A recommender with the caller's names. Subclasses fix `name` (the registered model)."""

    name: ClassVar[str] = ""

    def __init__(self, config: ModelConfig | None = None, /, **params: Any) -> None:
        """`pn.SASRec(dim=64, epochs=20)` starts from the model's default recipe (what
        `playnext train --model sasrec` runs) with your fields on top; a mistyped field names the
        field and the closest match. A config object (`SASRecConfig(...)`) is taken as it is."""
        cls = registry.get(self.name)
        if config is not None and params:
            raise ConfigError(f"{type(self).__name__}: give a config object or keyword fields, not both")
        if config is None:
            recipe = default_for(self.name)
            config = cls.config_class.from_dict({**recipe.params, **params}, where=type(self).__name__)
        elif not isinstance(config, cls.config_class):
            raise ConfigError(
                f"{type(self).__name__}: expected a {cls.config_class.__name__}, got {type(config).__name__}"
            )
        self.config: ModelConfig = config
        self.artifact_: Artifact | None = None
        self.names_: Names | None = None

    def __repr__(self) -> str:
        state = "fitted" if self.artifact_ is not None else "not fitted"
        return f"{type(self).__name__}({state})"

    # ---- fitting ----------------------------------------------------------------------------------
    def fit(self, train: Dataset | DataSplit, valid: DataSplit | EvalSet | None = None) -> Self:
        """Fit on `train` (a Dataset, or a DataSplit: its train events, validated on its
        validation questions — the epoch kept is the best validated one). Fitting again starts
        fresh. Shows a progress bar in a terminal or a notebook; returns the model."""
        data, questions = _train_and_valid(train, valid)
        rec: Recommender = registry.get(self.name)(self.config)
        rec.fit(data.interactions, questions)
        self.artifact_ = Artifact.from_data(rec, data.interactions, {"names": data.names.to_dict()})
        self.names_ = data.names
        return self

    @classmethod
    def wrap(cls, artifact: Artifact, names: Names) -> Model:
        """A fitted Model around a loaded or trained artifact (`pn.load`, `pn.train`)."""
        model = model_class(artifact.model.name)(artifact.model.config)
        model.artifact_, model.names_ = artifact, names
        return model

    @property
    def recommender(self) -> Recommender:
        """The engine underneath (`playnext.models`), for what the Python API does not cover."""
        return self._fitted().model

    @property
    def history(self) -> Frame:
        """The training curve, one row an epoch (loss, validation NDCG@10, seconds, `elapsed`
        since the start; a budget-cut last epoch's `fraction`); empty for a model trained without
        epochs."""
        report = self._fitted().model.training_report()
        rows = report.history if report is not None else []
        # every row read for the columns: a key only the last epoch has (`fraction`) is kept
        df = (
            pl.DataFrame(rows, infer_schema_length=None)
            if rows
            else pl.DataFrame({"epoch": []}, schema={"epoch": pl.Float64})
        )
        return self._names().table(df)

    def plot(self, ax: Any = None, by: str = "epoch") -> Any:
        """The learning curve: training loss and validation NDCG@10 by epoch (or `by="minute"`),
        the best epoch dotted — the report's curve (`playnext.report`); a matplotlib Axes."""
        import matplotlib.pyplot as plt

        report = self._fitted().model.training_report()
        if report is None or not report.history:
            raise ConfigError(f"{type(self).__name__} trains without epochs: there is no curve to plot")
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        draw_curve(ax, report.history, report.best_epoch, by)
        ax.set_title(f"{type(self).__name__}: learning curve")
        return ax

    # ---- recommending -----------------------------------------------------------------------------
    def recommend(
        self,
        data: Dataset | None = None,
        *,
        users: Sequence[Any] | None = None,
        history: Sequence[Any] | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        filters: dict[str, Any] | None = None,
        rerank: dict[str, Any] | RerankSpec | None = None,
        unknown: str = "raise",
        at: Times = None,
    ) -> Frame:
        """Top-k lists as a DataFrame with the caller's columns and id types (`uid, rank, iid,
        score`), best first, in memory and batched.

        `users` (default: every user of `data`) are answered from their histories in `data`
        (default: the events the model was fitted on, or saved with); `history` instead asks
        for one anonymous list of item ids (no user column). `filters` keeps items by `kinds`,
        `genres`, `year_min`, `year_max`, `exclude_items`, `only_items`; `rerank` is a re-rank
        spec (`{"mmr": {"lambda": 0.3}}`, see docs/rerank.md). Unknown users are an error
        listing them, or dropped with `unknown="skip"`. `at` is when the lists are asked: unix
        seconds, an ISO-8601 string or a datetime, one for all or one per user of `users` (default
        now); only a model trained with the request's time reads it."""
        art, names = self._fitted(), self._names()
        _check_k(k)
        if unknown not in ("raise", "skip"):
            raise ConfigError(f"unknown must be 'raise' or 'skip', got {unknown!r}")
        spec = _spec(rerank)
        allowed = _allowed(art, filters)
        if history is not None:
            if users is not None:
                raise ConfigError("give users or a history, not both")
            items = art.items.to_internal([str(i) for i in history], kind="item")
            anonymous = Histories.from_lists([items]).with_at(request_times(at, 1))
            lists = art.rank_histories(
                np.array([-1]), anonymous, k=k, exclude_seen=exclude_seen, rerank=spec, allowed=allowed,
            )  # fmt: skip
            _, rank, item, score = lists.long()
            df = pl.DataFrame({"rank": rank.astype(np.int32)})
            df = df.with_columns(
                names.ids(art.items.external.gather(item), user=False), pl.Series("score", score)
            )
            return names.table(df)
        ext, model_users, hist = self._questions(data, users, unknown, at)
        # longest histories first across the whole call, so each scoring batch pads to its own
        # rows; the rows are put back in the caller's user order at the end
        order = longest_first(hist, art.model.max_len or int(hist.lengths.max(initial=1)))
        parts = []
        for lo in range(0, len(order), BATCH_USERS):
            rows = order[lo : lo + BATCH_USERS]
            lists = art.rank_histories(
                model_users[rows], hist.take(rows), k=k, exclude_seen=exclude_seen, rerank=spec,
                allowed=allowed,
            )  # fmt: skip
            row, rank, item, score = lists.long()
            parts.append(
                pl.DataFrame(
                    {
                        "_row": rows[row],
                        names.user: ext.gather(rows[row]),
                        "rank": rank.astype(np.int32),
                        names.item: art.items.external.gather(item),
                        "score": score,
                    }
                )
            )
        empty = {names.user: pl.String, "rank": pl.Int32, names.item: pl.String, "score": pl.Float32}
        df = pl.concat(parts).sort("_row", "rank").drop("_row") if parts else pl.DataFrame(schema=empty)
        df = df.with_columns(
            names.ids(df.get_column(names.user), user=True), names.ids(df.get_column(names.item), user=False)
        )
        return names.table(df)

    def _questions(
        self, data: Dataset | None, users: Sequence[Any] | None, unknown: str, at: Times = None
    ) -> tuple[pl.Series, np.ndarray, Histories]:
        """(the users' external ids, their rows in the model, their histories in model items,
        asked at `at`: one time, or one per user asked)."""
        art = self._fitted()
        if data is None:
            source_users, seqs, same_items = art.users, art.histories, True
        else:
            inter = data.interactions
            source_users, seqs, same_items = inter.users, inter.sequences(), inter.items == art.items
        if users is None:
            rows = np.arange(len(source_users), dtype=np.int64)
            when = request_times(at, len(rows))
        else:
            asked = [str(u) for u in users]
            rows = source_users.to_internal(asked, kind="user", strict=False)
            missing = [u for u, r in zip(users, rows, strict=True) if r < 0]
            if missing and unknown == "raise":
                shown = ", ".join(repr(u) for u in missing[:5])
                more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
                raise ConfigError(
                    f"users: {len(missing)} unknown user(s): {shown}{more} (unknown='skip' drops them)"
                )
            when = request_times(at, len(asked))[rows >= 0]
            rows = rows[rows >= 0]
        ext = source_users.external.gather(rows)
        hist = seqs.take(rows)
        if not same_items:  # another catalog's numbering: map through the external ids
            assert data is not None
            mapped = art.items.to_internal(
                data.interactions.items.external.gather(hist.items).to_list(), strict=False
            )
            keep = mapped >= 0  # items the model never saw are not part of its input
            counts = np.bincount(hist.row_ids()[keep], minlength=len(hist))
            hist = Histories(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), mapped[keep])
        model_users = art.users.to_internal(ext.to_list(), kind="user", strict=False)
        return ext, model_users, hist.with_at(when)

    # ---- state --------------------------------------------------------------------------------------
    def _fitted(self) -> Artifact:
        if self.artifact_ is None:
            raise ConfigError(f"{type(self).__name__}: call fit() first")
        return self.artifact_

    def _names(self) -> Names:
        return self.names_ if self.names_ is not None else Names()


def _train_and_valid(
    train: Dataset | DataSplit, valid: DataSplit | EvalSet | None
) -> tuple[Dataset, EvalSet | None]:
    if isinstance(train, DataSplit):
        if valid is not None:
            raise ConfigError("fit(split) validates on the split's own questions: give no valid")
        return train.train, train.split.valid
    if not isinstance(train, Dataset):
        raise ConfigError(f"fit: expected a pn.Dataset or a split of one, got {type(train).__name__}")
    return train, valid.split.valid if isinstance(valid, DataSplit) else valid


def _check_k(k: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k must be a whole number >= 1, got {k!r}")


def _spec(rerank: dict[str, Any] | RerankSpec | None) -> RerankSpec | None:
    if rerank is None or isinstance(rerank, RerankSpec):
        return rerank
    return spec_from(rerank)


def _allowed(art: Artifact, filters: dict[str, Any] | None) -> np.ndarray | None:
    """The filters as one (n_items,) mask, by the service's own catalog rules."""
    if not filters:
        return None
    bad = sorted(set(filters) - set(FILTERS))
    if bad:
        raise ConfigError(f"filters: unknown key(s) {', '.join(bad)}; known: {', '.join(FILTERS)}")
    from playnext.serve.catalog import Catalog

    f = dict(filters)
    for key in ("exclude_items", "only_items"):
        if f.get(key) is not None:
            f[key.split("_")[0]] = art.items.to_internal([str(i) for i in f.pop(key)], kind="item")
        else:
            f.pop(key, None)
    return Catalog(art.meta).mask(len(art.items), **f)


# ---- the models, by name ----------------------------------------------------------------------------
class SASRec(Model):
    """Self-attentive sequential recommendation (Kang & McAuley 2018), full-softmax loss."""

    name = "sasrec"


class HSTU(Model):
    """Hierarchical sequential transduction units (Zhai et al. 2024): attention with time biases."""

    name = "hstu"


class GRU4Rec(Model):
    """A recurrent session model (Hidasi et al. 2016), cross-entropy loss."""

    name = "gru4rec"


class Caser(Model):
    """Convolutional sequence embedding (Tang & Wang 2018)."""

    name = "caser"


class MLP(Model):
    """A multi-layer perceptron over the user's item bag."""

    name = "mlp"


class EASE(Model):
    """Embarrassingly shallow autoencoder (Steck 2019): a closed-form item-item model."""

    name = "ease"


class Popular(Model):
    """Most-played items first: the baseline every model must beat."""

    name = "popular"


class Recency(Model):
    """The user's own recent items again: the re-listen baseline."""

    name = "recency"


def model_class(name: str) -> type[Model]:
    """The Model subclass of a registered model name."""
    for cls in Model.__subclasses__():
        if cls.name == name:
            return cls
    registry.get(name)  # an unknown name is refused with the registered ones
    return type(name, (Model,), {"name": name})


def from_recipe(recipe: str, **overrides: Any) -> Model:
    """A model from a shipped recipe (`"hstu-large"`) or a TOML file, with fields overridden."""
    r = load_recipe(recipe)
    cls = model_class(r.model)
    config = registry.get(r.model).config_class.from_dict({**r.params, **overrides}, where=r.name)
    model = cls(config)
    return model
