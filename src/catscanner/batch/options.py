"""The settings of one batch run, shared by the engines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class BatchError(Exception):
    """The run cannot start as asked: no photos, OUT unusable, models differ from OUT's, a missing extra."""

DEFAULT_FLUSH_EVERY = 1000  # photos per flush: the most a killed run can lose
DEFAULT_FLUSH_SECONDS = 60.0  # ... or the photos of the last minute, whichever is fewer
DEFAULT_CPUS_PER_ACTOR = 0.5  # Ray: see ray_engine.py for why not 1


@dataclass(frozen=True)
class BatchOptions:
    model_version: str  # what rows are stamped with (rows.model_version)
    models: Path | None = None  # model folder; None: the shipped models
    threshold: float | None = None  # smallest breed share listed; None: the scanner's default
    batch_size: int = 8  # photos per inference batch (same default as ``catscan scan``)
    threads: int | None = None  # inference threads per scanner; None: local all cores, Ray cores/actors
    runtime: str = "auto"  # inference runtime of every scanner (engine.choose_runtime)
    precision: str = "auto"  # inference precision of every scanner (engine.choose_precision)
    actors: int | None = None  # Ray: scanner actors; None: one per CPU of the cluster
    cpus_per_actor: float = DEFAULT_CPUS_PER_ACTOR  # Ray: CPUs reserved per actor
    ray_address: str | None = None  # Ray: an existing cluster; None: start a local one
