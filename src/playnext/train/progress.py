"""Where a long step shows its progress: a live bar in a terminal or a notebook, lines in a log.

One object per run with three calls (`start` a stage, `advance` it, `close`), so the training
loop does not care where it runs: a terminal gets a Rich bar on stderr, a notebook a tqdm widget
(`tqdm.auto`), and a piped stderr (nohup, CI, `| tee`) no bar at all — its epochs are reported
as log lines by the loop itself.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol


class Bar(Protocol):
    def start(self, total: int, description: str) -> None: ...
    def advance(self, info: str) -> None: ...
    def close(self) -> None: ...


def in_notebook() -> bool:
    """True inside a Jupyter kernel (stderr is not a terminal there, yet a widget can show)."""
    shell = sys.modules.get("IPython")
    ip = getattr(shell, "get_ipython", lambda: None)() if shell is not None else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class _Silent:
    def start(self, total: int, description: str) -> None:
        return None

    def advance(self, info: str) -> None:
        return None

    def close(self) -> None:
        return None


class _Tqdm:
    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total: int, description: str) -> None:
        from tqdm.auto import tqdm

        self.close()
        self._bar = tqdm(total=total, desc=description, leave=True, dynamic_ncols=True)

    def advance(self, info: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(info, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _Rich:
    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            transient=False,
        )
        self._task: Any = None

    def start(self, total: int, description: str) -> None:
        if self._task is None:
            self._p.start()
            self._task = self._p.add_task(description, total=total, info="")
        else:
            self._p.reset(self._task, total=total, description=description)

    def advance(self, info: str) -> None:
        if self._task is not None:
            self._p.update(self._task, advance=1, info=info)

    def close(self) -> None:
        if self._task is not None:
            self._p.stop()
            self._task = None


def progress_bar(show: bool) -> Bar:
    """A bar for where this process runs: tqdm in a notebook, Rich on a terminal, else none."""
    if not show:
        return _Silent()
    if in_notebook():
        return _Tqdm()
    if sys.stderr.isatty():
        return _Rich()
    return _Silent()
