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

from ..errors import CatScannerError, UnsupportedInputError
from .breeds import DEFAULT_BREED_THRESHOLD, BreedClassifier, breed_mix
from .contract import ModelFiles
from .detector import CatDetector, box_from_map
from .imaging import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    SOURCE_SIZE,
    centre_crop,
    decode_image,
    from_array,
    from_pil,
    preprocess,
    read_file,
)
from .onnx_model import OnnxModel
from .schema import BreedShare, Cat, ScanResult, Timing

ImageInput = str | Path | bytes | bytearray | memoryview | io.IOBase | Image.Image | np.ndarray


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

    ``threads`` caps ONNX Runtime's threads (default: all cores). ``breed_threshold`` is the
    smallest softmax share (0-1) a breed needs to be listed (default 0.05 = 5 %).
    """

    def __init__(self, model_dir: str | Path | None = None, *, threads: int | None = None,
                 breed_threshold: float = DEFAULT_BREED_THRESHOLD, max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_side: int = DEFAULT_MIN_SIDE, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES):
        threads = threads or os.cpu_count() or 1
        files = ModelFiles.resolve(model_dir)
        self.models = files
        self.detector = CatDetector(OnnxModel(files.detector, threads))
        self.classifier = None if files.breeds is None else BreedClassifier(OnnxModel(files.breeds, threads))
        self.breed_threshold = breed_threshold
        self.max_pixels, self.min_side, self.max_file_bytes = max_pixels, min_side, max_file_bytes
        specs = [self.detector.preprocess] + ([self.classifier.preprocess] if self.classifier else [])
        self._decode_hint = max(s.decode_hint for s in specs)

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
            data = image.read(self.max_file_bytes + 1)
            if not isinstance(data, bytes):
                raise UnsupportedInputError("The file object gave text, not bytes: open the photo with 'rb'.")
            if len(data) > self.max_file_bytes:
                raise UnsupportedInputError(f"The file is larger than {self.max_file_bytes / 2**20:.0f} MiB.")
        else:
            raise UnsupportedInputError(
                f"Cat Scanner scans a file path, the bytes of a photo, a binary file object, a PIL image "
                f"or a uint8 NumPy array; got {type(image).__name__}."
            )
        return decode_image(data, **limits, draft_short_side=None if full_size else self._decode_hint)

    # ---------------------------------------------------------------- scanning
    def scan(self, image: ImageInput, *, threshold: float | None = None, source: str | None = None) -> ScanResult:
        """Scan one photo. Raises a :class:`~catscanner.errors.CatScannerError` for bad input."""
        t0 = time.perf_counter()
        img = self.load(image)
        decode_ms = _ms(t0)
        return self._scan_images([img], [source or source_name(image)], [decode_ms], threshold)[0]

    def scan_many(self, images: Iterable[ImageInput], *, threshold: float | None = None,
                  batch_size: int = 8) -> Iterator[ScanResult]:
        """Scan photos in batches, yielding one result per input in input order; a photo that
        fails yields a result with ``error`` set and the batch goes on."""
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

    def _scan_images(self, imgs, sources, decode_ms, threshold: float | None) -> list[ScanResult]:
        threshold = self.breed_threshold if threshold is None else threshold
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1 (got {threshold}); 0.05 means 5 %.")
        t0 = time.perf_counter()
        det_spec = self.detector.preprocess
        det_batch = np.stack([preprocess(img, det_spec) for img in imgs])
        detections = self.detector(det_batch)
        detect_ms = _ms(t0) / len(imgs)

        t1 = time.perf_counter()
        cats = [i for i, d in enumerate(detections) if d.is_cat]
        probs: dict[int, np.ndarray] = {}
        if cats and self.classifier is not None:
            spec = self.classifier.preprocess
            batch = det_batch[cats] if spec == det_spec else np.stack([preprocess(imgs[i], spec) for i in cats])
            probs = dict(zip(cats, self.classifier(batch)))
        classify_ms = _ms(t1) / max(1, len(cats)) if cats else 0.0

        results = []
        for i, (img, det) in enumerate(zip(imgs, detections)):
            width, height = img.info.get(SOURCE_SIZE, img.size)  # the photo's size, not the draft's
            found: list[Cat] = []
            if not det.is_cat:
                note = f"No cat detected (cat probability {det.cat_probability:.0%}), so no breeds are reported."
                breeds: list[BreedShare] = []
            elif self.classifier is None:
                note, breeds = "No breed model is installed.", []
            else:
                note, breeds = None, breed_mix(probs[i], threshold)
            if det.is_cat:
                box = box_from_map(det.cat_map, centre_crop((width, height), det_spec), (width, height))
                found.append(Cat(box, round(det.cat_probability, 4), breeds))
            c_ms = classify_ms if i in probs else 0.0
            results.append(ScanResult(
                path=sources[i],
                is_cat=det.is_cat,
                cat_probability=round(det.cat_probability, 4),
                reference_rule_cat=det.reference_rule_cat,
                box=found[0].box if found else None,
                breeds=breeds,
                breeds_note=note,
                cats=found,
                imagenet_top=det.top_labels,
                width=width,
                height=height,
                timing_ms=Timing(*(round(v, 2) for v in (decode_ms[i], detect_ms, c_ms, decode_ms[i] + detect_ms + c_ms))),
            ))
        return results
