"""Schemathesis against the live OpenAPI schema of the web app (issue 10), with the real models.

Schemathesis takes the schema the app serves at ``/openapi.json`` and generates requests for every
operation from it: valid ones (positive mode) and invalid ones (negative mode: wrong types, missing
body, a threshold out of range, other HTTP methods, ...), sent to the app in process (ASGI). Every
response is checked: no 5xx, the status code is documented, the body conforms to the documented
schema (``ScanResult``, ``ErrorResponse``, ...), the content type and headers are the documented
ones, valid requests are accepted (``positive_data_acceptance``) and invalid ones refused.

JSON Schema cannot say "a decodable photo": for it, any string is a valid ``format: binary``. So the
photos that positive requests send are drawn by the strategy below, registered for each image
media type the schema documents (``schemathesis.openapi.media_type``), which schemathesis also uses
for the multipart ``file`` part because the schema lists those types in its ``encoding``: real
Oxford photos, cut and resized to 32-300 px, converted to various Pillow modes and saved in every
accepted format. All of them must get 200 with a scan result. (Before the schema said which types
the ``file`` part takes, schemathesis sent its own 1x1 PNG there, which was refused: ST202.)

Deterministic: Hypothesis is derandomized (its seed is fixed by the test's code), has no example
database, no deadline and no shrinking, schemathesis's coverage cases are seeded, and the number of
examples is small and fixed, so each run sends the same ~70 requests (~10 s on one core).

(``schemathesis.pytest.from_fixture`` does not work with pytest 9.2, so the schema is loaded when the
module is imported, from the app object; the fixture checks it is what ``/openapi.json`` serves.)
"""

from __future__ import annotations

import io
import os
import time
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.python import asgi as schemathesis_asgi

from catscanner.runtime.scanner import Scanner
from catscanner.web import Settings, create_app

# Real photos the generated uploads are made from (cats and a dog: both must be scanned, 200).
SOURCE_PHOTOS = ("Persian_10.jpg", "Bengal_10.jpg", "Maine_Coon_101.jpg", "beagle_10.jpg")
# Pillow format and the modes it saves, for each image media type the API documents.
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "image/jpeg": ("JPEG", ("RGB", "L", "CMYK")),
    "image/png": ("PNG", ("RGB", "RGBA", "L", "LA", "P", "I;16")),
    "image/gif": ("GIF", ("P", "L")),
    "image/webp": ("WEBP", ("RGB", "RGBA")),
    "image/bmp": ("BMP", ("RGB", "L", "P")),
    "image/tiff": ("TIFF", ("RGB", "RGBA", "L", "CMYK", "I;16", "F")),
}
MAX_EXAMPLES = 25  # per operation; plus schemathesis's deterministic coverage cases (~40 requests)


@cache
def source_photos() -> list[Image.Image]:
    """The real photos the generated uploads are cut from (read on first use: schemathesis draws
    its deterministic coverage cases when the tests are collected, before any fixture runs)."""
    from conftest import DEFAULT_DATA_DIR  # noqa: PLC0415  (the shared data folder)

    images = Path(os.environ.get("CATSCAN_DATA", DEFAULT_DATA_DIR)) / "oxford-iiit-pet" / "images"
    return [Image.open(images / name).convert("RGB") for name in SOURCE_PHOTOS]


