"""A small rich progress bar for long loops (training, evaluation, batch scans)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")


class progress_bar(Iterable[T]):
    """Iterate with a progress bar on stderr (epoch/batch, postfix values, time left).

    Disabled automatically when ``enabled`` is False; when stderr is not a terminal it
    prints a plain line every ~10 % instead so logs of background jobs stay readable.
    """

    def __init__(self, items: Iterable[T], desc: str = "", total: int | None = None, enabled: bool = True,
                 transient: bool = False):
        self.items = items
        self.desc = desc
        self.transient = transient  # remove the bar when done
        self.total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
        self.enabled = enabled
        self.postfix = ""

    def set_postfix(self, **values: float) -> None:
        self.postfix = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())

    def __iter__(self) -> Iterator[T]:
        if not self.enabled:
            yield from self.items
            return
        if not sys.stderr.isatty():
            yield from self._plain()
            return
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[postfix]}"), TimeElapsedColumn(), TextColumn("left"),
            TimeRemainingColumn(), transient=self.transient, console=Console(stderr=True),
            redirect_stdout=False, redirect_stderr=False,  # stdout stays the caller's (JSON lines)
        ) as prog:
            task = prog.add_task(self.desc, total=self.total, postfix="")
            for item in self.items:
                yield item
                prog.update(task, advance=1, postfix=self.postfix)

    def _plain(self) -> Iterator[T]:
        import time

        start = time.time()
        step = max(1, (self.total or 10) // 10)
        for i, item in enumerate(self.items, 1):
            yield item
            if i % step == 0 or i == self.total:
                el = time.time() - start
                left = f", {el / i * (self.total - i):.0f} s left" if self.total else ""
                print(f"{self.desc}: {i}/{self.total or '?'} {self.postfix} ({el:.0f} s{left})",
                      file=sys.stderr, flush=True)
