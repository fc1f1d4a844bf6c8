"""Cat Scanner: is there a cat in this photo, where is it, and what breed mix is it?

>>> from catscanner import Scanner
>>> result = Scanner().scan("cat.jpg")
>>> result.is_cat, [(b.breed, b.percent) for b in result.breeds]
"""

from .breeds import BREEDS, BreedShare
from .detector import Box, ImageNetLabel
from .errors import (
    CatScannerError,
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    ModelError,
    NotAnImageError,
    UnreadableFileError,
)
from .scanner import Scanner, ScanError, ScanResult, Timing

__version__ = "0.1.0"
__all__ = [
    "BREEDS", "Box", "BreedShare", "CatScannerError", "CorruptImageError", "EmptyImageError", "ImageError",
    "ImageNetLabel", "ImageTooLargeError", "ImageTooSmallError", "ModelError", "NotAnImageError", "ScanError",
    "ScanResult", "Scanner", "Timing", "UnreadableFileError",
]
