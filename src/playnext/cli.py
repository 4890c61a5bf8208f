"""`playnext` command line: a thin shell over the application layer (`playnext.experiment`).

`train` runs a recipe (a TOML file shipped in the package, or the user's own) under the
leave-one-out protocol: fit on train, choose on validation, test once, save. User errors (bad
files, unknown ids, bad parameters) print one line naming what is wrong and exit with code 2,
never a traceback. With `--json`, stdout carries exactly one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from typer.core import TyperOption

from playnext.errors import PlaynextError

# plain (click) help: it wraps descriptions at the terminal's width and never cuts an option's
# name, where Rich's option table cuts `--budget-minutes` to `--budget-minut…` at 80 columns
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, rich_markup_mode=None)
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.", rich_markup_mode=None)
app.add_typer(data_app, name="data")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

DatasetOpt = Annotated[
    str,
    typer.Option(
        "--dataset",
        "-d",
        help="ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, ml-latest-small, ml-latest, lastfm-2k, "
        "steam-200k, synthetic, or a file of your own: csv, parquet, seq (`user item` lines), "
        "userlines (`user item item …` lines).",
    ),
]
PathOpt = Annotated[
    Path | None, typer.Option("--path", "-p", help="Local folder or file with the original files.")
]
DATASET_OPTIONS = (
    "csv and parquet: user_col, item_col, timestamp_col (unix seconds, ms or ns, or ISO dates), "
    "weight_col or value_col, event_col, title_col (column names, or 0-based indices), "
    "kind (movie, music, game, …); csv also: separator (',' ';' tab '|' '::'), has_header (true|false); "
    "an --items file's columns: items_id_col, items_title_col, items_genres_col, items_year_col, "
    "items_kind_col, items_separator. "
    "seq, userlines: kind. steam-200k: events=pairs|all. lastfm-2k: events=plays|tags|tag-days. "
    "synthetic: n_users, n_items, seed, mean_length, kinds, allow_repeats, zipf_exponent, taste_alpha, "
    "explore, tie_rate, typed_events, skip_rate, relisten_rate. "
    "Downloads: cache_dir, allow_unverified."
)
"""Every option a dataset takes (README, "Dataset options"); tests/test_cli_data_checks.py holds it
to the readers' signatures."""
OptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--option", "-o", metavar="KEY=VALUE", help="Dataset option (repeatable). " + DATASET_OPTIONS
    ),
]
ItemsOpt = Annotated[
    Path | None,
    typer.Option(
        "--items",
        help="csv/parquet: an item file (id, title, genres 'a|b', year, kind; other column names via "
        "--option items_id_col=…) giving id-only data titles and genres.",
    ),
]
DedupeOpt = Annotated[
    bool, typer.Option("--dedupe", help="Keep the first of each repeated (user, item) pair.")
]
KCoreOpt = Annotated[
    int | None,
    typer.Option(
        "--k-core", min=1, metavar="N", help="Drop users and items with fewer than N events, repeatedly."
    ),
]
RerankOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--rerank",
        help="Re-rank the lists (repeatable): calibrate:lambda=0.5[,by=kind] · mmr:lambda=0.3[,by=genres] · "
        "novelty:weight=0.2 · quota:max_per_genre=3,min_per_kind.game=2 · pool=200 · relevance=prob · "
        "or one JSON object "
        "(docs/rerank.md).",
    ),
]


def _kv(pairs: list[str] | None, what: str) -> dict[str, Any]:
    from playnext.config import parse_pairs

    return parse_pairs(pairs, what)


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
        err.print("[bold red]error:[/bold red] " + escape(str(e)), highlight=False, soft_wrap=True)
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


def _options(option: list[str] | None, items: Path | None) -> dict[str, Any]:
    """`--option` pairs, with `--items FILE` as the readers' `items` option."""
    options = _kv(option, "--option")
    if items is not None:
        options["items"] = str(items)
    return options


def _prepare(data: Any, cleaning: Any, repeats: bool = False) -> tuple[Any, list[Any]]:
    """Timestamps in seconds, `--dedupe` / `--k-core`, then the data checks (data/checks.py)."""
    from playnext.data.checks import prepare

    return prepare(data, cleaning, repeats=repeats)


