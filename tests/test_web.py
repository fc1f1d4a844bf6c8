"""The web app (issue 4): API, errors, limits, queue and page, with the real models and real photos.

Photos come from the Oxford-IIIT Pet images (``oxford_images`` and the shared ``scanner`` are
fixtures of tests/conftest.py). Broken files are made here from real photos. Answers are checked
against what the photos show (a Persian cat, a beagle), not against the library's own answer.
Only the queue test uses a test double (a scanner that waits on an Event before scanning).
Idle uploads against a real server are in test_idle_uploads.py.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import re
import struct
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

with warnings.catch_warnings():  # newer Starlette prefers httpx2 for its TestClient; httpx still works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

from catscanner.runtime.breeds import BREEDS
from catscanner.runtime.scanner import Scanner
from catscanner.runtime.schema import ScanResult
from catscanner.web import Settings, create_app
from catscanner.web.app import STATIC_DIR
from catscanner.web.settings import DEFAULT_ADMISSION_WAIT
from catscanner.web.docs import SWAGGER_UI_DIR
from catscanner.web.errors import ApiError
from catscanner.web.pool import InferencePool
from catscanner.web.uploads import MULTIPART_OVERHEAD

CAT_PHOTO = "Persian_10.jpg"  # a clearly Persian cat, 375x500
DOG_PHOTO = "beagle_10.jpg"
STATIC = STATIC_DIR  # the files the app really serves
SCHEMA_KEYS = {"path", "is_cat", "cat_probability", "reference_rule_cat", "box", "breeds", "breeds_note", "cats",
               "wild_cat", "imagenet_top", "width", "height", "timing_ms", "error", "error_code"}


# ---------------------------------------------------------------------------- fixtures
# (oxford_images, scanner: tests/conftest.py)
@pytest.fixture(scope="session")
def cat_bytes(oxford_images: Path) -> bytes:
    return (oxford_images / CAT_PHOTO).read_bytes()


@pytest.fixture(scope="session")
def dog_bytes(oxford_images: Path) -> bytes:
    return (oxford_images / DOG_PHOTO).read_bytes()


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (r := client.get("/healthz")).status_code != 200:
        assert r.status_code == 503, r.text
        assert time.monotonic() < deadline, f"models not loaded after {timeout} s: {r.text}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """The app as `catscan serve` builds it (it loads its own models), on one inference thread."""
    with TestClient(create_app(Settings(threads=1))) as c:
        wait_ready(c)
        yield c


@pytest.fixture
def make_client(scanner: Scanner) -> Iterator[Callable[..., TestClient]]:
    """Apps with other settings (``Settings`` fields as keywords), sharing the already loaded real models."""
    with_stack: list[TestClient] = []

    def make(scanner_factory: Callable[[], Scanner] | None = None, **settings) -> TestClient:
        settings.setdefault("threads", 1)
        c = TestClient(create_app(Settings(**settings), scanner_factory=scanner_factory or (lambda: scanner)))
        c.__enter__()
        with_stack.append(c)
        wait_ready(c)
        return c

    yield make
    for c in reversed(with_stack):
        c.__exit__(None, None, None)


def post_file(client: TestClient, data: bytes, name: str = "photo.jpg", url: str = "/api/v1/scan",
              **kwargs) -> httpx.Response:
    return client.post(url, files={"file": (name, data, "image/jpeg")}, **kwargs)


def comparable(d: dict) -> dict:
    """A result without the parts that legitimately differ between two scans of the same bytes."""
    return {k: v for k, v in d.items() if k not in ("timing_ms", "path")}


def assert_persian_cat(body: dict) -> None:
    """What the API must say about CAT_PHOTO: one cat, a Persian, boxed inside the 375x500 photo."""
    assert body["error"] is None and body["error_code"] is None
    assert body["is_cat"] is True and body["cat_probability"] > 0.9
    assert (body["width"], body["height"]) == (375, 500)
    box = body["box"]
    assert 0 <= box["left"] < box["right"] <= 375 and 0 <= box["top"] < box["bottom"] <= 500
    assert (box["right"] - box["left"]) * (box["bottom"] - box["top"]) > 0.1 * 375 * 500  # the cat fills the photo
    assert body["breeds"][0]["breed"] == "Persian" and body["breeds"][0]["percent"] > 80
    assert body["breeds_note"] is None
    assert len(body["cats"]) >= 1 and body["cats"][0]["box"] == box and body["cats"][0]["breeds"] == body["breeds"]
    assert body["wild_cat"] is None


def assert_error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert len(body["error"]["message"]) > 10, body
    return body["error"]["message"]


# ---------------------------------------------------------------------------- broken files
def truncated_jpeg(photo: bytes) -> bytes:
    return photo[: len(photo) // 2]


def text_file(_: bytes) -> bytes:
    return b"These are my notes, not a photo.\nThe file is only named cat.jpg.\n"


def zero_bytes(_: bytes) -> bytes:
    return b""


def tiny_png(photo: bytes) -> bytes:
    """A real photo shrunk to 20 x 15 pixels (below the 32 px minimum)."""
    out = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("RGB").resize((20, 15)).save(out, "PNG")
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def blank_png(width: int, height: int) -> bytes:
    """A valid black 1-bit PNG of any size: a few KB, built without holding its pixels."""
    row = b"\x00" + bytes((width + 7) // 8)  # filter type 0 + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def too_many_pixels(_: bytes) -> bytes:
    return blank_png(8000, 7000)  # 56 megapixels > the 50 megapixel limit


def jpeg_cut_in_its_header(photo: bytes) -> bytes:
    """The first 20 bytes of a real JPEG (start marker and JFIF segment, then the cut): a broken
    image, not 'some other file'."""
    assert photo.startswith(b"\xff\xd8\xff\xe0") and photo[6:10] == b"JFIF"
    return photo[:20]


def png_with_a_bad_header_crc(photo: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("RGB").save(out, "PNG")
    data = bytearray(out.getvalue())
    assert data[12:16] == b"IHDR"
    data[29] ^= 0xFF  # the IHDR chunk's CRC (8 signature + 4 length + 4 type + 13 data bytes in)
    return bytes(data)


BAD_UPLOADS = [
    # (maker, status, code)
    (truncated_jpeg, 422, "corrupt"),
    (jpeg_cut_in_its_header, 422, "corrupt"),  # issue 10: was 415 not_an_image
    (png_with_a_bad_header_crc, 422, "corrupt"),  # issue 10: was 415 not_an_image
    (zero_bytes, 422, "empty"),
    (text_file, 415, "not_an_image"),
    (tiny_png, 422, "too_small"),
    (too_many_pixels, 422, "too_many_pixels"),
]


# ---------------------------------------------------------------------------- scanning
def test_cat_photo(client: TestClient, cat_bytes: bytes) -> None:
    r = post_file(client, cat_bytes, name=CAT_PHOTO)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == SCHEMA_KEYS  # the `catscan scan --json` schema, nothing more or less
    assert set(body) == set(ScanResult(path=None).to_dict())  # ... which is the ScanResult dataclass
    assert body["path"] == CAT_PHOTO
    assert_persian_cat(body)
    shares = [b["percent"] for b in body["breeds"]]
    assert shares == sorted(shares, reverse=True) and all(s >= 5.0 for s in shares)
    timing = body["timing_ms"]
    assert set(timing) == {"decode_ms", "detect_ms", "classify_ms", "total_ms"}
    assert all(v >= 0 for v in timing.values()) and timing["classify_ms"] > 0  # a cat: the breed model ran
    assert timing["total_ms"] == pytest.approx(timing["decode_ms"] + timing["detect_ms"] + timing["classify_ms"], abs=0.02)
    top = body["imagenet_top"]
    assert len(top) == 5 and top[0]["index"] == 283 and top[0]["name"].startswith("Persian")  # ImageNet's Persian cat


def test_dog_photo_is_not_a_cat(client: TestClient, dog_bytes: bytes) -> None:
    r = post_file(client, dog_bytes, name=DOG_PHOTO)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["is_cat"] is False and body["cat_probability"] < 0.5
    assert body["box"] is None and body["breeds"] == [] and body["cats"] == []
    assert "No cat" in body["breeds_note"]
    assert body["timing_ms"]["classify_ms"] == 0  # no cat: the breed model did not run


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream", None])
def test_raw_body_upload(client: TestClient, cat_bytes: bytes, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    raw = client.post("/api/v1/scan", content=cat_bytes, headers=headers)
    assert raw.status_code == 200, raw.text
    assert raw.json()["path"] is None
    assert_persian_cat(raw.json())
    assert comparable(raw.json()) == comparable(post_file(client, cat_bytes).json())  # same bytes, same answer


def test_threshold_query(client: TestClient, cat_bytes: bytes) -> None:
    def breeds(threshold: float) -> list[dict]:
        r = post_file(client, cat_bytes, url=f"/api/v1/scan?threshold={threshold}")
        assert r.status_code == 200, r.text
        assert r.json()["is_cat"] is True
        return r.json()["breeds"]

    every = breeds(0.0)  # 0 lists all 12 breeds, the whole mix
    assert sorted(b["breed"] for b in every) == sorted(BREEDS)
    assert sum(b["percent"] for b in every) == pytest.approx(100, abs=1)
    assert every[0]["breed"] == "Persian"
    assert breeds(0.2) == [b for b in every if b["percent"] >= 20] == every[:1]  # only the Persian is over 20 %
    assert breeds(1.0) == []  # no share reaches 100 %


@pytest.mark.parametrize(("threshold", "said"), [("2", "less than or equal to 1"), ("-0.1", "greater than or equal to 0"),
                                                 ("abc", "valid number"), ("nan", "finite number")])
def test_bad_threshold(client: TestClient, cat_bytes: bytes, threshold: str, said: str) -> None:
    """Each says what is wrong with it (nan was said to be more than 1)."""
    r = post_file(client, cat_bytes, url=f"/api/v1/scan?threshold={threshold}")
    message = assert_error(r, 422, "invalid_request")
    assert "threshold" in message and said in message, message


# ---------------------------------------------------------------------------- bad uploads
@pytest.mark.parametrize("how", ["multipart", "raw"])
@pytest.mark.parametrize(("maker", "status", "code"), BAD_UPLOADS, ids=[m.__name__ for m, _, _ in BAD_UPLOADS])
def test_bad_upload(client: TestClient, cat_bytes: bytes, maker, status: int, code: str, how: str) -> None:
    data = maker(cat_bytes)
    if how == "multipart":
        r = post_file(client, data, name="cat.jpg")
    else:
        r = client.post("/api/v1/scan", content=data, headers={"Content-Type": "image/jpeg"})
    assert r.status_code < 500
    assert_error(r, status, code)
    assert client.app.state.pool.admitted == 0  # the failed upload gave its place back


def test_hostile_png_over_pillows_hard_limit(client: TestClient) -> None:
    """200 megapixels: refused from the header, before any pixel is decoded."""
    r = client.post("/api/v1/scan", content=blank_png(20_000, 10_000))
    assert_error(r, 422, "too_many_pixels")


def test_missing_file_field(client: TestClient, cat_bytes: bytes) -> None:
    r = client.post("/api/v1/scan", files={"photo": ("cat.jpg", cat_bytes, "image/jpeg")})
    assert "'file'" in assert_error(r, 422, "missing_file")
    r = client.post("/api/v1/scan", data={"note": "no photo here"}, files={"other": ("x", b"1")})
    assert_error(r, 422, "missing_file")


def test_common_client_mistakes_are_named_with_the_way_to_send_a_photo(client: TestClient, cat_bytes: bytes,
                                                                         dog_bytes: bytes) -> None:
    """Two photos in one form: only the first was scanned, the second dropped unsaid. ``curl -d @cat.jpg``
    (a URL-encoded form: curl strips the newlines) was called a broken photo, and a gzip body "not an
    image format"; each now says what to do. ``curl --data-binary`` sends a URL-encoded type too, and
    is scanned."""
    r = client.post("/api/v1/scan", files=[("file", ("a.jpg", cat_bytes, "image/jpeg")),
                                           ("file", ("b.jpg", dog_bytes, "image/jpeg"))])
    assert "one photo per request" in assert_error(r, 422, "several_files")
    r = client.post("/api/v1/scan", content=cat_bytes.replace(b"\n", b""),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})  # curl -d: line breaks dropped
    assert "It came as a URL-encoded form" in assert_error(r, 422, "corrupt")
    r = client.post("/api/v1/scan", content=cat_bytes,  # curl --data-binary sends the same type: scanned
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["is_cat"] is True
    r = client.post("/api/v1/scan", content=b"hello", headers={"Content-Type": "application/octet-stream"})
    assert "URL-encoded" not in assert_error(r, 415, "not_an_image")
    # a form whose second file input was left empty (a browser sends it as an empty part) is one photo
    r = client.post("/api/v1/scan", files=[("file", ("a.jpg", cat_bytes, "image/jpeg")), ("file", ("", b"", "application/octet-stream"))])
    assert r.status_code == 200 and r.json()["is_cat"] is True
    r = client.post("/api/v1/scan", files=[("file", ("", b"", "application/octet-stream")), ("file", ("a.jpg", cat_bytes, "image/jpeg"))])
    assert r.status_code == 200 and r.json()["path"] == "a.jpg"
    r = client.post("/api/v1/scan", content=gzip.compress(cat_bytes), headers={"Content-Encoding": "gzip"})
    assert "send the photo's bytes as they are" in assert_error(r, 415, "unsupported_encoding")
    # a form with the photo and other fields is still one photo
    r = client.post("/api/v1/scan", data={"note": "hi"}, files={"file": ("cat.jpg", cat_bytes, "image/jpeg")})
    assert r.status_code == 200 and r.json()["is_cat"] is True


def test_broken_multipart(client: TestClient, cat_bytes: bytes) -> None:
    r = client.post("/api/v1/scan", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"})
    assert "no boundary" in assert_error(r, 400, "bad_multipart")
    multipart = {"Content-Type": "multipart/form-data; boundary=BOUNDARY"}
    head = (b'--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="cat.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n")
    r = client.post("/api/v1/scan", content=head + cat_bytes[:5000], headers=multipart)  # never closed
    assert "ended before the photo was complete" in assert_error(r, 400, "bad_multipart")
    r = client.post("/api/v1/scan", content=b"a cat photo, honest\r\n--BOUNDARY--\r\n", headers=multipart)
    assert "could not be parsed" in assert_error(r, 400, "bad_multipart")  # no part starts the body
    # the same photo, properly closed, is scanned: the failures above were the framing, not the photo
    r = client.post("/api/v1/scan", content=head + cat_bytes + b"\r\n--BOUNDARY--\r\n", headers=multipart)
    assert r.status_code == 200 and r.json()["path"] == "cat.jpg"
    assert_persian_cat(r.json())
    assert client.app.state.pool.admitted == 0


def multipart_body(disposition: str, data: bytes, boundary: str = "B") -> tuple[bytes, dict[str, str]]:
    """A one-part multipart body with a hand-written Content-Disposition (for what clients don't write)."""
    body = (f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: image/jpeg\r\n\r\n".encode()
            + data + f"\r\n--{boundary}--\r\n".encode())
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.parametrize(("disposition", "name"), [
    ("form-data; name=\"file\"; filename*=UTF-8''caf%C3%A9.jpg", "café.jpg"),  # RFC 5987 (issue 10: was null)
    ("form-data; name=\"file\"; filename=\"cafe.jpg\"; filename*=UTF-8''caf%C3%A9.jpg", "café.jpg"),  # preferred
    ("form-data; name=\"file\"; filename=\"plain name.jpg\"", "plain name.jpg"),
    ("form-data; name=\"file\"", None),
])
def test_upload_file_name(client: TestClient, cat_bytes: bytes, disposition: str, name: str | None) -> None:
    body, headers = multipart_body(disposition, cat_bytes)
    r = client.post("/api/v1/scan", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["path"] == name
    assert r.json()["is_cat"] is True


# ---------------------------------------------------------------------------- size limit
def test_upload_over_the_size_limit(make_client, cat_bytes: bytes) -> None:
    limit = 64 * 1024
    assert len(cat_bytes) > limit
    c = make_client(max_upload_bytes=limit)
    msg = assert_error(post_file(c, cat_bytes), 413, "too_large")
    assert "64 KiB" in msg
    assert_error(c.post("/api/v1/scan", content=cat_bytes, headers={"Content-Type": "image/jpeg"}), 413, "too_large")
    # A photo just under the limit passes, also inside a multipart form.
    just_fits = make_client(max_upload_bytes=len(cat_bytes))
    assert just_fits.post("/api/v1/scan", content=cat_bytes).status_code == 200
    assert post_file(just_fits, cat_bytes).status_code == 200
    assert_error(just_fits.post("/api/v1/scan", content=cat_bytes + b"\0"), 413, "too_large")


def test_size_limit_is_enforced_while_streaming(scanner: Scanner) -> None:
    """A 1 GB body without Content-Length: the app stops reading just past the limit."""
    limit, chunk = 256 * 1024, 64 * 1024
    app = create_app(Settings(max_upload_bytes=limit, threads=1), scanner_factory=lambda: scanner)
    sent = 0

    async def endless_body(head: bytes):
        nonlocal sent
        yield head
        for _ in range(1024**3 // chunk):
            sent += chunk
            yield b"\xff" * chunk

    async def run(content_type: str, head: bytes) -> httpx.Response:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as c:
                while (await c.get("/healthz")).status_code != 200:
                    await asyncio.sleep(0.02)
                return await c.post("/api/v1/scan", content=endless_body(head),
                                    headers={"Content-Type": content_type})

    part_head = b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n\r\n'
    for content_type, head, body_limit in (
        ("image/jpeg", b"\xff\xd8", limit),
        ("multipart/form-data; boundary=B", part_head, limit + MULTIPART_OVERHEAD),
    ):
        sent = 0
        r = asyncio.run(run(content_type, head))
        assert_error(r, 413, "too_large")
        assert "Content-Length" not in r.request.headers
        assert sent <= body_limit + 2 * chunk, f"read {sent} bytes for a {limit} byte limit"


def test_content_length_checked_before_reading(make_client) -> None:
    c = make_client(max_upload_bytes=1000)
    r = c.post("/api/v1/scan", content=b"x" * 10, headers={"Content-Length": "999999999"})
    assert "(953.7 MiB) is larger than the 1000 bytes limit" in assert_error(r, 413, "too_large")


@pytest.mark.parametrize(("limit", "said"), [(10 * 1024 * 1024, "10 MiB"), (64 * 1024, "64 KiB"), (1000, "1000 bytes")])
def test_413_for_one_byte_over_does_not_read_like_the_limit(make_client, limit: int, said: str) -> None:
    """Issue 10: 10 MiB + 1 byte was reported as "(10 MB) is larger than the 10 MB limit"."""
    c = make_client(max_upload_bytes=limit)
    msg = assert_error(c.post("/api/v1/scan", content=b"x" * 10, headers={"Content-Length": str(limit + 1)}),
                       413, "too_large")
    m = re.search(r"\(([\d.]+ \w+)\) is larger than the ([\d.]+ \w+) limit", msg)
    assert m, msg
    assert m[2] == said and m[1] != m[2], msg


# ---------------------------------------------------------------------------- queue
class WaitingScanner:
    """Test double for the queue test only: the real scanner, but each photo first waits for
    ``release`` so the pool's one worker stays busy as long as the test wants."""

    def __init__(self, real: Scanner):
        self.real = real
        self.classifier = real.classifier
        self.started = threading.Event()
        self.release = threading.Event()

    def scan(self, *args, **kwargs) -> ScanResult:
        self.started.set()
        assert self.release.wait(30), "the test never released the scanner"
        return self.real.scan(*args, **kwargs)


def test_queue_full_answers_503_at_once(make_client, scanner: Scanner, cat_bytes: bytes) -> None:
    double = WaitingScanner(scanner)
    c = make_client(threads=1, max_queue=1, scanner_factory=lambda: double)
    pool = c.app.state.pool
    answers: list[httpx.Response] = []

    def upload() -> None:
        answers.append(post_file(c, cat_bytes))

    workers = [threading.Thread(target=upload) for _ in range(2)]
    try:
        workers[0].start()
        assert double.started.wait(10)  # photo 1 is being scanned
        workers[1].start()
        deadline = time.monotonic() + 10
        while pool.admitted < 2:  # photo 2 is admitted: uploaded and waiting for the worker
            assert time.monotonic() < deadline
            time.sleep(0.01)

        t0 = time.monotonic()
        r = post_file(c, cat_bytes)  # photo 3: no room (it waits up to admission_wait = 2 s for one)
        assert time.monotonic() - t0 < DEFAULT_ADMISSION_WAIT + 1.5, "a full queue must be answered promptly"
        assert "busy" in assert_error(r, 503, "busy")
        assert r.headers["Retry-After"]
    finally:
        double.release.set()
        for w in workers:
            w.join(30)
    assert [a.status_code for a in answers] == [200, 200]
    assert all(a.json()["is_cat"] for a in answers)
    assert pool.admitted == 0
    assert post_file(c, cat_bytes).status_code == 200  # room again


class BodyReads:
    """ASGI wrapper around the app that counts the request-body messages the app asks for."""

    def __init__(self, app: Callable):
        self.app, self.messages = app, 0

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def counting_receive() -> dict:
            message = await receive()
            self.messages += message["type"] == "http.request"
            return message

        await self.app(scope, counting_receive, send)


def test_busy_is_answered_before_the_body_is_read(scanner: Scanner, cat_bytes: bytes) -> None:
    """Issue 10, item 11: under 100 clients the server spent its time answering 503s (~950/s). A busy
    answer is now cheap: given before the body is read (it was read in full, then thrown away) and
    before the route runs, after waiting ``admission_wait`` for room (so a client that asks again at
    once is refused at most once per wait), and its Retry-After says when the queue should have room."""
    double = WaitingScanner(scanner)
    wait = 0.3
    app = BodyReads(create_app(Settings(threads=1, max_queue=0, admission_wait=wait), scanner_factory=lambda: double))
    answers: list[httpx.Response] = []
    with TestClient(app) as c:
        wait_ready(c)
        pool = c.app.app.state.pool
        worker = threading.Thread(target=lambda: answers.append(post_file(c, cat_bytes)))
        worker.start()
        try:
            assert double.started.wait(10)  # the one place is taken
            assert pool.admitted == pool.capacity == 1
            read_before = app.messages
            for send in (lambda: post_file(c, cat_bytes),
                         lambda: c.post("/api/v1/scan", content=cat_bytes, headers={"Content-Type": "image/jpeg"})):
                t0 = time.monotonic()
                r = send()
                took = time.monotonic() - t0
                assert r.status_code == 503, r.text
                assert app.messages == read_before, "the busy answer came after reading the whole body"
                assert wait <= took < wait + 2, f"refused after {took:.2f} s, not after waiting {wait} s for room"
                message = assert_error(r, 503, "busy")
                retry_after = r.headers["Retry-After"]
                assert retry_after.isdigit() and 1 <= int(retry_after) <= 30, retry_after
                assert f"Try again in {retry_after} s" in message
        finally:
            double.release.set()
            worker.join(30)
    assert [a.status_code for a in answers] == [200]


def test_a_photo_that_finds_the_queue_full_waits_for_a_place(scanner: Scanner, cat_bytes: bytes) -> None:
    """Issue 10, item 11: a photo that arrives while every place is taken waits at the door (its body
    not read yet) for up to ``admission_wait`` and is scanned when a place frees; it was refused with
    503 at once, and its client had to come back."""
    double = WaitingScanner(scanner)
    app = BodyReads(create_app(Settings(threads=1, max_queue=0, admission_wait=30), scanner_factory=lambda: double))
    answers: dict[str, httpx.Response] = {}
    with TestClient(app) as c:
        wait_ready(c)
        pool = c.app.app.state.pool
        first = threading.Thread(target=lambda: answers.setdefault("first", post_file(c, cat_bytes)))
        second = threading.Thread(target=lambda: answers.setdefault("second", post_file(c, cat_bytes)))
        first.start()
        try:
            assert double.started.wait(10)  # the one place is taken
            read_before = app.messages
            second.start()
            second.join(0.5)
            assert "second" not in answers, f"answered while the queue was full: {answers['second'].text}"
            assert app.messages == read_before and pool.admitted == 1  # waiting at the door, body unread
        finally:
            double.release.set()
            first.join(30)
            second.join(30)
    assert answers["first"].status_code == 200
    assert answers["second"].status_code == 200, answers["second"].text
    assert_persian_cat(answers["second"].json())


def test_an_uploaded_photo_waits_for_a_place_instead_of_being_thrown_away() -> None:
    """A photo that passed the door while there was room but finished uploading after the places
    filled (a burst: most of 60 uploads were refused at once, after sending their photo) waits up to
    the admission wait for a place; with none freed in time, it gets the 503."""
    pool = InferencePool(workers=1, max_queue=0)
    try:
        taken = pool.reserve()

        async def scenario() -> tuple[float, float]:
            loop = asyncio.get_running_loop()
            loop.call_later(0.3, taken.__exit__, None, None, None)  # the scan ahead of it ends
            t0 = loop.time()
            with await pool.reserve_within(2.0):
                got = loop.time() - t0
            blocker = pool.reserve()
            t1 = loop.time()
            with pytest.raises(ApiError) as refused:
                await pool.reserve_within(0.25)
            blocker.__exit__(None, None, None)
            assert refused.value.status == 503
            return got, loop.time() - t1

        got, refused_after = asyncio.run(scenario())
        assert 0.25 <= got < 1.0, got  # scanned as soon as the place freed, not refused
        assert 0.2 <= refused_after < 1.0, refused_after  # no place in time: the 503
        assert pool.admitted == 0
    finally:
        pool.shutdown()


def test_the_scan_route_waits_for_a_place_after_the_upload(scanner: Scanner, cat_bytes: bytes, monkeypatch) -> None:
    """The route itself (not only the pool) waits: the door is made to see room while the one place is
    taken, as when the places fill during an upload; the photo is scanned once the place frees."""
    monkeypatch.setattr(InferencePool, "full", property(lambda self: False))  # the door's peek sees room
    app = create_app(Settings(threads=1, max_queue=0, admission_wait=5), scanner_factory=lambda: scanner)
    with TestClient(app) as c:
        wait_ready(c)
        taken = c.app.state.pool.reserve()
        threading.Timer(0.3, taken.__exit__, (None, None, None)).start()
        t0 = time.monotonic()
        r = post_file(c, cat_bytes)
        assert r.status_code == 200 and 0.25 <= time.monotonic() - t0 < 5, (r.status_code, r.text)
        assert_persian_cat(r.json())


def test_retry_after_is_the_time_the_queue_needs(scanner: Scanner) -> None:
    """The busy answer's Retry-After: half the time the photos admitted and the requests waiting in
    line need (their number times the mean scan time, timed on the real scans run through the pool,
    over the workers), in whole seconds from 1 to 30."""
    pool = InferencePool(workers=2, max_queue=6)
    try:
        photo = Image.new("RGB", (64, 64), (120, 90, 60))
        for _ in range(3):
            with pool.reserve() as place:
                asyncio.run(place.run(scanner.scan, photo))
        scan_s = pool._scan_s
        assert 0.001 < scan_s < 10
        places = [pool.reserve() for _ in range(8)]
        assert pool.full
        with pytest.raises(ApiError) as busy:
            pool.reserve()
        expected = max(1, min(30, round(8 * scan_s / 2 / 2)))  # half the time the 8 photos need on 2 workers
        assert busy.value.headers == {"Retry-After": str(expected)} and busy.value.status == 503
        for place in places:
            place.__exit__(None, None, None)
        assert not pool.full and pool.retry_after() == 1  # nothing queued: come back at once
        pool._scan_s = 10.0  # slow scans: 1 photo admitted, 10 s on one of 2 workers -> come back in 2-3 s
        with pool.reserve():
            assert pool.retry_after() == round(10 / 2 / 2)
            assert pool.retry_after(waiting=3) == round(4 * 10 / 2 / 2)  # 3 more in line at the door
            pool._scan_s = 1000.0  # very slow scans: the answer is capped
            assert pool.retry_after() == 30
    finally:
        pool.shutdown()


def test_memory_is_handed_back_once_the_pool_is_idle(scanner: Scanner) -> None:
    """Issue 10's soak: after 100 clients the server's RSS stayed at its peak (~400 MB; handing the C
    heap's free pages back took it to ~345 MB). The pool trims the heap once it has been idle for
    ``idle_trim_after`` seconds: not while photos are admitted, and once per idle spell."""
    trims: list[float] = []
    pool = InferencePool(workers=1, max_queue=2, trim=lambda: trims.append(time.monotonic()), idle_trim_after=0.2)
    released: list[float] = []
    pool.on_release = lambda: released.append(time.monotonic())  # the moment the pool went idle
    try:
        photo = Image.new("RGB", (64, 64), (120, 90, 60))
        with pool.reserve() as place:
            asyncio.run(place.run(scanner.scan, photo))
        deadline = time.monotonic() + 10
        while not trims:
            assert time.monotonic() < deadline, "the idle pool never trimmed the heap"
            time.sleep(0.02)
        assert trims[0] - released[0] >= 0.19  # after the idle delay from when it went idle, not at once
        with pool.reserve():  # a photo admitted: busy, no trim however long it takes
            time.sleep(0.6)
            assert len(trims) == 1
        time.sleep(0.6)
        assert len(trims) == 2  # idle again: trimmed again, once
    finally:
        pool.shutdown()


# ---------------------------------------------------------------------------- health and meta
def test_healthz_is_503_until_the_models_are_loaded(scanner: Scanner, cat_bytes: bytes) -> None:
    loaded = threading.Event()

    def slow_load() -> Scanner:
        assert loaded.wait(30)
        return scanner

    app = create_app(Settings(threads=1), scanner_factory=slow_load)
    with TestClient(app) as c:
        try:
            r = c.get("/healthz")
            assert r.status_code == 503 and r.json()["status"] == "loading"
            assert_error(post_file(c, cat_bytes), 503, "loading")
            assert c.get("/api/v1/breeds").status_code == 200  # needs no models
        finally:
            loaded.set()
        wait_ready(c)
        body = c.get("/healthz").json()
        assert body == {"status": "ok", "breed_model": True, "message": None}


def test_healthz_reports_models_that_failed_to_load(tmp_path: Path, cat_bytes: bytes) -> None:
    with TestClient(create_app(Settings(model_dir=str(tmp_path), threads=1))) as c:  # an empty model folder
        deadline = time.monotonic() + 30
        while (r := c.get("/healthz")).json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert r.status_code == 503 and r.json()["status"] == "error"
        assert "Retry-After" not in r.headers  # a failed load stays failed: no invitation to retry
        assert "detector.onnx" in r.json()["message"]
        assert str(tmp_path) not in r.json()["message"]  # the server's folders stay on the server
        assert_error(post_file(c, cat_bytes), 503, "models_unavailable")


def test_healthz_ok(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.json()["breed_model"] is True  # the breed model ships with the package
    head = client.head("/healthz")  # issue 10: load balancers probe with HEAD (was 405)
    assert head.status_code == 200 and head.content == b""


def test_the_api_docs_state_this_servers_limits(scanner: Scanner) -> None:
    """The limits are settings: the OpenAPI schema says the ones this server enforces (it said 10 MiB
    and 10 s / 60 s whatever the settings)."""
    app = create_app(Settings(threads=1, max_upload_bytes=50 * 2**20, idle_timeout=3, upload_deadline=20,
                              min_upload_rate=4096), scanner_factory=lambda: scanner)
    op = app.openapi()["paths"]["/api/v1/scan"]["post"]
    assert "at most 50 MiB" in op["description"] and "nothing for 3 s" in op["description"]
    assert op["responses"]["408"]["description"].startswith(
        "The upload sent nothing for 3 s, came slower than 4 KiB/s, or took longer than 20 s")
    assert op["responses"]["413"]["description"].endswith("limit, 50 MiB.")
    default = create_app(Settings(threads=1), scanner_factory=lambda: scanner).openapi()["paths"]["/api/v1/scan"]["post"]
    assert "at most 10 MiB" in default["description"]


def test_breeds(client: TestClient) -> None:
    r = client.get("/api/v1/breeds")
    assert r.status_code == 200
    assert r.json() == {"breeds": list(BREEDS)} and len(BREEDS) == 12


def test_a_trailing_slash_gets_a_json_error_not_an_empty_redirect(client: TestClient, cat_bytes: bytes) -> None:
    r = client.post("/api/v1/scan/", files={"file": ("cat.jpg", cat_bytes, "image/jpeg")}, follow_redirects=False)
    assert_error(r, 404, "not_found")


@pytest.mark.parametrize("path", ["/", "/docs", "/api/v1/breeds", "/healthz"])
def test_every_page_answers_head_and_names_get_when_refusing_a_method(client: TestClient, path: str) -> None:
    """Uptime monitors and link checkers probe with HEAD (was 405 on /, /docs and the breeds)."""
    head = client.head(path)
    assert head.status_code == 200 and head.content == b""
    refused = client.post(path)
    assert refused.status_code == 405 and "GET" in refused.headers["allow"]


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    scan = spec["paths"]["/api/v1/scan"]["post"]
    content = scan["requestBody"]["content"]
    assert "multipart/form-data" in content and "image/jpeg" in content and "application/octet-stream" in content
    assert {"200", "413", "415", "422", "503"} <= set(scan["responses"])
    assert any(p["name"] == "threshold" for p in scan["parameters"])
    schemas = spec["components"]["schemas"]
    ok = scan["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/ScanResult"}  # the runtime's ScanResult dataclass itself
    assert set(schemas["ScanResult"]["properties"]) == SCHEMA_KEYS
    for name in ("ScanResult", "Cat", "Box", "BreedShare", "Timing", "ImageNetLabel"):  # always sent: required
        assert set(schemas[name]["required"]) == set(schemas[name]["properties"]), name
    assert set(schemas["Cat"]["properties"]) == {"box", "cat_probability", "breeds"}
    assert set(schemas["Box"]["properties"]) == {"left", "top", "right", "bottom"}
    assert "Top-5 ImageNet labels" in schemas["ScanResult"]["properties"]["imagenet_top"]["description"]
    assert {"/api/v1/breeds", "/healthz"} <= set(spec["paths"])
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)), ids  # unique, as OpenAPI requires


def test_docs_work_offline(client: TestClient) -> None:
    """/docs is Swagger UI served by this server: no CDN (the product must work with no internet)."""
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "SwaggerUIBundle(" in html and "/openapi.json" in html
    # Nothing from another host: every absolute URL (if any) is this server's.
    for url in re.findall(r"""(?:https?:)?//[^\s"'<>)]+""", html):
        assert url.startswith(str(client.base_url)), url
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    scripts = [u for u in refs if u.endswith(".js")]
    styles = [u for u in refs if u.endswith(".css")]
    assert scripts and styles, refs
    for url in refs:
        asset = client.get(url)
        assert asset.status_code == 200 and asset.content, url
    assert "javascript" in client.get(scripts[0]).headers["content-type"]
    assert client.get(styles[0]).headers["content-type"].startswith("text/css")
    # swagger-ui 4 shows "Unable to render this definition" for OpenAPI 3.1 (what FastAPI writes).
    openapi = client.get("/openapi.json").json()["openapi"]
    major = re.search(r"swagger-ui-dist@(\d+)\.", (SWAGGER_UI_DIR / "README.txt").read_text())
    assert major and (int(major[1]) >= 5 or not openapi.startswith("3.1")), (SWAGGER_UI_DIR, openapi)
    # The inline script that starts Swagger UI is allowed by the page's CSP (by hash), nothing else is.
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "'sha256-" in csp and "script-src 'self' 'sha256-" in csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";")[0]
    # ReDoc (also from a CDN) is off; only the files /docs uses are served from the bundle.
    assert client.get("/redoc").status_code == 404
    assert client.get("/static-docs/LICENSE").status_code == 404
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_unknown_route_is_a_json_error(client: TestClient) -> None:
    assert_error(client.get("/api/v1/nothing"), 404, "not_found")
    assert_error(client.get("/api/v1/scan"), 405, "method_not_allowed")


# ---------------------------------------------------------------------------- page
def test_page_is_served_and_self_contained(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    for element_id in ("file", "camera", "dropzone", "preview", "boxes", "verdict", "confidence", "cats", "error"):
        assert f'id="{element_id}"' in html
    assert re.search(r'<input[^>]*id="camera"[^>]*accept="image/\*"[^>]*capture', html, re.S)
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in html and client.get(asset).status_code == 200
    # Works offline: nothing is loaded from another host (no CDN, no web fonts).
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), path
        assert not re.search(r"""url\(\s*["']?(https?:)?//|@import|fetch\(\s*["']https?:""", text), path


# ---------------------------------------------------------------------------- no leftovers
def big_photo(photo: bytes) -> bytes:
    """A real photo enlarged to about 1.5 MB: past the size where form parsers spill to disk."""
    img = Image.open(io.BytesIO(photo)).convert("RGB")
    out = io.BytesIO()
    img.resize((img.width * 4, img.height * 4), Image.Resampling.BICUBIC).save(out, "JPEG", quality=100)
    return out.getvalue()


def test_uploads_leave_no_temp_files(monkeypatch, tmp_path: Path, client: TestClient,
                                     cat_bytes: bytes) -> None:
    """Uploads stay in memory: no temporary file is even opened (form parsers usually spill
    uploads over 1 MB to an unnamed temp file, which no directory listing would show)."""
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    opened: list[str] = []
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        real = getattr(tempfile, name)

        def recording(*args, _real=real, _name=name, **kwargs):
            opened.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(tempfile, name, recording)

    big = big_photo(cat_bytes)
    assert len(big) > 1024 * 1024
    assert post_file(client, big).json()["is_cat"] is True
    assert post_file(client, big[: len(big) // 2]).status_code == 422
    for maker, status, _ in BAD_UPLOADS:
        assert post_file(client, maker(cat_bytes)).status_code == status
    assert opened == [] and list(spool.iterdir()) == []


def test_the_server_runs_the_runtime_its_settings_name(cat_bytes: bytes) -> None:
    """``catscan serve --runtime onnxruntime`` reaches the server's scanner through its settings (it
    used to be passed by changing the process's environment)."""
    app = create_app(Settings(threads=1, runtime="onnxruntime", precision="f32"))
    with TestClient(app) as c:
        wait_ready(c)
        scanner = app.state.models.require()
        assert scanner.detector.model.runtime == "onnxruntime" and scanner.classifier.model.precision == "f32"
        assert post_file(c, cat_bytes).json()["is_cat"] is True
