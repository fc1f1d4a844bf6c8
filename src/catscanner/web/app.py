"""The Cat Scanner web app: a page and a small JSON API around one shared :class:`Scanner`.

``create_app()`` builds the FastAPI app. Its lifespan starts loading the models once (in the
inference pool, so the server answers ``/healthz`` with 503 while they load) and shuts the pool
down at the end. A photo is read into memory as its body streams in (size limit, idle timeout and
deadline), then takes a place in the inference pool and is scanned in a worker thread off the event
loop. At most ``max_uploads`` uploads are read at once and ``threads + max_queue`` photos wait or
are scanned; past either a scan request waits at the door up to ``admission_wait`` (2 s) for room,
before its body is read, and then gets 503 with a ``Retry-After`` that follows the backlog
(:mod:`.admission`). Its limits are :class:`.settings.Settings`.

Run it with ``catscan serve`` (uvicorn). The page is ``static/index.html``; the API is documented
at ``/docs`` (Swagger UI served from this server, so it works offline too).
"""

from __future__ import annotations

import asyncio
import logging
import re
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ..errors import CorruptImageError, NotAnImageError
from ..runtime.breeds import BREEDS
from ..runtime.decoding import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
from ..runtime.scanner import Scanner
from ..runtime.schema import ScanResult
from .admission import AdmissionGate, UploadSlots
from .docs import install_docs
from .errors import ApiError, install_error_handlers
from .pool import InferencePool
from .schemas import ERROR_RESPONSES, SCAN_REQUEST_BODY, BreedsResponse, HealthResponse, describe_limits
from .settings import Settings
from .uploads import URL_ENCODED_HINT, read_upload

log = logging.getLogger("catscanner.web")
_SERVER_PATH = re.compile(r"(?:/[^/\s'\"]+)*/([^/\s'\"]*)")  # /srv/models/detector.onnx -> detector.onnx

SCAN_PATH = "/api/v1/scan"
STATIC_DIR = Path(__file__).with_name("static")
PAGE_HEADERS = {
    # The page loads nothing from elsewhere: scripts, styles and images come from this server.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


class Models:
    """The scanner being loaded (in the pool) or loaded; what ``/healthz`` reports."""

    def __init__(self, future: Future[Scanner]):
        self._t0 = time.perf_counter()
        self._future = future
        future.add_done_callback(self._log_outcome)

    def _log_outcome(self, future: Future[Scanner]) -> None:
        if future.cancelled():
            return
        if (exc := future.exception()) is not None:
            log.error("Could not load the models: %s", exc)
        else:
            has_breeds = future.result().classifier is not None
            log.info("Models loaded in %.1f s (breed model: %s).", time.perf_counter() - self._t0,
                     "yes" if has_breeds else "no")

    @property
    def status(self) -> Literal["ok", "loading", "error"]:
        if not self._future.done():
            return "loading"
        return "error" if self._future.cancelled() or self._future.exception() else "ok"

    def error_message(self) -> str | None:
        """Why the models failed to load, for clients: file names kept, the server's folders left out
        (the full message is in the server log)."""
        if self.status != "error":
            return None
        exc = None if self._future.cancelled() else self._future.exception()
        reason = _SERVER_PATH.sub(r"\1", str(exc or "loading was cancelled")).rstrip(".")
        return f"The models could not be loaded: {reason}."

    def require(self) -> Scanner:
        status = self.status
        if status == "loading":
            raise ApiError(503, "loading", "The models are still loading. Try again in a few seconds.",
                           {"Retry-After": "2"})
        if status == "error":
            raise ApiError(503, "models_unavailable", f"{self.error_message()} Check the server log.")
        return self._future.result()


# ====================================================================== dependencies
async def get_scanner(request: Request) -> Scanner:
    models: Models = request.app.state.models
    return models.require()


ScannerDep = Annotated[Scanner, Depends(get_scanner)]
ThresholdQuery = Annotated[float | None, Query(
    ge=0.0, le=1.0, allow_inf_nan=False,  # nan was refused as "less than or equal to 1"
    description="Smallest breed share to list, 0-1 (default 0.05 = 5 %). 0 lists all breeds.",
)]

# ====================================================================== routes
api = APIRouter()


@api.post(SCAN_PATH, tags=["scan"], summary="Scan one photo", responses=ERROR_RESPONSES,
          openapi_extra=SCAN_REQUEST_BODY)
async def scan(request: Request, scanner: ScannerDep, threshold: ThresholdQuery = None) -> ScanResult:
    """Is there a cat, where is each cat, and what breed mix is each one?

    Send the photo as multipart form field `file` or as the raw body (`Content-Type: image/jpeg`,
    `application/octet-stream`, ...). The format is judged by content, not by name or type.
    """
    state = request.app.state
    settings: Settings = state.settings
    with state.upload_slots:  # "busy" at once when too many bodies are being received
        upload = await read_upload(request, settings.upload_limits)
    pool: InferencePool = state.pool
    # a place in the queue only once the photo is here; if the places filled while it was uploading,
    # it waits for one as long as it could have waited at the door
    with await pool.reserve_within(settings.admission_wait) as place:
        try:
            return await place.run(scanner.scan, upload.data, threshold=threshold, source=upload.filename)
        except (NotAnImageError, CorruptImageError) as e:
            if upload.url_encoded:  # most likely mangled on the way: say how to send it
                raise type(e)(f"{e}{URL_ENCODED_HINT}") from None
            raise


# A documented GET route and a hidden HEAD route for the same function: one OpenAPI operation each
# (one route with both methods would give them one operation id); GET first, so that another method's
# 405 names GET in its Allow header (the decorator nearest the function registers first).
@api.head("/api/v1/breeds", include_in_schema=False)
@api.get("/api/v1/breeds", tags=["scan"], summary="The breeds Cat Scanner knows")  # registered first
async def breeds() -> BreedsResponse:
    return BreedsResponse(breeds=list(BREEDS))


@api.head("/healthz", include_in_schema=False)
@api.get("/healthz", tags=["health"], summary="Ready to scan?",
         responses={503: {"model": HealthResponse, "description": "Models loading or failed to load."}})
async def healthz(request: Request, response: Response) -> HealthResponse:
    """200 once the models are loaded; 503 while they load (with Retry-After) or if they failed to
    load (without: retrying does not help, the server's models must be fixed)."""
    models: Models = request.app.state.models
    if models.status == "ok":
        return HealthResponse(status="ok", breed_model=models.require().classifier is not None)
    response.status_code = 503
    if models.status == "loading":
        response.headers["Retry-After"] = "2"
    return HealthResponse(status=models.status, message=models.error_message() or "The models are loading.")


@api.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)


