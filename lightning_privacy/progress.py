"""Progress of the long phases that run outside Lightning's own loops: helper-model fits, signal collection,
per-sample gradients, the bootstrap (issue 15.8).

One ``bar(description, total)`` per phase: a transient rich bar on stderr (or, while Lightning's
``RichProgressBar`` is live on rich's global console, a row of that display, so the two never overwrite each
other). A bar opened inside another joins its display as one more row (a helper fit's epochs under "helper k/K").
Nothing is drawn when the console is not a terminal (logs, CI, pipes) or inside ``progress_disabled()`` (the
membership audit enters it when the trainer's progress bar is off: ``--trainer.enable_progress_bar false``); the
counts advance all the same."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, Optional, TypeVar

from rich import get_console
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

T = TypeVar("T")

_disabled = 0  # depth of progress_disabled(True) blocks
_active: list[Progress] = []  # the display of the outermost open bar, while one is open
_stderr: Optional[Console] = None
_last_refresh = 0.0
REFRESH_S = 0.1


@contextmanager
def progress_disabled(disabled: bool = True) -> Iterator[None]:
    """No bar is drawn inside this block when ``disabled`` (bars still count)."""
    global _disabled
    _disabled += int(disabled)
    try:
        yield
    finally:
        _disabled -= int(disabled)


def _console() -> Console:
    """rich's global console while a live display (Lightning's bar) runs on it, else one on stderr."""
    global _stderr
    shared = get_console()
    if getattr(shared, "_live_stack", None):
        return shared
    if _stderr is None:
        _stderr = Console(stderr=True)
    return _stderr


class Bar:
    """One row of a progress display: ``advance``, ``update`` (description, total) and ``track`` (an iterable
    that advances the row per item); ``completed`` and ``total`` read it back."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress, self._task = progress, task

    def advance(self, amount: float = 1) -> None:
        self._progress.advance(self._task, amount)
        self._refresh()

    def update(self, *, description: Optional[str] = None, total: Optional[float] = None,
               completed: Optional[float] = None) -> None:
        self._progress.update(self._task, description=description, total=_finite(total), completed=completed)
        self._refresh()

    def _refresh(self) -> None:
        """Redraw at most ``REFRESH_S`` apart: a display nested in Lightning's bar has no refresh thread of its
        own (Lightning's redraws only on its own batches), so without this it would stay at its first frame."""
        global _last_refresh
        now = time.monotonic()
        if now - _last_refresh >= REFRESH_S:
            _last_refresh = now
            self._progress.refresh()

    def track(self, items: Iterable[T]) -> "Tracked[T]":
        return Tracked(items, self)

    @property
    def completed(self) -> float:
        return self._progress.tasks[self._index].completed

    @property
    def total(self) -> Optional[float]:
        return self._progress.tasks[self._index].total

    @property
    def _index(self) -> int:
        return next(i for i, t in enumerate(self._progress.tasks) if t.id == self._task)


class Tracked(Iterable[T]):
    """``items`` (a dataloader, a list), advancing ``bar`` by one after each item; keeps ``len``."""

    def __init__(self, items: Iterable[T], bar: Bar) -> None:
        self.items, self.bar = items, bar

    def __iter__(self) -> Iterator[T]:
        for item in self.items:
            yield item
            self.bar.advance()

    def __len__(self) -> int:
        return len(self.items)  # type: ignore[arg-type]


def _finite(total: Optional[float]) -> Optional[float]:
    return None if total is None or not math.isfinite(total) else float(total)


@contextmanager
def bar(description: str, total: Optional[float], *, console: Optional[Console] = None) -> Iterator[Bar]:
    """A progress row for one phase of ``total`` steps (None: unknown), removed when the block ends. The outermost
    bar opens the display (on ``console`` when given, for tests), inner ones add their row to it."""
    if _active:
        progress = _active[-1]
        task = progress.add_task(description, total=_finite(total))
        try:
            yield Bar(progress, task)
        finally:
            progress.remove_task(task)
        return
    out = console or _console()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=out, transient=True,
                        disable=bool(_disabled) or not out.is_terminal)
    _active.append(progress)
    try:
        with progress:
            yield Bar(progress, progress.add_task(description, total=_finite(total)))
    finally:
        _active.pop()


__all__ = ["Bar", "Tracked", "bar", "progress_disabled"]
