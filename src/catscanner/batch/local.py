"""``--engine local``: one process, one :class:`Scanner`, inference on all cores (the default)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..runtime.scanner import Scanner
from .options import BatchOptions
from .scanning import scan_photos
from .sources import Photo


def run_local(photos: Sequence[Photo], options: BatchOptions) -> Iterator[dict]:
    """Rows as they are scanned, streaming: nothing is held back beyond one inference batch."""
    scanner = Scanner(options.models, threads=options.threads, runtime=options.runtime,
                      precision=options.precision)
    yield from scan_photos(scanner, photos, threshold=options.threshold, batch_size=options.batch_size,
                           model_version=options.model_version)
