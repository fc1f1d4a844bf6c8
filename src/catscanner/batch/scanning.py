"""Photos -> rows with one loaded :class:`Scanner`: the work both engines do (the local engine in
its own process, the Ray engine inside each actor)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from ..errors import CatScannerError
from ..runtime.scanner import Scanner
from .rows import failed_row, to_row
from .sources import Photo, read_uri

REMOTE_PREFETCH = 16  # photos read ahead from object storage (network latency, not CPU)


def scan_photos(scanner: Scanner, photos: Iterable[Photo], *, threshold: float | None, batch_size: int,
                model_version: str) -> Iterator[dict]:
    """One row per photo (not necessarily in input order). Local files are passed to
    :meth:`Scanner.scan_many` by path, exactly as ``catscan scan`` does; photos at a URI are read
    through ``pyarrow.fs`` a few at a time ahead and passed as bytes."""
    waiting: deque[Photo] = deque()  # photos handed to scan_many, in order
    done_early: deque[dict] = deque()  # rows of photos that failed before scanning

    def inputs() -> Iterator[object]:
        for photo, data in _read_ahead(photos, scanner.max_file_bytes):
            if photo.error:
                done_early.append(failed_row(photo, photo.error_code or "io_error", photo.error, model_version))
            elif isinstance(data, CatScannerError):
                done_early.append(failed_row(photo, data.code, str(data), model_version))
            else:
                waiting.append(photo)
                yield photo.path if data is None else data

    for result in scanner.scan_many(inputs(), threshold=threshold, batch_size=batch_size):
        while done_early:
            yield done_early.popleft()
        yield to_row(waiting.popleft(), result, model_version)
    yield from done_early


def _read_ahead(photos: Iterable[Photo], max_bytes: int) -> Iterator[tuple[Photo, object]]:
    """(photo, None) for local files (the scanner reads them); (photo, bytes or the error) for URIs,
    read by a few threads ahead of the scanner."""
    pool: ThreadPoolExecutor | None = None
    pending: deque = deque()
    try:
        for photo in photos:
            if photo.is_uri and not photo.error:
                if pool is None:
                    pool = ThreadPoolExecutor(REMOTE_PREFETCH, thread_name_prefix="catscan-read")
                pending.append((photo, pool.submit(_read, photo.path, max_bytes)))
            else:
                pending.append((photo, None))
            while pending and (len(pending) > REMOTE_PREFETCH or pending[0][1] is None):
                yield _resolve(*pending.popleft())
        while pending:
            yield _resolve(*pending.popleft())
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _read(uri: str, max_bytes: int) -> bytes | CatScannerError:
    try:
        return read_uri(uri, max_bytes)
    except CatScannerError as e:
        return e


def _resolve(photo: Photo, future) -> tuple[Photo, object]:
    return photo, None if future is None else future.result()
