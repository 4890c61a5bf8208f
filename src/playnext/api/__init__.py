"""The public Python API: what `import playnext as pn` gives a notebook.

    data = pn.Dataset.from_frame(df, user="uid", item="iid", time="ts")
    split = pn.leave_one_out(data)
    model = pn.SASRec(epochs=20).fit(split)
    pn.evaluate(model, split)
    recs = model.recommend(data, k=10)        # uid, rank, iid, score — your ids, your dtypes

Every other entry point (CLI, batch output, the service) is built on the same parts.
"""

from playnext.api.dataset import Dataset, DataSplit, deduplicate, k_core, leave_one_out, temporal_split
from playnext.api.evaluation import compare, evaluate
from playnext.api.model import (
    EASE,
    HSTU,
    MLP,
    Caser,
    GRU4Rec,
    Model,
    Popular,
    Recency,
    SASRec,
    from_recipe,
    model_class,
)
from playnext.api.runs import Run, load, save, train

__all__ = [
    "EASE",
    "HSTU",
    "MLP",
    "Caser",
    "DataSplit",
    "Dataset",
    "GRU4Rec",
    "Model",
    "Popular",
    "Recency",
    "Run",
    "SASRec",
    "compare",
    "deduplicate",
    "evaluate",
    "from_recipe",
    "k_core",
    "leave_one_out",
    "load",
    "model_class",
    "save",
    "temporal_split",
    "train",
]
