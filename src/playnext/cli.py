"""`playnext` command line: data stats, train (fit → select on validation → test), recommend, demo.

User errors (bad files, unknown ids, bad parameters) print one line naming what is wrong and
exit with code 2 — never a traceback. With `--json`, stdout carries exactly one JSON object and
all progress goes to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from playnext.errors import PlaynextError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
app.add_typer(data_app, name="data")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

DatasetOpt = Annotated[
    str, typer.Option("--dataset", "-d", help="ml-1m, ml-100k, lastfm-2k, steam-200k, synthetic, csv, …")
]
PathOpt = Annotated[
    Path | None, typer.Option("--path", "-p", help="Local folder or file with the original files.")
]
OptionOpt = Annotated[
    list[str] | None,
    typer.Option("--option", "-o", help="Dataset option key=value (e.g. n_users=5000, user_col=uid)."),
]


def _kv(pairs: list[str] | None, what: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for p in pairs or []:
        if "=" not in p:
            raise PlaynextError(f"{what} {p!r}: expected key=value")
        k, v = p.split("=", 1)
        result[k.strip().replace("-", "_")] = _auto(v.strip())
    return result


def _auto(v: str) -> Any:
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    return v


@contextmanager
def _step(label: str, quiet: bool = False) -> Iterator[None]:
    """A spinner with elapsed time on stderr for anything that may take over a second."""
    if quiet or not err.is_terminal:
        t0 = time.perf_counter()
        yield
        if not quiet:
            err.print(f"[dim]{label}: {time.perf_counter() - t0:.1f}s[/dim]")
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as prog:
        prog.add_task(label, total=None)
        yield


def _run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except PlaynextError as e:
        err.print(f"[bold red]error:[/bold red] {e}", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def _load(dataset: str, path: Path | None, options: dict[str, Any], quiet: bool = False) -> Any:
    from playnext.data.readers import load_dataset

    # no --path: fetch from the official URL into the cache (sha256-checked), once
    options.setdefault("download", path is None and dataset not in ("synthetic",))
    with _step(f"loading {dataset}", quiet):
        return load_dataset(dataset, path, **options)


# ---- data stats ---------------------------------------------------------------------------------
@data_app.command("stats")
def data_stats(
    dataset: DatasetOpt,
    path: PathOpt = None,
    option: OptionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Users, items, interactions, density and sequence-length quantiles."""

    def go() -> None:
        data = _load(dataset, path, _kv(option, "option"), quiet=as_json)
        stats = data.stats()
        if as_json:
            sys.stdout.write(json.dumps(stats) + "\n")
            return
        table = Table(title=f"{dataset}", show_header=False)
        for key, value in stats.items():
            if isinstance(value, dict):
                value = ", ".join(
                    f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()
                )
            elif isinstance(value, float):
                value = f"{value:.6g}"
            table.add_row(key, str(value))
        out.print(table)

    _run(go)


