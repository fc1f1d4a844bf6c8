"""Reading the photo of a scan request: multipart field ``file`` or the raw body, streamed into
memory under a size limit, an idle timeout and a deadline; never written to disk."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from urllib.parse import unquote

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from .errors import ApiError, too_large

from .schemas import UPLOAD_FIELD

MULTIPART_OVERHEAD = 64 * 1024  # room for boundaries and part headers around the photo


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None
    url_encoded: bool = False  # sent as application/x-www-form-urlencoded (curl -d and --data-binary)


URL_ENCODED_HINT = (f" It came as a URL-encoded form, which can mangle a photo (curl -d drops its line breaks): "
                    f"send it with curl -F {UPLOAD_FIELD}=@cat.jpg, or with curl --data-binary @cat.jpg "
                    "-H 'Content-Type: image/jpeg'.")


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int  # the photo itself
    idle_timeout: float  # seconds without a byte arriving before the upload is dropped
    deadline: float  # seconds for the whole body
    min_rate: float = 0.0  # bytes a second, on average, once ``idle_timeout`` seconds have passed (0: none)


def _timed_out(limits: UploadLimits, what: str) -> ApiError:
    return ApiError(408, "upload_timeout", f"The upload {what}, so it was dropped. Send the photo in one go "
                                           f"(at most {limits.deadline:.0f} s for the whole upload).")


async def _limited_chunks(request: Request, limits: UploadLimits, body_limit: int) -> AsyncIterator[bytes]:
    """The request body chunk by chunk; 413 as soon as more than ``body_limit`` bytes arrived, 408
    when no byte arrives for ``idle_timeout`` seconds, when fewer than ``min_rate`` bytes have come for
    each second past the first ``idle_timeout`` (a byte every few seconds held an upload slot for the
    whole deadline: 32 such clients shut out every scan), or when the body takes longer than ``deadline``."""
    received = 0
    start = time.monotonic()
    end = start + limits.deadline
    stream = request.stream().__aiter__()

    def too_slow_at() -> float:  # past the idle allowance, min_rate bytes for every second since, or cut
        return start + limits.idle_timeout + received / limits.min_rate if limits.min_rate else end

    too_long = lambda: _timed_out(limits, f"took longer than {limits.deadline:.0f} s")  # noqa: E731
    too_slow = lambda: _timed_out(limits, f"came slower than {limits.min_rate / 1024:g} KiB/s")  # noqa: E731
    try:
        while True:
            now = time.monotonic()
            if now >= end:
                raise too_long()
            try:  # judged after a read, so bytes the server already holds count (a busy loop reads late)
                chunk = await asyncio.wait_for(anext(stream), min(limits.idle_timeout, end - now,
                                                                  max(0.05, too_slow_at() - now)))
            except StopAsyncIteration:
                return
            except TimeoutError:
                now = time.monotonic()
                if now >= end:
                    raise too_long() from None
                if now >= too_slow_at() and received:
                    raise too_slow() from None
                raise _timed_out(limits, f"sent nothing for {limits.idle_timeout:.0f} s") from None
            received += len(chunk)
            if received > body_limit:
                raise too_large(limits.max_bytes)
            if time.monotonic() >= too_slow_at():
                raise too_slow()
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
        self._reading = self._extra = False
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
        disposition = self._disposition.decode("latin-1")
        _, options = parse_options_header(disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._extra = name == self.field and bool(self.data)  # a photo already: another must stay empty
        self._reading = name == self.field and not self._extra  # the first non-empty `file` part
        if self._reading:
            self.data, self.complete = bytearray(), False
            self.filename = _filename(options, disposition)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._extra and end > start:  # a second photo would be dropped unseen
            raise ApiError(422, "several_files", f"This upload holds more than one '{self.field}' part; the API "
                                                 "scans one photo per request. Send each photo in its own request "
                                                 "(for a folder of photos, use catscan batch).")
        if self._reading:
            assert self.data is not None
            self.data += data[start:end]
            if len(self.data) > self.limit:
                raise too_large(self.limit)

    def on_part_end(self) -> None:
        if self._reading:
            self._reading, self.complete = False, True


# python-multipart's parse_options_header drops RFC 5987 parameters (``key*=``), so the extended
# file name is read from the raw Content-Disposition value.
_EXTENDED_FILENAME = re.compile(r";\s*filename\*\s*=\s*([^;]*)", re.IGNORECASE)


def _filename(options: dict[bytes, bytes], disposition: str = "") -> str | None:
    """The part's file name: RFC 5987 ``filename*=UTF-8''...`` when given, else ``filename``."""
    match = _EXTENDED_FILENAME.search(disposition)
    extended = match.group(1).strip().strip('"') if match else ""
    if extended:
        charset, _, rest = extended.partition("'")
        _, _, quoted = rest.partition("'")
        try:
            name = unquote(quoted, encoding=charset or "utf-8", errors="replace")
        except LookupError:  # an unknown charset name
            name = unquote(quoted, errors="replace")
        return name[:255] or None
    name = options.get(b"filename")
    return name.decode("utf-8", "replace")[:255] or None if name is not None else None


async def read_upload(request: Request, limits: UploadLimits) -> Upload:
    """The photo of a scan request, from multipart field ``file`` or the raw body.

    Enforces ``limits`` as the body streams in (the size on Content-Length first); everything
    stays in memory.
    """
    max_bytes = limits.max_bytes
    media_type, params = parse_options_header(request.headers.get("content-type"))
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ApiError(415, "unsupported_encoding", f"The upload is compressed (Content-Encoding: {encoding}); "
                                                    "send the photo's bytes as they are (photos are compressed already).")
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

    async with aclosing(_limited_chunks(request, limits, body_limit)) as chunks:
        if not multipart:
            body = bytearray()
            async for chunk in chunks:
                body += chunk
            # curl sends --data-binary as a URL-encoded form too: judged by content like any raw body
            return Upload(bytes(body), None, url_encoded=media_type == b"application/x-www-form-urlencoded")
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
