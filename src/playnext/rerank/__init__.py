"""Re-ranking after any model: calibration, MMR diversity, quotas and a novelty weight.

    spec = spec_from({"calibrate": {"lambda": 0.5}, "quota": {"min_per_kind": {"game": 2}}})
    out = rerank(scores, items, history, ItemFeatures.from_meta(meta, popularity), spec, k=10)
    out.items, out.relaxed            # the list, and the quotas it could not meet

Pure functions over numpy arrays, below evaluation and serving, so offline metrics, the API, the
CLI and batch output re-rank the same way (docs/rerank.md has the equations).
"""

from playnext.rerank.features import DEFAULT_ALPHA, ItemFeatures, mix, smoothed_kl
from playnext.rerank.greedy import Relaxed, Reranked, list_reranker, rerank, rerank_rows
from playnext.rerank.spec import RERANKERS, RerankSpec, parse_spec, spec_from, validation_message

__all__ = [
    "DEFAULT_ALPHA",
    "RERANKERS",
    "ItemFeatures",
    "Relaxed",
    "RerankSpec",
    "Reranked",
    "list_reranker",
    "mix",
    "parse_spec",
    "rerank",
    "rerank_rows",
    "smoothed_kl",
    "spec_from",
    "validation_message",
]
