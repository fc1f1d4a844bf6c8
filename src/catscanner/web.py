"""The Cat Scanner web app: a page and a small JSON API around one shared :class:`Scanner`.

``create_app()`` builds the FastAPI app. Its lifespan starts loading the models once (in the
inference pool, so the server answers ``/healthz`` with 503 while they load) and shuts the pool
down at the end. Photos are read into memory while the body streams in, never past the upload
limit and never into temporary files, then scanned in a thread pool off the event loop. The pool
admits at most ``threads + max_queue`` photos at a time (uploading, waiting or being scanned);
past that the API answers 503 at once.

Run it with ``catscan serve`` (uvicorn). The page is ``static/index.html``; the API is
documented at ``/docs`` (Swagger UI served from this server, so it works offline too).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .breeds import BREEDS
from .errors import (
    CatScannerError,
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    ModelError,
    NotAnImageError,
)
from .scanner import Scanner

log = logging.getLogger("catscanner.web")

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_QUEUE = 16
MULTIPART_OVERHEAD = 64 * 1024  # room for boundaries and part headers around the photo
UPLOAD_FIELD = "file"
STATIC_DIR = Path(__file__).with_name("static")
PAGE_HEADERS = {
    # The page loads nothing from elsewhere: scripts, styles and images come from this server.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
# The API docs (Swagger UI) are served from this server too, never from a CDN: the product must
# work with no internet. FastAPI's own /docs would load swagger-ui from cdn.jsdelivr.net.
DOCS_URL = "/docs"
DOCS_OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
DOCS_STATIC_URL = "/static-docs"
SWAGGER_UI_DIR = Path(__file__).with_name("swagger_ui")  # swagger-ui-dist 5.31.0 from npm, unchanged (see its README.txt)
DOCS_JS, DOCS_CSS, DOCS_FAVICON = "swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"

# HTTP status for each CatScannerError code (see catscanner.errors).
STATUS_BY_CODE: dict[str, int] = {
    NotAnImageError.code: 415,
    EmptyImageError.code: 422,
    CorruptImageError.code: 422,
    ImageTooSmallError.code: 422,
    ImageTooLargeError.code: 422,
    ImageError.code: 422,
    ModelError.code: 503,
}

T = TypeVar("T")


# ====================================================================== response models
class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `not_an_image`, `too_large`.")
    message: str = Field(description="What was wrong and what to do about it.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class BoxModel(BaseModel):
    """Where the cat is, in pixels of the upright photo."""

    left: int
    top: int
    right: int
    bottom: int


class BreedShareModel(BaseModel):
    breed: str
    percent: float = Field(description="Share of the breed mix, 0-100.")


class ImageNetLabelModel(BaseModel):
    index: int
    name: str
    probability: float


class TimingModel(BaseModel):
    decode_ms: float
    detect_ms: float
    classify_ms: float
    total_ms: float


class ScanResponse(BaseModel):
    """The result of one scan: the same schema as ``catscan scan --json``."""

    path: str | None = Field(description="The uploaded file name, if the upload had one.")
    is_cat: bool
    cat_probability: float = Field(description="The detector's confidence that there is a cat, 0-1.")
    reference_rule_cat: bool = Field(description="Top-1 ImageNet class is a domestic cat class.")
    box: BoxModel | None = Field(description="Where the cat is (only when is_cat).")
    breeds: list[BreedShareModel] = Field(description="The breed mix, highest share first.")
    breeds_note: str | None = Field(description="Why no breeds are listed, when none are.")
    imagenet_top: list[ImageNetLabelModel]
    width: int | None
    height: int | None
    timing_ms: TimingModel | None
    error: str | None
    error_code: str | None


class BreedsResponse(BaseModel):
    breeds: list[str] = Field(description="The cat breeds Cat Scanner knows, in its fixed order.")


class HealthResponse(BaseModel):
    status: Literal["ok", "loading", "error"]
    breed_model: bool | None = Field(None, description="Whether a breed model is installed (once loaded).")
    message: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed upload (e.g. broken multipart data)."},
    413: {"model": ErrorResponse, "description": "The upload is larger than the server's limit."},
    415: {"model": ErrorResponse, "description": "The upload is not an image (judged by its content)."},
    422: {"model": ErrorResponse, "description": "Empty, corrupt, too small or too large image, "
                                                  "missing `file` field, or a bad `threshold`."},
    503: {"model": ErrorResponse, "description": "Busy (queue full) or the models are still loading; "
                                                  "retry after the `Retry-After` seconds."},
}

_BINARY = {"schema": {"type": "string", "format": "binary"}}
SCAN_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The photo: as multipart form field `file`, or as the raw request body.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [UPLOAD_FIELD],
                    "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary",
                                                  "description": "JPEG, PNG, GIF, WebP, BMP or TIFF."}},
                }
            },
            "image/jpeg": _BINARY,
            "image/png": _BINARY,
            "image/*": _BINARY,
            "application/octet-stream": _BINARY,
        },
    }
}


# ====================================================================== errors
class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def status_for(exc: CatScannerError) -> int:
    return STATUS_BY_CODE.get(exc.code, 422 if isinstance(exc, ImageError) else 500)


def _megabytes(n: int) -> str:
    """10485760 -> '10 MB', 30000000 -> '28.6 MB', 65536 -> '64 KB'."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f}".removesuffix(".0") + " MB"
    return f"{n / 1024:.0f} KB"


