"""Turn benchmarks/results/*.json into the markdown tables: docs/results.md (every run), the
README's headline (each shipped recipe's recorded score beside the published one and popularity)
and results/README.md. `python -m benchmarks.report` rewrites all three; a test checks that the
committed files match the records.

Records with several seeds for the same (dataset, model, tag) are shown as mean ± std.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from typing import Any

from benchmarks.common import PEERS_SHOWN as SHOWN
from benchmarks.common import RESULTS, load_records

PEERS_MD = RESULTS / f"{SHOWN}.md"  # the peers table README.md and docs/results.md show

KEYS = ("HR@10", "NDCG@10", "HR@50", "NDCG@50", "MRR", "Coverage@10")
README = RESULTS.parent.parent / "README.md"
DOC = RESULTS.parent.parent / "docs" / "results.md"
START, END = "<!-- headline:start -->", "<!-- headline:end -->"
PEERS_START, PEERS_END = "<!-- peers:start -->", "<!-- peers:end -->"


def mean_std(values: list[float], digits: int = 4) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(records: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        # only runs under the evaluation protocol (not speed/ingest/ANN records, nor the
        # repeat-aware protocol's, which rank seen items too: `repeats_table`)
        if "protocol" in r and "NDCG@10" in r.get("metrics", {}) and "repeats" not in r["protocol"]:
            tag = str(r.get("tag", ""))
            budget = r.get("time_budget_minutes")
            if budget:  # a scaling rung: the same size under another budget is not another seed
                tag = f"{tag}, {float(budget):g} min"
            gpu = (r.get("environment") or {}).get("gpu")
            if gpu:  # a GPU run is not another seed of the CPU run with the same tag
                tag = f"{tag}, {gpu}" if "gpu" not in tag else tag
            if "refit" in r["protocol"] and "refit" not in tag:  # tested after a retrain on train + valid
                tag = f"{tag}, refit"
            groups[(r["dataset"], r["model"], tag)].append(r)
    lines = [
        "| dataset | model | " + " | ".join(KEYS) + " | params | train s | seeds |",
        "|---|---|" + "---:|" * (len(KEYS) + 3),
    ]
    for (ds, model, tag), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], -_mean(kv[1], "NDCG@10"))):
        cells = [
            mean_std([r["metrics"][k] for r in rs]) if all(k in r["metrics"] for r in rs) else "–"
            for k in KEYS
        ]
        params = rs[0].get("n_params")
        pstr = _short_params(rs[0].get("params", {})) if params is None else f"{params:,}"
        train = mean_std([float(r.get("train_seconds", 0.0)) for r in rs], 1)
        label = model if tag in ("", "baseline", "None") else f"{model} ({tag})"
        lines.append(f"| {ds} | {label} | " + " | ".join(cells) + f" | {pstr} | {train} | {len(rs)} |")
    return "\n".join(lines)


def _mean(rs: list[dict[str, Any]], key: str) -> float:
    return statistics.mean(r["metrics"][key] for r in rs)


def _short_params(params: dict[str, Any]) -> str:
    shown = {k: v for k, v in params.items() if k != "seed"}
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()) or "–"


def headline(records: list[dict[str, Any]]) -> str:
    """One row per (shipped recipe, dataset) it has a score for: test NDCG@10 / HR@10 of its
    recorded run (the validation-chosen seed 0; the seed mean where there are more), the
    published numbers beside it, popularity on the same split, and its training time."""
    from playnext import recipes

    lines = [
        "| recipe | dataset | NDCG@10 | HR@10 | published NDCG@10 / HR@10 | popularity NDCG@10 | train min |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for recipe in recipes.shipped():
        for dataset in dict.fromkeys(sc.dataset for sc in recipe.scored):
            scores = [sc for sc in recipe.scored if sc.dataset == dataset]
            tag = scores[0].tag
            runs = sorted(
                (r for r in records if _is(r, dataset, recipe.model, tag)), key=lambda r: r.get("seed", 0)
            )
            if not runs:
                continue
            cells = []
            for key in ("NDCG@10", "HR@10"):
                first = f"{runs[0]['metrics'][key]:.4f}"
                cells.append(
                    first
                    if len(runs) == 1
                    else f"{first} ({mean_std([r['metrics'][key] for r in runs])}, {len(runs)} seeds)"
                )
            pub = {sc.metric: sc for sc in scores if sc.published is not None}
            if pub:
                by = next(iter(pub.values())).published_by
                nums = " / ".join(
                    f"{pub[k].published:.4f}" if k in pub else "–" for k in ("NDCG@10", "HR@10")
                )
                published = f"{nums} ({by})"
            else:
                published = "–"
            pop = [r for r in records if _is(r, dataset, "popular", "baseline")]
            popular = f"{pop[0]['metrics']['NDCG@10']:.4f}" if pop else "–"
            minutes = f"{float(runs[0].get('train_seconds', 0.0)) / 60:.0f}"
            row = [f"`{recipe.name}`", dataset, *cells, published, popular, minutes]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _is(r: dict[str, Any], dataset: str, model: str, tag: str) -> bool:
    return r.get("dataset") == dataset and r.get("model") == model and r.get("tag") == tag


def results_doc(records: list[dict[str, Any]]) -> str:
    parts = [
        "# Results",
        "",
        "Generated by `python -m benchmarks.report` from `benchmarks/results/*.json`; do not edit by hand.",
        "Test split, leave-one-out over the stable time order, full ranking over all items, seen items",
        "excluded, expected ties; models and epochs chosen on validation, test read once; 2 CPU cores",
        "unless a GPU is named. What the numbers mean and how they were reached: [findings.md](findings.md).",
        "",
        "## Shipped recipes against the published numbers",
        "",
        headline(records),
        "",
    ]
    if PEERS_MD.exists():
        parts += ["## Against peers, measured in one run", "", peers_table(), ""]
    ladder = ladder_table()
    if ladder:
        parts += ["## The SASRec block ladder", "", ladder, ""]
    serving = serving_tables()
    if serving:
        parts += ["## Serving state: durability, workers, hot swaps", "", serving, ""]
    rerank = rerank_tables()
    if rerank:
        parts += ["## Re-ranking trade-offs", "", rerank, ""]
    repeats = repeats_table(records)
    if repeats:
        parts += ["## Re-listens: the repeat-aware protocol", "", repeats, ""]
    typed = typed_table()
    if typed:
        parts += ["## Typed events: the action embedding against none", "", typed, ""]
    cold = cold_table()
    if cold:
        parts += ["## Cold-start items: the content tower", "", cold, ""]
    first = first_hour_table()
    if first:
        parts += ["## A newcomer's first hour", "", first, ""]
    parts += ["## Every run", "", table(records), ""]
    return "\n".join(parts)


def ladder_table() -> str:
    """docs/ladder.md's table (benchmarks.ladder writes it from results/ladder.json), its title
    and rerun command dropped, with a link to the page."""
    path = RESULTS.parent.parent / "docs" / "ladder.md"
    if not path.exists():
        return ""
    body = [ln for ln in path.read_text().splitlines()[1:] if not ln.startswith("    python -m")]
    return "\n".join([*body, "", "Rerun and per-epoch curves: [ladder.md](ladder.md)."]).strip()


def first_hour_table() -> str:
    """The `benchmarks.first_hour` records: each of issue #31's targets, what was measured, and
    the load average it was measured under (2 shared cores)."""
    from benchmarks.common import _read

    path = RESULTS / "first_hour.json"
    if not path.exists():
        return ""
    out = [
        "Issue #31's targets on 2 shared CPU cores (`python -m benchmarks.first_hour`); the load "
        "average is the machine's at the start of each measurement.",
        "",
        "| target | dataset | measured | target | met | load |",
        "|---|---|---|---|---|---:|",
    ]
    for r in _read(path):
        m, tag = r["metrics"], r["tag"].removeprefix("first_hour-")
        if tag == "five_minutes":
            what, measured = "README's five-minute path", f"{m['total_seconds']:.0f} s"
            target = f"≤ {r['target_seconds']:g} s"
        elif tag.startswith("budget"):
            what = "`--budget-minutes 1` training"
            measured = f"{m['train_seconds']:.0f} s ({m['epochs']} epochs)"
            target = f"≤ {r['target_seconds']:.0f} s (60 + one validation)"
        elif tag.startswith("serve"):
            what = f"serve ready, {'empty store' if tag.endswith('empty') else 'store of 1M events'}"
            measured, target = f"{m['ready_seconds']:.1f} s", f"≤ {r['target_seconds']:g} s"
        elif tag == "defaults":
            old, new = r["runs"]["old"], r["runs"]["new"]
            what = "default `sasrec`, old → new recipe"
            measured = (
                f"{old['seconds_per_epoch']:.0f} → {new['seconds_per_epoch']:.0f} s/epoch "
                f"({m['speedup_seconds_per_epoch']:.1f}×), test NDCG@10 {old['NDCG@10']:.4f} → "
                f"{new['NDCG@10']:.4f}"
            )
            target = f"≥ {r['target_speedup']:g}×, NDCG@10 not lower"
        elif tag == "defaults-quality":
            old, new = r["runs"]["old"], r["runs"]["new"]
            what = f"default `sasrec` quality, {r['epochs']} epochs"
            measured = f"valid NDCG@10 {old['valid_NDCG@10']:.4f} → {new['valid_NDCG@10']:.4f}"
            target = f"not lower by > {r['target_valid_tolerance']:g}"
        elif tag == "bf16-probe":
            what = "bf16 autocast in the default `sasrec`"
            measured = (
                f"{m['seconds_per_epoch_off']:.1f} → {m['seconds_per_epoch_bf16']:.1f} s/epoch "
                f"({m['speedup']:.2f}×)"
            )
            target = "faster"
        else:
            continue
        met = "yes" if r["target_met"] else "no"
        out.append(f"| {what} | {r['dataset']} | {measured} | {target} | {met} | {r['load_average']:.1f} |")
    return "\n".join(out)


def serving_tables() -> str:
    """The `benchmarks.serve_state` records as tables (each file read alone: they are not runs of
    the evaluation protocol)."""
    from benchmarks.common import _read

    out: list[str] = []
    path = RESULTS / "serve_durability.json"
    if path.exists():
        out += [
            "SIGKILL of the whole server mid-burst, restart on the same store "
            "(`python -m benchmarks.serve_state durability`):",
            "",
            "| store | dataset | workers | acknowledged | recovered | lost |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in _read(path):
            m = r["metrics"]
            out.append(
                f"| {r['store']} | {r['dataset']} | {r['params']['workers']} | {m['acknowledged']} "
                f"| {m['recovered']} | {m['lost']} |"
            )
        out.append("")
    path = RESULTS / "serve_workers.json"
    if path.exists():
        out += [
            "Open-loop mixed load (50% /recommend, 30% event writes, 20% session reads) on the same 2 "
            "cores as the client; the highest rate whose p99 stayed ≤ 50 ms with no error "
            "(`python -m benchmarks.serve_state workers`):",
            "",
            "| store | workers | req/s held | p50 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in sorted(_read(path), key=lambda r: (r["store"], r["workers"])):
            m = r["metrics"]
            p50 = f"{m['p50_ms']:.1f}" if m.get("p50_ms") is not None else "–"
            p99 = f"{m['p99_ms']:.1f}" if m.get("p99_ms") is not None else "–"
            out.append(
                f"| {r['store']} | {r['workers']} | {m['max_rate_p99_le_50ms']:g} | {p50} | {p99} "
                f"| {m['errors'] if m.get('errors') is not None else '–'} |"
            )
        out.append("")
    path = RESULTS / "hot_swap.json"
    if path.exists():
        out += [
            "A new model published every 10 s under open-loop load "
            "(`python -m benchmarks.serve_state swap`):",
            "",
            "| workers | req/s | seconds | swaps | failed requests | p50 ms | p99 ms "
            "| p99 ms, 3 s after a swap |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in _read(path):
            m, p = r["metrics"], r["params"]
            out.append(
                f"| {p['workers']} | {p['rate']:g} | {p['seconds']:g} | {m['swaps']} "
                f"| {m['failed_requests']} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} "
                f"| {m.get('swap_window_p99_ms', float('nan')):.1f} |"
            )
        out.append("")
    return "\n".join(out).strip()


def rerank_tables() -> str:
    """The `benchmarks.rerank` records: each model's own lists against calibration (rank and
    probability relevance) and MMR at the λ validation chose, and the latency re-ranking adds."""
    from benchmarks.common import _read

    path = RESULTS / "rerank.json"
    if not path.exists():
        return ""
    records = _read(path)
    out = [
        "λ swept 0 … 1 on every user's top-10, validation and test (leave-one-out, full ranking; "
        "`python -m benchmarks.rerank`, [rerank.md](rerank.md)); models trained with their shipped "
        "recipe under the budget shown. λ is chosen on validation: the knee is the point farthest "
        "from the chord between λ = 0 and 1; “≥ 95 %” is the λ with the lowest validation "
        "miscalibration keeping 95 % of the validation NDCG@10 (issue #23's target: test "
        "miscalibration ≤ 0.5× there, at ≥ 95 % of the test NDCG@10). The numbers are test's: "
        "percentages and × against the model's own test lists. Relevance: rank = the NDCG weight of "
        "the model's place, prob = its softmax probability; dcg slots weigh each slot as NDCG does. "
        "Greedy: Steck's judges each pick by the partial list's KL, lookahead by the KL of the list "
        "completed at the history's mix (the default since it was measured).",
        "",
        "| dataset | model | budget min | NDCG@10 | miscal. | greedy | relevance | knee λ | NDCG@10 "
        "| miscal. | ≥ 95 % λ | NDCG@10 | miscal. | target met |",
        "|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in records:
        m = r["metrics"]
        budget = f"{r['budget_minutes']:g}" if r.get("budget_minutes") else "–"
        greedy = "lookahead" if "calibrate_prob_dcg" in r["knee"] else "Steck"  # records before it: Steck's
        chosen = r["knee"].get("chosen_calibration")
        for method, relevance in (
            ("calibrate", "rank"),
            ("calibrate_prob", "prob"),
            ("calibrate_prob_dcg", "prob, dcg slots"),
        ):
            cal = r["knee"].get(method)
            if cal is None:
                continue
            mark = " (chosen on validation)" if method == chosen else ""
            out.append(
                f"| {r['dataset']} | {r['model']} | {budget} | {m['NDCG@10']:.4f} "
                f"| {m['Miscalibration@10']:.3f} | {greedy} | {relevance}{mark} "
                f"| {cal['knee_lambda']:g} | {cal['ndcg_ratio']:.0%} | {cal['Miscalibration@10_ratio']:.2f}× "
                f"| {cal['best_lambda_at_95pct_ndcg']:g} | {cal['best_ndcg_ratio']:.1%} "
                f"| {cal['best_Miscalibration@10_ratio_at_95pct_ndcg']:.2f}× "
                f"| {'yes' if cal['target_met_at_validation_lambda'] else 'no'} |"
            )
    out += [
        "",
        "| dataset | model | ILD-genre | MMR: knee λ | NDCG@10 | ILD-genre |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in records:
        mmr = r["knee"]["mmr"]
        out.append(
            f"| {r['dataset']} | {r['model']} | {r['metrics']['ILD-genre@10']:.3f} | {mmr['knee_lambda']:g} "
            f"| {mmr['ndcg_ratio']:.0%} | {mmr['knee']['ILD-genre@10']:.3f} |"
        )
    for r in records:
        lat = r.get("latency")
        if lat:
            out += [
                "",
                f"POST /recommend, k = 10, {r['dataset']} {r['model']}, {lat['requests_each']} requests each "
                f"({lat['how']}): p50 {lat['p50_ms_without']:.2f} ms without re-ranking, "
                f"{lat['p50_ms_with']:.2f} ms with `{lat['rerank']}` (+{lat['p50_ms_added']:.2f} ms).",
            ]
    return "\n".join(out)


def repeats_table(records: list[dict[str, Any]]) -> str:
    """The `benchmarks.repeats` records: every model under `--repeats` (seen items are candidates),
    over all test users and apart for repeat and new targets; mean ± std over seeds."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if "repeats" in (r.get("protocol") or {}):
            bonus = " + repeat bonus" if (r.get("params") or {}).get("repeat_bonus") else ""
            groups[(r["dataset"], r["model"] + bonus, str(r.get("tag", "")))].append(r)
    if not groups:
        return ""
    keys = [f"{g}NDCG@10" for g in ("", "repeat/", "new/")] + [f"{g}HR@10" for g in ("", "repeat/", "new/")]
    out = [
        "Leave-one-out, full ranking with seen items kept as candidates, expected ties; configs and "
        "epochs chosen on validation under the same protocol (`python -m benchmarks.repeats`, "
        "docs/models.md § Re-listens). *repeat*: users whose test target is already in their "
        "history; *new*: the others (users per group in brackets).",
        "",
        "| dataset | model | NDCG@10 | repeat NDCG@10 | new NDCG@10 | HR@10 | repeat HR@10 | new HR@10 "
        "| users: repeat / new | train s | seeds |",
        "|---|---|" + "---:|" * (len(keys) + 3),
    ]
    for (ds, model, tag), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], -_mean(kv[1], "NDCG@10"))):
        cells = [
            mean_std([r["metrics"][k] for r in rs]) if all(k in r["metrics"] for r in rs) else "–"
            for k in keys
        ]
        sizes = rs[0].get("n_users_by_target") or {}
        train = mean_std([float(r.get("train_seconds", 0.0)) for r in rs], 1)
        label = model if tag in ("", "repeats") else f"{model} ({tag})"
        out.append(
            f"| {ds} | {label} | "
            + " | ".join(cells)
            + f" | {sizes.get('repeat', '–')} / {sizes.get('new', '–')} | {train} | {len(rs)} |"
        )
    return "\n".join(out)


