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


class BadSettingError(CatScannerError, ValueError):
    """A setting given to the scanner that cannot work (e.g. ``threads=0``); also a ValueError."""

    code = "bad_setting"


class BadThresholdError(BadSettingError):
    """A breed threshold that is not a number from 0 to 1 (also a ValueError, as it was before it had a class)."""

    code = "bad_threshold"


def size_text(n: int, beside: int | None = None) -> str:
    """10485760 -> '10 MiB', 10485761 -> '10.000001 MiB', 30000000 -> '28.6 MiB', 17797412 -> '16.97 MiB',
    65536 -> '64 KiB', 65537 -> '65537 bytes'.

    Exact enough that a size never prints as a whole number it is not, nor, given the ``beside`` size
    printed in the same sentence (a limit), as that: 2.5 MiB + 1 byte beside 2.5 MiB is '2.500001 MiB'."""
    if n < 1024 * 1024:
        return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} bytes"
    other = None if beside is None else size_text(beside)
    for digits in range(1, 7):
        number = f"{n / (1024 * 1024):.{digits}f}".rstrip("0").rstrip(".")
        if (n % (1024 * 1024) == 0 or float(number) != round(n / (1024 * 1024))) and f"{number} MiB" != other:
            return f"{number} MiB"
    return f"{n:,} bytes"
