"""A run's report: one self-contained HTML page built from its record.

`playnext train --out DIR` writes `DIR/report.html`; `playnext report DIR` rebuilds it from the
folder's `artifact.json` (the run record); `pn.Run.report(path)` writes it from Python. The page
needs nothing but a browser: plots are PNGs drawn with matplotlib (no pyplot state) and embedded
as base64, the style is inline, nothing is fetched. What it shows, each when the record has it:

- the data: users, items, events, history-length percentiles, and the data checks' findings;
- the learning curve: training loss and validation NDCG@10 by epoch and by minute, the best
  epoch, where and why training stopped (a budget cut mid-epoch sits at its fraction);
- validation beside test, and popularity on the same split beside the model;
- the recipe, the chosen parameters, the protocol and the candidates a search tried.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from playnext.errors import ConfigError
from playnext.io import atomic_write

REPORT_FILE = "report.html"
RECORD_FILE = "artifact.json"
SELECT = "NDCG@10"
METRICS = ("HR@10", "NDCG@10", "HR@50", "NDCG@50", "MRR", "Recall@10", "Coverage@10")
BARS = ("HR@10", "NDCG@10", "HR@50", "NDCG@50", "MRR")  # accuracy: one scale
LOSS_COLOR, VALID_COLOR = "#1f77b4", "#ff7f0e"  # matplotlib's tab:blue and tab:orange, also CSS


def read_record(directory: str | Path) -> dict[str, Any]:
    """The run record of a model folder (`artifact.json`); ConfigError if there is none."""
    path = Path(directory) / RECORD_FILE
    if not path.is_file():
        raise ConfigError(
            f"{directory}: no {RECORD_FILE} here — give a folder written by `playnext train --out`"
        )
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: unreadable run record ({e})") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{path}: the run record is not a JSON object")
    return record


def write_report(record: dict[str, Any], directory: str | Path, file: str | Path | None = None) -> Path:
    """Write the report of `record` to `file` (default `DIR/report.html`), atomically."""
    path = Path(file) if file is not None else Path(directory) / REPORT_FILE
    page = render(record)
    atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"), durable=False)
    return path.resolve()


# ---- plots --------------------------------------------------------------------------------------
def curve_points(history: list[dict[str, float]], by: str) -> list[tuple[float, dict[str, float]]]:
    """(x, row) of each epoch: x the epoch count (a budget-cut epoch at its fraction) or the
    minutes since training started (`elapsed`, else the summed epoch seconds)."""
    points = []
    total = 0.0
    for row in history:
        total += row.get("seconds", 0.0)
        if by == "minute":
            points.append((row.get("elapsed", total) / 60, row))
        else:
            points.append((row["epoch"] - 1 + row.get("fraction", 1.0), row))
    return points


def draw_curve(ax: Any, history: list[dict[str, float]], best_epoch: int = -1, by: str = "epoch") -> Any:
    """Training loss (left axis) and validation NDCG@10 (right axis) on `ax`, by epoch or by
    minute, with the best epoch marked; returns `ax` (the curve `Model.plot` draws too)."""
    if by not in ("epoch", "minute"):
        raise ConfigError(f"by must be 'epoch' or 'minute', got {by!r}")
    points = curve_points(history, by)
    ax.plot([x for x, _ in points], [r["loss"] for _, r in points], "o-", color=LOSS_COLOR, ms=3)
    ax.set_xlabel("epoch" if by == "epoch" else "minutes")
    ax.set_ylabel("train loss", color=LOSS_COLOR)
    valid = [(x, r["valid_" + SELECT]) for x, r in points if "valid_" + SELECT in r]
    if valid:
        right = ax.twinx()
        right.plot(*zip(*valid, strict=True), "s-", color=VALID_COLOR, ms=3)
        right.set_ylabel(f"validation {SELECT}", color=VALID_COLOR)
        best = [x for x, r in points if r["epoch"] == best_epoch]
        if best:
            right.axvline(best[0], color="grey", ls=":", lw=1)
    return ax


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def curve_png(record: dict[str, Any]) -> str | None:
    """The learning curve by epoch and by minute, as base64 PNG (None without a history)."""
    from matplotlib.figure import Figure

    history = record.get("history") or []
    if not history:
        return None
    fig = Figure(figsize=(11, 3.6))
    by_epoch, by_minute = fig.subplots(1, 2)
    best = int(record.get("best_epoch") or -1)
    draw_curve(by_epoch, history, best, "epoch")
    draw_curve(by_minute, history, best, "minute")
    by_epoch.set_title("by epoch")
    by_minute.set_title("by minute")
    budget = record.get("budget_minutes") or (record.get("params") or {}).get("max_minutes")
    if budget:
        by_minute.axvline(float(budget), color="tab:red", ls="--", lw=1)
    fig.tight_layout()
    return _png(fig)


def metrics_png(record: dict[str, Any]) -> str | None:
    """Test metrics of the model beside popularity on the same split, as base64 PNG."""
    from matplotlib.figure import Figure

    rows = _test_rows(record)
    if not rows:
        return None
    keys = [k for k in BARS if all(k in m for m in rows.values())]
    fig = Figure(figsize=(7, 3))
    ax = fig.subplots()
    width = 0.8 / len(rows)
    for i, (name, m) in enumerate(rows.items()):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(keys))]
        ax.bar(xs, [m[k] for k in keys], width, label=name)
    ax.set_xticks(range(len(keys)), keys)
    ax.set_title("test")
    ax.legend(frameon=False)
    fig.tight_layout()
    return _png(fig)


# ---- the page -----------------------------------------------------------------------------------
def _test_rows(record: dict[str, Any]) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    if record.get("metrics"):
        rows[str(record.get("model", "model"))] = record["metrics"]
    base = record.get("baseline")
    if base and base.get("metrics"):
        rows[f"{base.get('model', 'popular')} (same split)"] = base["metrics"]
    return rows


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _esc(value)
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_num(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    return _esc(json.dumps(value)) if isinstance(value, dict | list) else _num(value)


def _pairs(items: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{_esc(k)}</th><td>{_cell(v)}</td></tr>" for k, v in items.items() if v is not None
    )
    return f"<table class='pairs'>{rows}</table>"


def _img(png: str | None, alt: str) -> str:
    return f"<img alt='{_esc(alt)}' src='data:image/png;base64,{png}'>" if png else ""


def _data_section(record: dict[str, Any]) -> str:
    stats = record.get("data_stats") or {}
    facts = {
        "users": stats.get("users"),
        "items": stats.get("items", record.get("n_items")),
        "events": stats.get("interactions"),
        "unique (user, item) pairs": stats.get("unique_pairs"),
        "density": stats.get("density"),
        "users evaluated (test)": record.get("n_users_evaluated"),
    }
    parts = ["<h2>Data</h2>", _pairs(facts)]
    lengths = stats.get("sequence_length")
    if lengths:
        parts.append("<p>Events per user (history length):</p>")
        parts.append(_table(list(lengths), [list(lengths.values())]))
    if stats.get("events"):
        parts.append(_table(["event type", "events"], stats["events"].items()))
    findings = record.get("data_checks") or []
    if findings:
        lines = "".join(
            f"<li class='{_esc(f.get('severity', 'info'))}'>{_esc(f.get('message', f))}</li>"
            for f in findings
        )
        parts.append(f"<p>Data checks:</p><ul>{lines}</ul>")
    return "\n".join(parts)


def _training_section(record: dict[str, Any]) -> str:
    parts = ["<h2>Learning curve</h2>"]
    png = curve_png(record)
    if png is None:
        parts.append(f"<p>{_esc(record.get('model', 'This model'))} trains without epochs: no curve.</p>")
    else:
        parts.append(_img(png, "learning curve"))
        parts.append(
            f"<p class='note'><span style='color:{LOSS_COLOR}'>&#9679; training loss</span> · "
            f"<span style='color:{VALID_COLOR}'>&#9632; validation {SELECT}</span> · dotted: the best "
            "epoch (its weights are the model's) · dashed: the budget</p>"
        )
    at = record.get("stopped_at") or {}
    why = {"epochs": "all epochs done", "patience": "no better validation (patience)", "budget": "the budget"}
    stopped = record.get("stopped")
    where = (
        f"epoch {at.get('epoch')}, step {at.get('step')} of {at.get('steps')}, "
        f"after {at.get('seconds', 0):.1f} s"
        if at
        else None
    )
    facts = {
        "epochs": record.get("epochs"),
        "best epoch": record.get("best_epoch"),
        "stopped by": why.get(stopped, stopped) if stopped else None,
        "stopped at": where,
        "budget (minutes)": record.get("budget_minutes"),
        "training seconds": record.get("train_seconds"),
        "seconds per epoch": record.get("seconds_per_epoch"),
        "parameters": record.get("n_params"),
    }
    parts.append(_pairs(facts))
    return "\n".join(parts)


def _metrics_section(record: dict[str, Any]) -> str:
    rows: list[tuple[str, dict[str, float]]] = []
    model = str(record.get("model", "model"))
    if record.get("valid_metrics"):
        rows.append((f"{model} — validation", record["valid_metrics"]))
    if record.get("metrics"):
        rows.append((f"{model} — test", record["metrics"]))
    base = record.get("baseline") or {}
    if base.get("valid_metrics"):
        rows.append((f"{base.get('model', 'popular')} — validation", base["valid_metrics"]))
    if base.get("metrics"):
        rows.append((f"{base.get('model', 'popular')} — test", base["metrics"]))
    if not rows:
        return "<h2>Metrics</h2><p>This folder's record holds no metrics.</p>"
    keys = [k for k in METRICS if any(k in m for _, m in rows)]
    table = _table(["", *keys], [[name, *(m.get(k, "") for k in keys)] for name, m in rows])
    parts = ["<h2>Metrics</h2>", table]
    summary = _summary(record)
    if summary:
        parts.insert(1, f"<p><b>{_esc(summary)}</b></p>")
    parts.append(_img(metrics_png(record), "test metrics beside popularity"))
    if record.get("metrics_without_rerank"):
        parts.append("<p>Test without re-ranking:</p>")
        parts.append(_table(keys, [[record["metrics_without_rerank"].get(k, "") for k in keys]]))
    return "\n".join(parts)


def _summary(record: dict[str, Any]) -> str:
    m, base = record.get("metrics") or {}, (record.get("baseline") or {}).get("metrics") or {}
    if SELECT not in m or SELECT not in base:
        return ""
    a, b = m[SELECT], base[SELECT]
    ratio = f" ({a / b:.2f}×)" if b > 0 else ""
    verdict = "beats" if a > b else "does not beat"
    return f"test {SELECT}: {record.get('model')} {a:.4f} {verdict} popularity's {b:.4f}{ratio}"


def _recipe_section(record: dict[str, Any]) -> str:
    parts = ["<h2>Recipe</h2>"]
    parts.append(
        _pairs({"recipe": record.get("recipe"), "model": record.get("model"), "search": record.get("search")})
    )
    if record.get("params"):
        parts.append("<p>Chosen parameters:</p>")
        parts.append(_pairs(record["params"]))
    if record.get("refit_params"):
        parts.append("<p>Refit on train + validation with:</p>")
        parts.append(_pairs(record["refit_params"]))
    candidates = record.get("candidates") or []
    if len(candidates) > 1:
        rows = [[json.dumps(c.get("params", {})), c.get("valid", {}).get(SELECT, "")] for c in candidates]
        parts.append("<p>Candidates tried (chosen on validation):</p>")
        parts.append(_table(["params", f"validation {SELECT}"], rows))
    if record.get("protocol"):
        parts.append("<p>Protocol:</p>")
        parts.append(_pairs(record["protocol"]))
    if record.get("environment"):
        parts.append("<p>Environment:</p>")
        parts.append(_pairs(record["environment"]))
    return "\n".join(parts)


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 2px 10px; text-align: right; }
th { background: #f4f4f4; } table.pairs th { text-align: left; } td:first-child { text-align: left; }
img { max-width: 100%; } .note, .sub { color: #666; } li.warning { color: #a60; } li.error { color: #b00; }
"""


def render(record: dict[str, Any]) -> str:
    """The report page of a run record, as one self-contained HTML string."""
    model, dataset = record.get("model", "model"), record.get("dataset", "")
    title = f"{model} on {dataset}" if dataset else str(model)
    made = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    version = (record.get("environment") or {}).get("playnext", "")
    body = [
        f"<h1>{_esc(title)}</h1>",
        f"<p class='sub'>playnext {_esc(version)} run report · written {made}</p>",
        _metrics_section(record),
        _training_section(record),
        _data_section(record),
        _recipe_section(record),
    ]
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(title)} — playnext report</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