# ---- train ------------------------------------------------------------------------------------------
@app.command()
def train(
    model: Annotated[str, typer.Option("--model", "-m", help="popular, ease, sasrec, … (`playnext models`)")],
    dataset: DatasetOpt,
    path: PathOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to save the model folder.")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Fix a hyper-parameter key=value (skips its search).")
    ] = None,
    option: OptionOpt = None,
    ties: Annotated[str, typer.Option(help="expected | pessimistic | optimistic")] = "expected",
    exclude_seen: Annotated[
        bool, typer.Option(help="Mask already-seen items (off for re-listening).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Exactly one JSON object on stdout.")] = False,
    nproc: Annotated[
        int,
        typer.Option("--nproc", min=1, help="Processes on this machine: data-parallel DDP (gloo/NCCL)."),
    ] = 1,
    refit: Annotated[
        bool,
        typer.Option(
            help="Once chosen, retrain on train + validation events (for the chosen epochs) before test."
        ),
    ] = False,
) -> None:
    """Fit on train, choose on validation, evaluate once on test (leave-one-out, full ranking), save."""

    def go() -> None:
        from playnext.artifact import Artifact
        from playnext.data.split import leave_one_out
        from playnext.evaluate.metrics import TIES
        from playnext.evaluate.protocol import protocol_description, select_and_test
        from playnext.models.registry import get

        if ties not in TIES:
            raise PlaynextError(f"--ties must be one of {', '.join(TIES)}")
        fixed = _kv(param, "--param")
        cls = get(model)
        cls.config_class.from_dict(fixed)  # fail on bad parameters before loading anything
        if nproc > 1:
            from playnext.train.distributed import launch, train_argv

            code = launch(
                nproc,
                train_argv(
                    model=model,
                    dataset=dataset,
                    path=path,
                    out_dir=out_dir,
                    param=param,
                    option=option,
                    ties=ties,
                    exclude_seen=exclude_seen,
                    as_json=as_json,
                    refit=refit,
                ),
            )
            if code:
                raise typer.Exit(code)
            return
        data = _load(dataset, path, _kv(option, "option"), quiet=as_json)
        split = leave_one_out(data)
        covers = bool(fixed) and all(k in fixed for c in cls.search_space() for k in c)
        grid: list[dict[str, Any]] | None = [{}] if covers else None

        def report(params: dict[str, Any], v: dict[str, float]) -> None:
            if not as_json:
                err.print(f"  valid NDCG@10={v['NDCG@10']:.4f}  {params}")

        with _step(f"training {model}", as_json):
            res = select_and_test(
                model,
                split,
                grid=grid,
                fixed=fixed,
                ties=ties,  # type: ignore[arg-type]
                exclude_seen=exclude_seen,
                on_candidate=report,
                refit=refit,
            )
        record = {
            "dataset": dataset,
            "model": model,
            "protocol": protocol_description(split, ties, exclude_seen, refit),  # type: ignore[arg-type]
            "metrics": res.test.metrics,
            "valid_metrics": res.valid_metrics,
            "params": {**res.model.config.to_dict()},
            "n_users_evaluated": res.test.n_users,
            "n_items": data.n_items,
            "train_seconds": res.train_seconds,
            "eval_seconds": res.test.seconds,
            "candidates": res.candidates,
        }
        if out_dir is not None:
            target = Artifact.from_data(res.model, data, record).save(out_dir)
            record["model_dir"] = str(target)
        if as_json:
            sys.stdout.write(json.dumps(record) + "\n")
        else:
            _metrics_table({model: res.test.metrics}, f"{dataset} — test, {res.test.n_users} users")
            if out_dir is not None:
                out.print(f"saved to {record['model_dir']}")

    _run(go)


def _metrics_table(rows: dict[str, dict[str, float]], title: str) -> None:
    keys = ["HR@10", "NDCG@10", "HR@50", "NDCG@50", "MRR", "Coverage@10"]
    table = Table(title=title)
    table.add_column("model")
    for k in keys:
        table.add_column(k, justify="right")
    for name, m in rows.items():
        table.add_row(name, *(f"{m.get(k, float('nan')):.4f}" for k in keys))
    out.print(table)


