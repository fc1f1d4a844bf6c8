"""Shared pytest fixtures for Cat Scanner's tests.

Data (real photos, never synthetic stand-ins):

- ``data_dir``      the shared data folder: ``$CATSCAN_DATA`` if set, else ``<repo>/../shared/data``.
                    When it is missing the test *fails* with a message saying how to fix it
                    (tests are never skipped for missing data).
- ``oxford_dir``    ``data_dir / "oxford-iiit-pet"`` (holds ``images/`` and ``annotations/``).
- ``oxford_images`` ``oxford_dir / "images"``.
- ``cat_photo``     one clear, full-size cat photo (Path, a real JPEG, 500x375).
- ``dog_photo``     one clear dog photo (Path, a real JPEG, 500x375).

Models:

- ``scanner``       one real :class:`catscanner.runtime.scanner.Scanner` with the shipped models (both
                    of them, or the test fails), loaded once per test session, on the runtime "auto"
                    picks (OpenVINO where installed and the CPU computes bf16 natively, else ONNX
                    Runtime), on 1 thread to keep CPU use modest (results do not depend on the
                    thread count).
                    Do not mutate it.

The shared data folder is read-only (in CI too): write only to ``tmp_path`` / ``tmp_path_factory``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"

CAT_PHOTO = "Bengal_10.jpg"  # a Bengal lying in grass, side view
DOG_PHOTO = "wheaten_terrier_140.jpg"  # a wheaten terrier lying down, face on


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.fail(
            f"{what} was not found at {path}. Set CATSCAN_DATA to the shared data folder "
            f"(the one holding oxford-iiit-pet/ and coco128/; default {DEFAULT_DATA_DIR}).",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder (``$CATSCAN_DATA`` or ``<repo>/../shared/data``); read-only."""
    return _need(Path(os.environ.get("CATSCAN_DATA", DEFAULT_DATA_DIR)).resolve(), "The shared data folder")


@pytest.fixture(scope="session")
def oxford_dir(data_dir: Path) -> Path:
    """The Oxford-IIIT Pet folder (``images/``, ``annotations/``)."""
    return _need(data_dir / "oxford-iiit-pet", "The Oxford-IIIT Pet data")


@pytest.fixture(scope="session")
def oxford_images(oxford_dir: Path) -> Path:
    """The Oxford-IIIT Pet photos (``<Breed>_<n>.jpg``; a few hold PNG or GIF data)."""
    return _need(oxford_dir / "images", "The Oxford-IIIT Pet images folder")


@pytest.fixture(scope="session")
def cat_photo(oxford_images: Path) -> Path:
    """A real cat photo (JPEG, 500x375) that any working detector calls a cat."""
    return _need(oxford_images / CAT_PHOTO, "The cat test photo")


@pytest.fixture(scope="session")
def dog_photo(oxford_images: Path) -> Path:
    """A real dog photo (JPEG, 500x375) that any working detector calls not a cat."""
    return _need(oxford_images / DOG_PHOTO, "The dog test photo")


@pytest.fixture(scope="session")
def scanner():
    """The real scanner with the shipped models, loaded once per session (1 inference thread).

    Both models ship with the package: a missing breed model fails the tests that use this
    fixture (it never turns them into checks of the no-breed-model case)."""
    from catscanner.runtime.scanner import Scanner

    s = Scanner(threads=1)
    if s.classifier is None:
        pytest.fail(f"The breed model is missing from {s.models.folder}: reinstall catscanner.", pytrace=False)
    return s
