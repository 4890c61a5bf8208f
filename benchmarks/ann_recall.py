"""Recall@10 of faiss ANN (IVF, HNSW) against exact inner-product search, on 1M clustered vectors.

    python -m benchmarks.ann_recall [--n 1000000] [--dim 64] [--queries 1000] [--methods ivf,hnsw]

The vectors are `--clusters` Gaussian blobs in `--dim` dimensions, L2-normalised (so inner product
is cosine, as for the server's text embeddings); queries are fresh draws from the same blobs.
Each method sweeps its search knob (IVF nprobe, HNSW efSearch) upwards until recall@10 ≥ target,
through `playnext.serve.index.VectorIndex` — the code the server runs. Writes one record per
method to benchmarks/results/ann_recall.json. About 2–4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from benchmarks.common import append_record, environment, peak_rss_bytes
from playnext.serve.index import AnnParams, VectorIndex


def blobs(centers: np.ndarray, n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """`n` L2-normalised draws around random rows of `centers`."""
    out = np.empty((n, centers.shape[1]), dtype=np.float32)
    step = 200_000
    for s in range(0, n, step):
        m = min(step, n - s)
        x = centers[rng.integers(len(centers), size=m)] + noise * rng.standard_normal(
            (m, centers.shape[1])
        ).astype(np.float32)  # (m, D)
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def recall_at(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    hits = sum(len(np.intersect1d(f[:k], t[:k])) for f, t in zip(found, truth, strict=True))
    return hits / (k * len(truth))


def single_query_ms(index: VectorIndex, queries: np.ndarray, k: int) -> dict[str, float]:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None, :], k)
        times.append((time.perf_counter() - t0) * 1000)
    return {f"p{p}": float(np.percentile(times, p)) for p in (50, 95, 99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--noise", type=float, default=1.0, help="Blob spread (1.0: blobs overlap).")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--target", type=float, default=0.98)
    ap.add_argument("--methods", default="ivf", help="ivf and/or hnsw (HNSW builds take minutes at 1M).")
    ap.add_argument("--budget-seconds", type=float, default=290.0, help="Skip methods once over this.")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()

    import faiss

    faiss.omp_set_num_threads(args.threads)
    t_start = time.perf_counter()
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((args.clusters, args.dim)).astype(np.float32)  # (C, D)
    base = blobs(centers, args.n, args.noise, rng)
    queries = blobs(centers, args.queries, args.noise, np.random.default_rng(1))  # fresh draws
    dataset = f"synthetic-{args.n // 1_000_000}M" if args.n % 1_000_000 == 0 else f"synthetic-{args.n}"
    print(f"data: {args.n}×{args.dim} in {time.perf_counter() - t_start:.1f}s", flush=True)

    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(args.dim)  # ground truth: brute force, blocked
    flat.add(base)
    _, truth = flat.search(queries, args.k)
    exact_ms = (time.perf_counter() - t0) * 1000 / args.queries
    del flat
    print(f"exact: {exact_ms:.2f} ms/query (batched, incl. adding)", flush=True)

    knobs: dict[str, list[int]] = {"ivf": [8, 16, 32, 64, 128, 256, 512], "hnsw": [16, 32, 64, 128, 256, 512]}
    for method in args.methods.split(","):
        if time.perf_counter() - t_start > args.budget_seconds:
            print(f"{method}: skipped (over the {args.budget_seconds:.0f}s budget)", flush=True)
            continue
        params = AnnParams(method=method)  # type: ignore[arg-type,unused-ignore]
        index = VectorIndex(args.dim, ann_threshold=0, params=params)
        index.add(base)
        print(f"{method}: built in {index.build_seconds:.1f}s", flush=True)
        sweep: list[dict[str, Any]] = []
        chosen: dict[str, Any] | None = None
        for knob in knobs[method]:
            if method == "ivf":
                params.nprobe = knob
            else:
                params.ef_search = knob
            t0 = time.perf_counter()
            _, found = index.search(queries, args.k)
            ms = (time.perf_counter() - t0) * 1000 / args.queries
            r = recall_at(found, truth, args.k)
            name = "nprobe" if method == "ivf" else "ef_search"
            point = {name: knob, "recall@10": r, "batched_ms_per_query": ms}
            sweep.append(point)
            print(f"  {point}", flush=True)
            if r >= args.target:
                chosen = point
                break
        chosen = chosen or sweep[-1]
        latency = single_query_ms(index, queries[:200], args.k)
        record = {
            "model": f"faiss-{method}",
            "dataset": dataset,
            "seed": 0,
            "tag": "ann-recall",
            "metrics": {"recall@10": chosen["recall@10"]},
            "params": {
                **(
                    {"nlist": index._ann.nlist, "nprobe": params.nprobe}
                    if method == "ivf"
                    else {
                        "M": params.hnsw_m,
                        "ef_construction": params.ef_construction,
                        "ef_search": params.ef_search,
                    }
                ),
                "metric": "inner_product",
            },
            "build_seconds": index.build_seconds,
            "query_ms": {"batched_per_query": chosen["batched_ms_per_query"], "single": latency},
            "exact_query_ms_batched": exact_ms,
            "target": args.target,
            "reached_target": chosen["recall@10"] >= args.target,
            "sweep": sweep,
            "n_items": args.n,
            "dim": args.dim,
            "n_queries": args.queries,
            "clusters": args.clusters,
            "noise": args.noise,
            "peak_rss_bytes": peak_rss_bytes(),
            "env": environment(),
        }
        if not args.no_save:
            print("wrote", append_record("ann_recall", record), flush=True)
        del index
    print(f"total {time.perf_counter() - t_start:.0f}s")


if __name__ == "__main__":
    main()