# ---- recommend --------------------------------------------------------------------------------------
@app.command()
def recommend(
    model_dir: Annotated[Path, typer.Option("--model-dir", help="Folder written by `playnext train --out`.")],
    user: Annotated[str | None, typer.Option("--user", help="A user id from the dataset.")] = None,
    history: Annotated[
        str | None, typer.Option("--history", help="Comma-separated item ids (anonymous).")
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000)] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Top-k recommendations with titles for a user or an ad-hoc history."""

    def go() -> None:
        from playnext.artifact import Artifact

        if (user is None) == (history is None):
            raise PlaynextError("give exactly one of --user or --history")
        art = Artifact.load(model_dir)
        hist = [h.strip() for h in history.split(",") if h.strip()] if history is not None else None
        recs = art.recommend(user=user, history=hist, k=k)
        if as_json:
            sys.stdout.write(json.dumps({"user": user, "history": hist, "items": recs}) + "\n")
            return
        _recs_table(recs, f"for user {user}" if user is not None else f"for history {', '.join(hist or [])}")

    _run(go)


def _recs_table(recs: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    for col in ("#", "id", "title", "kind", "genres", "year", "score"):
        table.add_column(col)
    for r in recs:
        table.add_row(
            str(r["rank"]),
            str(r["item_id"]),
            str(r["title"]),
            str(r.get("kind") or ""),
            ", ".join(r.get("genres") or [])[:40],
            str(r.get("year") or ""),
            f"{r['score']:.3f}",
        )
    out.print(table)


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Option("--model-dir", help="Folder written by `playnext train --out`.")],
    host: Annotated[str, typer.Option(help="Bind address (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    token: Annotated[
        str | None, typer.Option(envvar="PLAYNEXT_TOKEN", help="Bearer token for POST /items.")
    ] = None,
) -> None:
    """Serve a saved model over HTTP: API (docs at /docs) and a web page at /."""

    def go() -> None:
        from playnext.serve.cli import serve as run_server

        run_server(model_dir, host, port, token)

    _run(go)


@app.command()
def models() -> None:
    """List registered models."""
    from playnext.models.registry import names

    for n in names():
        out.print(n)


# ---- demo --------------------------------------------------------------------------------------------
# The best deep model that trains in <= 3 minutes on 2 CPU cores (see README, "make demo"):
# SASRec with a short-history, small-batch recipe and a 90-second wall-clock budget.
DEMO_MODEL = "sasrec"
DEMO_PARAMS: dict[str, Any] = {
    "max_len": 50,
    "batch_size": 32,
    "lr": 3e-3,
    "dropout": 0.1,
    "epochs": 200,
    "patience": 5,
    "eval_every": 2,
    "max_minutes": 2.0,
    "verbose": False,
}


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out")] = Path("artifacts/demo"),
    n_users: Annotated[int, typer.Option(help="Synthetic world size.")] = 3000,
    minutes: Annotated[float, typer.Option(help="Training budget of the deep model.")] = 1.5,
) -> None:
    """Build the synthetic world, train the best available model, show metrics and recommendations."""

    def go() -> None:
        from playnext.artifact import Artifact
        from playnext.data.split import leave_one_out
        from playnext.data.synthetic import generate_world
        from playnext.evaluate.protocol import select_and_test

        t0 = time.perf_counter()
        with _step("building the synthetic entertainment world"):
            data = generate_world(n_users=n_users, seed=0)
        s = data.stats()
        out.print(
            f"[bold]synthetic world[/bold]: {s['users']} users, {s['items']} items, "
            f"{s['interactions']} interactions"
        )
        split = leave_one_out(data)
        rows = {}
        best = None
        for name in ("popular", "ease", DEMO_MODEL):
            grid = [{**DEMO_PARAMS, "max_minutes": minutes}] if name == DEMO_MODEL else None
            with _step(f"training {name} (selected on validation)"):
                res = select_and_test(name, split, grid=grid)
            rows[name] = res.test.metrics
            best = res
        assert best is not None
        _metrics_table(rows, f"test metrics — leave-one-out, full ranking, {best.test.n_users} users")
        art = Artifact.from_data(
            best.model,
            data,
            {
                "dataset": "synthetic",
                "model": DEMO_MODEL,
                "metrics": best.test.metrics,
                "params": best.params,
            },
        )
        art.save(out_dir)
        for user in data.users.external.to_list()[:3]:
            hist = art.history_titles(user)
            out.print(f"\n[bold]user {user}[/bold] recently: " + "; ".join(hist[-4:]))
            _recs_table(art.recommend(user=user, k=5), f"{DEMO_MODEL} recommends for user {user}")
        out.print(
            f"\nmodel saved to {out_dir} — try: playnext recommend --model-dir {out_dir} --user "
            f"{data.users.external[0]}   ({time.perf_counter() - t0:.0f}s)"
        )

    _run(go)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
