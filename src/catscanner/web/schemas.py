"""Request and response models of the HTTP API that are not scan results (those are the
dataclasses of :mod:`catscanner.runtime.schema`, used as they are)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

UPLOAD_FIELD = "file"


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `not_an_image`, `too_large`.")
    message: str = Field(description="What was wrong and what to do about it.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


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