def _say_findings(findings: list[Any], console: Console, errors: bool = True) -> None:
    """Each finding as one line: what was found and the flag that handles it (`errors=False`:
    not the refusals, which the caller raises and `_run` prints)."""
    style = {"info": "dim", "warning": "yellow", "error": "bold red"}
    for f in findings:
        if f.severity == "error" and not errors:
            continue
        label = f"[{style[f.severity]}]{f.severity}:[/{style[f.severity]}] " if f.severity != "info" else ""
        console.print(label + escape(f.message), highlight=False, soft_wrap=True)


# ---- data stats ---------------------------------------------------------------------------------
@data_app.command("stats")
def data_stats(
    dataset: DatasetOpt,
    path: PathOpt = None,
    option: OptionOpt = None,
    items: ItemsOpt = None,
    dedupe: DedupeOpt = False,
    k_core: KCoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Users, items, interactions, density, sequence-length quantiles, and what `train` would
    trip on: duplicate rows, test targets already seen, timestamp units, users too short to
    evaluate, a catalog too small to rank, the time range (each with the flag that handles it)."""

    def go() -> None:
        from playnext.data.checks import Cleaning

        data = _load(dataset, path, _options(option, items), quiet=as_json)
        data, findings = _prepare(data, Cleaning(dedupe=dedupe, k_core=k_core))
        stats = data.stats()
        if as_json:
            stats["data_checks"] = [f.to_dict() for f in findings]
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
        _say_findings(findings, out)

    _run(go)


# ---- train ------------------------------------------------------------------------------------------
DEFAULT_BUDGET_MINUTES = 10.0


@app.command()
def train(
    ctx: typer.Context,
    dataset: DatasetOpt,
    recipe: Annotated[
        str | None,
        typer.Option("--recipe", "-r", help="A shipped recipe (`playnext recipes`) or a recipe .toml file."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Run this model's default recipe (`playnext models`)."),
    ] = None,
    path: PathOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to save the model folder.")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Override a recipe field key=value (repeatable).")
    ] = None,
    option: OptionOpt = None,
    items: ItemsOpt = None,
    dedupe: DedupeOpt = False,
    k_core: KCoreOpt = None,
    search: Annotated[
        bool,
        typer.Option("--search", help="Try the recipe's candidate configs and keep the best on validation."),
    ] = False,
    budget_minutes: Annotated[
        float | None,
        typer.Option(
            "--budget-minutes",
            min=0,
            help=f"Wall-clock training budget (a search shares it). Default: the recipe's own with "
            f"--recipe, {DEFAULT_BUDGET_MINUTES:g} with --model alone; 0 = none.",
        ),
    ] = None,
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
    rerank: RerankOpt = None,
    repeats: Annotated[
        bool,
        typer.Option(
            "--repeats",
            help="Repeat-aware protocol: seen items are candidates; metrics also for repeat and new "
            "targets apart (docs/models.md, Re-listens).",
        ),
    ] = False,
    cold: Annotated[
        str | None,
        typer.Option(
            "--cold",
            help="Cold-start protocol: hold out random:0.1 (or time:0.1, the newest) of the items from "
            "training and rank each user's first one from content / borrowing / popularity "
            "(docs/models.md).",
        ),
    ] = None,
) -> None:
    """Fit on train, choose on validation, evaluate once on test (leave-one-out, full ranking), save.

    Give a recipe (`--recipe hstu-large`), or a model (`--model sasrec`) to run its default
    recipe within a wall-clock budget. Under torchrun (or with --nproc N) every process runs
    this same command as one rank of a data-parallel job.
    """

    def go() -> None:
        from playnext.data.checks import Cleaning
        from playnext.train import distributed

        plan = _plan(
            recipe, model, param, search, budget_minutes, ties, exclude_seen, refit, rerank, repeats, cold
        )
        if nproc > 1 and not distributed.in_worker():
            code = distributed.launch(nproc, ["-m", "playnext.cli", *_argv_of(ctx, skip=("nproc",))])
            if code:
                raise typer.Exit(code)
            return
        cleaning = Cleaning(dedupe=dedupe, k_core=k_core)
        if distributed.in_worker():
            _train_rank(plan, dataset, path, _options(option, items), out_dir, as_json, cleaning)
        else:
            _train_here(plan, dataset, path, _options(option, items), out_dir, as_json, cleaning)

    _run(go)


def _plan(
    recipe: str | None,
    model: str | None,
    param: list[str] | None,
    search: bool,
    budget_minutes: float | None,
    ties: str,
    exclude_seen: bool,
    refit: bool,
    rerank: list[str] | None = None,
    repeats: bool = False,
    cold: str | None = None,
) -> Any:
    """The run `train` describes, checked before anything is loaded."""
    from playnext import recipes
    from playnext.experiment import Plan
    from playnext.models.registry import canonical
    from playnext.rerank import parse_spec
    from playnext.train.device import resolve_device

    if recipe is None and model is None:
        raise PlaynextError("give --recipe NAME|FILE.toml or --model NAME (`playnext recipes` lists them)")
    if model is not None:
        model = canonical(model)  # `--model SASRec` is sasrec
    chosen = recipes.load(recipe) if recipe is not None else recipes.default_for(str(model))
    if model is not None and model != chosen.model:
        raise PlaynextError(f"--model {model} disagrees with recipe {chosen.name} (a {chosen.model} recipe)")
    if budget_minutes is None and recipe is None:
        budget_minutes = DEFAULT_BUDGET_MINUTES
    plan = Plan.from_recipe(
        chosen,
        overrides=_kv(param, "--param"),
        search=search,
        budget_minutes=budget_minutes,
        ties=ties,  # checked by Plan.candidates
        exclude_seen=exclude_seen and not repeats,
        refit=refit,
        rerank=parse_spec(rerank),
        repeats=repeats,
        cold=cold,
    )
    for params in plan.candidates():  # fail on a bad field before loading anything
        if isinstance(params.get("device"), str):
            resolve_device(params["device"])  # device=cuda on a CPU-only torch: one line, exit 2
    return plan


def _train_here(
    plan: Any,
    dataset: str,
    path: Path | None,
    options: dict[str, Any],
    out_dir: Path | None,
    as_json: bool,
    cleaning: Any,
) -> None:
    from playnext.artifact import Artifact
    from playnext.data.checks import refusal
    from playnext.experiment import popularity_baseline, run
    from playnext.report import write_report

    data, findings = _prepare(_load(dataset, path, options, quiet=as_json), cleaning, plan.repeats)
    _say_findings(findings, err, errors=False)
    if (refused := refusal(findings)) is not None:
        raise refused

    def report(params: dict[str, Any], v: dict[str, float]) -> None:
        if not as_json:
            err.print(f"  valid NDCG@10={v['NDCG@10']:.4f}  {params}")

    label = f"training {plan.model}" + (f" ({plan.recipe})" if plan.recipe else "")
    if plan.budget_minutes and not as_json:
        err.print(f"[dim]{label}: training budget {plan.budget_minutes:g} min[/dim]")
    with _step(label, as_json):
        done = run(plan, data, dataset=dataset, on_candidate=report)
    record = {**done.record, "data_stats": data.stats()}
    record["data_checks"] = [f.to_dict() for f in findings]
    if plan.model != "popular":  # the number to beat, on the same split (seconds)
        with _step("popularity on the same split", as_json):
            record["baseline"] = popularity_baseline(plan, done.split)
    if out_dir is not None:
        record["model_dir"] = str(Artifact.from_data(done.result.model, done.data, record).save(out_dir))
        write_report(record, out_dir)
    _print_record(record, as_json)


def _train_rank(
    plan: Any,
    dataset: str,
    path: Path | None,
    options: dict[str, Any],
    out_dir: Path | None,
    as_json: bool,
    cleaning: Any,
) -> None:
    """One rank of a torch.distributed `train`: rank 0 loads first (it may download), saves
    and prints; the others only train and evaluate their shares."""
    import torch.distributed as dist

    from playnext.artifact import Artifact
    from playnext.data.checks import refusal
    from playnext.data.readers import load_dataset
    from playnext.experiment import run
    from playnext.report import write_report
    from playnext.train import distributed

    rank, _ = distributed.init()
    try:
        if rank == 0:
            options.setdefault("download", path is None and dataset != "synthetic")
            data = load_dataset(dataset, path, **options)
        dist.barrier()
        if rank != 0:
            data = load_dataset(dataset, path, **options)
        data, findings = _prepare(data, cleaning, plan.repeats)  # the same on every rank
        if rank == 0:
            _say_findings(findings, err, errors=False)
        if (refused := refusal(findings)) is not None:
            raise refused
        done = run(plan, data, dataset=dataset, distributed=True)
        record = {
            **done.record,
            "backend": dist.get_backend(),
            "data_checks": [f.to_dict() for f in findings],
        }
        if rank == 0 and out_dir is not None:
            record["model_dir"] = str(Artifact.from_data(done.result.model, done.data, record).save(out_dir))
            write_report(record, out_dir)
        dist.barrier()  # no rank tears the group down while rank 0 is still saving
    except PlaynextError:
        if rank != 0:
            raise typer.Exit(2) from None  # rank 0 says why
        raise
    finally:
        distributed.shutdown()
    if rank == 0:
        _print_record(record, as_json)


def _print_record(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(record, default=float) + "\n")
        return
    world = record.get("world_size", 1)
    title = f"{record['dataset']} — test, {record['n_users_evaluated']} users"
    rows = {record["model"]: record["metrics"]}
    if record.get("metrics_without_rerank") is not None:  # the re-ranker's cost, read off one run
        rows = {record["model"]: record["metrics_without_rerank"], "+ rerank": record["metrics"]}
    for group, size in (record.get("n_users_by_target") or {}).items():  # the repeat-aware protocol
        prefix = f"{group}/"
        rows[f"  {group} ({size})"] = {  # the users whose target is a repeat / is new
            k[len(prefix) :]: v for k, v in record["metrics"].items() if k.startswith(prefix)
        }
    if record.get("baseline"):  # popularity on the same split: the number to beat
        rows["popular (baseline)"] = record["baseline"]["metrics"]
    _metrics_table(rows, title + (f", {world} processes" if world > 1 else ""))
    if "cold" in record:  # the cold-start protocol: each way of scoring the held-out items
        p = record["cold"]["protocol"]
        scorers = record["cold"]["scorers"]
        n = int(next(iter(scorers.values()))["questions"])
        chosen = ", ".join(f"{k} {v['chosen']:g}" for k, v in record["cold"].get("live_weights", {}).items())
        _metrics_table(
            scorers,
            f"cold items ({p['cold_items']} held out, {p['cold_by']}) — {n} test questions: "
            f"among all items / within the cold set; +live weights ({chosen}) chosen on the other half",
            ["all/HR@10", "all/NDCG@10", "cold/HR@10", "cold/NDCG@10"],
        )
    at = record.get("stopped_at") or {}
    if record.get("stopped") == "budget" and at:
        best = record.get("best_epoch") or -1
        err.print(
            f"training stopped by its budget at epoch {at['epoch']}, step {at['step']}/{at['steps']} "
            f"({at['seconds']:.0f} s)" + (f"; kept the best validated epoch, {best}" if best > 0 else ""),
            highlight=False,
        )
    if "model_dir" in record:
        out.print(f"saved to {record['model_dir']} (report: {Path(record['model_dir']) / 'report.html'})")


@app.command("report")
def report(
    model_dir: Annotated[Path, typer.Argument(help="A folder written by `playnext train --out`.")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="The page to write (default: DIR/report.html).")
    ] = None,
) -> None:
    """Rebuild DIR/report.html from the folder's run record (artifact.json): the data, the
    learning curve, validation vs test beside popularity on the same split, the recipe."""

    def go() -> None:
        from playnext.report import read_record, write_report

        out.print(f"wrote {write_report(read_record(model_dir), model_dir, out_file)}")

    _run(go)


def _argv_of(ctx: typer.Context, skip: tuple[str, ...] = ()) -> list[str]:
    """The command line that reproduces this invocation's parsed options (for a relaunch)."""
    argv = [str(ctx.info_name)]
    for p in ctx.command.params:
        value = ctx.params.get(p.name or "")
        if not isinstance(p, TyperOption) or p.name in skip or value is None:
            continue
        if p.is_flag and p.secondary_opts:
            argv.append(p.opts[0] if value else p.secondary_opts[0])
        elif p.is_flag:
            argv += [p.opts[0]] if value else []
        elif p.multiple:
            for v in value:
                argv += [p.opts[0], str(v)]
        else:
            argv += [p.opts[0], str(value)]
    return argv


@app.command("recipes")
def list_recipes(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """The shipped recipes: model, what each scored where, and which is a model's default."""
    from playnext import recipes

    shipped = recipes.shipped()
    if as_json:
        doc = [
            {
                "name": r.name,
                "model": r.model,
                "default": r.default,
                "description": r.description,
                "budget_minutes": r.budget_minutes,
                "params": r.params,
                "scored": [vars(s) for s in r.scored],
            }
            for r in shipped
        ]
        sys.stdout.write(json.dumps({"recipes": doc}) + "\n")
        return
    table = Table(title="recipes (playnext train --recipe NAME)")
    for col in ("name", "model", "default", "scored", "description"):
        table.add_column(col)
    for r in shipped:
        scored = "; ".join(f"{s.dataset} {s.metric} {s.value:.4f} ({s.tag})" for s in r.scored)
        table.add_row(r.name, r.model, "yes" if r.default else "", scored, r.description)
    out.print(table)


BEYOND_KEYS = ("Miscalibration@10", "ILD-genre@10", "ILD-embedding@10")


def _metrics_table(rows: dict[str, dict[str, float]], title: str, keys: list[str] | None = None) -> None:
    if keys is None:
        keys = ["HR@10", "NDCG@10", "HR@50", "NDCG@50", "MRR", "Coverage@10"]
        keys += [k for k in BEYOND_KEYS if any(k in m for m in rows.values())]
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
    ctx: typer.Context,
    model_dir: Annotated[Path, typer.Option("--model-dir", help="Folder written by `playnext train --out`.")],
    user: Annotated[str | None, typer.Option("--user", help="A user id from the dataset.")] = None,
    history: Annotated[
        str | None, typer.Option("--history", help="Comma-separated item ids (anonymous).")
    ] = None,
    events: Annotated[
        str | None,
        typer.Option(
            "--events",
            help="With --history, for a model trained with typed events: one TYPE[=VALUE] per item "
            "(empty = untyped), e.g. watch=0.9,skip=0,,like. Types it was not trained with are refused.",
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000)] = 10,
    exclude_seen: Annotated[
        bool, typer.Option(help="Mask the items already in the history (off for re-listening).")
    ] = True,
    all_users: Annotated[
        bool, typer.Option("--all-users", help="Every user of the model folder, to Parquet (--out).")
    ] = False,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="With --all-users: the Parquet file to write.")
    ] = None,
    restart: Annotated[
        bool,
        typer.Option("--restart", help="With --all-users: discard the parts of an earlier, different run."),
    ] = False,
    chunk_users: Annotated[
        int, typer.Option("--chunk-users", min=0, help="With --all-users: users per part (0 = automatic).")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    rerank: RerankOpt = None,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc", min=1, help="With --all-users: processes on this machine, a share of the parts each."
        ),
    ] = 1,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="When the lists are asked: unix seconds or ISO-8601 (UTC without a zone); default now. "
            "Read by a model trained with the request's time; with --all-users one time for every user.",
        ),
    ] = None,
) -> None:
    """Top-k recommendations with titles for a user or an ad-hoc history, or every user's top-k
    streamed to Parquet (`--all-users --out recs.parquet`; rerun the same command to resume).
    With --all-users under torchrun (or with --nproc N) every process writes a share of the parts."""

    def go() -> None:
        from playnext.artifact import Artifact
        from playnext.batch import Job
        from playnext.data.request_time import parse_at
        from playnext.rerank import parse_spec

        spec = parse_spec(rerank)  # a bad value exits 2 before the model is loaded
        typed = _parse_events(events) if events is not None else None
        asked = parse_at(at, "--at") if at is not None else None  # likewise
        if all_users:
            if typed is not None:
                raise PlaynextError("--events types a --history; --all-users reads each user's stored events")
            job = Job(k=k, exclude_seen=exclude_seen, chunk_users=chunk_users, rerank=spec, at=asked)
            _recommend_all(model_dir, user, history, job, out_file, restart, as_json, nproc, ctx)
            return
        if out_file is not None or restart or nproc > 1:
            raise PlaynextError("--out, --restart and --nproc go with --all-users")
        if (user is None) == (history is None):
            raise PlaynextError("give exactly one of --user or --history (or --all-users --out FILE)")
        if typed is not None and history is None:
            raise PlaynextError("--events types a --history; a --user's own events are stored")
        art = Artifact.load(model_dir)
        hist = [h.strip() for h in history.split(",") if h.strip()] if history is not None else None
        asked = asked if asked is not None else parse_at(None)  # now, said in the answer
        recs, summary = art.recommend_ranked(
            user=user, history=hist, k=k, exclude_seen=exclude_seen, rerank=spec, events=typed, at=asked
        )
        reads_time = art.model.uses_request_time
        if as_json:
            doc: dict[str, Any] = {"user": user, "history": hist, "items": recs, "rerank": summary}
            doc |= {"request_time": reads_time, "at": asked if reads_time else None}
            sys.stdout.write(json.dumps(doc) + "\n")
            return
        if reads_time:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(asked))
            err.print(f"asked at {when} ({asked}): the model reads the request's time", highlight=False)
        _recs_table(recs, f"for user {user}" if user is not None else f"for history {', '.join(hist or [])}")
        if summary is not None:
            _rerank_note(summary)

    _run(go)


