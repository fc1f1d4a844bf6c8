"""The inference pool: worker threads that scan photos, and the places in its queue."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import ApiError

T = TypeVar("T")


class InferencePool:
    """``workers`` threads scan photos; at most ``workers + max_queue`` photos are admitted at once.

    A request reserves its place once its photo has arrived (slow or idle uploads never hold a
    place). When every place is taken :meth:`reserve` raises ``ApiError`` 503 at once: a busy
    server says so rather than letting requests time out.
    """

    def __init__(self, workers: int, max_queue: int):
        if workers < 1 or max_queue < 0:
            raise ValueError(f"need workers >= 1 and max_queue >= 0 (got {workers}, {max_queue})")
        self.capacity = workers + max_queue
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="catscan-infer")
        self._lock = threading.Lock()
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Photos being uploaded, waiting or being scanned right now."""
        with self._lock:
            return self._admitted

    def reserve(self) -> Reservation:
        with self._lock:
            if self._admitted >= self.capacity:
                raise ApiError(503, "busy", f"The scanner is busy ({self.capacity} photos in progress or "
                                            "queued). Try again in a few seconds.", {"Retry-After": "2"})
            self._admitted += 1
        return Reservation(self)

    def release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class Reservation:
    """One admitted photo's place in the pool, handed to the job, which gives it back when it
    really ends (also if the client went away meanwhile)."""

    def __init__(self, pool: InferencePool):
        self._pool = pool
        self._held = True

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._give_back()

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in a pool thread and wait for it without blocking the event loop."""
        if not self._held:
            raise RuntimeError("this reservation was already used")
        future = self._pool.executor.submit(fn, *args, **kwargs)
        self._held = False
        future.add_done_callback(lambda _: self._pool.release())
        return await asyncio.wrap_future(future)

    def _give_back(self) -> None:
        if self._held:
            self._held = False
            self._pool.release()
