"""Property-based fuzzing of the decoder (Hypothesis): whatever bytes arrive, ``decode_image``
returns an upright RGB image within the limits or raises a CatScannerError — never anything else,
in bounded time. Inputs are mutations of real photos (every format we read), so the fuzzer spends
its time inside the image plugins rather than on random noise. Inputs that once crashed are kept
in ``tests/data/decoder_crashes/`` and replayed first."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

from catscanner.errors import CatScannerError
from catscanner.runtime.decoding import decode_image

CRASHES = Path(__file__).parent / "data" / "decoder_crashes"
LIMITS = {"max_pixels": 4_000_000, "min_side": 8}


def _seeds() -> list[bytes]:
    """Small real photos in every format the decoder reads (made from one Oxford cat, in memory)."""
    from conftest import CAT_PHOTO, DEFAULT_DATA_DIR  # noqa: PLC0415  (the shared data folder)
    import os

    root = Path(os.environ.get("CATSCAN_DATA", DEFAULT_DATA_DIR))
    cat = Image.open(root / "oxford-iiit-pet" / "images" / CAT_PHOTO).convert("RGB").resize((64, 48))
    out = []
    for fmt, mode in (("JPEG", "RGB"), ("PNG", "RGBA"), ("PNG", "P"), ("GIF", "P"), ("WEBP", "RGB"),
                      ("BMP", "RGB"), ("TIFF", "RGB"), ("PNG", "I;16"), ("TIFF", "L")):
        buf = io.BytesIO()
        cat.convert(mode if mode != "I;16" else "L").convert(mode).save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seeds()


def _check(data: bytes) -> None:
    try:
        img = decode_image(data, **LIMITS)
    except CatScannerError:
        return
    assert img.mode == "RGB"
    assert min(img.size) >= LIMITS["min_side"] and img.width * img.height <= LIMITS["max_pixels"]


@st.composite
def mutated_photos(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(("flip", "cut", "insert", "repeat")))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i:i + draw(st.integers(1, 64))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[i:i] = data[i:i + draw(st.integers(1, 32))] * draw(st.integers(1, 4))
    return bytes(data)


@seed(20261129)
@settings(max_examples=300, deadline=2000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_photos())
def test_decoder_never_fails_untyped_on_mutated_photos(data: bytes):
    _check(data)


@settings(max_examples=100, deadline=2000, derandomize=True)
@given(st.binary(max_size=2048))
def test_decoder_never_fails_untyped_on_random_bytes(data: bytes):
    _check(data)


@pytest.mark.parametrize("path", sorted(CRASHES.glob("*")), ids=lambda p: p.name)
def test_kept_crash_inputs_stay_fixed(path: Path):
    _check(path.read_bytes())


def test_seed_photos_decode():
    for data in SEEDS:
        assert decode_image(data, **LIMITS).mode == "RGB"
