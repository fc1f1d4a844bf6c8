"""Preprocessing: a decoded RGB image -> the float array a model reads (centre crop, whole frame,
a box or a square around it; resizing and normalisation), as the model's :class:`Preprocess` says.
Decoding is :mod:`.decoding`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image


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
    # > 0: whole-frame input instead of the centre crop: the whole photo resized to at most this
    # many pixels, keeping its shape, each side a multiple of ``multiple`` (see frame_size).
    max_pixels: int = 0
    multiple: int = 32

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
            "max_pixels": self.max_pixels,
            "multiple": self.multiple,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(int(d["size"]), float(d["crop_fraction"]), tuple(d["mean"]), tuple(d["std"]),
                   d.get("resample", "bicubic"), int(d.get("max_pixels", 0)), int(d.get("multiple", 32)))

    @property
    def whole_frame(self) -> bool:
        return self.max_pixels > 0

    @property
    def decode_hint(self) -> int:
        """Short side the decoder must keep so the centre crop still has ``size`` pixels."""
        return math.ceil(self.size / self.crop_fraction)


_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def centre_crop(size: tuple[int, int], spec: Preprocess) -> tuple[float, float, float]:
    """(left, top, side) of the centre square ``spec`` crops from a photo of ``size`` (w, h)."""
    w, h = size
    side = min(w, h) * spec.crop_fraction
    return (w - side) / 2, (h - side) / 2, side


def normalize(rgb: Image.Image | np.ndarray, spec: Preprocess) -> np.ndarray:
    """HWC 0-255 RGB -> the model's float32 CHW input: ``(x - mean) / std`` per channel."""
    # transposed while still 8-bit, then converted into a fresh C-ordered array and normalised in
    # place: the same float32 arithmetic as (x - mean) / std on HWC, several times faster
    arr = np.asarray(rgb).transpose(2, 0, 1).astype(np.float32, order="C")
    arr -= np.asarray(spec.mean, np.float32)[:, None, None]
    arr /= np.asarray(spec.std, np.float32)[:, None, None]
    return arr


def frame_size(w: int, h: int, max_pixels: int, multiple: int = 32) -> tuple[int, int]:
    """(W, H) of a whole-frame model input for a ``w`` x ``h`` photo: the largest size with sides
    that are multiples of ``multiple`` and at most ``max_pixels`` pixels (3 % slack) whose shape is
    within 12 % of the photo's (closest shape when none is, for strips beyond 76:1 either way);
    boxes map back per axis."""
    ratio = w / h
    best = None
    for hh in range(multiple, 64 * multiple, multiple):
        ww = max(multiple, round(hh * ratio / multiple) * multiple)
        if ww * hh > max_pixels * 1.03:
            if hh * multiple > max_pixels * 1.03:
                break
            continue
        err = abs(math.log((ww / hh) / ratio))
        candidate = (err > 0.12, -ww * hh, err, ww, hh)
        if best is None or candidate < best:
            best = candidate
    if best is None:  # a strip so wide that no height fits: the widest input of the smallest height
        return max(multiple, int(max_pixels * 1.03 / multiple) // multiple * multiple), multiple
    return best[3], best[4]


# The detector's resizes of big photos first shrink by a whole factor with a box filter while the
# photo stays at least this many times the target (Pillow's reducing_gap), then resample: the same
# picture within a few grey levels, several times faster from 12 MP (benchmarks/FINDINGS.md).
DETECT_REDUCING_GAP = 3.0


def preprocess_frame(img: Image.Image, spec: Preprocess) -> np.ndarray:
    """The whole photo resized to :func:`frame_size` and normalised; float32 CHW."""
    size = frame_size(*img.size, spec.max_pixels, spec.multiple)
    return normalize(img.resize(size, _RESAMPLE[spec.resample], reducing_gap=DETECT_REDUCING_GAP), spec)


def preprocess_box(img: Image.Image, box: tuple[float, float, float, float], spec: Preprocess,
                   scale: float = 1.0) -> np.ndarray:
    """A square around ``box`` (left, top, right, bottom in ``img`` pixels) resized to ``spec.size``
    and normalised; float32 CHW. The square's side is ``scale`` times the box's shorter side (at
    most the photo's short side), centred on the box and moved inside the photo where it would stick out."""
    left, top, right, bottom = box
    side = max(1.0, min(scale * min(right - left, bottom - top), min(img.size)))
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0 = min(max(0.0, cx - side / 2), img.width - side)
    y0 = min(max(0.0, cy - side / 2), img.height - side)
    resized = img.resize((spec.size, spec.size), _RESAMPLE[spec.resample], box=(x0, y0, x0 + side, y0 + side),
                         reducing_gap=None)
    return normalize(resized, spec)


def crop_square(box: tuple[float, float, float, float], margin: float) -> tuple[float, float, float]:
    """(left, top, side) of the square of ``margin`` times the box's longer side centred on the box
    (what the detector's second look cuts out, :func:`preprocess_square`)."""
    left, top, right, bottom = box
    side = max(1.0, margin * max(right - left, bottom - top))
    return (left + right - side) / 2, (top + bottom - side) / 2, side


def preprocess_square(img: Image.Image, box: tuple[float, float, float, float], size: int, spec: Preprocess,
                      margin: float = 1.15) -> np.ndarray:
    """The whole of ``box`` (``img`` pixels) and a margin around it: a square of ``margin`` times the
    box's longer side, centred on the box, resized to ``size`` x ``size`` and normalised (float32
    CHW). Where the square sticks out of the photo it is filled with the normalisation's mean
    colour (zeros after normalising), so the box stays centred and at one scale."""
    x0, y0, side = crop_square(box, margin)
    fill = tuple(int(round(m)) for m in spec.mean)
    canvas = Image.new("RGB", (size, size), fill)
    vx0, vy0 = max(0.0, x0), max(0.0, y0)
    vx1, vy1 = min(float(img.width), x0 + side), min(float(img.height), y0 + side)
    if vx1 > vx0 and vy1 > vy0:
        k = size / side
        dx, dy = int(round((vx0 - x0) * k)), int(round((vy0 - y0) * k))
        dw = max(1, min(size - dx, int(round((vx1 - vx0) * k))))
        dh = max(1, min(size - dy, int(round((vy1 - vy0) * k))))
        canvas.paste(img.resize((dw, dh), _RESAMPLE[spec.resample], box=(vx0, vy0, vx1, vy1),
                                reducing_gap=DETECT_REDUCING_GAP), (dx, dy))
    return normalize(canvas, spec)


def preprocess(img: Image.Image, spec: Preprocess) -> np.ndarray:
    """Centre-crop and resize an RGB image as ``spec`` says (whole-frame specs: see
    :func:`preprocess_frame`); returns float32 CHW."""
    if spec.whole_frame:
        return preprocess_frame(img, spec)
    left, top, side = centre_crop(img.size, spec)
    resized = img.resize(
        (spec.size, spec.size),
        _RESAMPLE[spec.resample],
        box=(left, top, left + side, top + side),
        reducing_gap=None,
    )
    return normalize(resized, spec)
