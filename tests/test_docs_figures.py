"""Figures in README.md and docs/*.md that come from records equal the records
(`benchmarks/results/*.json`): the generated tables are `benchmarks.report` / `benchmarks.peers`
output for the committed JSON, and the figures typed into prose are read back and compared.

Each test fails on a hand edit of a number, on a new record that the text was not updated for,
and on a generator change that the committed text was not regenerated for.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from benchmarks import peers, report
from benchmarks.common import RESULTS, load_records

ROOT = RESULTS.parent.parent
README = ROOT / "README.md"
SERVING = ROOT / "docs" / "serving.md"


def _block(text: str, start: str, end: str) -> str:
    m = re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), text, flags=re.S)
    assert m, f"no {start} … {end} block"
    return m.group(1)


def _record(name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((RESULTS / f"{name}.json").read_text())
    return rows


def _peers_from_json(tag: str = peers.SHOWN) -> str:
    """The peers table as `python -m benchmarks.peers --table --tag TAG` writes it from peers.json."""
    return peers.markdown(peers.recorded(tag, "ml-1m")).strip()


@pytest.mark.parametrize("tag", [peers.NAME, peers.SHOWN])
def test_peers_md_is_generated_from_peers_json(tag: str) -> None:
    """benchmarks/results/<tag>.md is the table `benchmarks.peers` renders from peers.json (the
    README copies the shown run's: a number edited in either fails here or below)."""
    assert (RESULTS / f"{tag}.md").read_text().strip() == _peers_from_json(tag)


def test_readme_peers_block_is_generated_from_peers_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's peers block is what `benchmarks.report` makes of the table rendered from
    peers.json itself (not from peers.md, so an edit of both copies fails too)."""
    monkeypatch.setattr(report, "peers_table", _peers_from_json)
    text = README.read_text()
    want = _block(report.readme(text, load_records()), report.PEERS_START, report.PEERS_END)
    assert _block(text, report.PEERS_START, report.PEERS_END) == want
    assert "| NDCG@10 |" in want and "| recommend s" in want


def test_readme_headline_block_is_generated_from_the_records() -> None:
    text = README.read_text()
    assert _block(text, report.START, report.END) == report.headline(load_records())


def test_readme_peers_prose_matches_the_record() -> None:
    """The sentence above the peers table: the epoch count and the quality ratio are checked
    against peers.json; the speed-up range must contain both recorded speed-ups."""
    pn, _ = peers.recorded(peers.SHOWN, "ml-1m")
    ratio = pn["ratio_playnext_over_rectools"]
    prose = " ".join(README.read_text().split())
    m = re.search(r"quality is ([\d.]+)× RecTools", prose)
    assert m and float(m.group(1)) == pytest.approx(ratio["NDCG@10"], abs=0.005)
    m = re.search(r"after the same (\d+) \(undertrained\) epochs", prose)
    assert m and int(m.group(1)) == pn["params"]["epochs"]


def test_readme_peers_speedup_matches_the_record() -> None:
    """README's "X–Y× faster" spans the recorded epoch and recommend ratios (it once said 3–4×
    where peers.json records 3.3× and 4.5×)."""
    pn, _ = peers.recorded(peers.SHOWN, "ml-1m")
    ratio = pn["ratio_playnext_over_rectools"]
    prose = " ".join(README.read_text().split())
    m = re.search(r"epoch and full-catalog recommend are ([\d.]+)–([\d.]+)× faster", prose)
    assert m
    lo, hi = float(m.group(1)), float(m.group(2))
    for key in ("seconds_per_epoch", "recommend_seconds"):
        assert lo - 0.05 <= 1 / ratio[key] <= hi + 0.05, (key, 1 / ratio[key])


def test_serving_calibration_latency_matches_rerank_json() -> None:
    """docs/serving.md's "calibration added X–Y ms to the p50 (A–B → C–D ms)" covers every ML-1M
    SASRec latency record in rerank.json, rounded to 0.1 ms (it once said 0.8 ms for records of
    0.93–1.07)."""
    lat = [
        r["latency"]
        for r in _record("rerank")
        if r.get("latency") and r["dataset"] == "ml-1m" and r["model"] == "sasrec"
    ]
    assert len(lat) >= 1
    prose = " ".join(SERVING.read_text().split())
    m = re.search(
        r"calibration added ([\d.]+)–([\d.]+) ms to the p50 of `/recommend` at k = 10 "
        r"\(([\d.]+)–([\d.]+) → ([\d.]+)–([\d.]+) ms",
        prose,
    )
    assert m, "the calibration latency sentence moved: update this test with it"
    typed = [float(g) for g in m.groups()]  # added lo, hi; p50 without lo, hi; with lo, hi
    recorded = [
        f(x[key] for x in lat)
        for key in ("p50_ms_added", "p50_ms_without", "p50_ms_with")
        for f in (min, max)
    ]
    assert typed == pytest.approx(recorded, abs=0.05 + 1e-9), (typed, recorded)
    assert f"over the {len(lat)} recorded runs" in prose.replace("three", "3")


def test_serving_ann_table_matches_ann_recall_json() -> None:
    """The ANN row in docs/serving.md (and the setup above it) against ann_recall.json."""
    (r,) = [x for x in _record("ann_recall") if x["model"] == "faiss-ivf"]
    text = SERVING.read_text()
    p, q = r["params"], r["query_ms"]
    row = (
        f"| faiss IVF-Flat, nlist {p['nlist']}, nprobe {p['nprobe']} | **{r['metrics']['recall@10']:.3f}** "
        f"| {r['build_seconds']:.0f} s | {q['batched_per_query']:.2f} ms | {q['single']['p50']:.2f} ms "
        f"| {r['exact_query_ms_batched']:.0f} ms |"
    )
    assert row in text.splitlines(), row
    prose = " ".join(text.split())
    assert f"on {r['n_items'] // 10**6}M×{r['dim']} clustered" in prose
    assert f"{r['clusters']:,} overlapping Gaussian blobs, {r['n_queries']:,} fresh queries" in prose
    assert f"recall ≥ {r['target']}" in prose and r["reached_target"]


def test_serving_scoring_tolerance_is_the_contract_tests() -> None:
    """ "the same state to within T (a contract test checks it)": T is the contract test's atol."""
    test = (ROOT / "tests" / "models" / "test_contract.py").read_text()
    m = re.search(r"encode_last\(seq\)\n\s*torch\.testing\.assert_close\(last, full, atol=([\de.-]+)", test)
    assert m, "the encode_last contract check moved: update this test with it"
    assert f"the same state to within {m.group(1)} (a contract test checks it)" in " ".join(
        SERVING.read_text().split()
    )
