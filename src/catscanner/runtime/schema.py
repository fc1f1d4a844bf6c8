"""The result schema: the one definition of what a scan returns.

These frozen dataclasses are what :meth:`Scanner.scan` returns, what ``catscan scan --json``
prints (``to_dict``), what the HTTP API answers and what its OpenAPI schema describes (FastAPI
reads them directly), and what the CLI table and the web page show. A field is added here once.
Numbers are rounded when a result is built, so every front end shows the same values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# FastAPI turns these dataclasses into its OpenAPI schema; the attribute docstrings become the
# field descriptions there, and every field is required in a response (each is always sent, the
# defaults only build a result). Pydantic reads this plain dict (its ConfigDict is a TypedDict), so
# the runtime does not import pydantic.
_DOCS = {"use_attribute_docstrings": True, "json_schema_serialization_defaults_required": True}


def text_path(path: str | None) -> str | None:
    r"""``path`` as valid Unicode text for JSON and Parquet. A file name that is not UTF-8 (say
    ``café.jpg`` saved in Latin-1) reaches Python with lone surrogates, which no UTF-8 writer accepts:
    its undecodable bytes are written as ``\xNN`` instead (``caf\xe9.jpg``); every other path is unchanged."""
    if path is None:
        return None
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Box:
    """Where a cat is, in pixels of the upright photo: left, top, right, bottom."""

    __pydantic_config__ = _DOCS
    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


@dataclass(frozen=True)
class BreedShare:
    """One breed of a breed mix."""

    __pydantic_config__ = _DOCS
    breed: str
    """One of the 12 breeds (see ``GET /api/v1/breeds``)."""
    percent: float
    """Share of the breed mix, 0-100, rounded to 0.1."""


@dataclass(frozen=True)
class ImageNetLabel:
    """One of the ImageNet classes the detector's backbone saw in the whole photo."""

    __pydantic_config__ = _DOCS
    index: int
    name: str
    probability: float


@dataclass(frozen=True)
class Cat:
    """One house cat found in the photo."""

    __pydantic_config__ = _DOCS
    box: Box
    """Where this cat is, in pixels of the upright photo."""
    cat_probability: float
    """Probability (0-1) that this box holds a house cat, calibrated on cats, dogs, other animals and scenes."""
    breeds: list[BreedShare] = field(default_factory=list)
    """This cat's breed mix, computed on its own crop: shares at or above the threshold, highest first."""


@dataclass(frozen=True)
class Timing:
    """Milliseconds spent per stage (per photo; batch stages are divided over the batch)."""

    __pydantic_config__ = _DOCS
    decode_ms: float
    detect_ms: float
    classify_ms: float
    total_ms: float


@dataclass(frozen=True)
class ScanResult:
    """What Cat Scanner found in one photo. ``error`` is set (and the rest empty) when it failed."""

    __pydantic_config__ = _DOCS
    path: str | None
    """The file scanned (the upload's file name, or null)."""
    is_cat: bool = False
    """True when at least one house cat was found."""
    cat_probability: float = 0.0
    """The highest probability (0-1) of any box holding a house cat; calibrated. When no box was worth a
    second look, the share of such photos that held a cat all the same (fitted with the detector and stored
    in it as ``look_none_probability``)."""
    reference_rule_cat: bool = False
    """The reference rule on the whole photo: its ImageNet top-1 is one of the domestic-cat classes 281-285."""
    box: Box | None = None
    """The most confident cat's box (same as ``cats[0].box``), or null."""
    breeds: list[BreedShare] = field(default_factory=list)
    """The most confident cat's breed mix (same as ``cats[0].breeds``); empty when no cat."""
    breeds_note: str | None = None
    """Why ``breeds`` is empty, when it is."""
    cats: list[Cat] = field(default_factory=list)
    """Every house cat found, most confident first."""
    wild_cat: str | None = None
    """When the photo shows a wild cat (lynx, leopard, lion, tiger, ...) rather than a house cat: what it looks like."""
    imagenet_top: list[ImageNetLabel] = field(default_factory=list)
    """Top-5 ImageNet labels of the whole photo."""
    width: int | None = None
    """Width of the upright photo in pixels."""
    height: int | None = None
    """Height of the upright photo in pixels."""
    timing_ms: Timing | None = None
    error: str | None = None
    """What went wrong with this photo, and what to do."""
    error_code: str | None = None
    """Stable code: empty, not_an_image, corrupt, too_many_pixels, too_small, too_large, io_error, bad_input."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def top_breed(self) -> BreedShare | None:
        return self.breeds[0] if self.breeds else None

    def to_dict(self) -> dict:
        """The JSON of ``catscan scan --json`` and ``POST /api/v1/scan`` (see README)."""
        d = asdict(self)
        d["path"] = text_path(self.path)
        return d

    @classmethod
    def failed(cls, path: str | None, code: str, message: str) -> "ScanResult":
        """A result that reports why a photo could not be scanned."""
        return cls(path=path, error=message, error_code=code)
