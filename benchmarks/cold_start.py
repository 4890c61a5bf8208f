"""Cold-start items: the content tower against serving-time neighbour borrowing and popularity.

A fraction of the catalog is held out of training entirely (`cold_item_split`); each user's
first event on one of those items is a question, asked with the warm events before it. Ranked
among all items and within the cold set (HR@10, NDCG@10):

- id-only SASRec: cannot rank a cold item (tied below every warm one: chance within the set);
- neighbour borrowing: the id-only model's scores of each cold item's 10 nearest MiniLM texts,
  softmax-weighted (τ = 0.05), exactly what `playnext serve` does for a model without content;
- the content tower: the same recipe with `item_features`, scoring cold items from content alone;
- popularity within the cold set: each cold item's events before the question (no training);
- `+live`: borrowing and the content tower with w · log(1 + the item's events so far) added, as
  `playnext serve` adds the state store's counts; w is chosen on a seeded half of the questions'
  users, and every figure (all scorers) is on the other half.

Both SASRecs also answer the ordinary leave-one-out questions of the warm log (the warm target:
the tower must cost at most 1 % of NDCG@10). Same recipe and budget for both; the epoch is
chosen on warm validation, test read once; mean ± std over model seeds (the split is fixed):

    python -m benchmarks.cold_start --datasets ml-1m,lastfm-2k      # needs PLAYNEXT_DATA_DIR
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import SHORT_SASREC, append_record, bench_record, data_path
from playnext.data.interactions import Interactions
from playnext.data.readers import load_dataset
from playnext.data.split import cold_item_split, k_core
from playnext.data.synthetic import generate_world
from playnext.evaluate.protocol import evaluate, model_scorer
from playnext.experiment import COLD_NEIGHBOURS, COLD_TEMPERATURE, cold_report
from playnext.models.sasrec import SASRec, SASRecConfig

RECIPE = SHORT_SASREC
# what each catalog describes: lastfm-2k artists have tags and names, no year
FEATURES = {
    "ml-1m": ["genres", "year", "text"],
    "lastfm-2k": ["genres", "text"],
    "synthetic": ["genres", "kind", "year", "text"],
}
KEYS = ("all/HR@10", "all/NDCG@10", "cold/HR@10", "cold/NDCG@10")


# lastfm-2k's 17.6k artists are mostly heard by one or two users; its 5-core (users and artists
# with ≥ 5 events) keeps the catalog a full softmax can train on in minutes on a CPU
CORE = {"lastfm-2k": 5}


def load(name: str) -> Interactions:
    if name == "synthetic":
        return generate_world(n_users=1500, n_items=800, seed=0)
    data = load_dataset(name, data_path(name))
    return k_core(data, CORE[name], CORE[name]) if name in CORE else data


def run(
    name: str, seeds: list[int], epochs: int, minutes: float, fraction: float, by: str, encoder: str
) -> dict[str, Any]:
    split = cold_item_split(load(name), fraction, by=by, seed=0)
    warm = split.warm
    runs: dict[str, list[dict[str, Any]]] = {
        "id-only": [],
        "borrowing": [],
        "borrowing+live": [],
        "content": [],
        "content+live": [],
    }
    pop: dict[str, float] = {}
    questions: dict[str, int] = {}
    for seed in seeds:
        for variant, extra in (
            ("id-only", {}),
            ("content", {"item_features": FEATURES[name], "text_encoder": encoder}),
        ):
            cfg = SASRecConfig.from_dict(
                {**RECIPE, **extra, "epochs": epochs, "max_minutes": minutes, "seed": seed}
            )
            t0 = time.perf_counter()
            model = SASRec(cfg).fit(warm.train, warm.valid)
            seconds = time.perf_counter() - t0
            ndcg = evaluate(model_scorer(model), warm.test, warm.train.n_items, ks=(10,)).metrics["NDCG@10"]
            best = model.report_.best_epoch if model.report_ else None
            base = {
                "seed": seed,
                "warm/NDCG@10": ndcg,
                "best_epoch": best,
                "train_seconds": round(seconds, 1),
            }
            # the content model is read by its own vectors; the id-only one as serving would without them
            report = cold_report(model, split, encoder if variant == "id-only" else "none")
            scorers, weights = report["scorers"], report["live_weights"]
            for scorer, metrics in scorers.items():
                if scorer in runs and scorer.startswith("content") == (variant == "content"):
                    chosen = weights.get(scorer.removesuffix("+live"), {}).get("chosen")
                    live = {"live_weight": chosen} if scorer.endswith("+live") else {}
                    runs[scorer].append({**base, **metrics, **live})
            pop, questions = scorers["cold-popularity"], report["questions"]
            logging.info("%s %s seed %d: warm NDCG@10 %.4f, cold HR@10 %s", name, variant, seed, ndcg,
                         {k: round(v["cold/HR@10"], 4) for k, v in scorers.items()})  # fmt: skip
    out: dict[str, Any] = {"protocol": split.protocol, "questions": questions, "variants": {}}
    for variant, rs in runs.items():
        summary = {}
        for key in (*KEYS, "warm/NDCG@10"):
            vals = np.array([r[key] for r in rs])
            summary[key] = {
                "mean": float(vals.mean()),
                "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
            }
        out["variants"][variant] = {"runs": rs, **summary}
    out["variants"]["cold-popularity"] = {
        k: {"mean": v, "std": 0.0} for k, v in pop.items() if k.startswith("cold/")
    }
    out["metrics"] = summary_metrics(out)
    return out


def summary_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Each variant's mean cold HR@10 (within the cold set and among all), warm NDCG@10, ratios."""
    v = result["variants"]
    m: dict[str, float] = {}
    for name, s in v.items():
        for key in ("cold/HR@10", "all/HR@10", "warm/NDCG@10"):
            if key in s:
                m[f"{key}_{name}"] = s[key]["mean"]
    m["content_over_borrowing_cold_HR@10"] = v["content"]["cold/HR@10"]["mean"] / max(
        1e-12, v["borrowing"]["cold/HR@10"]["mean"]
    )
    m["content_live_over_borrowing_live_cold_HR@10"] = v["content+live"]["cold/HR@10"]["mean"] / max(
        1e-12, v["borrowing+live"]["cold/HR@10"]["mean"]
    )
    m["content_live_over_popularity_cold_HR@10"] = v["content+live"]["cold/HR@10"]["mean"] / max(
        1e-12, v["cold-popularity"]["cold/HR@10"]["mean"]
    )
    m["content_over_borrowing_all_HR@10"] = v["content"]["all/HR@10"]["mean"] / max(
        1e-12, v["borrowing"]["all/HR@10"]["mean"]
    )
    m["content_over_popularity_cold_HR@10"] = v["content"]["cold/HR@10"]["mean"] / max(
        1e-12, v["cold-popularity"]["cold/HR@10"]["mean"]
    )
    m["content_over_id_warm_NDCG@10"] = v["content"]["warm/NDCG@10"]["mean"] / max(
        1e-12, v["id-only"]["warm/NDCG@10"]["mean"]
    )
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="synthetic")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=0.0, help="training budget per run (0: epochs only)")
    ap.add_argument("--fraction", type=float, default=0.1, help="share of the catalog held out as cold")
    ap.add_argument("--by", default="random", choices=["random", "time"])
    ap.add_argument("--text-encoder", default="minilm", choices=["minilm", "hashing"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="default")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    for name in args.datasets.split(","):
        result = run(name, seeds, args.epochs, args.minutes, args.fraction, args.by, args.text_encoder)
        params = {
            "recipe": RECIPE,
            "item_features": FEATURES[name],
            "k_core": CORE.get(name),
            "epochs": args.epochs,
            "minutes": args.minutes,
            "seeds": seeds,
            "text_encoder": args.text_encoder,
            "neighbours": COLD_NEIGHBOURS,
            "temperature": COLD_TEMPERATURE,
        }
        record = bench_record(
            {"model": "sasrec", "dataset": name, "seed": None, "params": params, **result}, args.tag
        )
        path = append_record("cold_start", record)
        logging.info("%s: %s → %s", name, {k: round(v, 4) for k, v in result["metrics"].items()}, path)


if __name__ == "__main__":
    main()
