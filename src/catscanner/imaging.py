"""Image decoding and preprocessing: bytes -> RGB image -> model-ready float array.

Decoding goes by the file's content, never by its name (several Oxford ``.jpg`` files are
really PNG or GIF). Everything here is NumPy + Pillow, so the scanner runs without PyTorch.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import (
    CorruptImageError,
    EmptyImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
)

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MIN_SIDE = 32
# Key in ``Image.info`` holding the upright photo's own (width, height): with draft decoding the
# decoded image can be 2, 4 or 8 times smaller than the photo.
SOURCE_SIZE = "catscanner_source_size"
SUPPORTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO")


@dataclass(frozen=True)
class Preprocess:
    """How one weight set wants its input: square ``size``, centre crop, normalisation.

    ``crop_fraction`` is the side of the centre crop relative to the short side of the photo
    (TF EfficientNet: size / (size + 32); torchvision: 224 / 256). Pixels are 0-255 RGB;
    the model sees ``(x - mean) / std`` per channel, in CHW layout.
    """

    size: int
    crop_fraction: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: str = "bicubic"

    @classmethod
    def efficientnet_lite(cls, size: int) -> "Preprocess":
        return cls(size, size / (size + 32), (127.0, 127.0, 127.0), (128.0, 128.0, 128.0))

    @classmethod
    def imagenet_torchvision(cls, size: int = 224) -> "Preprocess":
        return cls(
            size, 224 / 256, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375), "bilinear"
        )

    def to_dict(self) -> dict:
        return {
            "size": self.size,
            "crop_fraction": self.crop_fraction,
            "mean": list(self.mean),
            "std": list(self.std),
            "resample": self.resample,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(int(d["size"]), float(d["crop_fraction"]), tuple(d["mean"]), tuple(d["std"]),
                   d.get("resample", "bicubic"))

    @property
    def decode_hint(self) -> int:
        """Short side the decoder must keep so the centre crop still has ``size`` pixels."""
        return math.ceil(self.size / self.crop_fraction)


_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    draft_short_side: int | None = None,
) -> Image.Image:
    """Decode image bytes (JPEG, PNG, GIF, WebP, BMP, TIFF) into an upright 8-bit RGB image.

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
    except Image.DecompressionBombError as e:  # Pillow's hard limit (2 x MAX_IMAGE_PIXELS)
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        raise ImageTooLargeError(
            f"The image has too many pixels to decode safely ({e}). "
            f"Resize it below {limit / 1e6:.0f} megapixels."
        ) from None
    except UnidentifiedImageError:
        raise NotAnImageError(
            f"The input ({len(data)} bytes) is not an image format Cat Scanner reads "
            f"(JPEG, PNG, GIF, WebP, BMP, TIFF)."
        ) from None
    except Exception as e:  # Pillow plugins raise many types (struct.error, IndexError, ...)
        raise CorruptImageError(f"The image header is corrupt ({type(e).__name__}: {e}).") from None
    if img.format not in SUPPORTED_FORMATS:
        raise NotAnImageError(
            f"{img.format} images are not supported: use JPEG, PNG, GIF, WebP, BMP or TIFF."
        )
    w, h = img.size
    if w * h > max_pixels:
        raise ImageTooLargeError(
            f"The image is {w}x{h} = {w * h / 1e6:.1f} megapixels; the limit is "
            f"{max_pixels / 1e6:.0f} megapixels. Resize it and try again."
        )
    if min(w, h) < min_side:
        raise ImageTooSmallError(
            f"The image is {w}x{h} pixels; at least {min_side} px on each side is needed "
            f"to judge it. Send a larger photo."
        )
    try:
        if draft_short_side and img.format == "JPEG":
            scale = max(1, min(w, h) // draft_short_side)
            img.draft("RGB", (math.ceil(w / scale), math.ceil(h / scale)))
        img.load()
        swap = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientation turns it 90 degrees
        img = _to_rgb(ImageOps.exif_transpose(img))
        img.info[SOURCE_SIZE] = (h, w) if swap else (w, h)
        return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLargeError(f"The image has too many pixels to decode safely ({e}).") from None
    except Exception as e:  # truncated data, bad chunks, and whatever a plugin trips over
        raise CorruptImageError(
            f"The image data is truncated or corrupt ({e}). Re-export or re-download the photo."
        ) from None


def load_image(path: str | Path, **kwargs) -> Image.Image:
    """Read a file and decode it with :func:`decode_image` (by content, not by extension)."""
    return decode_image(Path(path).read_bytes(), **kwargs)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def preprocess(img: Image.Image, spec: Preprocess) -> np.ndarray:
    """Centre-crop and resize an RGB image as ``spec`` says; returns float32 CHW."""
    w, h = img.size
    side = min(w, h) * spec.crop_fraction
    left, top = (w - side) / 2, (h - side) / 2
    resized = img.resize(
        (spec.size, spec.size),
        _RESAMPLE[spec.resample],
        box=(left, top, left + side, top + side),
        reducing_gap=None,
    )
    arr = np.asarray(resized, dtype=np.float32)
    arr = (arr - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def map_batches(paths: list[Path], spec: Preprocess, run, desc: str, batch_size: int = 32) -> list:
    """``run(batch)`` on the photos at ``paths``, preprocessed as ``spec`` says, ``batch_size``
    at a time, with a progress bar; returns the list of ``run``'s results, one per batch."""
    from .progress import progress_bar

    return [run(np.stack([preprocess(load_image(p), spec) for p in paths[i:i + batch_size]]))
            for i in progress_bar(range(0, len(paths), batch_size), desc=desc)]
