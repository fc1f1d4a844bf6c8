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


# The image formats the decoder reads (judged by content; the Content-Type is not trusted).
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff")
RETRY_AFTER = {"Retry-After": {
    "description": "Seconds to wait before trying again (with `busy` and `loading`).",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed upload (e.g. broken multipart data) or the client "
                                                  "went away before the upload finished."},
    408: {"model": ErrorResponse, "description": "The upload sent nothing for 10 s or took longer than 60 s "
                                                  "(`upload_timeout`)."},
    413: {"model": ErrorResponse, "description": "The upload is larger than the server's limit."},
    415: {"model": ErrorResponse, "description": "The upload is not an image (judged by its content)."},
    422: {"model": ErrorResponse, "description": "Empty, corrupt, too small or too large image, "
                                                  "missing `file` field, or a bad `threshold`."},
    503: {"model": ErrorResponse, "headers": RETRY_AFTER,
          "description": "Busy (too many uploads or photos in progress: `busy`), the models are still loading "
                         "(`loading`), or they failed to load (`models_unavailable`). Retry after the "
                         "`Retry-After` seconds."},
}

_BINARY = {"schema": {"type": "string", "format": "binary"}}
SCAN_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The photo (JPEG, PNG, GIF, WebP, BMP or TIFF; at least 32 px a side, at most 50 "
                       "megapixels and 10 MiB): as multipart form field `file`, or as the raw request body "
                       "with its image type or `application/octet-stream`. The format is judged by content, "
                       "not by the declared type or file name.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [UPLOAD_FIELD],
                    "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary",
                                                  "description": "The photo. Other form fields are ignored."}},
                },
                "encoding": {UPLOAD_FIELD: {"contentType": ", ".join(IMAGE_MEDIA_TYPES)}},
            },
            **{media_type: _BINARY for media_type in IMAGE_MEDIA_TYPES},
            "application/octet-stream": _BINARY,
        },
    }
}
