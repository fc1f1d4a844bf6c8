"""Admission: how many uploads are read at once (``UploadSlots``) and how a scan request waits at
the door for room before its 503 (``AdmissionGate``, ASGI middleware)."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

from .errors import error_response
from .pool import InferencePool, busy

MAX_WAITING = 256  # scan requests waiting at the door at once; past that, 503 at once


class UploadSlots:
    """At most ``n`` request bodies are read at once (each up to the size limit, so memory is
    bounded); past that, 503 at once, asking to come back after ``retry_after()`` seconds."""

    def __init__(self, n: int, retry_after: Callable[[], int]):
        self.n, self._used, self._lock = n, 0, threading.Lock()
        self._retry_after = retry_after
        self.on_release: Callable[[], None] | None = None  # called when a slot frees

    @property
    def full(self) -> bool:
        """Every slot is taken (a peek: entering decides)."""
        return self._used >= self.n

    def __enter__(self) -> "UploadSlots":
        with self._lock:
            full = self._used >= self.n
            if not full:
                self._used += 1
        if full:
            raise busy(f"The server is receiving {self.n} uploads already.", self._retry_after())
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._used -= 1
        if (listener := self.on_release) is not None:
            listener()


class AdmissionGate:
    """ASGI middleware at the door of ``POST /api/v1/scan`` (issue 10, item 11: under 100 clients
    the server spent its time answering 503s, ~950 a second).

    While every inference place or every upload slot is taken, a scan request waits here, before
    its body is read and before routing or validation, for up to ``settings.admission_wait``
    seconds, first come first served, woken when a place or slot frees; then it goes on, or gets
    its 503 ``busy`` with ``Retry-After`` from here. Waiting costs nothing but an open connection;
    it turns a request that would have been refused a moment too early into a scan, and it paces
    clients that ignore ``Retry-After`` to one refusal per wait instead of as many as the server
    can answer. Its ``Retry-After`` counts the requests still waiting in line. At most
    ``MAX_WAITING`` requests wait; past that, 503 at once. The route checks again (this is a peek,
    the route decides).
    """

    def __init__(self, app: Callable, state: object, path: str):
        self.app, self.state, self.path = app, state, path
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == self.path:
            pool: InferencePool | None = getattr(self.state, "pool", None)
            slots: UploadSlots | None = getattr(self.state, "upload_slots", None)
            if pool is not None and slots is not None and not await self._room(pool, slots):
                what = (f"The scanner is busy ({pool.capacity} photos in progress or queued)." if pool.full
                        else f"The server is receiving {slots.n} uploads already.")
                error = busy(what, pool.retry_after(waiting=len(self._waiting)))
                await error_response(error.status, error.code, error.message, error.headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _room(self, pool: InferencePool, slots: UploadSlots) -> bool:
        """Whether the request may go on, after waiting for room if there is none."""
        full = lambda: pool.full or slots.full  # noqa: E731
        if not self._waiting and not full():
            return True
        settings = getattr(self.state, "settings", None)  # web.settings.Settings
        wait = settings.admission_wait if settings is not None else 0.0
        if wait <= 0 or len(self._waiting) >= MAX_WAITING:
            return not full()
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first wait in this event loop: be told when room frees
            self._loop = loop
            pool.on_release = slots.on_release = self._notify
        deadline = loop.time() + wait
        front = False
        while True:
            waiter = loop.create_future()
            if front:  # woken but the room was taken meanwhile: keep its turn
                self._waiting.appendleft(waiter)
            else:
                self._waiting.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except TimeoutError:
                return not full()
            finally:
                if not waiter.done() or waiter.cancelled():
                    try:
                        self._waiting.remove(waiter)
                    except ValueError:
                        pass
            if not full():
                return True
            front = True

    def _notify(self) -> None:
        """A place or slot freed (called in any thread): wake the first waiting request."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_one)

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
