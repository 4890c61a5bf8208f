"""Every notebook in examples/ runs top to bottom in a fresh kernel, in a temporary working folder.

The kernel is this interpreter (the venv's), through a kernelspec written for the test: a clean
machine has no user-level `python3` kernel, and one that has may point at another Python.
A cell tagged `recommend` must show the caller's column names (the notebooks' frames use
`uid` and `iid`, never playnext's own).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
CELL_TIMEOUT_S = 300
CALLER_COLUMNS = ("uid", "iid")


def _text(cell: dict) -> str:
    """Everything a code cell showed: streams, reprs (plain and HTML) and errors."""
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        data = out.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/html", "")]
        parts += out.get("traceback", [])
    return "\n".join(p if isinstance(p, str) else "".join(p) for p in parts)


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, f"no notebooks in {EXAMPLES}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A `python3` kernelspec that starts this interpreter; JUPYTER_PATH comes before the user's and
    # the system's folders, so it wins over any other `python3` kernel on the machine.
    jupyter = tmp_path / "jupyter"
    kernelspec.write_kernel_spec(jupyter / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the kernel inherits it: no spinning threads
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    work = tmp_path / "work"
    work.mkdir()

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(work)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{path.name} failed:\n{e}")
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "every code cell ran"
    assert not [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    tagged = [c for c in code if "recommend" in c.get("metadata", {}).get("tags", [])]
    assert tagged, f"{path.name}: tag the cell that shows recommendations `recommend`"
    for cell in tagged:
        shown = _text(cell)
        for column in CALLER_COLUMNS:
            assert column in shown, f"{path.name}: the recommend cell does not show {column!r}:\n{shown}"