def _parse_events(text: str) -> list[tuple[str | None, float | None]]:
    """`--events`: comma-separated TYPE[=VALUE] entries aligned with `--history` (empty: untyped)."""
    out: list[tuple[str | None, float | None]] = []
    for n, entry in enumerate(text.split(","), 1):
        name, eq, raw = (part.strip() for part in entry.partition("="))
        if not name and eq:
            raise PlaynextError(f"--events entry {n} ({entry!r}): a value needs a type, TYPE=VALUE")
        value = None
        if eq:
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise PlaynextError(f"--events entry {n} ({entry!r}): the value is not a finite number")
        out.append((name or None, value))
    return out


def _recommend_all(
    model_dir: Path,
    user: str | None,
    history: str | None,
    job: Any,
    out_file: Path | None,
    restart: bool,
    as_json: bool,
    nproc: int,
    ctx: typer.Context,
) -> None:
    """`recommend --all-users`: here, as one rank under torchrun, or relaunched as `nproc` ranks."""
    from playnext.train import distributed

    if user is not None or history is not None:
        raise PlaynextError("--all-users takes no --user or --history")
    if out_file is None:
        raise PlaynextError("--all-users needs --out FILE.parquet")
    job.validate()  # once, before any process starts
    if nproc > 1 and not distributed.in_worker():
        code = distributed.launch(nproc, ["-m", "playnext.cli", *_argv_of(ctx, skip=("nproc",))])
        if code:
            raise typer.Exit(code)
        return
    rank = distributed.init("gloo")[0] if distributed.in_worker() else 0  # control messages only
    try:
        done = _recommend_all_here(model_dir, out_file, job, restart, show=rank == 0 and not as_json)
    except PlaynextError:
        if rank != 0:
            raise typer.Exit(2) from None  # rank 0 says why
        raise
    finally:
        distributed.shutdown()
    if rank != 0:
        return
    summary = {
        "out": str(done.path),
        "users": done.users,
        "rows": done.rows,
        "parts": done.parts,
        "parts_reused": done.parts_reused,
        "processes": done.ranks,
        "seconds": round(done.seconds, 3),
        "at": done.at,  # None unless the model reads the request's time
    }
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        reused = f", {done.parts_reused} of {done.parts} parts reused" if done.parts_reused else ""
        ranks = f" on {done.ranks} processes" if done.ranks > 1 else ""
        asked = f", asked at {done.at} (the model reads the request's time)" if done.at is not None else ""
        err.print(f"{done.rows:,} rows for {done.users:,} users in {done.seconds:.1f}s{ranks}{reused}{asked}")
        out.print(f"wrote {done.path}")


