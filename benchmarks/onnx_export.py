"""ONNX export of SASRec and HSTU trained on ML-1M: the check on every user, and latency.

    python -m benchmarks.onnx_export [--minutes 2.5] [--models sasrec,hstu] [--save DIR]

Each model is its default recipe trained within `--minutes` (HSTU made small: 2 blocks × 64)
through `playnext.experiment.run`, then `playnext.export.export_onnx` checks onnxruntime
against `Recommender.score` on all 6,040 users' last max_len events. Latency is the same padded
(B, max_len) batch through the exported graph's PyTorch module and through onnxruntime (median
of repeats after a warm-up, both on this machine's CPU threads). Writes one record per model
to benchmarks/results/onnx_export.json; `--save` keeps the model folders (e.g. for
`benchmarks.batch_recs --model-dir`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.batch_recs import DATASET, quick_artifact
from benchmarks.common import append_record, environment, median_ms, trained_fields

SMALL = {"sasrec": {}, "hstu": {"n_blocks": 2, "dim": 64}}
BATCHES = (1, 32, 256)


def measure(model_dir: Path, repeats: int) -> dict[str, Any]:
    import onnxruntime as ort

    from playnext.artifact import Artifact
    from playnext.export import GRAPHS, export_onnx

    art = Artifact.load(model_dir)
    done = export_onnx(model_dir, check_users=len(art.users))
    graph = GRAPHS[art.model.name](art.model)
    session = ort.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
    users = np.sort(np.random.default_rng(0).choice(len(art.users), size=max(BATCHES), replace=False))
    rows: dict[str, Any] = {}
    for b in BATCHES:
        feed = graph.feed(users[:b], art.histories.take(users[:b]))
        tensors = [torch.from_numpy(feed[name]) for name in graph.inputs]
        with torch.inference_mode():
            torch_ms = median_ms(lambda t=tensors: graph.module(*t), repeats)
        ort_ms = median_ms(lambda f=feed: session.run(["scores"], f), repeats)
        rows[str(b)] = {"torch_ms": torch_ms, "onnxruntime_ms": ort_ms, "speedup": torch_ms / ort_ms}
        print(f"  batch {b}: torch {torch_ms:.1f} ms, onnxruntime {ort_ms:.1f} ms", flush=True)
    return {"export": done.info, "latency_ms": rows, "file_bytes": done.path.stat().st_size, "info": art.info}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="sasrec,hstu")
    ap.add_argument("--minutes", type=float, default=2.5, help="training budget per model")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--save", type=Path, default=None, help="keep the model folders here")
    ap.add_argument("--tag", default="onnx_export")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.save or Path(tmp)
        for name in args.models.split(","):
            model_dir = root / f"{DATASET}-{name}"
            if not (model_dir / "artifact.json").exists():
                quick_artifact(name, args.minutes, model_dir, SMALL.get(name, {}))
            got = measure(model_dir, args.repeats)
            ex, info = got["export"], got["info"]
            print(
                f"{name}: max |onnx - torch| {ex['max_abs_diff']:.2e} on {ex['n_checked']} users", flush=True
            )
            append_record(
                "onnx_export",
                {
                    "model": name,
                    "dataset": info.get("dataset", DATASET),
                    "seed": info.get("seed"),
                    "tag": args.tag,
                    "metrics": {
                        "max_abs_diff": ex["max_abs_diff"],
                        "n_checked": ex["n_checked"],
                        "export_seconds": ex["export_seconds"],
                        "file_bytes": got["file_bytes"],
                        **{
                            f"{side}_ms@{b}": row[f"{side}_ms"]
                            for b, row in got["latency_ms"].items()
                            for side in ("torch", "onnxruntime")
                        },
                    },
                    "latency_ms": got["latency_ms"],
                    "params": {
                        "budget_minutes": args.minutes,
                        "repeats": args.repeats,
                        **SMALL.get(name, {}),
                    },
                    "export": {k: v for k, v in ex.items() if k != "weights_sha256"},
                    **trained_fields(info),
                    "environment": environment(),
                },
            )


if __name__ == "__main__":
    main()
