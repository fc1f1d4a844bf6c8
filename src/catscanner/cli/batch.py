"""``catscan batch``: scan a whole archive into a Parquet or JSONL table (see docs/batch.md)."""

from __future__ import annotations

import enum
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..batch.options import DEFAULT_CPUS_PER_ACTOR, DEFAULT_FLUSH_EVERY
from ..errors import CatScannerError, ModelError
from ..runtime.breeds import DEFAULT_BREED_THRESHOLD
from .common import PrecisionOption, RuntimeOption, err_console, fail, runtime_choice

PLAIN_PROGRESS_SECONDS = 10.0  # a progress line this often when stderr is not a terminal


class EngineName(str, enum.Enum):
    local = "local"
    ray = "ray"


def _interrupt(signum, frame) -> None:
    """SIGTERM (what schedulers and ``kill`` send) stops a batch as Ctrl-C does: it used to end the
    process at once, losing every row since the last flush (up to a minute's work)."""
    raise KeyboardInterrupt


def batch(
    sources: Annotated[list[str], typer.Argument(
        help="Folders (searched recursively), glob patterns ('photos/**/*.jpg', quoted), photo files, "
             "or .txt/.lst files listing one of these per line. Local paths or URIs (s3://, gs://).",
        show_default=False)],
    output: Annotated[str, typer.Option(
        "--output", "-o", help="Where the rows go: NAME.parquet (a folder of Parquet part files) or NAME.jsonl "
                               "(one local file). Local path or URI (s3://bucket/results.parquet).",
        show_default=False)],
    engine: Annotated[EngineName, typer.Option(help="local: this process, all cores. ray: Ray Data actors on a "
                                                    "local Ray instance or on --ray-address.")] = EngineName.local,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an existing OUT: skip every photo already in it with the same path, file size "
                         "and modification time (a changed file is scanned again), append the rest.")] = False,
    threshold: Annotated[float, typer.Option(help="Smallest breed share to list, 0-1.", min=0.0, max=1.0)] = DEFAULT_BREED_THRESHOLD,
    models: Annotated[Optional[Path], typer.Option(help="Folder with detector.onnx and breeds.onnx (default: the shipped models).")] = None,
    batch_size: Annotated[int, typer.Option(help="Photos per inference batch.", min=1, max=256)] = 8,
    flush_every: Annotated[int, typer.Option(
        help="Append the rows to OUT every N photos (and at least once a minute): the most a killed run loses.",
        min=1)] = DEFAULT_FLUSH_EVERY,
    threads: Annotated[Optional[int], typer.Option(
        help="Inference threads per scanner (default: all cores for local; CPUs / actors for ray).",
        min=1, max=256)] = None,
    runtime: RuntimeOption = None,
    precision: PrecisionOption = None,
    actors: Annotated[Optional[int], typer.Option(help="Ray: scanner actors, each loading the models once "
                                                       "(default: one per CPU of the cluster).", min=1)] = None,
    cpus_per_actor: Annotated[float, typer.Option(
        help="Ray: CPUs each actor reserves. Below 1 leaves room for Ray's own tasks: a Ray Data pipeline "
             "whose actors reserve every CPU can stall.", min=0.01)] = DEFAULT_CPUS_PER_ACTOR,
    ray_address: Annotated[Optional[str], typer.Option(
        help="Ray: address of a running cluster (e.g. ray://head:10001 or auto); default: start a local "
             "Ray instance with every CPU and stop it afterwards.")] = None,
) -> None:
    """Scan a whole archive into a results table, on this machine or a Ray cluster; resumable.

    One row per photo; a photo that fails is a row with its error, and the run goes on.
    Progress goes to stderr, then a summary.
    Exit code 0 when every photo was scanned, 1 when any photo failed (in this run or, for the
    photos a --resume skips, in an earlier one), 2 for usage errors,
    130 when interrupted by Ctrl-C or SIGTERM (the rows scanned so far are written; rerun with --resume).
    """
    from ..batch.options import BatchError, BatchOptions
    from ..batch.rows import model_version
    from ..batch.run import run_batch
    from ..runtime.contract import ModelFiles

    if engine is EngineName.local and (actors or ray_address):
        fail("--actors and --ray-address are for --engine ray.")
    runtime, precision = runtime_choice(runtime, precision)  # checked here; a Ray node checks its own
    try:
        version = model_version(ModelFiles.resolve(models))
    except CatScannerError as e:
        fail(str(e))
    options = BatchOptions(model_version=version, models=models, threshold=threshold, batch_size=batch_size,
                           threads=threads, runtime=runtime, precision=precision, actors=actors,
                           cpus_per_actor=cpus_per_actor, ray_address=ray_address)
    progress = _Progress()
    stop_on_term = signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's stop: flush, as Ctrl-C does
    try:
        summary = run_batch(sources, output, options, engine=engine.value, resume=resume, flush_every=flush_every,
                            log=lambda m: err_console.print(m, highlight=False, markup=False),
                            on_start=progress.start, on_row=progress.update)
    except BatchError as e:
        progress.stop()
        fail(str(e))
    except (Exception, KeyboardInterrupt) as e:  # the engine failed (e.g. a Ray node was lost)
        progress.stop()
        if isinstance(e, ModelError) and not progress.rows:  # the models would not load: nothing was scanned
            fail(str(e))
        interrupted = isinstance(e, KeyboardInterrupt)
        reason = "interrupted" if interrupted else escape(f"{type(e).__name__}: {e}")
        err_console.print(f"[red]error:[/red] the run stopped: {reason}", highlight=False)
        if progress.rows or resume:
            err_console.print(f"The photos scanned until then are in {output}: rerun the same command with --resume "
                              "to scan the rest.", highlight=False, markup=False)
        raise typer.Exit(130 if interrupted else 1) from None
    finally:
        progress.stop()
        signal.signal(signal.SIGTERM, stop_on_term)
    _print_summary(summary, output)
    raise typer.Exit(130 if summary.interrupted else 1 if summary.failed or summary.failed_before else 0)


