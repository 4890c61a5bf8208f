"""The RecTools side of benchmarks.peers: fit RecTools' SASRecModel, time it, recommend for all.

    <rectools venv>/bin/python benchmarks/peers_rectools.py WORKDIR

Run by benchmarks.peers with the scratch virtualenv's python (RecTools pins its own numpy,
pandas and pytorch-lightning), so it imports only rectools, torch, pandas and numpy, never
playnext. WORKDIR holds what peers.py wrote: `request.json` (the shared config) and
`train.csv` (user_id, item_id, weight, datetime in seconds, rows in playnext's order, so
RecTools' stable sort by time keeps playnext's order of same-second events). It gets back:

* `rectools.json`: per-epoch seconds (a lightning Callback), fit and recommend seconds, versions;
* `reco.csv`: `model.recommend(all users, k, filter_viewed=True)`, the public top-k lists;
* `scores.npy` + `score_ids.json`: the full (users × items) score matrix, computed with the
  trained backbone the same way recommend computes it, so playnext can rank every target.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import rectools
import torch
from pytorch_lightning.callbacks import Callback
from rectools import Columns
from rectools.dataset import Dataset
from rectools.models import SASRecModel

# RecTools' shipped SASRecModel settings the curve record shows (every other one is its default)
PARAMS_SHOWN = (
    "n_blocks",
    "n_heads",
    "n_factors",
    "session_max_len",
    "dropout_rate",
    "loss",
    "lr",
    "batch_size",
)


class EpochTimer(Callback):
    """Wall seconds of each training epoch (batches and their collation, no validation)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._t0)
        logged = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items()}  # its train loss
        seconds = self.seconds[-1]
        print(f"rectools epoch {len(self.seconds)}: {seconds:.1f} s {logged}", file=sys.stderr, flush=True)


# what the Curve callback scores with: RecTools resolves `get_trainer_func` by its import path
# and takes only simple keyword arguments, so the model, dataset and users are handed over here
CURVE: dict[str, Any] = {}


class Curve(Callback):
    """Time-to-quality: after each epoch (once EpochTimer has its seconds), the full score
    matrix of `users` from the network as it is then, written to `curve-<epoch>.npy` for
    playnext to rank against the validation targets; training stops at the first epoch end
    past `budget` training seconds. Scoring is not counted: the next epoch's clock starts after."""

    def __init__(self, workdir: Path, budget: float) -> None:
        self.workdir, self.budget = workdir, budget
        self.timer: EpochTimer | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.timer is not None
        epoch = len(self.timer.seconds)
        net = pl_module.torch_model
        # CURVE, not attributes: the trainer is deep-copied at fit, and a copied model is not fitted
        users = CURVE["users"]
        scores, item_ids = full_scores(CURVE["model"], CURVE["dataset"], users, net)
        net.train()
        np.save(self.workdir / f"curve-{epoch}.npy", scores.astype(np.float32))
        (self.workdir / "score_ids.json").write_text(
            json.dumps({"users": [str(u) for u in users], "items": item_ids})
        )
        if sum(self.timer.seconds) >= self.budget:
            trainer.should_stop = True


def cpu_trainer(
    epochs: int, deterministic: bool, extra: list[Callback] | None = None, min_epochs: int | None = None
) -> pl.Trainer:
    """RecTools' default trainer (exactly `epochs`, or `min_epochs` to `epochs` where a callback
    stops it, no checkpoints) on the CPU, with the timer."""
    return pl.Trainer(
        max_epochs=epochs,
        min_epochs=epochs if min_epochs is None else min_epochs,
        deterministic=deterministic,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
        callbacks=[EpochTimer(), *(extra or [])],
    )


def full_scores(
    model: SASRecModel, dataset: Dataset, users: np.ndarray, net: Any = None
) -> tuple[np.ndarray, list[str]]:
    """(users × known items) dot-product scores and the items' external ids, column order.

    The steps of RecTools' own u2i recommend (transform the dataset, one session embedding per
    user from the last position, item embeddings from the item net), without the top-k cut.
    """
    prep = model.data_preparator
    rec_ds = prep.transform_dataset_u2i(dataset, users)
    loader = prep.get_dataloader_recommend(rec_ds, model.recommend_batch_size)
    net = net if net is not None else model.torch_model
    net.eval()
    with torch.no_grad():
        item_embs = net.item_model.get_all_embeddings()  # (I + extra, D)
        rows = [net.encode_sessions(batch, item_embs)[:, -1, :] for batch in loader]  # (b, D) each
        user_embs = torch.cat(rows)  # (U, D) in rec_ds internal user order
        extra = prep.n_item_extra_tokens
        scores = user_embs @ item_embs[extra:].T  # (U, I) real items only
    order = rec_ds.user_id_map.convert_to_internal(users)
    item_ids = prep.item_id_map.get_external_sorted_by_internal()[extra:]
    return scores[torch.from_numpy(order)].numpy(), [str(i) for i in item_ids]


