"""Request and response models of the HTTP API that are not scan results (those are the
dataclasses of :mod:`catscanner.runtime.schema`, used as they are)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ..errors import size_text

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
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff", "image/heic",
                     "image/heif")
RETRY_AFTER = {"Retry-After": {
    "description": "Seconds to wait before trying again (with `busy` and `loading`).",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed upload (e.g. broken multipart data) or the client "
                                                  "went away before the upload finished."},
    408: {"model": ErrorResponse, "description": "The upload stalled or took too long (`upload_timeout`); "
                                                  "the limits are in the operation's description."},
    413: {"model": ErrorResponse, "description": "The upload is larger than the server's limit."},
    415: {"model": ErrorResponse, "description": "The upload is not an image (judged by its content), or is "
                                                  "compressed (`unsupported_encoding`)."},
    422: {"model": ErrorResponse, "description": "Empty, corrupt, too small or too large image, "
                                                  "missing `file` field, more than one (`several_files`: one photo "
                                                  "per request), or a bad `threshold`."},
    503: {"model": ErrorResponse, "headers": RETRY_AFTER,
          "description": "Busy (too many uploads or photos in progress: `busy`), the models are still loading "
                         "(`loading`), or they failed to load (`models_unavailable`). Retry after the "
                         "`Retry-After` seconds."},
}

_BINARY = {"schema": {"type": "string", "format": "binary"}}
SCAN_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The photo (JPEG, PNG, GIF, WebP, BMP or TIFF; HEIC where the server has the `heic` "
                       "extra; see the operation's description for the size limits): as multipart form "
                       "field `file`, or as the raw request body "
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


def describe_limits(schema: dict, scan_path: str, *, max_upload_bytes: int, idle_timeout: float,
                    upload_deadline: float, min_upload_rate: float, min_side: int, max_pixels: int) -> dict:
    """Write this server's limits into its OpenAPI ``schema`` (they are settings, not constants):
    the scan operation's description and its 408 and 413 answers."""
    op = schema["paths"][scan_path]["post"]
    limits = (f"Limits of this server: at most {size_text(max_upload_bytes)} and {max_pixels / 1e6:g} megapixels, "
              f"at least {min_side} px a side; an upload that sends nothing for {idle_timeout:g} s, brings less than "
              f"{min_upload_rate / 1024:g} KiB for each second after its first {idle_timeout:g}, or takes longer than "
              f"{upload_deadline:g} s in all is cut off (408).")
    op["description"] = f"{op.get('description', '').rstrip()}\n\n{limits}"
    op["responses"]["408"]["description"] = (f"The upload sent nothing for {idle_timeout:g} s, came slower than "
                                             f"{min_upload_rate / 1024:g} KiB/s, or took longer than "
                                             f"{upload_deadline:g} s (`upload_timeout`).")
    op["responses"]["413"]["description"] = f"The upload is larger than this server's limit, {size_text(max_upload_bytes)}."
    return schema
