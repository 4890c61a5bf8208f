"""`playnext train --model popular` on ML-1M equals an independent pure-Python computation.

The reference shares no code with playnext: it reads the file with `open`, splits with list
slicing, counts with a dict and ranks by explicit loops over the catalog.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from playnext.cli import app


def reference_popular(path: Path, ks: tuple[int, ...] = (10, 50)) -> dict[str, float]:
    seqs: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        u, i = line.split()
        seqs.setdefault(u, []).append(i)
    catalog = {i for s in seqs.values() for i in s}
    counts = Counter(i for s in seqs.values() for i in s[:-2] if len(s) >= 3)
    counts.update(i for s in seqs.values() if len(s) < 3 for i in s)
    totals = Counter[str]()
    n = 0
    for s in seqs.values():
        if len(s) < 3:
            continue
        n += 1
        seen, target = set(s[:-1]), s[-1]
        c_t = counts.get(target, 0)
        greater = sum(1 for i in catalog if i not in seen and i != target and counts.get(i, 0) > c_t)
        ties = sum(1 for i in catalog if i not in seen and i != target and counts.get(i, 0) == c_t)
        # exact expectation over a uniformly random order of the tied items
        ranks = range(greater + 1, greater + ties + 2)
        w = 1.0 / (ties + 1)
        totals["MRR"] += sum(w / r for r in ranks)
        for k in ks:
            totals[f"HR@{k}"] += sum(w for r in ranks if r <= k)
            totals[f"NDCG@{k}"] += sum(w / math.log2(r + 1) for r in ranks if r <= k)
    return {k: v / n for k, v in totals.items()}


@pytest.mark.realdata
def test_popular_ml1m_matches_independent_reference(data_dir: Path) -> None:
    folder = data_dir / "ml-1m"
    if not (folder / "interactions_all_users.txt").exists():
        pytest.skip("ml-1m interactions file missing")
    result = CliRunner().invoke(
        app, ["train", "--model", "popular", "--dataset", "ml-1m", "--path", str(folder), "--json"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["n_users_evaluated"] == 6040
    ref = reference_popular(folder / "interactions_all_users.txt")
    for key, value in ref.items():
        assert record["metrics"][key] == pytest.approx(value, abs=1e-6), key