def _ms(v: dict[str, Any], key: str) -> str:
    """'mean ± std' of a benchmark summary entry {key: {mean, std}} (or of a mean/std pair)."""
    if isinstance(v.get(key), dict):
        return f"{v[key]['mean']:.4f} ± {v[key]['std']:.4f}"
    return f"{v[f'{key}_mean']:.4f} ± {v[f'{key}_std']:.4f}"


def typed_table() -> str:
    """The `benchmarks.typed_events` records: SASRec with and without the action embedding."""
    from benchmarks.common import _read

    path = RESULTS / "typed_events.json"
    if not path.exists():
        return ""
    out = [
        "SASRec, one recipe and budget for every variant (`python -m benchmarks.typed_events`, "
        "docs/models.md § Typed events): *typed-inputs-only* adds the action embedding of each "
        "event (type, bucketed value); *typed* also trains on positive events only (skips and low "
        "ratings stay inputs). Test NDCG@10, leave-one-out over all events, mean ± std over seeds.",
        "",
        "| dataset | tag | untyped | typed-inputs-only | typed | typed / untyped | seeds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in _read(path):
        v = r["variants"]
        cells = [
            _ms(v[name], "NDCG@10") if name in v else "–"
            for name in ("untyped", "typed-inputs-only", "typed")
        ]
        ratio = r.get("typed_over_untyped")
        rstr = f"{ratio:.3f}×" if ratio is not None else "–"
        seeds = len(next(iter(v.values()))["runs"])
        out.append(f"| {r['dataset']} | {r.get('tag', '')} | " + " | ".join(cells) + f" | {rstr} | {seeds} |")
    return "\n".join(out)


def cold_table() -> str:
    """The `benchmarks.cold_start` records: how each scorer ranks items held out of training."""
    from benchmarks.common import _read

    path = RESULTS / "cold_start.json"
    if not path.exists():
        return ""
    out = [
        "Items held out of training entirely (`python -m benchmarks.cold_start`, docs/models.md § "
        "Cold-start protocol); each user's first held-out item asked after the warm events before "
        "it, ranked among all items and within the cold set. SASRec, one recipe and epoch budget "
        "for both models; *warm* is leave-one-out on the log without the cold items. Mean ± std "
        "over model seeds (one split). `+live` adds w · log(1 + the item's events so far), w chosen "
        "on half the questions' users (the weight each seed chose in brackets); such records count "
        "only the other half's questions, on which every scorer of the row is measured.",
        "",
        "| dataset | cold items / questions | scorer | HR@10 among all | HR@10 within cold "
        "| NDCG@10 within cold | warm NDCG@10 | seeds |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in _read(path):
        p = r["protocol"]
        core = (r.get("params") or {}).get("k_core")
        ds = f"{r['dataset']} ({core}-core)" if core else r["dataset"]
        for name, v in r["variants"].items():
            seeds = len(v.get("runs", [])) or "–"
            cells = [
                _ms(v, k) if k in v else "–"
                for k in ("all/HR@10", "cold/HR@10", "cold/NDCG@10", "warm/NDCG@10")
            ]
            if name.startswith("borrowing"):
                cells[3] = "(id-only's)"
            if name.endswith("+live"):
                name += " (w " + ", ".join(f"{x['live_weight']:g}" for x in v["runs"]) + ")"
            q = r["questions"]
            q = f"{q['test']} (+{q['valid']} to choose w)" if isinstance(q, dict) else q
            out.append(
                f"| {ds} | {p['cold_items']} ({p['cold_by']}) / {q} | {name} | "
                + " | ".join(cells)
                + f" | {seeds} |"
            )
    return "\n".join(out)


def peers_table() -> str:
    return (
        PEERS_MD.read_text().strip()
        if PEERS_MD.exists()
        else "(not measured yet: `python -m benchmarks.peers`)"
    )


def readme(text: str, records: list[dict[str, Any]]) -> str:
    """The README with its generated tables (between their markers) rewritten from the records."""
    full = peers_table().splitlines()
    short = (
        "\n".join(
            [ln for ln in full if ln.startswith("|")]
            + [
                "",
                "Same split and config, both after the same epochs; how the two implementations differ and",
                f"what the checks found: [benchmarks/results/{SHOWN}.md](benchmarks/results/{SHOWN}.md).",
            ]
        )
        if any(ln.startswith("|") for ln in full)
        else "\n".join(full)
    )
    for (start, end), body in (((START, END), headline(records)), ((PEERS_START, PEERS_END), short)):
        if start in text and end in text:
            text = re.sub(
                re.escape(start) + ".*?" + re.escape(end),
                lambda _, s=start, b=body, e=end: f"{s}\n{b}\n{e}",
                text,
                flags=re.S,
            )
    return text


def main() -> None:
    records = load_records()
    md = table(records)
    (RESULTS / "README.md").write_text(
        "# Benchmark results\n\nGenerated by `python -m benchmarks.report` from `results/*.json`; "
        "test split, leave-one-out, full ranking, seen items excluded, expected-ties.\n\n" + md + "\n"
    )
    DOC.write_text(results_doc(records))
    if README.exists():
        README.write_text(readme(README.read_text(), records))
    print(headline(records))


if __name__ == "__main__":
    main()
