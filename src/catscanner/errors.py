"""Every failure Cat Scanner reports on purpose is a subclass of :class:`CatScannerError`.

Each error carries a stable machine-readable ``code`` (used by the JSON API and ``--json``)
and a message that says what was wrong and what to do about it.
"""

from __future__ import annotations


class CatScannerError(Exception):
    """Base class of every error Cat Scanner raises on purpose."""

    code = "error"


class ImageError(CatScannerError):
    """The input could not be used as a photo."""

    code = "bad_image"


class UnreadableFileError(ImageError):
    code = "io_error"


class EmptyImageError(ImageError):
    code = "empty"


class NotAnImageError(ImageError):
    code = "not_an_image"


class CorruptImageError(ImageError):
    code = "corrupt"


class ImageTooLargeError(ImageError):
    code = "too_many_pixels"


class ImageTooSmallError(ImageError):
    code = "too_small"


class ModelError(CatScannerError):
    """A model file is missing or does not match what the code expects."""

    code = "model"


class UnsupportedInputError(ImageError):
    """The input is of a type Cat Scanner cannot scan (not a path, bytes, file, PIL image or array)."""

    code = "bad_input"


class FileTooLargeError(ImageError):
    """The file is larger than the byte limit (read no further than the limit)."""

    code = "too_large"
