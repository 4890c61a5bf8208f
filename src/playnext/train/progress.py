"""Where a long step shows its progress: a live bar in a terminal or a notebook, lines in a log.

One object per run with three calls (`start` a stage, `advance` it, `close`), so the training
loop does not care where it runs: a terminal gets a Rich bar on stderr, a notebook a tqdm widget
(`tqdm.auto`), and a piped stderr (nohup, CI, `| tee`, `playnext train --json`) lines: the loop's
own log lines (one an epoch, the budget's projection) and, within a long stage, one every ~30 s,
so a log never stays silent for long.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Protocol

log = logging.getLogger("playnext.train")

FIRST_LINE_S = 10.0  # a stage still running after this long gets its first line …
LINE_EVERY_S = 30.0  # … then one every this many seconds


class Bar(Protocol):
    live: bool  # a person sees it move (a bar); else the stage is told in lines

    def start(self, total: int, description: str) -> None: ...
    def advance(self, info: str) -> None: ...
    def close(self) -> None: ...


def in_notebook() -> bool:
    """True inside a Jupyter kernel (stderr is not a terminal there, yet a widget can show)."""
    shell = sys.modules.get("IPython")
    ip = getattr(shell, "get_ipython", lambda: None)() if shell is not None else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class _Silent:
    live = False

    def start(self, total: int, description: str) -> None:
        return None

    def advance(self, info: str) -> None:
        return None

    def close(self) -> None:
        return None


class _Tqdm:
    live = True

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
    live = True

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


class _Lines:
    """Where no bar can show: a line within a long stage now and then, and, while it lasts, the
    `playnext.train` INFO lines (the loop's epoch lines) on stderr — unless the application
    configured logging itself, when they go wherever it sends them."""

    live = False

    def __init__(self) -> None:
        self._handler: logging.Handler | None = None
        self._level = log.level
        if not log.hasHandlers():
            self._handler = logging.StreamHandler(sys.stderr)
            self._handler.setFormatter(logging.Formatter("%(message)s"))
            log.addHandler(self._handler)
            log.setLevel(logging.INFO)
        self._total, self._description = 0, ""
        self._done, self._t0, self._next = 0, 0.0, FIRST_LINE_S

    def start(self, total: int, description: str) -> None:
        self._total, self._description = total, description
        self._done, self._t0, self._next = 0, time.perf_counter(), FIRST_LINE_S

    def advance(self, info: str) -> None:
        self._done += 1
        elapsed = time.perf_counter() - self._t0
        if elapsed >= self._next:
            self._next = elapsed + LINE_EVERY_S
            d, n, total = self._description, self._done, self._total
            log.info("%s  step %d/%d  %s  (%.0f s)", d, n, total, info, elapsed)

    def close(self) -> None:
        if self._handler is not None:
            log.removeHandler(self._handler)
            log.setLevel(self._level)
            self._handler = None


def progress_bar(show: bool) -> Bar:
    """Progress for where this process runs: tqdm in a notebook, Rich on a terminal, lines on a
    piped stderr; nothing when not `show`n."""
    if not show:
        return _Silent()
    if in_notebook():
        return _Tqdm()
    if sys.stderr.isatty():
        return _Rich()
    return _Lines()
