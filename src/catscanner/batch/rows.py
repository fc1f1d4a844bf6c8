"""One flat row per photo: the scan result plus what a table of millions of photos needs.

| column | type | meaning |
|---|---|---|
| ``path`` | string | absolute local path or URI |
| ``size`` | int64 | file size in bytes when listed (null: not found) |
| ``mtime_ns`` | int64 | modification time, ns since 1970 UTC, when listed |
| ``is_cat`` | bool | at least one house cat |
| ``cat_probability`` | float64 | highest probability of a house cat |
| ``n_cats`` | int32 | number of house cats found |
| ``top_breed`` | string | top breed of the most confident cat (null: none) |
| ``top_breed_percent`` | float64 | its share, 0-100 |
| ``breeds`` | list<struct<breed, percent>> | the most confident cat's breed mix |
| ``cats`` | list<struct<box<left,top,right,bottom>, cat_probability, breeds>> | every cat |
| ``wild_cat`` | string | what a wild cat looks like, when the photo shows one |
| ``width``, ``height`` | int32 | size of the upright photo |
| ``error``, ``error_code`` | string | why the photo could not be scanned (see README) |
| ``model_version`` | string | ``<package version>+<sha256 of the model files, 12 hex>`` |

Values are exactly those of ``catscan scan --json`` (a failed photo keeps its defaults:
``is_cat`` false, ``cat_probability`` 0).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from ..runtime.contract import ModelFiles
from ..runtime.schema import ScanResult, text_path
from .sources import Photo

COLUMNS = ("path", "size", "mtime_ns", "is_cat", "cat_probability", "n_cats", "top_breed", "top_breed_percent",
           "breeds", "cats", "wild_cat", "width", "height", "error", "error_code", "model_version")
KEY_COLUMNS = ("path", "size", "mtime_ns")


def to_row(photo: Photo, result: ScanResult, model_version: str) -> dict:
    """The row of one photo (``result.path`` is replaced by the photo's absolute path or URI)."""
    top = result.breeds[0] if result.breeds else None
    return {
        "path": text_path(photo.path),
        "size": photo.size,
        "mtime_ns": photo.mtime_ns,
        "is_cat": result.is_cat,
        "cat_probability": result.cat_probability,
        "n_cats": len(result.cats),
        "top_breed": top.breed if top else None,
        "top_breed_percent": top.percent if top else None,
        "breeds": [{"breed": b.breed, "percent": b.percent} for b in result.breeds],
        "cats": [
            {"box": {"left": c.box.left, "top": c.box.top, "right": c.box.right, "bottom": c.box.bottom},
             "cat_probability": c.cat_probability,
             "breeds": [{"breed": b.breed, "percent": b.percent} for b in c.breeds]}
            for c in result.cats
        ],
        "wild_cat": result.wild_cat,
        "width": result.width,
        "height": result.height,
        "error": result.error,
        "error_code": result.error_code,
        "model_version": model_version,
    }


def failed_row(photo: Photo, code: str, message: str, model_version: str) -> dict:
    return to_row(photo, ScanResult.failed(photo.path, code, message), model_version)


def arrow_schema():
    """The Parquet schema of a row (pyarrow is imported here, not at module import)."""
    import pyarrow as pa

    breed = pa.struct([("breed", pa.string()), ("percent", pa.float64())])
    box = pa.struct([(k, pa.int32()) for k in ("left", "top", "right", "bottom")])
    cat = pa.struct([("box", box), ("cat_probability", pa.float64()), ("breeds", pa.list_(breed))])
    types = {
        "path": pa.string(), "size": pa.int64(), "mtime_ns": pa.int64(), "is_cat": pa.bool_(),
        "cat_probability": pa.float64(), "n_cats": pa.int32(), "top_breed": pa.string(),
        "top_breed_percent": pa.float64(), "breeds": pa.list_(breed), "cats": pa.list_(cat),
        "wild_cat": pa.string(), "width": pa.int32(), "height": pa.int32(), "error": pa.string(),
        "error_code": pa.string(), "model_version": pa.string(),
    }
    return pa.schema([(c, types[c]) for c in COLUMNS])


def rows_to_table(rows: list[dict]):
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=arrow_schema())


def model_version(files: ModelFiles) -> str:
    """``<package version>+<12 hex of sha256 over the model files>``: rows scanned with other
    models (or another release) say so, and ``--resume`` refuses to mix them."""
    from .. import __version__

    return f"{__version__}+{_files_hash(files.detector, files.breeds)}"


@lru_cache(maxsize=8)
def _files_hash(*paths: Path | None) -> str:
    h = hashlib.sha256()
    for p in paths:
        if p is None:
            h.update(b"no-file\0")
            continue
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()[:12]
