"""The scanner: one object that loads the models once and answers "cat? where? which breeds?".

path/bytes/file/PIL image/array -> RGB image -> arrays -> detector + breed model -> :class:`ScanResult`.
Needs only NumPy, Pillow and ONNX Runtime (no PyTorch).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import (BadSettingError, BadThresholdError, CatScannerError, FileTooLargeError, UnreadableFileError,
                      UnsupportedInputError, size_text)
from .breeds import DEFAULT_BREED_THRESHOLD, BreedClassifier, breed_mix
from .contract import ModelFiles
from .detector import CatDetector, Detection
from .engine import AUTO, load_model
from .decoding import (DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, SOURCE_SIZE, decode_image,
                       from_array, from_pil, read_file)
from .preprocessing import preprocess_box, preprocess_frame
from .schema import Box, Cat, ScanResult, Timing

ImageInput = str | Path | bytes | bytearray | memoryview | io.IOBase | Image.Image | np.ndarray
# JPEGs are decoded at 1/2, 1/4 or 1/8 size as long as the short side keeps this many pixels:
# enough for the detector's input and for the breed crop of a cat 15 % of the short side tall.
DECODE_SHORT_SIDE = 1024


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def source_name(image: Any) -> str | None:
    """What a result's ``path`` says for an input: the path, a file object's name, or None."""
    if isinstance(image, (str, Path)):
        return str(image)
    name = getattr(image, "name", None) if isinstance(image, io.IOBase) else None
    return name if isinstance(name, str) else None


class Scanner:
    """Load once, scan many. ``Scanner().scan("cat.jpg").breeds``.

    ``threads`` caps the inference threads (default: all cores); ``runtime`` is ``"openvino"``,
    ``"onnxruntime"`` or ``"auto"`` (the fastest installed; env ``CATSCAN_RUNTIME``) and
    ``precision`` ``"f32"``, ``"bf16"`` or ``"auto"`` (env ``CATSCAN_PRECISION``; "auto" is bf16 where
    the CPU computes it natively for the breed model, f32 for the detector).
    ``breed_threshold`` is the smallest softmax share (0-1) a breed needs to be listed (default 0.05 = 5 %).
    """

    def __init__(self, model_dir: str | Path | None = None, *, threads: int | None = None,
                 runtime: str | None = AUTO, precision: str | None = AUTO,
                 breed_threshold: float = DEFAULT_BREED_THRESHOLD, max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_side: int = DEFAULT_MIN_SIDE, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES):
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                    or threads < 1):
            raise BadSettingError(f"threads must be a whole number of at least 1 (got {threads!r}); "
                                  "leave it out to use every core.")
        threads = None if threads is None else int(threads)
        threads = threads or os.cpu_count() or 1
        _check_threshold(breed_threshold, "breed_threshold")  # now, not at the first scan
        files = ModelFiles.resolve(model_dir)
        self.models = files
        # "auto" runs the detector in f32 even where bf16 is native: in bf16 its boxes move too far
        # (box IoU with f32 down to 0.73 on 96 test photos, issue 9 asks >= 0.9; the breed model holds)
        self.detector = CatDetector(load_model(files.detector, threads, runtime, precision, auto_bf16=False))
        self.classifier = None if files.breeds is None else \
            BreedClassifier(load_model(files.breeds, threads, runtime, precision))
        self.breed_threshold = breed_threshold
        self.max_pixels, self.min_side, self.max_file_bytes = max_pixels, min_side, max_file_bytes

    # ---------------------------------------------------------------- decoding
    def load(self, image: ImageInput, *, full_size: bool = False) -> Image.Image:
        """Any accepted input as an upright RGB image (raises a CatScannerError subclass).

        Accepted: a path, the bytes of a photo (bytes, bytearray, memoryview), a binary file
        object, a PIL image or a uint8 NumPy array. JPEGs are decoded at reduced size when the
        models need no more, unless ``full_size``.
        """
        limits = {"max_pixels": self.max_pixels, "min_side": self.min_side}
        if isinstance(image, Image.Image):
            return from_pil(image, **limits)
        if isinstance(image, np.ndarray):
            return from_array(image, **limits)
        if isinstance(image, (str, Path)):
            data = read_file(image, self.max_file_bytes)
        elif isinstance(image, (bytes, bytearray, memoryview)):
            data = bytes(image)
        elif isinstance(image, io.IOBase) or hasattr(image, "read"):
            if isinstance(image, io.TextIOBase):
                raise UnsupportedInputError("The file was opened as text: open the photo with open(path, 'rb').")
            try:
                data = image.read(self.max_file_bytes + 1)
            except (OSError, ValueError) as e:  # ValueError: a closed file
                raise UnreadableFileError(f"Could not read the file object: {e}. Pass an open binary file.") from None
            if not isinstance(data, (bytes, bytearray)):
                raise UnsupportedInputError("The file object gave text, not bytes: open the photo with 'rb'.")
            if len(data) > self.max_file_bytes:
                raise FileTooLargeError(f"The file is larger than {size_text(self.max_file_bytes)}; "
                                        "photos that big are refused. Resize it or save it as JPEG.")
        else:
            raise UnsupportedInputError(
                f"Cat Scanner scans a file path, the bytes of a photo, a binary file object, a PIL image "
                f"or a uint8 NumPy array; got {type(image).__name__}."
            )
        return decode_image(data, **limits, draft_short_side=None if full_size else DECODE_SHORT_SIDE)

    # ---------------------------------------------------------------- scanning
    def scan(self, image: ImageInput, *, threshold: float | None = None, source: str | None = None) -> ScanResult:
        """Scan one photo. Raises a :class:`~catscanner.errors.CatScannerError` for bad input."""
        threshold = self._threshold(threshold)
        t0 = time.perf_counter()
        img = self.load(image)
        decode_ms = _ms(t0)
        return self._scan_images([img], [source or source_name(image)], [decode_ms], threshold)[0]

    def scan_many(self, images: Iterable[ImageInput], *, threshold: float | None = None,
                  batch_size: int = 8) -> Iterator[ScanResult]:
        """Scan photos in batches, yielding one result per input in input order; a photo that
        fails yields a result with ``error`` set and the batch goes on."""
        threshold = self._threshold(threshold)  # before any photo: a bad threshold is the caller's error
        if isinstance(images, (str, Path, bytes, bytearray, memoryview, io.IOBase, Image.Image)) or \
                isinstance(images, np.ndarray) and images.ndim <= 3:  # (N, H, W, 3) is N photos
            raise UnsupportedInputError(f"scan_many takes several photos (a list, or any iterable), not one "
                                        f"{type(images).__name__}: use scan() for one photo, or pass [photo].")
        pending: list[ScanResult | tuple[Image.Image, str | None, float]] = []
        n_images = 0
        for image in images:
            source = source_name(image)
            t0 = time.perf_counter()
            try:
                pending.append((self.load(image), source, _ms(t0)))
                n_images += 1
            except CatScannerError as e:
                pending.append(ScanResult.failed(source, e.code, str(e)))
            if n_images >= batch_size:
                yield from self._flush(pending, threshold)
                pending, n_images = [], 0
        yield from self._flush(pending, threshold)

    def _flush(self, pending: list, threshold: float | None) -> Iterator[ScanResult]:
        decoded = [p for p in pending if not isinstance(p, ScanResult)]
        scanned = iter(self._scan_images(*zip(*decoded), threshold) if decoded else [])
        for p in pending:
            yield p if isinstance(p, ScanResult) else next(scanned)

    def _threshold(self, threshold: float | None) -> float:
        """The breed threshold to use: ``threshold``, or the scanner's when None."""
        return _check_threshold(self.breed_threshold if threshold is None else threshold, "threshold")

    def _scan_images(self, imgs, sources, decode_ms, threshold: float) -> list[ScanResult]:
        sizes = [img.info.get(SOURCE_SIZE, img.size) for img in imgs]  # the photos' sizes, not the drafts'
        t0 = time.perf_counter()
        detections = self._detect(imgs, sizes)
        detect_ms = _ms(t0) / len(imgs)

        t1 = time.perf_counter()
        crops = [(i, c) for i, d in enumerate(detections) for c in d.cats]
        probs: list[np.ndarray] = []
        if crops and self.classifier is not None:
            spec, scale = self.classifier.preprocess, self.detector.params.breed_crop_scale
            batch = np.stack([preprocess_box(imgs[i], _box_in(imgs[i], c.box, sizes[i]), spec, scale)
                              for i, c in crops])
            probs = list(self.classifier(batch))
        classify_ms = _ms(t1)
        per_photo = [sum(1 for i, _ in crops if i == k) for k in range(len(imgs))]

        results, shares = [], iter(probs)
        for k, (det, (width, height)) in enumerate(zip(detections, sizes)):
            cats = []
            for c in det.cats:
                breeds = breed_mix(next(shares), threshold) if self.classifier is not None else []
                box = Box(*(int(round(v)) for v in c.box))
                cats.append(Cat(box, round(c.probability, 4), breeds))
            c_ms = classify_ms * per_photo[k] / max(1, len(crops))
            results.append(ScanResult(
                path=sources[k],
                is_cat=bool(cats),
                cat_probability=round(cats[0].cat_probability if cats else det.best_probability, 4),
                reference_rule_cat=det.reference_rule_cat,
                box=cats[0].box if cats else None,
                breeds=cats[0].breeds if cats else [],
                breeds_note=_note(det, self.classifier is not None, threshold) if not (cats and cats[0].breeds) else None,
                cats=cats,
                wild_cat=det.wild_cat,
                imagenet_top=det.top_labels,
                width=width,
                height=height,
                timing_ms=Timing(*(round(v, 2) for v in (decode_ms[k], detect_ms, c_ms, decode_ms[k] + detect_ms + c_ms))),
            ))
        return results

    def _detect(self, imgs: list[Image.Image], sizes: list[tuple[int, int]]) -> list[Detection]:
        """The detector on each photo (``sizes``: the photos' own sizes); photos whose input has
        the same shape share one batch."""
        spec = self.detector.preprocess
        arrays = [preprocess_frame(img, spec) for img in imgs]
        out: list[Detection | None] = [None] * len(imgs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, a in enumerate(arrays):
            groups.setdefault(a.shape, []).append(i)
        for idx in groups.values():
            for i, d in zip(idx, self.detector(np.stack([arrays[i] for i in idx]), [sizes[i] for i in idx],
                                               [imgs[i] for i in idx])):
                out[i] = d
        return out  # type: ignore[return-value]


def _box_in(img: Image.Image, box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[float, ...]:
    """A box in photo pixels as pixels of ``img`` (smaller when the JPEG was draft-decoded)."""
    sx, sy = img.width / size[0], img.height / size[1]
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def _check_threshold(threshold: Any, name: str) -> float:
    """``threshold`` when it is a number from 0 to 1, else a BadThresholdError naming ``name``."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise BadThresholdError(f"{name} must be a number from 0 to 1 (got {threshold!r}, a "
                                f"{type(threshold).__name__}); 0.05 means 5 %.")
    if not 0.0 <= threshold <= 1.0:  # also refuses NaN
        raise BadThresholdError(f"{name} must be between 0 and 1 (got {threshold}); 0.05 means 5 %.")
    return float(threshold)


def _note(det: Detection, has_breed_model: bool, threshold: float) -> str:
    """Why a result lists no breeds (for the most confident cat, or for the photo)."""
    if det.wild_cat:
        return f"This looks like a wild cat ({det.wild_cat}), not a house cat, so no breeds are given."
    if not det.cats:
        return f"No cat detected (cat probability {det.best_probability:.0%}), so no breeds are reported."
    if not has_breed_model:
        return "No breed model is installed."
    return f"No breed reached the threshold of {threshold * 100:.10g} %: lower it to see the mix."
