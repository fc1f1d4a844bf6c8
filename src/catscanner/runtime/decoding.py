"""Decoding: bytes (or a path, a PIL image, an array) -> an upright 8-bit RGB image, within limits.

Decoding goes by the file's content, never by its name (several Oxford ``.jpg`` files are really
PNG or GIF). Every bad input raises its own :class:`~catscanner.errors.ImageError`. NumPy + Pillow
only, so the scanner runs without PyTorch. What a model makes of the image is
:mod:`.preprocessing`.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import (
    CorruptImageError,
    EmptyImageError,
    FileTooLargeError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
    UnreadableFileError,
    UnsupportedInputError,
    size_text,
)

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MIN_SIDE = 32
# Key in ``Image.info`` holding the upright photo's own (width, height): with draft decoding the
# decoded image can be 2, 4 or 8 times smaller than the photo.
SOURCE_SIZE = "catscanner_source_size"
SUPPORTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO", "HEIF")
FORMAT_NAMES = "JPEG, PNG, GIF, WebP, BMP, TIFF or HEIC"
HEIC_EXTRA = 'pip install "catscanner[heic]"'


def _read_heif() -> bool:
    """Phones save HEIC (HEIF) photos: Pillow reads them once the optional pillow-heif registers its
    opener (``pip install "catscanner[heic]"``). Whether it is installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


HEIF_READABLE = _read_heif()