# ====================================================================== the app
def create_app(settings: Settings | None = None, *, scanner_factory: Callable[[], Scanner] | None = None) -> FastAPI:
    """The Cat Scanner web app.

    ``settings.threads`` inference threads (default: one per CPU core), each running ONNX Runtime
    on one core; ``max_queue`` more photos may wait, beyond that the API answers 503. Uploads over
    ``max_upload_bytes`` get 413. ``scanner_factory`` replaces how the :class:`Scanner` is built
    (default: ``Scanner(settings.model_dir, threads=1)``), e.g. to share one across apps.
    """
    settings = settings or Settings.from_env()
    if settings.max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be positive (got {settings.max_upload_bytes})")
    workers = settings.threads or os.cpu_count() or 1

    def load_scanner() -> Scanner:
        # One ONNX Runtime thread per pool worker: the pool, not ORT, spreads work over the cores.
        return Scanner(settings.model_dir, threads=1, runtime=settings.runtime, precision=settings.precision)

    factory = scanner_factory or load_scanner

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = InferencePool(workers, settings.max_queue)
        app.state.pool = pool
        app.state.settings = settings
        app.state.upload_slots = UploadSlots(settings.max_uploads, pool.retry_after)
        app.state.models = Models(pool.executor.submit(factory))  # loads while the server starts
        try:
            yield
        finally:
            await asyncio.to_thread(pool.shutdown)

    app = FastAPI(
        title="Cat Scanner",
        summary="Is there a cat in this photo, where is each cat, and which breeds?",
        description="Upload a photo to `POST /api/v1/scan`; the page at `/` does it for you. "
                    "Errors are JSON `{\"error\": {\"code\", \"message\"}}`.",
        version=_version(),
        lifespan=lifespan,
        docs_url=None,  # replaced by a self-hosted Swagger UI (FastAPI's loads it from a CDN)
        redoc_url=None,  # ReDoc would load from a CDN too, and its bundle is not shipped
        redirect_slashes=False,  # "/api/v1/scan/" gets the JSON 404, not an empty 307 a POST client may not follow
    )
    base_openapi = app.openapi

    def openapi() -> dict:  # FastAPI's "Extending OpenAPI": the schema states this server's limits
        if app.openapi_schema is None:
            app.openapi_schema = describe_limits(
                base_openapi(), SCAN_PATH, max_upload_bytes=settings.max_upload_bytes,
                idle_timeout=settings.idle_timeout, upload_deadline=settings.upload_deadline,
                min_upload_rate=settings.min_upload_rate,
                min_side=DEFAULT_MIN_SIDE, max_pixels=DEFAULT_MAX_PIXELS)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    install_error_handlers(app)
    app.add_middleware(AdmissionGate, state=app.state, path=SCAN_PATH)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_docs(app)
    app.include_router(api)
    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("catscanner")
    except Exception:  # not installed (running from a source tree)
        return "0"