class _Progress:
    """Done, photos/s, time left and failures on stderr: a live bar on a terminal, else a line every 10 s."""

    def __init__(self):
        self.live = None
        self.rows = 0  # rows this run produced
        self.last_line = 0.0
        self.t0 = time.perf_counter()

    def start(self, summary) -> None:
        self.t0 = time.perf_counter()
        if summary.to_scan == 0:
            return
        if err_console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.live = Progress(TextColumn("[bold]scanning"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]} photos/s"), TextColumn("[red]{task.fields[failed]}"),
                                 TimeRemainingColumn(), TextColumn("left"), console=err_console, transient=True)
            self.live.start()
            self.task = self.live.add_task("scanning", total=summary.to_scan, rate="–", failed="")

    def update(self, summary, row) -> None:
        self.rows += 1
        now = time.perf_counter()
        if summary.scanned == 1:  # the pace is measured from the first result on (start-up excluded)
            self.t0, self.last_line = now, now
        span = now - self.t0
        rate = (summary.scanned - 1) / span if span >= 1.0 else float("nan")
        if self.live is not None:
            failed = f"{summary.failed} failed" if summary.failed else ""
            self.live.update(self.task, completed=summary.scanned, rate=f"{rate:.1f}" if rate == rate else "–",
                             failed=failed)
        elif now - self.last_line >= PLAIN_PROGRESS_SECONDS or summary.scanned == summary.to_scan:
            self.last_line = now
            left = (summary.to_scan - summary.scanned) / rate if rate > 0 else float("nan")
            pace = f"{rate:.1f}" if rate == rate else "–"
            print(f"scanning: {summary.scanned}/{summary.to_scan} photos, {pace} photos/s, "
                  f"{summary.failed} failed, {_duration(left)} left", file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _duration(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"


def _print_summary(s, output: str) -> None:
    p = err_console.print
    head = "[yellow]Interrupted[/yellow] after" if s.interrupted else "Scanned"
    p(f"{head} {s.scanned} photos in {s.wall_s:.1f} s: {s.photos_per_s:.1f} photos/s "
      f"({s.steady_photos_per_s:.1f} photos/s from 10 % to 90 % done; first result after {s.first_row_s or 0:.1f} s)",
      highlight=False)
    if s.skipped:
        p(f"  skipped {s.skipped} photos already in {output}", highlight=False, markup=False)
    if s.failed_before:
        p(f"  [red]failed in an earlier run: {s.failed_before}[/red] (their rows in {escape(output)} say why; "
          "to scan them again, write to a new output)", highlight=False)
    p(f"  cats: {s.cats} in {s.photos_with_cats} photos" + (f"; {s.wild_cats} photos of wild cats" if s.wild_cats else ""),
      highlight=False)
    if s.breeds:
        p("  breeds (top breed of each cat): " + ", ".join(f"{b} {n}" for b, n in s.breeds.most_common()),
          highlight=False)
    if s.failed:
        p(f"  [red]failed: {s.failed}[/red] (" + ", ".join(f"{c} {n}" for c, n in s.failures.most_common()) + ")",
          highlight=False)
    else:
        p("  failed: 0", highlight=False)
    p(f"  results: {output}", highlight=False, markup=False)
    if s.interrupted:
        p("  rerun the same command with --resume to scan the rest.", highlight=False)
