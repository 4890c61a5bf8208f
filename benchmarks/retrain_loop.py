"""The feedback loop on ML-1M: train, serve, hear new events, retrain warm and from scratch.

    python -m benchmarks.retrain_loop [--initial-minutes 15] [--warm-minutes 3] [--scratch-minutes 15]

1. SASRec (the shipped `sasrec` recipe's architecture, a reduced budget) trains on each user's
   events except the last 5. Movies that occur only in those last events are not in its catalog:
   they are added to the state store as cold-start items (title, genres, year from movies.dat),
   as a catalog team would add new releases.
2. Each user's first 4 held-back events are replayed as a session with their user id, into the
   store the server reads (through the API when the server writes sessions to the store, else
   with `StateStore.append`, which is what the API does; the record says which). The 5th event
   is the test target: never sent, never trained on.
3. `playnext.retrain` warm-starts from the served model (the learning-rate factor chosen among
   `--lr-factors` on the gate's held-out events, i.e. each user's 4th replayed event: validation,
   not test) and trains a from-scratch model with the recipe on the same data.
4. NDCG@10 / HR@10 on the 5th events (full ranking, seen items excluded, expected ties) for
   (a) the old model given the history and the 4 replayed events, (b) the warm start, (c) from
   scratch, with the minutes each took. ML-1M has no timestamps in this copy: replayed events get
   synthetic increasing ones (only their order matters).

Results to benchmarks/results/retrain_loop.json (one record per model: old, warm, scratch).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from benchmarks.common import append_record, bench_record, data_path, peak_rss_bytes
from playnext import recipes
from playnext.artifact import Artifact
from playnext.data.interactions import Columns, Histories, Interactions
from playnext.data.readers import load_dataset
from playnext.data.split import EvalSet
from playnext.evaluate.protocol import evaluate
from playnext.models.sasrec import SASRec, SASRecConfig
from playnext.retrain import RetrainOptions, known_scorer, retrain
from playnext.state.store import NewEvent, StateStore

log = logging.getLogger("benchmarks.retrain_loop")
HELD = 5  # events per user kept from the first model: HELD - 1 replayed, the last one the test


def cut(data: Interactions, users: int | None) -> tuple[Interactions, dict[str, list[str]]]:
    """The first model's data (each user's events but the last HELD, over the items they name)
    and every user's last HELD events as external ids."""
    c = Columns
    seqs = data.sequences()
    n_users = min(users or data.n_users, data.n_users)
    keep = np.zeros(len(data), dtype=bool)
    later: dict[str, list[str]] = {}
    for u in range(n_users):
        lo, hi = int(seqs.indptr[u]), int(seqs.indptr[u + 1])
        if hi - lo <= HELD + 2:
            keep[lo:hi] = True
            continue
        keep[lo : hi - HELD] = True
        later[data.users.external[u]] = data.items.to_external(seqs[u][-HELD:])
    rows = data.frame.filter(pl.Series(keep))
    raw = pl.DataFrame(
        {
            c.USER: data.users.to_external(rows.get_column(c.USER).to_numpy()),
            c.ITEM: data.items.to_external(rows.get_column(c.ITEM).to_numpy()),
            c.POSITION: rows.get_column(c.POSITION),
        }
    )
    return Interactions.from_frame(raw, meta=data.meta, name=data.name), later


def replay(
    model_dir: Path, store_dir: Path, later: dict[str, list[str]], cold: list[dict[str, Any]]
) -> tuple[str, float]:
    """Cold items, then each user's first HELD - 1 held-back events as their session; returns how."""
    from playnext.serve import Settings, create_app

    store = StateStore.open(store_dir)
    for it in cold:
        store.add_cold_item(it["item_id"], it["title"], it["kind"] or "movie", it["genres"] or [], it["year"])
    t0 = time.perf_counter()
    ts = 1.0e9
    if "state" in Settings.model_fields:  # the server logs sessions to the store: go through it
        from fastapi.testclient import TestClient

        store.close()
        # cold items need a text index to be served; hashing builds one instantly
        settings = Settings.model_validate({"state": str(store_dir), "text_encoder": "hashing"})
        with TestClient(create_app(model_dir, settings)) as client:
            for user, items in later.items():
                events = [{"item_id": i, "timestamp": ts + k} for k, i in enumerate(items[: HELD - 1])]
                ts += HELD
                r = client.post(f"/sessions/u{user}/events", json={"user_id": user, "events": events})
                if r.status_code != 200:
                    raise SystemExit(
                        f"replay: POST /sessions/u{user}/events answered {r.status_code}: {r.text}"
                    )
        how = "POST /sessions/{sid}/events through the in-process server (TestClient)"
    else:
        for user, items in later.items():
            evs = [NewEvent(i, "watch", None, ts + k) for k, i in enumerate(items[: HELD - 1])]
            ts += HELD
            store.append(f"u{user}", evs, user_id=user)
        store.close()
        how = "StateStore.append (the server's store wiring was not on main yet)"
    return how, time.perf_counter() - t0