def main(workdir: Path) -> None:
    req: dict[str, Any] = json.loads((workdir / "request.json").read_text())
    cfg: dict[str, Any] = req["config"]
    torch.set_num_threads(int(req["threads"]))
    pl.seed_everything(int(req["seed"]), workers=True, verbose=False)

    train = pd.read_csv(workdir / "train.csv", dtype={Columns.User: str, Columns.Item: str})
    train[Columns.Datetime] = pd.to_datetime(train[Columns.Datetime], unit="s")
    dataset = Dataset.construct(train[[Columns.User, Columns.Item, Columns.Weight, Columns.Datetime]])
    users = train[Columns.User].unique()

    if req.get("curve"):
        curve(req, dataset, users, workdir)
        return
    model = SASRecModel(
        n_blocks=cfg["n_blocks"],
        n_heads=cfg["n_heads"],
        n_factors=cfg["dim"],
        dropout_rate=cfg["dropout"],
        session_max_len=cfg["max_len"],
        loss="softmax",
        lr=cfg["lr"],
        batch_size=cfg["batch_size"],
        epochs=cfg["epochs"],
        deterministic=bool(req["deterministic"]),
        recommend_torch_device="cpu",
        get_trainer_func=cpu_trainer,
        get_trainer_func_kwargs={"epochs": cfg["epochs"], "deterministic": bool(req["deterministic"])},
    )
    t0 = time.perf_counter()
    model.fit(dataset)
    fit_seconds = time.perf_counter() - t0
    (timer,) = (cb for cb in model.fit_trainer.callbacks if isinstance(cb, EpochTimer))

    t0 = time.perf_counter()
    reco = model.recommend(users=users, dataset=dataset, k=int(req["k"]), filter_viewed=True)
    recommend_seconds = time.perf_counter() - t0
    reco[[Columns.User, Columns.Item, Columns.Rank]].astype({Columns.User: str, Columns.Item: str}).to_csv(
        workdir / "reco.csv", index=False
    )

    t0 = time.perf_counter()
    scores, item_ids = full_scores(model, dataset, users)
    scores_seconds = time.perf_counter() - t0
    np.save(workdir / "scores.npy", scores.astype(np.float32))
    (workdir / "score_ids.json").write_text(json.dumps({"users": [str(u) for u in users], "items": item_ids}))

    out = {
        "epoch_seconds": timer.seconds,
        "fit_seconds": fit_seconds,
        "recommend_seconds": recommend_seconds,
        "full_scores_seconds": scores_seconds,
        "n_users": len(users),
        "n_items": len(item_ids),
        "n_params": sum(p.numel() for p in model.torch_model.parameters()),
        "nan_score_rows": int(np.isnan(scores).any(axis=1).sum()),  # a diverged fit: peers.py stops
        "nan_parameters": sum(int(torch.isnan(p).sum()) for p in model.torch_model.parameters()),
        "versions": {
            "rectools": rectools.__version__,
            "torch": torch.__version__,
            "pytorch_lightning": pl.__version__,
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "torch_threads": torch.get_num_threads(),
        "peak_rss_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    (workdir / "rectools.json").write_text(json.dumps(out, indent=1))


def curve_trainer(epochs: int, deterministic: bool, workdir: str, budget: float) -> pl.Trainer:
    """cpu_trainer plus the Curve callback (its EpochTimer is the trainer's own)."""
    cb = Curve(Path(workdir), budget)
    t = cpu_trainer(epochs, deterministic, [cb], min_epochs=1)  # else should_stop waits for `epochs`
    cb.timer = next(c for c in t.callbacks if isinstance(c, EpochTimer))
    return t


def curve(req: dict[str, Any], dataset: Dataset, users: np.ndarray, workdir: Path) -> None:
    """RecTools' shipped SASRecModel (its defaults; only the trainer and the epoch cap set here)
    trained for `budget_seconds`, the score matrix after every epoch (Curve)."""
    budget = float(req["budget_seconds"])
    cap = int(req.get("max_epochs", 1000))
    CURVE.update(dataset=dataset, users=users)
    kwargs = {
        "epochs": cap,
        "deterministic": bool(req["deterministic"]),
        "workdir": str(workdir),
        "budget": budget,
    }
    model = SASRecModel(
        epochs=cap,
        recommend_torch_device="cpu",
        get_trainer_func=curve_trainer,
        get_trainer_func_kwargs=kwargs,
    )
    CURVE["model"] = model
    t0 = time.perf_counter()
    model.fit(dataset)
    (timer,) = (cb for cb in model.fit_trainer.callbacks if isinstance(cb, EpochTimer))
    out = {
        "epoch_seconds": timer.seconds,
        "fit_seconds": time.perf_counter() - t0,
        "params": {k: getattr(model, k, None) for k in PARAMS_SHOWN} | {"epochs_cap": cap},
        "n_params": sum(p.numel() for p in model.torch_model.parameters()),
        "versions": {"rectools": rectools.__version__, "torch": torch.__version__, "numpy": np.__version__},
    }
    (workdir / "rectools.json").write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: peers_rectools.py WORKDIR (written by benchmarks.peers)")
    main(Path(sys.argv[1]))
