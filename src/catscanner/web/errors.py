"""API errors: one JSON shape ``{"error": {"code", "message"}}`` for every failure, and the HTTP
status of each :class:`~catscanner.errors.CatScannerError` code."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    BadThresholdError,
    CatScannerError,
    CorruptImageError,
    EmptyImageError,
    FileTooLargeError,
    ImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    ModelError,
    NotAnImageError,
    size_text,
)
from .schemas import ErrorDetail, ErrorResponse

log = logging.getLogger("catscanner.web")

# HTTP status for each CatScannerError code (see catscanner.errors).
STATUS_BY_CODE: dict[str, int] = {
    NotAnImageError.code: 415,
    EmptyImageError.code: 422,
    CorruptImageError.code: 422,
    ImageTooSmallError.code: 422,
    ImageTooLargeError.code: 422,
    FileTooLargeError.code: 413,
    ImageError.code: 422,
    ModelError.code: 503,
    BadThresholdError.code: 422,
}


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


def too_large(limit: int, size: int | None = None) -> ApiError:
    got = f" ({size_text(size, beside=limit)})" if size is not None else ""
    return ApiError(413, "too_large", f"The upload{got} is larger than the {size_text(limit)} limit. "
                                      "Send a smaller photo (resize it or save it as JPEG).")


def install_error_handlers(app: FastAPI) -> None:
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