def _recommend_all_here(model_dir: Path, out_file: Path, job: Any, restart: bool, show: bool) -> Any:
    """This process's `batch.recommend_all`, with a progress bar on a terminal when `show`."""
    from playnext import batch

    if not show or not err.is_terminal:
        return batch.recommend_all(model_dir, out_file, job, restart=restart)
    with Progress(
        TextColumn("recommending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("users"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as prog:
        task = prog.add_task("users", total=None)
        return batch.recommend_all(
            model_dir,
            out_file,
            job,
            restart=restart,
            progress=lambda n, total: prog.update(task, completed=n, total=total),
        )


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


def _rerank_note(summary: dict[str, Any]) -> None:
    """One line under the table: what re-ranking did and which quotas it had to relax."""
    note = f"re-ranked ({', '.join(summary['applied'])}) over the top {summary['pool']}"
    relaxed = [
        f"{r['constraint']}.{r['key']} (wanted {r['wanted']}, got {r['got']})" for r in summary["relaxed"]
    ]
    if relaxed:
        note += "; relaxed: " + "; ".join(relaxed)
    err.print(note, highlight=False)


@app.command()
def serve(
    model_dir: Annotated[
        Path | None, typer.Option("--model-dir", help="Folder written by `playnext train --out`.")
    ] = None,
    model_root: Annotated[
        Path | None,
        typer.Option("--model-root", help="Serve ROOT/current; swap in models published there."),
    ] = None,
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            "--store",
            help="State store: a folder (SQLite) or postgresql://… (default: state/NAME/ beside model NAME).",
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes sharing the store.")] = 1,
    host: Annotated[str, typer.Option(help="Bind address (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    token: Annotated[
        str | None,
        typer.Option(envvar="PLAYNEXT_TOKEN", help="Bearer token for POST /items and /admin/model."),
    ] = None,
) -> None:
    """Serve a saved model over HTTP: API (docs at /docs) and a web page at /."""

    def go() -> None:
        from playnext.serve.cli import serve as run_server

        run_server(model_dir, host, port, token, model_root=model_root, state=state, workers=workers)

    _run(go)


@app.command()
def publish(
    model_dir: Annotated[Path, typer.Argument(help="A model folder to publish.")],
    root: Annotated[Path, typer.Option("--root", help="The model root servers watch (ROOT/current).")],
    name: Annotated[str | None, typer.Option(help="Version name (default: time + folder name).")] = None,
) -> None:
    """Copy a model into ROOT/versions and re-point ROOT/current at it: serving workers swap it in."""

    def go() -> None:
        from playnext.artifact import Artifact
        from playnext.artifact import publish as publish_model

        Artifact.load(model_dir)  # refuse a folder that would not load before anyone sees it
        version = publish_model(model_dir, root, name)
        out.print(f"published {version} as {root}/current")

    _run(go)


@app.command("export")
def export_model(
    model_dir: Annotated[Path, typer.Option("--model-dir", help="Folder written by `playnext train --out`.")],
    fmt: Annotated[str, typer.Option("--format", help="onnx (the only format so far).")] = "onnx",
    out_file: Annotated[
        Path | None, typer.Option("--out", help="The file to write (default: MODEL_DIR/model.onnx).")
    ] = None,
    check_users: Annotated[
        int, typer.Option("--check-users", min=1, help="Users whose histories check the export.")
    ] = 1024,
    as_json: Annotated[bool, typer.Option("--json", help="The check record as one JSON object.")] = False,
) -> None:
    """Export a sequence model's scoring path (SASRec, HSTU, GRU4Rec, Caser) to ONNX, checked
    against PyTorch with onnxruntime on real histories; refused if scores differ by > 1e-4."""

    def go() -> None:
        from playnext.export import export_onnx

        if fmt != "onnx":
            raise PlaynextError(f"--format {fmt}: only onnx is supported")
        with _step("exporting to ONNX and checking against PyTorch", as_json):
            done = export_onnx(model_dir, out_file, check_users=check_users)
        if as_json:
            sys.stdout.write(json.dumps({"path": str(done.path), **done.info}) + "\n")
            return
        info = done.info
        out.print(
            f"wrote {done.path} (opset {info['opset']}): max |onnx - torch| = {info['max_abs_diff']:.2e} "
            f"on {info['n_checked']} users; inputs {', '.join(i['name'] for i in info['inputs'])}"
        )

    _run(go)


@app.command()
def retrain(
    model_dir: Annotated[Path, typer.Option("--model-dir", help="CURRENT: the model folder now served.")],
    store: Annotated[str, typer.Option("--store", help="The server's state: a folder or a database URL.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Where to save NEW.")],
    budget_minutes: Annotated[
        float | None,
        typer.Option(
            "--budget-minutes",
            min=0,
            help="Training budget. Default: a fifth of the recipe's (warm), all of it.",
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Most epochs to train.")] = None,
    from_scratch: Annotated[
        bool, typer.Option("--from-scratch", help="A fresh model with CURRENT's recipe, not a warm start.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Publish NEW even if the gate finds it worse.")
    ] = False,
    publish_root: Annotated[
        Path | None,
        typer.Option(
            "--publish", help="Model root: copy NEW to ROOT/versions/ and point ROOT/current at it."
        ),
    ] = None,
    lr_factor: Annotated[
        float | None, typer.Option(help="Warm start: the recipe's learning rate times this.")
    ] = None,
    text_encoder: Annotated[
        str, typer.Option(help="Text neighbours of new items: minilm | hashing | none.")
    ] = "minilm",
    as_json: Annotated[bool, typer.Option("--json", help="Exactly one JSON object on stdout.")] = False,
) -> None:
    """Retrain on the events the server logged since CURRENT: warm start (or from scratch), compare
    NEW with CURRENT on each user's newest event, publish only if NEW is not worse (exit 3 if it is)."""

    def go() -> int:
        from playnext.retrain import EXIT_REFUSED, RetrainOptions
        from playnext.retrain import retrain as run_retrain

        options = RetrainOptions(
            from_scratch=from_scratch,
            budget_minutes=budget_minutes,
            epochs=epochs,
            force=force,
            text_encoder=text_encoder,
        )
        if lr_factor is not None:
            options.lr_factor = lr_factor
        with _step("retraining", as_json):
            done = run_retrain(model_dir, store, out_dir, options, publish_root=publish_root)
        if as_json:
            sys.stdout.write(json.dumps({**done.record, "message": done.message}, default=float) + "\n")
        if done.refused:
            err.print(done.message, highlight=False)
            return EXIT_REFUSED
        if not as_json:
            out.print(done.message, highlight=False)
        return 0

    code = _run(go)
    if code:
        raise typer.Exit(code)


@app.command()
def models() -> None:
    """List registered models."""
    from playnext.models.registry import names

    for n in names():
        out.print(n)


# ---- demo --------------------------------------------------------------------------------------------
# Popularity and EASE (searched on validation) beside the `demo` recipe: the best deep model that
# trains in <= 3 minutes on 2 CPU cores (README, "make demo").
DEMO_RECIPE = "demo"


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out")] = Path("artifacts/demo"),
    n_users: Annotated[int, typer.Option(help="Synthetic world size.")] = 3000,
    minutes: Annotated[float, typer.Option(help="Training budget of the deep model.")] = 1.5,
) -> None:
    """Build the synthetic world, train the best available model, show metrics and recommendations."""

    def go() -> None:
        from playnext import recipes
        from playnext.artifact import Artifact
        from playnext.data.split import leave_one_out
        from playnext.data.synthetic import generate_world
        from playnext.experiment import Plan, run

        t0 = time.perf_counter()
        with _step("building the synthetic entertainment world"):
            data = generate_world(n_users=n_users, seed=0)
        s = data.stats()
        out.print(
            f"[bold]synthetic world[/bold]: {s['users']} users, {s['items']} items, "
            f"{s['interactions']} interactions"
        )
        split = leave_one_out(data)
        plans = [
            Plan.from_recipe(recipes.default_for("popular"), search=True),
            Plan.from_recipe(recipes.default_for("ease"), search=True),
            Plan.from_recipe(recipes.load(DEMO_RECIPE), budget_minutes=minutes),
        ]
        rows = {}
        for plan in plans:
            with _step(f"training {plan.model} (selected on validation)"):
                best = run(plan, data, dataset="synthetic", split=split)
            rows[plan.model] = best.result.test.metrics
        _metrics_table(rows, f"test metrics — leave-one-out, full ranking, {best.result.test.n_users} users")
        art = Artifact.from_data(best.result.model, data, best.record)
        art.save(out_dir)
        name = plans[-1].model
        for user in data.users.external.to_list()[:3]:
            hist = art.history_titles(user)
            out.print(f"\n[bold]user {user}[/bold] recently: " + "; ".join(hist[-4:]))
            _recs_table(art.recommend(user=user, k=5), f"{name} recommends for user {user}")
        out.print(
            f"\nmodel saved to {out_dir} — try: playnext recommend --model-dir {out_dir} --user "
            f"{data.users.external[0]}   ({time.perf_counter() - t0:.0f}s)"
        )

    _run(go)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
