"""One batch run: list the photos, skip what OUT already holds, scan the rest with an engine,
append the rows every ``flush_every`` photos, and keep the tally for the summary."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from .options import DEFAULT_FLUSH_EVERY, DEFAULT_FLUSH_SECONDS, BatchError, BatchOptions
from .sinks import open_sink
from .sources import Photo, expand_sources

ENGINES = ("local", "ray")


@dataclass
class Summary:
    listed: int = 0  # photos named by the sources
    skipped: int = 0  # already in OUT (--resume)
    failed_before: int = 0  # of those, photos whose row records a failure (an earlier run's)
    to_scan: int = 0
    scanned: int = 0  # rows written by this run (failed photos included)
    photos_with_cats: int = 0
    cats: int = 0
    wild_cats: int = 0
    breeds: Counter = field(default_factory=Counter)  # top breed of each cat found
    failures: Counter = field(default_factory=Counter)  # error_code -> photos
    started: float = field(default_factory=time.perf_counter)
    first_row_s: float | None = None  # start-up: listing, model loading, (Ray) cluster and actors
    _marks: dict = field(default_factory=dict)  # rows done -> seconds, at 10 % and 90 % of the run
    wall_s: float = 0.0
    interrupted: bool = False

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def photos_per_s(self) -> float:
        return self.scanned / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def steady_photos_per_s(self) -> float:
        """Photos per second between 10 % and 90 % done: the pace without start-up and the last
        stragglers (the plain rate for runs too short to tell)."""
        if len(self._marks) == 2:
            (n0, t0), (n1, t1) = sorted(self._marks.items())
            if t1 > t0:
                return (n1 - n0) / (t1 - t0)
        return self.photos_per_s

    def add(self, row: dict) -> None:
        if self.first_row_s is None:
            self.first_row_s = time.perf_counter() - self.started
        self.scanned += 1
        if self.to_scan >= 20 and self.scanned in (self.to_scan // 10, self.to_scan - self.to_scan // 10):
            self._marks[self.scanned] = time.perf_counter() - self.started
        if row["error_code"]:
            self.failures[row["error_code"]] += 1
        if row["n_cats"]:
            self.photos_with_cats += 1
            self.cats += row["n_cats"]
            for cat in row["cats"]:
                if cat["breeds"]:
                    self.breeds[cat["breeds"][0]["breed"]] += 1
        if row["wild_cat"]:
            self.wild_cats += 1


Engine = Callable[[Sequence[Photo], BatchOptions], Iterator[dict]]


def engine_for(name: str, log: Callable[[str], None] | None = None) -> Engine:
    if name == "local":
        from .local import run_local

        return run_local
    if name == "ray":
        from .ray_engine import import_ray, run_ray

        import_ray()  # fail before listing millions of photos when Ray is missing
        return lambda photos, options: run_ray(photos, options, log=log)
    raise BatchError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ctrl-C, and SIGTERM where a handler makes it raise (``catscan batch``), wait until the block
    is done: a flush is written, and forgotten, whole. Main thread only (signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    raising = [s for s in (signal.SIGINT, signal.SIGTERM) if callable(signal.getsignal(s))]
    before = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in raising}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    if held:  # only when the block ended well: a failed write's own error is the one to report
        raise KeyboardInterrupt


def run_batch(sources: Sequence[str], output: str, options: BatchOptions, *, engine: str = "local",
              resume: bool = False, flush_every: int = DEFAULT_FLUSH_EVERY,
              flush_seconds: float = DEFAULT_FLUSH_SECONDS, log: Callable[[str], None] = lambda m: None,
              on_start: Callable[[Summary], None] = lambda s: None,
              on_row: Callable[[Summary, dict], None] = lambda s, r: None) -> Summary:
    """Scan every photo of ``sources`` not yet in ``output``; return the tally. Rows are appended
    every ``flush_every`` photos or ``flush_seconds``, and once more when the run ends or is
    interrupted (Ctrl-C); a killed process loses only the rows not yet flushed."""
    summary = Summary()
    scan = engine_for(engine, log)
    sink = open_sink(output, resume=resume)
    try:
        done, versions = sink.done_keys()
        other = versions - {options.model_version}
        if None in other:
            raise BatchError(f"{output} holds rows without a model_version: it was not written by catscan batch "
                             "(catscan scan --json writes none). Write to a new output.")
        if other:
            raise BatchError(f"{output} holds rows scanned with other models ({', '.join(sorted(other))}); "
                             f"this run uses {options.model_version}. Write to a new output, "
                             "or pass --models with the models it was started with.")
        expansion = expand_sources(sources)
        for warning in expansion.warnings:
            log(f"warning: {warning}")
        photos = expansion.photos
        if not photos:
            raise BatchError("no photos found in the sources given.")
        todo = [p for p in photos if p.key not in done]
        summary.listed, summary.skipped, summary.to_scan = len(photos), len(photos) - len(todo), len(todo)
        if summary.skipped:
            failed_before = sink.failed_keys()
            summary.failed_before = sum(p.key in failed_before for p in photos)
        if resume and summary.skipped:
            log(f"resuming: {summary.skipped} of {len(photos)} photos are already in {output}")
        on_start(summary)

        buffer: list[dict] = []
        last_flush = time.perf_counter()
        rows = scan(todo, options) if todo else iter(())
        try:
            for row in rows:
                buffer.append(row)
                summary.add(row)
                on_row(summary, row)
                if len(buffer) >= flush_every or time.perf_counter() - last_flush >= flush_seconds:
                    with _interrupts_held():  # else a Ctrl-C or SIGTERM right after the write wrote it twice
                        sink.write(buffer)
                        buffer, last_flush = [], time.perf_counter()
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:  # also when the engine fails: keep what was scanned
            sink.write(buffer)
            getattr(rows, "close", lambda: None)()  # stops the engine now (a local Ray instance too)
    finally:
        sink.close()
        summary.wall_s = time.perf_counter() - summary.started
    return summary
