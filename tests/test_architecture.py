"""The package's shape: every module imports on its own, no module reaches into another's private
names, and no file names a path of one particular machine. (The layer contracts themselves are
import-linter's, in pyproject.toml, run by `make test`.)"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "playnext"


def modules() -> list[str]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] != "__main__":
            out.append(".".join(parts))
    return out


# One interpreter loads the third-party libraries once, then forks a child per module that
# imports it with no playnext module loaded: an import cycle or a missing import shows up as
# that module's failure, whatever order a test run happened to import things in.
CHILD = r"""
import importlib, os, sys, traceback
import numpy, polars, torch, fastapi, pydantic, typer, rich, safetensors, scipy  # noqa: F401
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed.append(name)
print("FAILED:" + ",".join(failed))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="uses fork")
def test_every_module_imports_on_its_own() -> None:
    names = modules()
    assert "playnext.experiment" in names and "playnext.recipes" in names
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *names], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    failed = done.stdout.strip().rsplit("FAILED:", 1)[-1]
    assert failed == "", f"modules that fail to import on their own: {failed}\n{done.stderr[-3000:]}"


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(path: Path, package: str = "") -> list[str]:
    """`from playnext.x import _name` uses in one source file, and imports of a private module
    (`playnext.x._y`) from outside its own package `playnext.x` (its siblings may share it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("playnext"):
            module = str(node.module)
            found += [f"{module}.{a.name}" for a in node.names if private(a.name)]
            parts = module.split(".")
            for i, part in enumerate(parts):
                if private(part) and package != ".".join(parts[:i]):
                    found.append(module)
    return found


def test_no_module_imports_another_modules_private_names(tmp_path: Path) -> None:
    offenders = {
        str(p.relative_to(ROOT)): private_imports(p, ".".join(p.relative_to(SRC.parent).parts[:-1]))
        for p in SRC.rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}
    bad = tmp_path / "bad.py"
    bad.write_text("from playnext.cli import _kv, __version__\nfrom playnext.serve.routes._common import x\n")
    assert private_imports(bad, "playnext.serve") == ["playnext.cli._kv", "playnext.serve.routes._common"]
    assert private_imports(bad, "playnext.serve.routes") == ["playnext.cli._kv"]


# absolute paths of somebody's machine: home folders, this workplace's roots, Windows drives
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:home|Users|root|work|mnt|opt/data)/[\w.-]+|\b[A-Z]:\\\\Users\\\\")


def test_no_file_names_a_path_of_a_particular_machine() -> None:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    hits = []
    for name in files:
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".toml", ".sh", ".txt", ".cfg", ".yml", ".yaml", ".html", ".js"):
            continue
        if not path.is_file():
            continue
        for no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                hits.append(f"{name}:{no}: {line.strip()[:100]}")
    assert hits == []
    assert MACHINE_PATH.search("--path " + "/wo" + "rk/shared/datasets/ml-1m")
    assert not MACHINE_PATH.search("$PLAYNEXT_DATA_DIR/ml-1m and ~/.cache/playnext and /tmp/x")
