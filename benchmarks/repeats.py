"""Re-listens: models against the recency × frequency baseline under the repeat-aware protocol.

Leave-one-out, full ranking with seen items *kept* as candidates (`playnext train --repeats`),
expected ties; configs and epochs chosen on validation under the same protocol, test read once.
Every record carries the metrics over all test users and apart for users whose target is a
repeat (``repeat/``) or new (``new/``), with the size of each group (`n_users_by_target`).

Logs: the synthetic music world with planted re-listens (`generate_world(relisten_rate=…)`:
after 30 % of plays the user replays a track of their own recent history, albums may be
replayed) and Last.fm HetRec 2K as tag-days (`events="tag-days"`: one event per day a user
tagged an artist, so a return on a later day is a repeat; its plays hold no repeated pair).
Popularity and recency × frequency are deterministic (one run); SASRec, without and with the
learned repeat bonus (`sasrec+bonus`: `repeat_bonus=true`), runs each seed within a short
wall-clock budget:

    python -m benchmarks.repeats                          # synthetic-music and lastfm-2k, 3 seeds
    python -m benchmarks.repeats --datasets synthetic-music --minutes 1 --seeds 0
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import torch

from benchmarks.common import SHORT_SASREC, append_record, bench_record, data_path
from playnext import recipes
from playnext.data.interactions import Interactions
from playnext.data.readers import load_dataset
from playnext.data.split import leave_one_out
from playnext.data.synthetic import generate_world
from playnext.experiment import Plan, run

WORLD: dict[str, Any] = {
    "n_users": 1500,
    "n_items": 800,
    "seed": 0,
    "kinds": ("music",),
    "allow_repeats": True,
    "relisten_rate": 0.3,
}
# the signal benchmarks' short recipe, trained to convergence: full softmax, early stopping
SASREC: dict[str, Any] = {**SHORT_SASREC, "loss": "ce", "epochs": 200, "patience": 5}
READ = {"lastfm-2k": {"events": "tag-days"}}
TAG = "repeats"


def load(name: str) -> Interactions:
    if name == "synthetic-music":
        return generate_world(**WORLD)
    return load_dataset(name, data_path(name), **READ.get(name, {}))


def plan_for(model: str, seed: int, minutes: float) -> Plan:
    """Baselines with their validation search; SASRec with this benchmark's recipe and budget."""
    if model in ("sasrec", "sasrec+bonus"):  # +bonus: the learned repeat bonus (repeat_bonus=true)
        base = {**SASREC, "repeat_bonus": model == "sasrec+bonus"}
        return Plan("sasrec", base=base, overrides={"seed": seed}, budget_minutes=minutes, repeats=True)
    return Plan.from_recipe(recipes.default_for(model), search=True, repeats=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="synthetic-music,lastfm-2k")
    ap.add_argument("--models", default="popular,recency,sasrec,sasrec+bonus")
    ap.add_argument("--seeds", default="0,1,2", help="SASRec's seeds (the baselines are deterministic)")
    ap.add_argument("--minutes", type=float, default=3.0, help="SASRec's training budget per run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default=TAG)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    for name in args.datasets.split(","):
        t0 = time.perf_counter()
        data = load(name)
        split = leave_one_out(data)
        load_s = time.perf_counter() - t0
        for model in args.models.split(","):
            for seed in seeds if model.startswith("sasrec") else [0]:
                done = run(plan_for(model, seed, args.minutes), data, dataset=name, split=split)
                extra: dict[str, Any] = {"load_seconds": load_s, "read": READ.get(name, {})}
                if name == "synthetic-music":
                    extra["world"] = WORLD
                # the variant keeps sasrec and sasrec+bonus apart: both are model "sasrec"
                record = bench_record(done.record, args.tag, variant=model, **extra)
                path = append_record("repeats", record, key=("model", "dataset", "seed", "tag", "variant"))
                m, groups = done.result.test.metrics, done.result.test.groups
                logging.info(
                    "%s %s seed %d: NDCG@10 %.4f (repeat %.4f on %d, new %.4f on %d) → %s",
                    *(name, model, seed, m["NDCG@10"], m.get("repeat/NDCG@10", float("nan"))),
                    *(groups["repeat"], m.get("new/NDCG@10", float("nan")), groups["new"], path),
                )


if __name__ == "__main__":
    main()