def test_questions(art: Artifact, later: dict[str, list[str]]) -> EvalSet:
    """Each user's 5th held-back event, asked from their history + the 4 replayed ones."""
    users = art.users.to_internal(list(later), kind="user")
    hist = art.histories.take(users)
    targets = Histories(np.arange(len(users) + 1), art.items.to_internal([v[-1] for v in later.values()]))
    return EvalSet(users, hist, targets, hist)


def score(scorer: Any, questions: EvalSet, n_items: int) -> dict[str, float]:
    m = evaluate(scorer, questions, n_items, ks=(10,), ties="expected").metrics
    return {"HR@10": m["HR@10"], "NDCG@10": m["NDCG@10"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", type=Path, default=None, help="ML-1M folder (default $PLAYNEXT_DATA_DIR/ml-1m)")
    ap.add_argument("--users", type=int, default=None, help="Only the first N users (a quick try).")
    ap.add_argument("--initial-minutes", type=float, default=15.0)
    ap.add_argument("--warm-minutes", type=float, default=3.0)
    ap.add_argument("--scratch-minutes", type=float, default=15.0)
    ap.add_argument(
        "--epochs",
        default=None,
        help="INITIAL,WARM,SCRATCH epoch budgets instead of minutes: on shared cores a minute buys "
        "different amounts of training in each phase, an epoch does not",
    )
    ap.add_argument(
        "--lr-factors", default="0.1,0.3,1.0", help="Warm-start lr factors chosen among on the gate."
    )
    ap.add_argument("--text-encoder", default="minilm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--work", type=Path, default=None, help="Where the model folders and store go (a temp dir)."
    )
    ap.add_argument("--record", default="retrain_loop", help="results/<name>.json; '' writes nothing.")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "httpx2"):  # one line per replayed request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="retrain-loop-"))
    t_all = time.perf_counter()

    data = load_dataset("ml-1m", args.path or data_path("ml-1m"))
    first, later = cut(data, args.users)
    meta = data.meta.filter(~pl.col(Columns.ITEM_ID).is_in(first.items.external.implode()))
    needed = {i for v in later.values() for i in v}
    cold = [r for r in meta.iter_rows(named=True) if r[Columns.ITEM_ID] in needed]
    log.info(
        "first model: %d users, %d items, %d events; %d cold items",
        first.n_users,
        first.n_items,
        len(first),
        len(cold),
    )

    # (1) the served model
    recipe = recipes.load("sasrec")
    by_epochs = [int(x) for x in args.epochs.split(",")] if args.epochs else None
    if by_epochs is not None and len(by_epochs) != 3:
        raise SystemExit("--epochs takes INITIAL,WARM,SCRATCH")
    params = {**recipe.params, "max_minutes": args.initial_minutes, "patience": 0, "verbose": False}
    if by_epochs is not None:
        params.update(max_minutes=0.0, epochs=by_epochs[0])
    t0 = time.perf_counter()
    model = SASRec(SASRecConfig.from_dict(params)).fit(first)
    initial_s = time.perf_counter() - t0
    initial_epochs = model.report_.epochs if model.report_ else None
    log.info("initial model: %.1f min, %s epochs", initial_s / 60, initial_epochs)
    current = work / "current"
    Artifact.from_data(model, first, {"model": "sasrec", "dataset": "ml-1m", "params": params}).save(current)

    # (2) the service hears the new events
    how, replay_s = replay(current, work / "state", later, cold)
    log.info("replayed %d users' events in %.1fs via %s", len(later), replay_s, how)

    # (3) warm starts (lr factor chosen on the gate: the 4th event) and from scratch
    warm: list[dict[str, Any]] = []
    for f in [float(x) for x in args.lr_factors.split(",")]:
        opts = RetrainOptions(
            budget_minutes=0.0 if by_epochs else args.warm_minutes,
            epochs=by_epochs[1] if by_epochs else None,
            lr_factor=f,
            force=True,
            text_encoder=args.text_encoder,
        )
        out = retrain(current, work / "state", work / f"warm-{f:g}", opts)
        log.info("warm lr x%g: gate %s in %.1f min", f, out.record["new_metrics"], out.record["seconds"] / 60)
        warm.append({**out.record, "model_dir": str(out.model_dir)})
    chosen = max(warm, key=lambda r: r["new_metrics"]["NDCG@10"])
    opts = RetrainOptions(
        from_scratch=True,
        budget_minutes=0.0 if by_epochs else args.scratch_minutes,
        epochs=by_epochs[2] if by_epochs else None,
        force=True,
        text_encoder=args.text_encoder,
    )
    scratch_out = retrain(current, work / "state", work / "scratch", opts)
    scratch = {**scratch_out.record, "model_dir": str(scratch_out.model_dir)}
    log.info("from scratch: gate %s in %.1f min", scratch["new_metrics"], scratch["seconds"] / 60)

    # (4) the test: each user's 5th event
    warm_art = Artifact.load(chosen["model_dir"])
    scratch_art = Artifact.load(scratch["model_dir"])
    questions = test_questions(warm_art, later)
    n_items = len(warm_art.items)
    old = Artifact.load(current)
    results = {
        "old": score(known_scorer(old.model, len(old.users), n_items), questions, n_items),
        "warm": score(lambda u, h: warm_art.model.score(u, h), questions, n_items),
        "scratch": score(lambda u, h: scratch_art.model.score(u, h), questions, n_items),
    }
    minutes = {
        "old": initial_s / 60,
        "warm": chosen["train_seconds"] / 60,
        "scratch": scratch["train_seconds"] / 60,
    }
    loop = {
        "held_out_per_user": HELD,
        "replayed_per_user": HELD - 1,
        "test": "each user's 5th held-back event from history + 4 replayed events; "
        "full ranking, seen items excluded, expected ties",
        "replay": how,
        "replay_seconds": replay_s,
        "users": len(later),
        "cold_items": len(cold),
        "budgets_minutes": None
        if by_epochs
        else {"initial": args.initial_minutes, "warm": args.warm_minutes, "scratch": args.scratch_minutes},
        "budgets_epochs": dict(zip(("initial", "warm", "scratch"), by_epochs, strict=True))
        if by_epochs
        else None,
        "epochs": {"old": initial_epochs, "warm": chosen["epochs"], "scratch": scratch["epochs"]},
        "minutes": minutes,
        "total_minutes": {"warm": chosen["seconds"] / 60, "scratch": scratch["seconds"] / 60},
        "test_metrics": results,
        "warm_vs_scratch_ndcg": (
            results["warm"]["NDCG@10"] / results["scratch"]["NDCG@10"]
            if results["scratch"]["NDCG@10"]
            else None
        ),
        "warm_time_share": minutes["warm"] / max(minutes["scratch"], 1e-12),
        "lr_factor_choice": {
            "chosen": chosen["lr_factor"],
            "on": "the gate (each user's 4th replayed event), not the test",
            "gate_ndcg": {str(r["lr_factor"]): r["new_metrics"]["NDCG@10"] for r in warm},
        },
        "gate": {
            "current": chosen["current_metrics"],
            "warm": chosen["new_metrics"],
            "scratch": scratch["new_metrics"],
        },
        "new_items_init": chosen["init_by"],
        "wall_minutes": (time.perf_counter() - t_all) / 60,
        "peak_rss_bytes": peak_rss_bytes(),
    }
    print(json.dumps(loop, indent=1, default=float))
    if not args.record:
        return
    for tag, params_used, seconds, epochs in (
        ("retrain-old", params, initial_s, initial_epochs),
        ("retrain-warm", chosen["params"], chosen["train_seconds"], chosen["epochs"]),
        ("retrain-scratch", scratch["params"], scratch["train_seconds"], scratch["epochs"]),
    ):
        key = tag.split("-")[1]
        rec = {
            "model": "sasrec",
            "dataset": "ml-1m",
            "seed": params_used.get("seed", 0),
            "metrics": results[key],
            "params": params_used,
            "train_seconds": seconds,
            "epochs": epochs,
            "loop": loop,
        }
        append_record(args.record, bench_record(rec, f"{tag}-by-epochs" if by_epochs else tag))


if __name__ == "__main__":
    main()