def too_large(limit: int, size: int | None = None) -> ApiError:
    got = f" ({_megabytes(size)})" if size is not None else ""
    return ApiError(413, "too_large", f"The upload{got} is larger than the {_megabytes(limit)} limit. "
                                      "Send a smaller photo (resize it or save it as JPEG).")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(CatScannerError)
    async def scanner_error(request: Request, exc: CatScannerError) -> JSONResponse:
        return error_response(status_for(exc), exc.code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        message = "; ".join(parts) or "The request is invalid."
        return error_response(422, "invalid_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        where = f"{request.method} {request.url.path}"
        code, message = {
            404: ("not_found", f"Nothing here ({where}). The page is at / and the API is described at /docs."),
            405: ("method_not_allowed", f"{where} is not allowed. The API is described at /docs."),
            413: ("too_large", "The upload is too large. Send a smaller photo."),
        }.get(exc.status_code, ("http_error", str(exc.detail)))
        return error_response(exc.status_code, code, message, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("Unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "Something went wrong inside Cat Scanner; the error was logged.")


# ====================================================================== the inference pool
class InferencePool:
    """``workers`` threads scan photos; at most ``workers + max_queue`` photos are admitted at once.

    A request reserves its place *before* its body is read, so memory is bounded too (at most
    that many uploads of up to the size limit). When every place is taken :meth:`reserve` raises
    ``ApiError`` 503 at once: a busy server says so rather than letting requests time out.
    """

    def __init__(self, workers: int, max_queue: int):
        if workers < 1 or max_queue < 0:
            raise ValueError(f"need workers >= 1 and max_queue >= 0 (got {workers}, {max_queue})")
        self.workers, self.max_queue = workers, max_queue
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
    """One admitted photo's place in the pool: held while the upload is read, then handed to the
    job, which gives it back when it really ends (also if the client went away meanwhile)."""

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


# ====================================================================== models
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
        if self.status != "error":
            return None
        exc = None if self._future.cancelled() else self._future.exception()
        return f"The models could not be loaded: {str(exc or 'loading was cancelled').rstrip('.')}."

    def require(self) -> Scanner:
        status = self.status
        if status == "loading":
            raise ApiError(503, "loading", "The models are still loading. Try again in a few seconds.",
                           {"Retry-After": "2"})
        if status == "error":
            raise ApiError(503, "models_unavailable", f"{self.error_message()} Check the server log.")
        return self._future.result()


@dataclass(frozen=True)
class Settings:
    max_upload_bytes: int


# ====================================================================== dependencies
async def get_scanner(request: Request) -> Scanner:
    models: Models = request.app.state.models
    return models.require()


async def get_pool(request: Request) -> InferencePool:
    return request.app.state.pool


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


ScannerDep = Annotated[Scanner, Depends(get_scanner)]
PoolDep = Annotated[InferencePool, Depends(get_pool)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ThresholdQuery = Annotated[float | None, Query(
    ge=0.0, le=1.0,
    description="Smallest breed share to list, 0-1 (default 0.05 = 5 %). 0 lists all breeds.",
)]


# ====================================================================== reading uploads
@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None


async def _limited_chunks(request: Request, limit: int, image_limit: int) -> AsyncIterator[bytes]:
    """The request body chunk by chunk; 413 as soon as more than ``limit`` bytes arrived."""
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large(image_limit)
            yield chunk
    except ClientDisconnect:
        raise ApiError(400, "disconnected", "The upload was interrupted before it finished.") from None


class _MultipartImage:
    """Callbacks for python-multipart's streaming parser: keeps the ``file`` part in memory."""

    def __init__(self, field: str, limit: int):
        self.field, self.limit = field, limit
        self.data: bytearray | None = None  # set once the field is found
        self.filename: str | None = None
        self.complete = False
        self._reading = False
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition.decode("latin-1"))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._reading = name == self.field and self.data is None  # the first `file` part only
        if self._reading:
            self.data = bytearray()
            if b"filename" in options:
                self.filename = options[b"filename"].decode("utf-8", "replace")[:255] or None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._reading:
            assert self.data is not None
            self.data += data[start:end]
            if len(self.data) > self.limit:
                raise too_large(self.limit)

    def on_part_end(self) -> None:
        if self._reading:
            self._reading, self.complete = False, True


async def read_upload(request: Request, max_bytes: int) -> Upload:
    """The photo of a scan request, from multipart field ``file`` or the raw body.

    Enforces ``max_bytes`` on the photo as the body streams in (and on Content-Length first);
    everything stays in memory.
    """
    media_type, params = parse_options_header(request.headers.get("content-type"))
    multipart = media_type == b"multipart/form-data"
    body_limit = max_bytes + MULTIPART_OVERHEAD if multipart else max_bytes

    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", f"Content-Length {declared!r} is not a number.") from None
        if size > body_limit:
            raise too_large(max_bytes, size)

    async with aclosing(_limited_chunks(request, body_limit, max_bytes)) as chunks:
        if not multipart:
            body = bytearray()
            async for chunk in chunks:
                body += chunk
            return Upload(bytes(body), None)
        return await _read_multipart(chunks, params.get(b"boundary"), max_bytes)


async def _read_multipart(chunks: AsyncIterator[bytes], boundary: bytes | None, max_bytes: int) -> Upload:
    if not boundary:
        raise ApiError(400, "bad_multipart", "The multipart Content-Type has no boundary. "
                                             "Let your HTTP client build the form (e.g. curl -F file=@cat.jpg).")
    target = _MultipartImage(UPLOAD_FIELD, max_bytes)
    try:
        parser = MultipartParser(boundary, target.callbacks())
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
    except (FormParserError, ValueError) as e:  # FormParserError is a ValueError; be safe
        raise ApiError(400, "bad_multipart", f"The multipart form data could not be parsed ({e}). "
                                             f"Send the photo as form field '{UPLOAD_FIELD}'.") from None
    if target.data is None:
        raise ApiError(422, "missing_file", f"No photo in the upload: send it as multipart form field "
                                            f"'{UPLOAD_FIELD}' (e.g. curl -F {UPLOAD_FIELD}=@cat.jpg) "
                                            "or as the raw request body.")
    if not target.complete:
        raise ApiError(400, "bad_multipart", "The multipart upload ended before the photo was complete.")
    return Upload(bytes(target.data), target.filename)


# ====================================================================== the app
def create_app(
    model_dir: str | Path | None = None,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_queue: int = DEFAULT_MAX_QUEUE,
    threads: int | None = None,
    scanner_factory: Callable[[], Scanner] | None = None,
) -> FastAPI:
    """The Cat Scanner web app.

    ``threads`` inference threads (default: one per CPU core), each running ONNX Runtime on one
    core; ``max_queue`` more photos may be uploading or waiting, beyond that the API answers 503. Uploads over
    ``max_upload_bytes`` get 413. ``scanner_factory`` replaces how the :class:`Scanner` is built
    (default: ``Scanner(model_dir, threads=1)``), e.g. to share one across apps.
    """
    if max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be positive (got {max_upload_bytes})")
    workers = threads or os.cpu_count() or 1

    def load_scanner() -> Scanner:
        # One ONNX Runtime thread per pool worker: the pool, not ORT, spreads work over the cores.
        return Scanner(model_dir, threads=1)

    factory = scanner_factory or load_scanner

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = InferencePool(workers, max_queue)
        app.state.pool = pool
        app.state.settings = Settings(max_upload_bytes)
        app.state.models = Models(pool.executor.submit(factory))  # loads while the server starts
        try:
            yield
        finally:
            await asyncio.to_thread(pool.shutdown)

    app = FastAPI(
        title="Cat Scanner",
        summary="Is there a cat in this photo, where, and which breeds?",
        description="Upload a photo to `POST /api/v1/scan`; the page at `/` does it for you. "
                    "Errors are JSON `{\"error\": {\"code\", \"message\"}}`.",
        version=_version(),
        lifespan=lifespan,
        docs_url=None,  # replaced below by a self-hosted Swagger UI (FastAPI's loads it from a CDN)
        redoc_url=None,  # ReDoc would load from a CDN too, and its bundle is not shipped
    )
    _install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _install_docs(app)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    @app.post("/api/v1/scan", tags=["scan"], summary="Scan one photo", responses=ERROR_RESPONSES,
              openapi_extra=SCAN_REQUEST_BODY)
    async def scan(request: Request, scanner: ScannerDep, pool: PoolDep, settings: SettingsDep,
                   threshold: ThresholdQuery = None) -> ScanResponse:
        """Is there a cat, where is it, and what breed mix is it?

        Send the photo as multipart form field `file` or as the raw body (`Content-Type: image/jpeg`,
        `application/octet-stream`, ...). The format is judged by content, not by name or type.
        """
        with pool.reserve() as place:  # "busy" at once, before reading a body we could not scan
            upload = await read_upload(request, settings.max_upload_bytes)
            result = await place.run(scanner.scan, upload.data, threshold=threshold, source=upload.filename)
        return ScanResponse.model_validate(result.to_dict())

    @app.get("/api/v1/breeds", tags=["scan"], summary="The breeds Cat Scanner knows")
    async def breeds() -> BreedsResponse:
        return BreedsResponse(breeds=list(BREEDS))

    @app.get("/healthz", tags=["health"], summary="Ready to scan?",
             responses={503: {"model": HealthResponse, "description": "Models loading or failed to load."}})
    async def healthz(request: Request, response: Response) -> HealthResponse:
        """200 once the models are loaded; 503 while they load or if they failed to load."""
        models: Models = request.app.state.models
        if models.status == "ok":
            return HealthResponse(status="ok", breed_model=models.require().classifier is not None)
        response.status_code = 503
        response.headers["Retry-After"] = "2"
        return HealthResponse(status=models.status, message=models.error_message() or "The models are loading.")

    return app


def _docs_headers(html: str) -> dict[str, str]:
    """Like PAGE_HEADERS, but letting Swagger UI run: its page starts it with one inline script
    (allowed by hash, no 'unsafe-inline' for scripts) and it sets inline styles."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in re.findall(r"<script>(.*?)</script>", html, re.S)
    )
    return {
        "Content-Security-Policy": f"default-src 'self'; script-src 'self' {hashes}; "
                                   "style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; "
                                   "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
    }


class _DocsFiles(StaticFiles):
    """Only the swagger-ui files /docs uses (not its licence files)."""

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        return super().lookup_path(path) if path in (DOCS_JS, DOCS_CSS, DOCS_FAVICON) else ("", None)


def _install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs, with its JavaScript, CSS and icon served from /static-docs
    (FastAPI's recipe "Self-hosting JavaScript and CSS for docs")."""
    app.mount(DOCS_STATIC_URL, _DocsFiles(directory=SWAGGER_UI_DIR), name="static-docs")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            oauth2_redirect_url=DOCS_OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{DOCS_STATIC_URL}/{DOCS_JS}",
            swagger_css_url=f"{DOCS_STATIC_URL}/{DOCS_CSS}",
            swagger_favicon_url=f"{DOCS_STATIC_URL}/{DOCS_FAVICON}",
        )
        html = bytes(page.body).decode()
        return HTMLResponse(html, headers=_docs_headers(html))

    @app.get(DOCS_OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("catscanner")
    except Exception:  # not installed (running from a source tree)
        return "0"