# File name endings of photos, for finding them in folders (decoding itself goes by content).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif"})


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    draft_short_side: int | None = None,
) -> Image.Image:
    """Decode image bytes (JPEG, PNG, GIF, WebP, BMP, TIFF; HEIC with the ``heic`` extra) into an
    upright 8-bit RGB image.

    ``draft_short_side`` lets JPEG decoding scale down by 1/2, 1/4 or 1/8 in the decoder
    itself as long as the short side stays at least that long (much faster for big photos);
    ``img.info[SOURCE_SIZE]`` keeps the photo's own upright size.
    Raises a subclass of :class:`~catscanner.errors.ImageError` naming what was wrong.
    """
    if not data:
        raise EmptyImageError("The input is empty (0 bytes): send the bytes of a photo.")
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check below is the rule; Pillow's warning threshold (89 MP)
            # would otherwise refuse images a caller allowed with a larger max_pixels.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:  # Pillow's hard limit (2 x MAX_IMAGE_PIXELS), before ours
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        found = re.search(r"\((\d+) pixels\)", str(e))  # "Image size (900000000 pixels) exceeds limit of ..."
        size, limit_text = pixels_text(int(found.group(1)) if found else None, limit)
        raise ImageTooLargeError(f"The image is {size}; the limit is {limit_text}. Resize it and try again.") from None
    except UnidentifiedImageError:
        if _is_heif(data) and not HEIF_READABLE:
            raise NotAnImageError(f"This is a HEIC/HEIF photo; reading it needs the optional pillow-heif: "
                                  f"{HEIC_EXTRA} (or save the photo as JPEG).") from None
        if _looks_like_image(data):
            raise CorruptImageError(
                f"The image ({len(data)} bytes) starts like a photo but its header is broken. "
                "Re-export or re-download the photo."
            ) from None
        raise NotAnImageError(
            f"The input ({len(data)} bytes) is not an image format Cat Scanner reads "
            f"({FORMAT_NAMES})."
        ) from None
    except Exception as e:  # Pillow plugins raise many types (struct.error, IndexError, ...)
        raise CorruptImageError(f"The image header is corrupt ({type(e).__name__}: {e}). "
                                "Re-export or re-download the photo.") from None
    if img.format not in SUPPORTED_FORMATS:
        raise NotAnImageError(
            f"{img.format} images are not supported: use {FORMAT_NAMES}."
        )
    w, h = img.size
    if w == 0 or h == 0:
        raise CorruptImageError(f"The image claims a size of {w}x{h} pixels: it is broken. Re-export the photo.")
    check_size(w, h, max_pixels, min_side)
    try:
        if draft_short_side and img.format == "JPEG":
            scale = max(1, min(w, h) // draft_short_side)
            img.draft("RGB", (math.ceil(w / scale), math.ceil(h / scale)))
        img.load()
        upright, turned = _upright(img)
        img = _to_rgb(upright)
        img.info[SOURCE_SIZE] = (h, w) if turned else (w, h)
        return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLargeError(f"The image has too many pixels to decode safely ({e}).") from None
    except Exception as e:  # truncated data, bad chunks, and whatever a plugin trips over
        raise CorruptImageError(
            f"The image data is truncated or corrupt ({e}). Re-export or re-download the photo."
        ) from None


def _upright(img: Image.Image) -> tuple[Image.Image, bool]:
    """(``img`` turned as its EXIF orientation says, whether that turned it by 90 degrees); an EXIF
    block too broken to read is ignored (the pixels are fine: the photo is scanned as stored)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow's "Corrupt EXIF data" warnings
            turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
            return ImageOps.exif_transpose(img), turned
    except Exception:  # noqa: BLE001 - Pillow's EXIF parser raises many types on garbage
        return img, False


def load_image(path: str | Path, **kwargs) -> Image.Image:
    """Read a photo file and decode it with :func:`decode_image` (by content, not by extension)."""
    return decode_image(read_file(path), **kwargs)


DEFAULT_MAX_FILE_BYTES = 200 * 1024 * 1024

# Magic numbers of the formats we read: data that starts like one of them and still fails to
# open is a broken image (corrupt), not "some other kind of file".
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


def _is_heif(data: bytes) -> bool:
    """An ISO media file whose brand is HEIF's (``....ftypheic``)."""
    return data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS


def _looks_like_image(data: bytes) -> bool:
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP") or _is_heif(data)


def read_file(path: str | Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, at most ``max_bytes`` of them.

    Refuses anything that is not a regular file before reading it (a named pipe would block
    forever, ``/dev/zero`` would never end) and never reads more than ``max_bytes + 1`` bytes.
    """
    try:
        # O_NONBLOCK: opening a named pipe must not wait for a writer; fstat then tells what it is.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise UnreadableFileError(f"Could not read {path}: {e.strerror or e}. Check the path and its permissions.") from None
    except ValueError as e:  # a NUL byte in the path
        raise UnreadableFileError(f"Could not read {path!r}: {e}. Check the path.") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # checked before fdopen, which raises IsADirectoryError for a folder
        os.close(fd)
        raise UnreadableFileError(f"{path} is not a regular file (it is a {file_kind(st.st_mode)}): "
                                  "give the path of a photo file.")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > max_bytes:
            raise FileTooLargeError(f"{path} is {size_text(st.st_size, beside=max_bytes)}; photos over "
                                    f"{size_text(max_bytes)} are refused. Resize it or save it as JPEG.")
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise UnreadableFileError(f"Could not read {path}: {e.strerror or e}.") from None
    if len(data) > max_bytes:  # the file grew while we read it
        raise FileTooLargeError(f"{path} is larger than {size_text(max_bytes)}. Resize it.")
    return data


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "named pipe"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def pixels_text(n: int | None, limit: int) -> tuple[str, str]:
    """(size, limit) for a message: in megapixels ("50.1 megapixels", "50 megapixels") unless the size
    would read as the limit itself (50,000,100 pixels is "50.0 megapixels"): then in pixels."""
    limit_mp = f"{limit / 1e6:g} megapixels"
    if n is None:
        return "too many pixels to decode safely", limit_mp
    size_mp = f"{n / 1e6:.1f} megapixels"
    if float(size_mp.split()[0]) > float(limit_mp.split()[0]):
        return size_mp, limit_mp
    return f"{n:,} pixels", f"{limit:,} pixels"


def check_size(w: int, h: int, max_pixels: int, min_side: int) -> None:
    """Raise when a ``w`` x ``h`` image is outside the limits Cat Scanner accepts."""
    if w * h > max_pixels:
        size, limit_text = pixels_text(w * h, max_pixels)
        raise ImageTooLargeError(f"The image is {w}x{h} = {size}; the limit is {limit_text}. Resize it and try again.")
    if min(w, h) < min_side:
        raise ImageTooSmallError(
            f"The image is {w}x{h} pixels; at least {min_side} px on each side is needed "
            f"to judge it. Send a larger photo."
        )


def from_pil(img: Image.Image, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DEFAULT_MIN_SIDE) -> Image.Image:
    """A PIL image given by a caller, held to the same limits and conversions as decoded bytes."""
    check_size(*img.size, max_pixels, min_side)
    try:
        upright = ImageOps.exif_transpose(img)
        rgb = _to_rgb(upright)
    except Exception as e:  # a mode or EXIF block Pillow cannot convert
        raise CorruptImageError(f"The image (mode {img.mode}) could not be converted to RGB ({e}). "
                                "Save it as an ordinary RGB JPEG or PNG and try again.") from None
    if rgb is img:
        rgb = img.copy()  # never write into the caller's image
    rgb.info[SOURCE_SIZE] = rgb.size
    return rgb


def from_array(arr: np.ndarray, **limits) -> Image.Image:
    """An H x W (grey) or H x W x 3/4 (RGB/RGBA) uint8 array as an RGB image."""
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise UnsupportedInputError(
            f"A NumPy array must be uint8 with shape (H, W), (H, W, 3) or (H, W, 4) (got {arr.dtype} {arr.shape})."
        )
    return from_pil(Image.fromarray(np.ascontiguousarray(arr)), **limits)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _deep_to_rgb(img)
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode == "La":  # premultiplied alpha: Pillow converts it only to LA
        img = img.convert("LA")
    if img.mode in ("RGBA", "LA", "RGBa", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


_STRIP_PIXELS = 1 << 20  # convert deep images a strip of about a megapixel at a time


def _deep_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey (modes I;16*, I, F) to 8-bit RGB, a strip at a time: memory stays a few
    MB above the 8-bit result whatever the size. The white point is the range the values use:
    65535 for 16-bit; for 32-bit, 1 (floats in 0-1), 255, 65535, or beyond that the image's maximum."""
    _, hi = img.getextrema()
    if img.mode.startswith("I;16"):
        top = 65535.0
    elif img.mode == "F" and hi <= 1.0:
        top = 1.0
    else:
        top = 255.0 if hi <= 255 else 65535.0 if hi <= 65535 else float(hi)
    w, h = img.size
    out = np.empty((h, w), np.uint8)
    rows = max(1, _STRIP_PIXELS // max(1, w))
    for y in range(0, h, rows):
        # a new array: for mode F, asarray is a read-only view of the crop, which clip may not write into
        strip = np.asarray(img.crop((0, y, w, min(h, y + rows))), dtype=np.float32) * np.float32(255.0 / top)
        np.clip(strip + np.float32(0.5), 0, 255, out=strip)
        out[y:y + rows] = strip
    return Image.fromarray(out, "L").convert("RGB")
