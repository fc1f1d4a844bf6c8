"""The inference pool: worker threads that scan photos, and the places in its queue."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import ApiError

T = TypeVar("T")

MAX_RETRY_AFTER = 30  # seconds: the longest back-off a busy answer asks for
FIRST_SCAN_GUESS = 0.1  # seconds per photo until scans have been timed
_EWMA_WEIGHT = 0.2  # weight of the newest scan in the running mean


IDLE_TRIM_AFTER = 1.0  # seconds the pool stays idle before freed memory goes back to the system


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``: hands the heap's free pages back to the system (None elsewhere)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def busy(message: str, retry_after: int) -> ApiError:
    """The 503 ``busy`` answer: try again after ``retry_after`` seconds."""
    return ApiError(503, "busy", f"{message} Try again in {retry_after} s.", {"Retry-After": str(retry_after)})


class InferencePool:
    """``workers`` threads scan photos; at most ``workers + max_queue`` photos are admitted at once.

    A request reserves its place once its photo has arrived (slow or idle uploads never hold a
    place). When every place is taken :meth:`reserve` raises ``ApiError`` 503 at once: a busy
    server says so rather than letting requests time out. Its ``Retry-After`` (:meth:`retry_after`)
    follows the backlog, so that clients come back when there is room instead of asking again at
    once (issue 10, item 11).

    Once the pool has been idle for ``idle_trim_after`` seconds, ``trim`` runs (by default glibc's
    ``malloc_trim``): the decoded photos and buffers of a burst are freed to the C heap, which keeps
    their pages otherwise (issue 10's soak: RSS after 100 clients stayed at its peak, ~400 MB).
    """

    def __init__(self, workers: int, max_queue: int, *, trim: Callable[[], object] | None = _malloc_trim(),
                 idle_trim_after: float = IDLE_TRIM_AFTER):
        if workers < 1 or max_queue < 0:
            raise ValueError(f"need workers >= 1 and max_queue >= 0 (got {workers}, {max_queue})")
        self.workers = workers
        self.capacity = workers + max_queue
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="catscan-infer")
        self._lock = threading.Lock()
        self._admitted = 0
        self._started = 0  # photos admitted so far (to tell whether the pool stayed idle)
        self._scan_s = FIRST_SCAN_GUESS  # running mean of one scan's wall time
        self.on_release: Callable[[], None] | None = None  # called (in any thread) when a place frees
        self._trim, self._idle_trim_after = trim, idle_trim_after
        self._went_idle, self._closing = threading.Event(), threading.Event()
        self._trimmer: threading.Thread | None = None
        if trim is not None:
            self._trimmer = threading.Thread(target=self._trim_when_idle, name="catscan-trim", daemon=True)
            self._trimmer.start()

    def _trim_when_idle(self) -> None:
        while self._went_idle.wait() and not self._closing.is_set():
            self._went_idle.clear()
            with self._lock:
                started = self._started
            if self._closing.wait(self._idle_trim_after):
                return
            with self._lock:
                still_idle = self._admitted == 0 and self._started == started
            if still_idle:
                self._trim()

    @property
    def full(self) -> bool:
        """Every place is taken (a peek: :meth:`reserve` decides)."""
        return self._admitted >= self.capacity

    def retry_after(self, waiting: int = 0) -> int:
        """When a refused client should try again: half the time the photos admitted now and the
        ``waiting`` requests in line for a place need, in whole seconds from 1 to 30. By then places
        have freed, and the photos still queued keep the workers busy until the clients are back (the
        full time would let the queue run dry first)."""
        with self._lock:
            backlog, scan_s = self._admitted + waiting, self._scan_s
        return max(1, min(MAX_RETRY_AFTER, round(backlog * scan_s / self.workers / 2)))

    def _timed(self, fn: Callable[..., T]) -> Callable[..., T]:
        def run(*args: Any, **kwargs: Any) -> T:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                with self._lock:
                    self._scan_s += _EWMA_WEIGHT * (elapsed - self._scan_s)

        return run

    @property
    def admitted(self) -> int:
        """Photos being uploaded, waiting or being scanned right now."""
        with self._lock:
            return self._admitted

    def reserve(self) -> Reservation:
        with self._lock:
            full = self._admitted >= self.capacity
            if not full:
                self._admitted += 1
                self._started += 1
        if full:
            raise busy(f"The scanner is busy ({self.capacity} photos in progress or queued).", self.retry_after())
        return Reservation(self)

    async def reserve_within(self, seconds: float, poll: float = 0.05) -> "Reservation":
        """A place for a photo already uploaded: when every place is taken, wait up to ``seconds``
        for one (looking every ``poll`` seconds) instead of refusing at once, then :meth:`reserve`'s
        503. A photo that passed the door while there was room, but whose upload ended after the
        places filled, is scanned a moment later rather than thrown away with its upload."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            try:
                return self.reserve()
            except ApiError:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(min(poll, max(0.0, deadline - loop.time())))

    def release(self) -> None:
        with self._lock:
            self._admitted -= 1
            idle = self._admitted == 0
        if idle:
            self._went_idle.set()
        if (listener := self.on_release) is not None:
            listener()

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self._closing.set()
        self._went_idle.set()
        if self._trimmer is not None:
            self._trimmer.join(5)


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
        future = self._pool.executor.submit(self._pool._timed(fn), *args, **kwargs)
        self._held = False
        future.add_done_callback(lambda _: self._pool.release())
        return await asyncio.wrap_future(future)

    def _give_back(self) -> None:
        if self._held:
            self._held = False
            self._pool.release()