def photo_strategy(media_type: str) -> st.SearchStrategy[bytes]:
    """Bytes of a real photo in ``media_type``'s format: a crop, resized to 32-300 px a side, in one
    of the modes that format stores."""
    fmt, modes = FORMATS[media_type]

    @st.composite
    def photos(draw: st.DrawFn) -> bytes:
        image = draw(st.sampled_from(source_photos()))
        w, h = image.size
        left, top = draw(st.integers(0, w // 4)), draw(st.integers(0, h // 4))
        crop = image.crop((left, top, w - draw(st.integers(0, w // 4)), h - draw(st.integers(0, h // 4))))
        size = (draw(st.integers(32, 300)), draw(st.integers(32, 300)))
        mode = draw(st.sampled_from(modes))
        out = crop.resize(size)
        if mode == "I;16":
            out = out.convert("L").convert("I").point(lambda v: v * 257).convert("I;16")
        elif mode == "F":
            out = out.convert("L").convert("F")
        else:
            out = out.convert(mode)
        buffer = io.BytesIO()
        out.save(buffer, fmt)
        return buffer.getvalue()

    return photos()


# A schema-valid photo for each media type the API documents (also used for the multipart `file` part,
# whose `encoding.contentType` lists them); `application/octet-stream` may carry any of them.
for _media_type in FORMATS:
    schemathesis.openapi.media_type(_media_type, photo_strategy(_media_type))
schemathesis.openapi.media_type("application/octet-stream", st.one_of(*(photo_strategy(m) for m in FORMATS)))


class Models:
    """The session's real scanner, handed to the app by the ``api_schema`` fixture."""

    scanner: Scanner | None = None


def _scanner() -> Scanner:
    assert Models.scanner is not None, "the app was started outside the api_schema fixture"
    return Models.scanner


# The app as `catscan serve` builds it, on one inference thread, with the session's real models (its
# lifespan starts on the first request, in the fixture). Schemathesis sends its requests to it in
# process (ASGI). The schema is the one the app serves at /openapi.json (the fixture checks that).
APP = create_app(Settings(threads=1), scanner_factory=_scanner)
OPENAPI = APP.openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
schema.app = APP


# (generation mode, media type, status) of every scan request sent, checked when the module ends
SCANS: Counter[tuple[str, str | None, int]] = Counter()


@pytest.fixture(scope="module", autouse=True)
def live_app(scanner: Scanner, oxford_images: Path) -> Iterator[None]:
    """Starts the app with the session's real models and waits until they are loaded; at the end,
    checks that real photos of every documented media type were sent and scanned."""
    Models.scanner = scanner
    try:
        with schemathesis_asgi.get_client(APP) as client:  # starts the app's lifespan (kept until the end)
            deadline = time.monotonic() + 60
            while client.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline, "the models did not load in 60 s"
                time.sleep(0.05)
            assert client.get("/openapi.json").json() == OPENAPI  # the live schema is the one tested
        yield
    finally:
        schemathesis_asgi.shutdown_lifespans()  # stops the app's inference pool
        Models.scanner = None
    if SCANS:  # the scan operation ran (not deselected): the positive cases really scanned photos
        scanned = {media_type for (mode, media_type, status) in SCANS if mode == "positive" and status == 200}
        assert scanned >= {"multipart/form-data", "application/octet-stream", *FORMATS}, SCANS
        assert sum(n for (mode, _, _), n in SCANS.items() if mode == "positive") >= 20, SCANS
        assert sum(n for (mode, _, _), n in SCANS.items() if mode == "negative") >= 5, SCANS


CHECKS = [
    schemathesis.checks.not_a_server_error,  # no 5xx
    schemathesis.checks.status_code_conformance,  # every status is documented
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,  # bodies match ScanResult, ErrorResponse, ...
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.positive_data_acceptance,  # valid requests are accepted
    schemathesis.checks.negative_data_rejection,  # invalid ones get 4xx
]


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
          phases=[Phase.explicit, Phase.generate],  # explicit: the coverage cases; no shrinking
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    response = case.call_and_validate(checks=CHECKS)
    if case.operation.path == "/api/v1/scan" and case.method.upper() == "POST":
        mode = case.meta.generation.mode.value
        SCANS[(mode, case.media_type, response.status_code)] += 1
        if mode == "positive":
            # Stricter than positive_data_acceptance (which lets any 5xx pass): the photo was scanned.
            assert response.status_code == 200, response.text
            assert isinstance(response.json()["is_cat"], bool)
