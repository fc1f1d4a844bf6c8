"""Cat Scanner: is there a cat in this photo, where is it, and what breed mix is it?

>>> from catscanner import Scanner
>>> result = Scanner().scan("cat.jpg")
>>> result.is_cat, [(b.breed, b.percent) for b in result.breeds]
"""

from .errors import (
    BadSettingError,
    BadThresholdError,
    CatScannerError,
    CorruptImageError,
    EmptyImageError,
    FileTooLargeError,
    ImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    ModelError,
    NotAnImageError,
    UnreadableFileError,
    UnsupportedInputError,
)
from .runtime.breeds import BREEDS
from .runtime.scanner import Scanner
from .runtime.schema import Box, BreedShare, Cat, ImageNetLabel, ScanResult, Timing

__version__ = "0.2.0"
__all__ = [
    "BREEDS", "BadSettingError", "BadThresholdError", "Box", "BreedShare", "Cat", "CatScannerError", "CorruptImageError", "EmptyImageError",
    "FileTooLargeError", "ImageError", "ImageNetLabel", "ImageTooLargeError", "ImageTooSmallError", "ModelError",
    "NotAnImageError", "ScanResult", "Scanner", "Timing", "UnreadableFileError", "UnsupportedInputError",
]
