"""Recipes are data: the shipped TOML files parse, say truthfully what they scored, run end to end,
and a bad recipe is refused naming the file, the field and what is allowed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from playnext import recipes
from playnext.cli import app
from playnext.data.split import leave_one_out
from playnext.data.synthetic import generate_world
from playnext.errors import ConfigError
from playnext.experiment import Plan, run
from playnext.models.registry import get, names

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
runner = CliRunner()
# fields that say how a run was watched or stored, not what was trained
RUN_ONLY = {"verbose", "checkpoint_dir", "resume", "device"}


def test_shipped_recipes_parse_and_each_model_has_one_default() -> None:
    shipped = recipes.shipped()
    by_name = {r.name: r for r in shipped}
    assert {"sasrec", "hstu-large", "gru4rec", "demo", "ease", "popular"} <= set(by_name)
    for model in names():
        defaults = [r.name for r in shipped if r.model == model and r.default]
        assert len(defaults) == 1, f"{model}: default recipes {defaults}"
    assert recipes.default_for("hstu").name == "hstu-large"
    assert recipes.load("demo").budget_minutes == 1.5


def _records(dataset: str) -> list[dict[str, Any]]:
    return json.loads((RESULTS / f"{dataset}.json").read_text())


@pytest.mark.parametrize("recipe", [r for r in recipes.shipped() if r.scored], ids=lambda r: r.name)
def test_what_a_recipe_says_it_scored_is_in_the_records_with_its_params(recipe: recipes.Recipe) -> None:
    for score in recipe.scored:
        found = [
            r
            for r in _records(score.dataset)
            if r["model"] == recipe.model and r.get("tag") == score.tag and r.get("seed", 0) == 0
        ]
        assert len(found) == 1, f"{recipe.name}: {score.dataset} tag {score.tag}"
        record = found[0]
        assert round(record["metrics"][score.metric], 4) == pytest.approx(score.value, abs=1e-9)
        # fields set otherwise since the run must differ from the run's (a field the record
        # predates had its default)
        changed = set(score.changed_fields)
        mine, defaults = recipe.config().to_dict(), get(recipe.model).config_class().to_dict()
        assert all(record["params"].get(k, defaults[k]) != mine[k] for k in changed), changed
        recorded = {k: v for k, v in record["params"].items() if k not in RUN_ONLY | changed}
        mine = {k: v for k, v in mine.items() if k not in RUN_ONLY | changed}
        if score.tag == "baseline":  # EASE's record is the searched ladder's choice
            mine = {k: v for k, v in mine.items() if k in recipe.params}
            recorded = {k: v for k, v in recorded.items() if k in recipe.params}
        # a field added after the run was recorded must hold its default, which the run had
        assert {k: v for k, v in mine.items() if k not in recorded} == {
            k: defaults[k] for k in mine if k not in recorded
        }
        mine = {k: v for k, v in mine.items() if k in recorded}
        if mine.get("max_len") == 0:  # "from the data": the record holds the length it was fitted to
            recorded.pop("max_len")
            mine.pop("max_len")
        assert recorded == mine, f"{recipe.name} differs from record {score.tag}"


def test_a_recipe_file_can_be_given_by_path(tmp_path: Path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text('[recipe]\nmodel = "sasrec"\n[params]\ndim = 16\nlr = 3e-3\n[[search]]\ndropout = 0.3\n')
    r = recipes.load(f)
    assert (r.name, r.model, r.config().dim, r.search) == ("mine", "sasrec", 16, [{"dropout": 0.3}])


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            '[recipe]\nmodel = "sasrec"\n[params]\nlrr = 0.1\n',
            r"unknown field\(s\) lrr \(did you mean lr\?\).*known:",
        ),
        (
            '[recipe]\nmodel = "sasrec"\n[params]\nlr = "fast"\n',
            r"\[params\]: SASRecConfig.lr: expected a number",
        ),
        ('[recipe]\nmodel = "sasrec"\n[params]\nloss = "xx"\n', r"loss must be one of .*'ce'.*got 'xx'"),
        (
            '[recipe]\nmodel = "sasrec"\n[paramz]\n',
            r"unknown field 'paramz' \(did you mean params\?\); allowed:",
        ),
        ('[recipe]\nmodl = "sasrec"\n', r"\[recipe\]: unknown field 'modl' \(did you mean model\?\)"),
        ('[recipe]\nmodel = "transformer"\n', r"unknown model 'transformer'; one of .*sasrec"),
        ("[params]\ndim = 8\n", r"field 'model' is required"),
        (
            '[recipe]\nmodel = "sasrec"\n[[search]]\ndim = -1\n',
            r"\[\[search\]\] #1: SASRecConfig: dim must be >= 1",
        ),
        ('[recipe]\nmodel = "sasrec"\nbudget_minutes = "soon"\n', r"budget_minutes: expected a number"),
        ("[recipe\n", r"not valid TOML"),
    ],
)
def test_a_bad_recipe_file_names_the_file_and_the_field(tmp_path: Path, body: str, says: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(ConfigError, match=says) as e:
        recipes.load(f)
    assert str(f) in str(e.value)


def test_unknown_recipe_lists_the_shipped_ones_and_the_cli_exits_2(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown recipe 'sasrek' \(did you mean sasrec\?\); shipped: .*hstu-large"
    ):
        recipes.load("sasrek")
    keep = tmp_path / "model"
    keep.mkdir()
    (keep / "precious.txt").write_text("saved before")
    bad = tmp_path / "bad.toml"
    bad.write_text('[recipe]\nmodel = "sasrec"\n[params]\nepoch = 3\n')
    for args in (
        ["--recipe", "sasrek"],
        ["--recipe", str(bad)],
        ["--model", "sasrec", "--recipe", "ease"],
        [],
    ):
        r = runner.invoke(app, ["train", *args, "--dataset", "synthetic", "--out", str(keep)])
        assert r.exit_code == 2, r.output
    assert (keep / "precious.txt").read_text() == "saved before"  # nothing saved is touched
    r = runner.invoke(app, ["train", "--recipe", str(bad), "--dataset", "synthetic"])
    assert "bad.toml" in r.output and "epoch" in r.output and "epochs" in r.output


def test_plan_layers_recipe_search_and_overrides_and_shares_the_budget() -> None:
    recipe = recipes.load("sasrec")
    plain = Plan.from_recipe(recipe, overrides={"dim": 32})
    assert plain.search is None and len(plain.grid()) == 1  # no search unless asked
    (only,) = plain.grid()
    assert only["dim"] == 32 and only["lr"] == recipe.params["lr"]
    assert only["max_minutes"] == recipe.params["max_minutes"]
    searched = Plan.from_recipe(recipe, overrides={"lr": 5e-3}, search=True, budget_minutes=8.0)
    grid = searched.grid()
    assert len(grid) == 1 + len(recipe.search)
    assert [g["dropout"] for g in grid[:3]] == [0.2, 0.1, 0.3]
    assert all(g["lr"] == 5e-3 for g in grid)  # what the user fixed wins over the search
    assert all(g["max_minutes"] == 2.0 for g in grid)  # 8 minutes shared by 4 candidates
    mine = Plan.from_recipe(recipe, overrides={"max_minutes": 30.0}, budget_minutes=8.0)
    assert mine.grid()[0]["max_minutes"] == 30.0
    assert Plan.from_recipe(recipes.load("ease"), budget_minutes=5.0).grid() == [{"l2": 250.0}]
    with pytest.raises(ConfigError, match="ties must be one of"):
        Plan.from_recipe(recipe, ties="random").grid()  # type: ignore[arg-type]


# the same shipped files, shrunk to seconds: every field a recipe sets still reaches its model
TINY = {"epochs": 1, "max_minutes": 0.0, "verbose": False, "dim": 8, "n_blocks": 1, "n_heads": 1}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", recipes.shipped(), ids=lambda r: r.name)
def test_every_shipped_recipe_runs_end_to_end(recipe: recipes.Recipe) -> None:
    data = generate_world(n_users=120, n_items=60, seed=0)
    fields = get(recipe.model).config_class.field_types()
    tiny = {k: v for k, v in TINY.items() if k in fields}
    if "max_len" in fields:
        tiny["max_len"] = min(int(recipe.params.get("max_len", 8)), 8)
    done = run(Plan.from_recipe(recipe, overrides=tiny), data, dataset="synthetic", split=leave_one_out(data))
    rec = done.record
    assert rec["recipe"] == recipe.name and rec["model"] == recipe.model
    for key, value in recipe.params.items():
        if key not in tiny:
            want = pytest.approx(value) if isinstance(value, int | float) else value
            assert rec["params"][key] == want, key
    assert 0.0 <= rec["metrics"]["NDCG@10"] <= 1.0 and rec["n_users_evaluated"] == 120


@pytest.mark.slow
def test_train_with_a_model_alone_runs_its_default_recipe_within_the_budget(tmp_path: Path) -> None:
    plays = tmp_path / "plays.csv"
    rows = ["user,item,timestamp"]
    for u in range(80):
        rows += [f"u{u},t{(u + j) % 40},{1_700_000_000 + 60 * j}" for j in range(12)]
    plays.write_text("\n".join(rows) + "\n")
    args = ["train", "--model", "sasrec", "--dataset", "csv", "--path", str(plays)]
    r = runner.invoke(app, [*args, "--budget-minutes", "0.1", "--param", "dim=16", "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    assert rec["recipe"] == "sasrec" and not rec["search"] and len(rec["candidates"]) == 1
    assert rec["params"]["max_minutes"] == pytest.approx(0.1) and rec["params"]["n_heads"] == 2
    assert rec["train_seconds"] < 0.1 * 60 + 20  # the budget, plus the last epoch's validation
    assert rec["best_epoch"] >= 1  # the kept weights are the best-on-validation epoch's


def test_recipes_command_lists_the_shipped_recipes() -> None:
    r = runner.invoke(app, ["recipes", "--json"])
    assert r.exit_code == 0, r.output
    listed = json.loads(r.stdout)["recipes"]
    assert [x["name"] for x in listed] == [x.name for x in recipes.shipped()]
    hstu = next(x for x in listed if x["name"] == "hstu-large")
    assert hstu["default"] and hstu["scored"][0]["tag"] == "deep-8x128-bf16-lb-do3"
    assert "hstu-large" in runner.invoke(app, ["recipes"]).stdout
